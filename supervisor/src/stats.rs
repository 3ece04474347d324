//! Resource usage of tenders (`/proc/PID/stat`, `/proc/PID/statm`) and of their taps
//! (`/proc/thread-self/net/dev`).
//!
//! The tap counters come from the network namespace of the calling thread (the one
//! the taps were created in — the daemon's), not from `/sys/class/net`, whose view is
//! fixed by whoever mounted sysfs. They are turned around to the guest's point of view:
//! what the tap transmits, the guest receives.
//!
//! The parsers are pure functions over the file contents; they never index without a
//! bounds check.

use std::path::PathBuf;

/// CPU time and memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// User-mode CPU time (the vCPU runs in the kernel on behalf of the process, so KVM
    /// guest time mostly appears as system time), in milliseconds.
    pub cpu_user_ms: u64,
    /// Kernel-mode CPU time, in milliseconds.
    pub cpu_system_ms: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Traffic of one network device, from the guest's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Bytes the guest received (the tap sent).
    pub rx_bytes: u64,
    /// Packets the guest received.
    pub rx_packets: u64,
    /// Bytes the guest sent (the tap received).
    pub tx_bytes: u64,
    /// Packets the guest sent.
    pub tx_packets: u64,
    /// Packets dropped on the tap, both directions.
    pub dropped: u64,
}

/// Why statistics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file could not be read (for a process: it is gone).
    #[error("cannot read {path}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file did not have the expected shape.
    #[error("{path}: unexpected contents: {reason}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// No such interface in this network namespace.
    #[error("no network interface {0:?}")]
    NoInterface(String),
}

fn read(path: PathBuf) -> Result<(PathBuf, String), StatsError> {
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok((path, s)),
        Err(source) => Err(StatsError::Read { path, source }),
    }
}

/// CPU time and RSS of process `pid`.
pub fn process(pid: u32) -> Result<ProcessStats, StatsError> {
    let (path, stat) = read(PathBuf::from(format!("/proc/{pid}/stat")))?;
    let (utime, stime) =
        parse_stat_times(&stat).map_err(|reason| StatsError::Parse { path, reason })?;
    let (path, statm) = read(PathBuf::from(format!("/proc/{pid}/statm")))?;
    let pages =
        parse_statm_resident(&statm).map_err(|reason| StatsError::Parse { path, reason })?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
    Ok(ProcessStats {
        cpu_user_ms: ticks_to_ms(utime, ticks),
        cpu_system_ms: ticks_to_ms(stime, ticks),
        rss_bytes: pages.saturating_mul(page),
    })
}

/// Counters of tap `ifname` (in the calling thread's network namespace), turned to the
/// guest's point of view.
pub fn tap(ifname: &str) -> Result<NetCounters, StatsError> {
    let (path, dev) = read(PathBuf::from("/proc/thread-self/net/dev"))?;
    match parse_net_dev(&dev, ifname) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(StatsError::NoInterface(ifname.to_string())),
        Err(reason) => Err(StatsError::Parse { path, reason }),
    }
}

fn ticks_to_ms(ticks: u64, per_second: u64) -> u64 {
    let ms = u128::from(ticks) * 1000 / u128::from(per_second.max(1));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `utime` and `stime` (fields 14 and 15, in clock ticks) from `/proc/PID/stat`. The
/// command name (field 2) is in parentheses and may contain anything, parentheses and
/// spaces included: the fields are counted from the last `)`.
pub fn parse_stat_times(stat: &str) -> Result<(u64, u64), &'static str> {
    let close = stat.rfind(')').ok_or("no ')' after the command name")?;
    let rest = stat
        .get(close + 1..)
        .ok_or("nothing after the command name")?;
    // rest: " state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    //         utime stime ..." — utime is the 12th field after the name (field 14).
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime = fields.next().ok_or("no utime field")?;
    let stime = fields.next().ok_or("no stime field")?;
    let utime = utime.parse().map_err(|_| "utime is not a number")?;
    let stime = stime.parse().map_err(|_| "stime is not a number")?;
    Ok((utime, stime))
}

/// The resident page count (second field) from `/proc/PID/statm`.
pub fn parse_statm_resident(statm: &str) -> Result<u64, &'static str> {
    statm
        .split_ascii_whitespace()
        .nth(1)
        .ok_or("no resident field")?
        .parse()
        .map_err(|_| "resident is not a number")
}

/// The counters of `ifname` from `/proc/net/dev`, turned to the guest's point of view;
/// `None` when the interface is not listed.
///
/// Each interface line is `NAME: rx_bytes rx_packets rx_errs rx_drop rx_fifo rx_frame
/// rx_compressed rx_multicast tx_bytes tx_packets tx_errs tx_drop ...`.
pub fn parse_net_dev(text: &str, ifname: &str) -> Result<Option<NetCounters>, &'static str> {
    for line in text.lines() {
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != ifname {
            continue;
        }
        let mut v = [0u64; 12];
        let mut fields = values.split_ascii_whitespace();
        for slot in &mut v {
            *slot = fields
                .next()
                .ok_or("too few counters")?
                .parse()
                .map_err(|_| "a counter is not a number")?;
        }
        let [
            rx_bytes,
            rx_packets,
            _,
            rx_drop,
            _,
            _,
            _,
            _,
            tx_bytes,
            tx_packets,
            _,
            tx_drop,
        ] = v;
        return Ok(Some(NetCounters {
            rx_bytes: tx_bytes,
            rx_packets: tx_packets,
            tx_bytes: rx_bytes,
            tx_packets: rx_packets,
            dropped: rx_drop.saturating_add(tx_drop),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_command_name() {
        let stat = "1234 (a) b) c (d) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 125 0 0 20 0 2 0 12345 1000000 300 18446744073709551615";
        assert_eq!(parse_stat_times(stat), Ok((250, 125)));
        assert!(parse_stat_times("1234 (x) S 1 2").is_err());
        assert!(parse_stat_times("no parens at all").is_err());
        assert!(parse_stat_times("").is_err());
        assert!(parse_stat_times("1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s").is_err());
    }

    #[test]
    fn statm() {
        assert_eq!(parse_statm_resident("1000 250 30 1 0 100 0\n"), Ok(250));
        assert!(parse_statm_resident("1000").is_err());
        assert!(parse_statm_resident("1000 -1").is_err());
    }

    #[test]
    fn net_dev_is_turned_around() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n\
             ptap7: 1000      10    0    2    0     0          0         0     5000      50    0    3    0     0       0          0\n";
        let c = parse_net_dev(text, "ptap7")
            .expect("parses")
            .expect("listed");
        assert_eq!(
            c,
            NetCounters {
                rx_bytes: 5000,
                rx_packets: 50,
                tx_bytes: 1000,
                tx_packets: 10,
                dropped: 5
            }
        );
        assert_eq!(parse_net_dev(text, "ptap"), Ok(None));
        assert!(parse_net_dev("x: 1 2 3", "x").is_err());
    }

    #[test]
    fn this_process() {
        let s = process(std::process::id()).expect("own stats");
        assert!(s.rss_bytes > 0);
        assert!(process(u32::MAX).is_err());
        let lo = tap("lo");
        assert!(lo.is_ok(), "{lo:?}");
    }

    #[test]
    fn tick_conversion() {
        assert_eq!(ticks_to_ms(250, 100), 2500);
        assert_eq!(ticks_to_ms(u64::MAX, 1), u64::MAX);
    }
}
