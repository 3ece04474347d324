//! `petrel-sntp SERVER...`: sets the clock from SNTP servers, never below the floor.
//!
//! Thin I/O around [`petrel_dhcp::sntp`]: one UDP query per server in order until one
//! answers validly, then `clock_settime(CLOCK_REALTIME)` when [`decide`] says so. Runs
//! until killed (re-querying every `--interval`), or once with `--once`.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use petrel_dhcp::rng::Rng;
use petrel_dhcp::sntp::decide::{Decision, ReplyError, Sample, check_reply, decide};
use petrel_dhcp::sntp::wire::{NTP_PACKET_LEN, NTP_PORT, Packet, Timestamp};

/// Offsets smaller than this are left alone (1 ms).
const THRESHOLD_NANOS: i128 = 1_000_000;
/// First retry delay after every server failed; doubles up to `--interval`.
const RETRY_INITIAL: Duration = Duration::from_secs(16);
const NANOS_PER_SEC: i128 = 1_000_000_000;

#[derive(FromArgs)]
/// SNTPv4 client: queries the servers in order until one answers, and sets the clock
/// (CLOCK_REALTIME) unless the result is earlier than the floor. SERVER is an IPv4
/// address with an optional :PORT (default 123); names are not supported yet (the image
/// has no resolver): give addresses. Exit status: 0 done (with --once), 1 error.
struct Args {
    /// servers, tried in order
    #[argh(positional)]
    servers: Vec<String>,
    /// query once and exit
    #[argh(switch)]
    once: bool,
    /// file holding the clock floor (seconds since the epoch, text); the clock is never
    /// set earlier than it
    #[argh(option)]
    floor: Option<PathBuf>,
    /// print the offset and the decision, do not set the clock
    #[argh(switch)]
    dry_run: bool,
    /// seconds between queries (default 1024)
    #[argh(option, default = "1024")]
    interval: u64,
    /// milliseconds to wait for each reply (default 3000)
    #[argh(option, default = "3000")]
    timeout_ms: u64,
}

/// Why a query or the program failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("no server given")]
    NoServer,
    #[error("{0:?} is not an IPv4 address[:port] (names are not supported yet)")]
    BadServer(String),
    #[error("{0}: network error")]
    Io(SocketAddrV4, #[source] io::Error),
    #[error("{0}: no reply within {1} ms")]
    Timeout(SocketAddrV4, u64),
    #[error("{0}: reply refused")]
    Reply(SocketAddrV4, #[source] ReplyError),
    #[error("cannot set the clock")]
    SetClock(#[source] io::Error),
    #[error("no server answered")]
    AllFailed,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

fn log(msg: &str) {
    eprintln!("petrel-sntp: {msg}");
}

fn parse_server(s: &str) -> Result<SocketAddrV4, Error> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    s.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, NTP_PORT))
        .map_err(|_| Error::BadServer(s.to_owned()))
}

fn wall_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// `+12.000345678s`
fn seconds(nanos: i128) -> String {
    let sign = if nanos < 0 { '-' } else { '+' };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}s", n / 1_000_000_000, n % 1_000_000_000)
}

/// One query: a sample and our clock at its end (wall nanos and the monotonic instant).
fn query(
    server: SocketAddrV4,
    timeout: Duration,
    rng: &mut Rng,
) -> Result<(Sample, i128, Instant), Error> {
    let io_err = |e| Error::Io(server, e);
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(io_err)?;
    sock.connect(server).map_err(io_err)?;
    // A random transmit timestamp: the echo proves the reply is ours, and our clock
    // reading does not leave the box.
    let sent = Timestamp(rng.next_u64());
    let t1 = wall_nanos();
    let t1_mono = Instant::now();
    sock.send(&Packet::request(sent).emit()).map_err(io_err)?;
    let mut buf = [0u8; 512];
    loop {
        let left = timeout.saturating_sub(t1_mono.elapsed());
        if left.is_zero() {
            return Err(Error::Timeout(server, timeout_ms(timeout)));
        }
        sock.set_read_timeout(Some(left)).map_err(io_err)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout(server, timeout_ms(timeout)));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        let t4_mono = Instant::now();
        let elapsed = i128::try_from(t4_mono.duration_since(t1_mono).as_nanos()).unwrap_or(0);
        let Ok(reply) = Packet::parse(buf.get(..n.min(NTP_PACKET_LEN)).unwrap_or_default()) else {
            continue;
        };
        match check_reply(sent, &reply) {
            Ok(()) => {
                let t4 = t1 + elapsed;
                return Ok((Sample::new(t1, t4, &reply), t4, t4_mono));
            }
            // Stale or forged: keep waiting for the real answer.
            Err(ReplyError::OriginMismatch) => continue,
            Err(e) => return Err(Error::Reply(server, e)),
        }
    }
}

fn timeout_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn read_floor(path: &Option<PathBuf>) -> Option<i64> {
    let path = path.as_ref()?;
    match std::fs::read_to_string(path) {
        Ok(s) => match s.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                log(&format!(
                    "{}: not a number of seconds, no floor",
                    path.display()
                ));
                None
            }
        },
        Err(e) => {
            log(&format!("{}: {e}, no floor", path.display()));
            None
        }
    }
}

fn set_clock(unix_nanos: i128) -> Result<(), Error> {
    let invalid = || Error::SetClock(io::Error::from(io::ErrorKind::InvalidInput));
    let ts = rustix::time::Timespec {
        tv_sec: i64::try_from(unix_nanos.div_euclid(NANOS_PER_SEC)).map_err(|_| invalid())?,
        tv_nsec: i64::try_from(unix_nanos.rem_euclid(NANOS_PER_SEC)).map_err(|_| invalid())?,
    };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts)
        .map_err(|e| Error::SetClock(e.into()))
}

/// Queries the servers in order; acts on the first valid sample.
fn round(args: &Args, servers: &[SocketAddrV4], rng: &mut Rng) -> Result<(), Error> {
    let timeout = Duration::from_millis(args.timeout_ms);
    for &server in servers {
        let (sample, t4, t4_mono) = match query(server, timeout, rng) {
            Ok(r) => r,
            Err(e) => {
                log(&chain(&e));
                continue;
            }
        };
        let floor = read_floor(&args.floor);
        let head = format!(
            "{server}: offset {}, delay {}, stratum {}",
            seconds(sample.offset_nanos),
            seconds(sample.delay_nanos),
            sample.stratum
        );
        match decide(t4, &sample, floor, THRESHOLD_NANOS) {
            Decision::Set { unix_nanos } if args.dry_run => {
                let _ = unix_nanos;
                log(&format!("{head}: would set the clock (dry run)"));
            }
            Decision::Set { unix_nanos } => {
                // Account for the time spent since the reply arrived.
                let since = i128::try_from(t4_mono.elapsed().as_nanos()).unwrap_or(0);
                set_clock(unix_nanos + since)?;
                log(&format!("{head}: clock set"));
            }
            Decision::InSync => log(&format!("{head}: in sync")),
            Decision::BelowFloor { .. } => log(&format!(
                "{head}: earlier than the clock floor {}, not set",
                floor.unwrap_or_default()
            )),
            Decision::Inconsistent => {
                log(&format!("{head}: inconsistent timestamps, ignored"));
                continue;
            }
        }
        return Ok(());
    }
    Err(Error::AllFailed)
}

fn run(args: &Args) -> Result<(), Error> {
    if args.servers.is_empty() {
        return Err(Error::NoServer);
    }
    let servers = args
        .servers
        .iter()
        .map(|s| parse_server(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seed = [0u8; 8];
    rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::SetClock(e.into()))?;
    let mut rng = Rng::new(u64::from_ne_bytes(seed));
    let interval = Duration::from_secs(args.interval.max(16));
    let mut retry = RETRY_INITIAL;
    loop {
        match round(args, &servers, &mut rng) {
            Ok(()) if args.once => return Ok(()),
            Ok(()) => {
                retry = RETRY_INITIAL;
                std::thread::sleep(interval);
            }
            Err(e @ Error::SetClock(_)) => return Err(e),
            Err(e) if args.once => return Err(e),
            Err(e) => {
                log(&format!("{}, retrying in {} s", chain(&e), retry.as_secs()));
                std::thread::sleep(retry);
                retry = (retry * 2).min(interval);
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&chain(&e));
            ExitCode::FAILURE
        }
    }
}
