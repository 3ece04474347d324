//! `petrel-dhcp IFACE`: the DHCPv4 client `petrel-init` runs for each bridge on DHCP.
//!
//! Thin I/O around [`petrel_dhcp::dhcp::client::Client`]: an `AF_PACKET` socket for
//! broadcasts and every reply, a UDP socket for unicast renewals, rtnetlink to apply
//! the lease, and the lease file. Fatal errors exit non-zero with one line; PID 1
//! restarts the client with backoff, and the client asks for its old address again
//! (INIT-REBOOT) from the lease file.

mod netconf;
mod packet;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use petrel_dhcp::dhcp::client::{
    Action, Client, Config, Destination, Event, INFINITE_LEASE, Lease, LossReason, Note, State,
};
use petrel_dhcp::dhcp::lease_file::LeaseFile;
use petrel_dhcp::dhcp::wire::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT, MessageType};
use petrel_dhcp::frame::{ETH_BROADCAST, UdpDatagram, emit_udp, parse_udp_with};
use petrel_dhcp::rng::Rng;
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use netconf::{IfAddr, NetConfig, Rtnetlink};
use packet::PacketSocket;

/// Where lease files go by default (`docs/formats.md`).
const LEASE_DIR: &str = "/run/petrel/dhcp";
/// Longest sleep between checks of the state machine's timers.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Receive buffer: an Ethernet frame with some room for VLAN tags.
const FRAME_BUF_BYTES: usize = 2048;

#[derive(FromArgs)]
/// DHCPv4 client for one interface: gets a lease, puts the address and the default
/// route on IFACE, writes the lease to /run/petrel/dhcp/IFACE.json (JSON, see
/// docs/formats.md), and renews it until killed. One log line per event on stderr.
/// Exit status: 0 bound (with --once), 1 error, 3 no lease before --timeout.
struct Args {
    /// the interface (needs no address yet; must be up)
    #[argh(positional)]
    iface: String,
    /// host name to send to the server (option 12): 1 to 63 of [A-Za-z0-9.-]
    #[argh(option)]
    hostname: Option<String>,
    /// exit 0 as soon as the lease is applied (for tests)
    #[argh(switch)]
    once: bool,
    /// with --once: give up after this many seconds (default 60)
    #[argh(option, default = "60")]
    timeout: u64,
    /// the lease file (default /run/petrel/dhcp/IFACE.json)
    #[argh(option)]
    lease_file: Option<PathBuf>,
}

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("bad host name {0:?}: 1 to 63 of [A-Za-z0-9.-]")]
    Hostname(String),
    #[error("no such interface")]
    Interface(#[source] io::Error),
    #[error("cannot open a packet socket")]
    Socket(#[source] io::Error),
    #[error("cannot open rtnetlink")]
    Netlink(#[source] io::Error),
    #[error("cannot configure {0}")]
    Configure(String, #[source] io::Error),
    #[error("cannot write the lease file {0}")]
    LeaseFile(PathBuf, #[source] io::Error),
    #[error("no lease within {0} s")]
    Timeout(u64),
    #[error("poll")]
    Poll(#[source] io::Error),
}

impl Error {
    fn exit_code(&self) -> ExitCode {
        match self {
            Error::Timeout(_) => ExitCode::from(3),
            _ => ExitCode::FAILURE,
        }
    }
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel-dhcp: {}: {}", args.iface, chain(&e));
            e.exit_code()
        }
    }
}

fn valid_hostname(h: &str) -> bool {
    (1..=63).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Everything the actions touch.
struct Io<N: NetConfig> {
    iface: String,
    ifindex: u32,
    mac: [u8; 6],
    packet: PacketSocket,
    /// Bound to (our address, 68) while we have one, for unicast renewals.
    udp: Option<(Ipv4Addr, UdpSocket)>,
    net: N,
    lease_path: PathBuf,
    start: Instant,
}

impl<N: NetConfig> Io<N> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn log(&self, msg: &str) {
        eprintln!("petrel-dhcp: {}: {msg}", self.iface);
    }

    fn apply(&mut self, actions: Vec<Action>) -> Result<(), Error> {
        for action in actions {
            match action {
                Action::Send {
                    source,
                    destination,
                    message_type,
                    payload,
                } => self.send(source, destination, message_type, &payload),
                Action::Configure { lease, previous } => self.configure(&lease, previous)?,
                Action::Deconfigure { lease, reason } => self.deconfigure(&lease, reason)?,
                Action::Note(note) => self.note(note),
            }
        }
        Ok(())
    }

    fn note(&self, note: Note) {
        match note {
            Note::Offer { server, address } => self.log(&format!("offer {address} from {server}")),
            Note::Nak { server, message } => {
                let from = server.map(|s| format!(" from {s}")).unwrap_or_default();
                self.log(&format!("NAK{from}: {message:?}"));
            }
            Note::NoAck => self.log("no answer to DHCPREQUEST, starting over"),
            Note::Extending(State::Rebinding) => self.log("rebinding"),
            Note::Extending(_) => self.log("renewing"),
        }
    }

    /// Sends; a failure is logged and left to the retransmission timer.
    fn send(&mut self, source: Ipv4Addr, dst: Destination, t: MessageType, payload: &[u8]) {
        let result = match dst {
            Destination::Broadcast => self.send_broadcast(source, payload),
            Destination::Unicast(server) => self.send_unicast(source, server, payload),
        };
        let name = format!("DHCP{t:?}").to_uppercase();
        match result {
            Ok(()) => self.log(&format!("{name} sent")),
            Err(e) => self.log(&format!("cannot send {name}: {e}")),
        }
    }

    fn send_broadcast(&self, source: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
        let frame = emit_udp(&UdpDatagram {
            src_mac: self.mac,
            dst_mac: ETH_BROADCAST,
            src_ip: source,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: DHCP_CLIENT_PORT,
            dst_port: DHCP_SERVER_PORT,
            payload,
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.packet.send(&frame, ETH_BROADCAST)
    }

    fn send_unicast(
        &mut self,
        source: Ipv4Addr,
        server: Ipv4Addr,
        payload: &[u8],
    ) -> io::Result<()> {
        if self.udp.as_ref().is_none_or(|(a, _)| *a != source) {
            let s = UdpSocket::bind((source, DHCP_CLIENT_PORT))?;
            s.set_nonblocking(true)?;
            self.udp = Some((source, s));
        }
        match &self.udp {
            Some((_, s)) => s.send_to(payload, (server, DHCP_SERVER_PORT)).map(drop),
            None => Ok(()),
        }
    }

    fn configure(&mut self, lease: &Lease, previous: Option<Lease>) -> Result<(), Error> {
        let addr = IfAddr {
            address: lease.address,
            prefix_len: lease.prefix_len,
        };
        let what = format!("{}/{}", lease.address, lease.prefix_len);
        let cfg_err = |e| Error::Configure(what.clone(), e);
        if let Some(prev) = &previous {
            let old = IfAddr {
                address: prev.address,
                prefix_len: prev.prefix_len,
            };
            if old != addr {
                self.udp = None;
                self.net
                    .remove_address(self.ifindex, old)
                    .map_err(cfg_err)?;
            }
        }
        self.net
            .replace_address(self.ifindex, addr, lease.lease_secs)
            .map_err(cfg_err)?;
        if let Some(router) = lease.router {
            self.net
                .replace_default_route(self.ifindex, router)
                .map_err(|e| Error::Configure(format!("default route via {router}"), e))?;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let file = LeaseFile::new(&self.iface, lease, self.now(), wall);
        write_atomically(&self.lease_path, file.to_json().as_bytes())
            .map_err(|e| Error::LeaseFile(self.lease_path.clone(), e))?;
        let renewed = previous.is_some_and(|p| p.address == lease.address);
        let via = lease
            .router
            .map(|r| format!(" via {r}"))
            .unwrap_or_default();
        let time = if lease.lease_secs == INFINITE_LEASE {
            "forever".to_owned()
        } else {
            format!("for {}s", lease.lease_secs)
        };
        let verb = if renewed { "renewed" } else { "bound" };
        self.log(&format!("{verb} {what}{via} {time}"));
        Ok(())
    }

    fn deconfigure(&mut self, lease: &Lease, reason: LossReason) -> Result<(), Error> {
        self.udp = None;
        let addr = IfAddr {
            address: lease.address,
            prefix_len: lease.prefix_len,
        };
        let what = format!("{}/{}", lease.address, lease.prefix_len);
        self.net
            .remove_address(self.ifindex, addr)
            .map_err(|e| Error::Configure(what.clone(), e))?;
        match fs::remove_file(&self.lease_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::LeaseFile(self.lease_path.clone(), e));
            }
            _ => {}
        }
        let why = match reason {
            LossReason::Expired => "expired",
            LossReason::Nak => "refused by the server",
        };
        self.log(&format!("lease {what} {why}: address removed"));
        Ok(())
    }

    /// Feeds every queued DHCP reply to the client.
    fn receive(&mut self, client: &mut Client, buf: &mut [u8]) -> Result<(), Error> {
        loop {
            let (n, verify_checksum) = match self.packet.recv(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Socket(e)),
            };
            let frame = buf.get(..n).unwrap_or_default();
            if let Ok(d) = parse_udp_with(frame, verify_checksum) {
                if d.dst_port == DHCP_CLIENT_PORT && d.src_port == DHCP_SERVER_PORT {
                    let actions = client.handle(self.now(), Event::Received(d.payload));
                    self.apply(actions)?;
                }
            }
        }
        // The same replies also reach the UDP socket while it exists (the state machine
        // ignores the second copy); read it so that its queue never fills.
        while let Some((_, s)) = &self.udp {
            match s.recv_from(buf) {
                Ok((n, from)) if from.port() == DHCP_SERVER_PORT => {
                    let payload = buf.get(..n).unwrap_or_default().to_vec();
                    let actions = client.handle(self.now(), Event::Received(&payload));
                    self.apply(actions)?;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// Writes `data` to `path` so that readers see the old or the new file, never a part.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn run(args: &Args) -> Result<(), Error> {
    let mut config;
    let (ifindex, mac) = packet::interface(&args.iface).map_err(Error::Interface)?;
    config = Config::new(mac);
    if let Some(h) = &args.hostname {
        if !valid_hostname(h) {
            return Err(Error::Hostname(h.clone()));
        }
        config.hostname = Some(h.as_bytes().to_vec());
    }
    let lease_path = args
        .lease_file
        .clone()
        .unwrap_or_else(|| Path::new(LEASE_DIR).join(format!("{}.json", args.iface)));
    // A lease from an earlier run: ask for the same address again (INIT-REBOOT).
    if let Ok(bytes) = fs::read(&lease_path) {
        if let Ok(old) = LeaseFile::from_json(&bytes) {
            if old.interface == args.iface {
                config.previous_address = Some(old.address);
            }
        }
    }
    let packet = PacketSocket::open(ifindex).map_err(Error::Socket)?;
    let net = Rtnetlink::open().map_err(Error::Netlink)?;
    let mut seed = [0u8; 8];
    rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::Socket(e.into()))?;
    let mut io = Io {
        iface: args.iface.clone(),
        ifindex,
        mac,
        packet,
        udp: None,
        net,
        lease_path,
        start: Instant::now(),
    };
    let mut client = Client::new(config, Rng::new(u64::from_ne_bytes(seed)), io.now());
    let give_up_at = args.once.then(|| Duration::from_secs(args.timeout));
    let mut buf = vec![0u8; FRAME_BUF_BYTES];
    loop {
        let actions = client.handle(io.now(), Event::Tick);
        io.apply(actions)?;
        if args.once && client.lease().is_some() {
            return Ok(());
        }
        let now = io.now();
        let mut wait = client
            .poll_at()
            .map_or(MAX_WAIT, |at| at.saturating_sub(now))
            .min(MAX_WAIT);
        if let Some(limit) = give_up_at {
            if now >= limit {
                return Err(Error::Timeout(args.timeout));
            }
            wait = wait.min(limit - now);
        }
        let timeout = Timespec {
            tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds = vec![PollFd::new(&io.packet, PollFlags::IN)];
        if let Some((_, s)) = &io.udp {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::Poll(e.into())),
        }
        drop(fds);
        io.receive(&mut client, &mut buf)?;
        if args.once && client.lease().is_some() {
            return Ok(());
        }
    }
}
