//! What `petrelctl` prints: aligned tables and detail views for people, JSON objects
//! for scripts (`--json`; digests in hex, MACs as `52:54:…`, times in Unix ms).

use petrel_proto::msg::{
    BlockInfo, ExitStatus, LastExit, PolicyEntry, UnikernelInfo, UnikernelState, UnikernelStats,
};
use serde_json::{Value, json};

use crate::units::{
    format_bytes, format_cpus, format_duration_ms, format_mac, format_restart, format_unix_ms,
};

/// A table: a header row and rows, columns separated by two spaces, the last column
/// not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The text, one line per row, each ending in `\n`.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `running`, `backoff 2s`, …
pub fn state_words(state: &UnikernelState) -> String {
    match state {
        UnikernelState::Starting => "starting".to_owned(),
        UnikernelState::Running => "running".to_owned(),
        UnikernelState::Backoff { restart_in_ms } => {
            format!("backoff {}", format_duration_ms(*restart_in_ms))
        }
        UnikernelState::Stopped => "stopped".to_owned(),
    }
}

fn exit_words(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit {c}"),
        ExitStatus::Signal(s) => format!("signal {s}"),
    }
}

fn last_exit_words(last: &LastExit) -> String {
    let mut text = format!(
        "{} at {}",
        exit_words(&last.status),
        format_unix_ms(last.at_unix_ms)
    );
    if !last.reason.is_empty() {
        text.push_str(": ");
        text.push_str(&last.reason);
    }
    text
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The `info` table.
pub fn info_table(infos: &[UnikernelInfo]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "MEMORY",
        "IMAGE",
        "RESTARTS",
        "LAST EXIT",
    ]);
    for i in infos {
        let image = i.image_sha256.to_string();
        t.row(vec![
            i.name.to_string(),
            state_words(&i.state),
            opt(i.pid),
            opt(i.uptime_ms.map(format_duration_ms)),
            format!("{} MiB", i.memory_mib),
            image.get(..12).unwrap_or(&image).to_owned(),
            i.restart_count.to_string(),
            opt(i.last_exit.as_ref().map(|l| exit_words(&l.status))),
        ]);
    }
    t.render()
}

/// Every detail of one unikernel, `key  value` lines.
pub fn info_detail(i: &UnikernelInfo) -> String {
    let mut t = Table::default();
    let mut kv = |k: &str, v: String| t.row(vec![k.to_owned(), v]);
    kv("name", i.name.to_string());
    kv("state", state_words(&i.state));
    kv("pid", opt(i.pid));
    kv("uptime", opt(i.uptime_ms.map(format_duration_ms)));
    kv("memory", format!("{} MiB", i.memory_mib));
    kv(
        "cpus",
        format!("{} (host CPUs: {})", i.cpus, format_cpus(&i.cpu_affinity)),
    );
    kv("priority", i.priority.to_string());
    kv("image", format!("sha256:{}", i.image_sha256));
    kv("args", shell_words(&i.args));
    kv(
        "restart",
        format!(
            "{} ({} so far)",
            format_restart(&i.restart),
            i.restart_count
        ),
    );
    kv("last exit", opt(i.last_exit.as_ref().map(last_exit_words)));
    for d in &i.devices {
        kv(
            "net",
            format!(
                "{} on bridge {}, mac {}",
                d.name,
                d.bridge,
                format_mac(&d.mac)
            ),
        );
    }
    for b in &i.blocks {
        kv("block", format!("{} = {}", b.name, b.device));
    }
    t.render()
}

/// Arguments as a shell would need them quoted.
fn shell_words(args: &[String]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// `info` as JSON.
pub fn info_json(i: &UnikernelInfo) -> Value {
    let (state, restart_in_ms) = match i.state {
        UnikernelState::Starting => ("starting", None),
        UnikernelState::Running => ("running", None),
        UnikernelState::Backoff { restart_in_ms } => ("backoff", Some(restart_in_ms)),
        UnikernelState::Stopped => ("stopped", None),
    };
    json!({
        "name": i.name.to_string(),
        "owner": i.name.owner.to_string(),
        "state": state,
        "restart_in_ms": restart_in_ms,
        "pid": i.pid,
        "uptime_ms": i.uptime_ms,
        "memory_mib": i.memory_mib,
        "cpus": i.cpus,
        "cpu_affinity": i.cpu_affinity,
        "priority": i.priority,
        "devices": i.devices.iter().map(|d| json!({
            "name": d.name, "bridge": d.bridge, "mac": format_mac(&d.mac),
        })).collect::<Vec<_>>(),
        "blocks": i.blocks.iter().map(|b| json!({
            "name": b.name, "device": b.device.to_string(),
        })).collect::<Vec<_>>(),
        "image_sha256": i.image_sha256.to_string(),
        "args": i.args,
        "restart": format_restart(&i.restart),
        "restart_count": i.restart_count,
        "last_exit": i.last_exit.as_ref().map(|l| {
            let (code, signal) = match l.status {
                ExitStatus::Code(c) => (Some(c), None),
                ExitStatus::Signal(s) => (None, Some(s)),
            };
            json!({ "code": code, "signal": signal, "reason": l.reason, "at_unix_ms": l.at_unix_ms })
        }),
    })
}

/// The `stats` table.
pub fn stats_table(stats: &[UnikernelStats]) -> String {
    let mut t = Table::new(&[
        "NAME", "CPU USER", "CPU SYS", "RSS", "UPTIME", "NET RX", "NET TX", "DROPPED",
    ]);
    for s in stats {
        let sum = |f: fn(&petrel_proto::msg::NetStats) -> u64| {
            s.nets.iter().map(f).fold(0u64, u64::saturating_add)
        };
        t.row(vec![
            s.name.to_string(),
            format_duration_ms(s.cpu_user_ms),
            format_duration_ms(s.cpu_system_ms),
            format_bytes(s.rss_bytes),
            format_duration_ms(s.uptime_ms),
            format_bytes(sum(|n| n.rx_bytes)),
            format_bytes(sum(|n| n.tx_bytes)),
            sum(|n| n.dropped_packets).to_string(),
        ]);
    }
    t.render()
}

/// `stats` as JSON.
pub fn stats_json(s: &UnikernelStats) -> Value {
    json!({
        "name": s.name.to_string(),
        "cpu_user_ms": s.cpu_user_ms,
        "cpu_system_ms": s.cpu_system_ms,
        "rss_bytes": s.rss_bytes,
        "uptime_ms": s.uptime_ms,
        "nets": s.nets.iter().map(|n| json!({
            "name": n.name,
            "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
            "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
            "dropped_packets": n.dropped_packets,
        })).collect::<Vec<_>>(),
    })
}

/// The `block list` table.
pub fn blocks_table(blocks: &[BlockInfo]) -> String {
    let mut t = Table::new(&["NAME", "SIZE", "SECTOR", "ATTACHED TO"]);
    for b in blocks {
        t.row(vec![
            b.name.to_string(),
            format_bytes(b.size_bytes),
            b.sector_size.to_string(),
            opt(b.attached_to.as_ref()),
        ]);
    }
    t.render()
}

/// A block device as JSON.
pub fn block_json(b: &BlockInfo) -> Value {
    json!({
        "name": b.name.to_string(),
        "size_bytes": b.size_bytes,
        "sector_size": b.sector_size,
        "attached_to": b.attached_to.as_ref().map(ToString::to_string),
    })
}

/// The `policy list` table.
pub fn policies_table(policies: &[PolicyEntry]) -> String {
    let mut t = Table::new(&[
        "IDENTITY",
        "UNIKERNELS",
        "MEMORY",
        "BLOCK STORAGE",
        "BRIDGES",
        "CPUS",
    ]);
    for p in policies {
        t.row(vec![
            p.identity.to_string(),
            p.policy.max_unikernels.to_string(),
            format!("{} MiB", p.policy.memory_mib),
            format_bytes(p.policy.block_bytes),
            if p.policy.bridges.is_empty() {
                "-".to_owned()
            } else {
                p.policy.bridges.join(",")
            },
            if p.policy.cpus.is_empty() {
                "-".to_owned()
            } else {
                format_cpus(&p.policy.cpus)
            },
        ]);
    }
    t.render()
}

/// A policy as JSON.
pub fn policy_json(p: &PolicyEntry) -> Value {
    json!({
        "identity": p.identity.to_string(),
        "max_unikernels": p.policy.max_unikernels,
        "memory_mib": p.policy.memory_mib,
        "block_bytes": p.policy.block_bytes,
        "bridges": p.policy.bridges,
        "cpus": p.policy.cpus,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use petrel_proto::msg::{NetDeviceInfo, RestartPolicy, Sha256Digest};

    fn sample() -> UnikernelInfo {
        UnikernelInfo {
            name: "ops:web".parse().unwrap(),
            state: UnikernelState::Running,
            pid: Some(42),
            uptime_ms: Some(312_000),
            memory_mib: 64,
            cpus: 1,
            cpu_affinity: vec![2, 3],
            priority: 5,
            devices: vec![NetDeviceInfo {
                name: "service".into(),
                bridge: "br0".into(),
                mac: [0x52, 0x54, 0, 1, 2, 3],
            }],
            blocks: vec![],
            image_sha256: Sha256Digest([0xab; 32]),
            args: vec!["--ipv4=10.0.2.100/24".into(), "a b".into()],
            restart: RestartPolicy::OnExit(vec![1, 2]),
            restart_count: 3,
            last_exit: Some(LastExit {
                status: ExitStatus::Code(1),
                reason: "boom".into(),
                at_unix_ms: 0,
            }),
        }
    }

    #[test]
    fn tables_align() {
        let text = info_table(&[sample()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME     STATE    PID  UPTIME"));
        assert!(lines[1].starts_with("ops:web  running  42   5m12s"));
        assert!(lines[1].ends_with("abababababab  3         exit 1"));
    }

    #[test]
    fn detail_and_json() {
        let d = info_detail(&sample());
        assert!(
            d.starts_with("name       ops:web\nstate      running\n"),
            "{d}"
        );
        assert!(d.contains("net        service on bridge br0, mac 52:54:00:01:02:03\n"));
        assert!(d.contains("args       --ipv4=10.0.2.100/24 'a b'\n"));
        assert!(d.contains("last exit  exit 1 at 1970-01-01T00:00:00Z: boom\n"));
        assert!(d.contains("restart    on-exit:1,2 (3 so far)\n"));
        let j = info_json(&sample());
        assert_eq!(j["state"], "running");
        assert_eq!(j["image_sha256"], "ab".repeat(32));
        assert_eq!(j["devices"][0]["mac"], "52:54:00:01:02:03");
        assert_eq!(j["last_exit"]["code"], 1);
        assert_eq!(j["last_exit"]["signal"], Value::Null);
    }
}
