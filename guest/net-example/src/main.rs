//! `net`: a network example unikernel. smoltcp on the Solo5 net device `service0`
//! answers ARP and ICMP echo and serves a small page over HTTP/1.0 on TCP port 80,
//! printing one line per request.
//!
//! ```text
//! petrel-hvt --net:service0=tap0 -- net.hvt --ipv4=10.0.0.2/24
//! ```
//!
//! The main loop polls smoltcp, serves the sockets, asks smoltcp when it next needs
//! attention and blocks in the POLL hypercall until then or until a frame arrives.
//! Frames are read only after POLL said the device is ready, and until NET_READ says
//! `AGAIN`, so an idle or quiet guest makes no useless hypercalls. No allocator: the
//! sockets, their buffers and the frame buffers live on `main`'s stack.
#![no_std]
#![no_main]

use petrel_guest::{Net, StartInfo, println, time};
use petrel_net_example::config::{self, Command};
use petrel_net_example::http::{self, Printable, REQUEST_HEAD_MAX, RESPONSE_MAX};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

petrel_guest::manifest! { net "service0" }
petrel_guest::entry!(main);

/// The net device's manifest name (the albatross/Solo5 convention for a service NIC).
const NET_NAME: &str = "service0";
/// The port the HTTP server listens on.
const HTTP_PORT: u16 = 80;
/// Connections served at once (each a listening TCP socket when idle).
const CONNECTIONS: usize = 4;
/// TCP receive window per connection.
const TCP_RX_BUF_SIZE: usize = 1024;
/// TCP transmit buffer per connection: a whole response fits, so one send suffices.
const TCP_TX_BUF_SIZE: usize = 512;
const _: () = assert!(TCP_TX_BUF_SIZE >= RESPONSE_MAX);
/// Largest IP MTU used, whatever the tender reports (standard Ethernet).
const IP_MTU_MAX: usize = 1500;
/// Ethernet header length (no FCS, no VLAN tag).
const ETH_HEADER_SIZE: usize = 14;
/// Size of each frame buffer: a maximal frame plus room, so that a slightly oversized
/// frame is read whole (and then dropped by smoltcp) rather than truncated.
const FRAME_BUF_SIZE: usize = 2048;
/// How long to block in POLL when smoltcp has no timer pending.
const IDLE_POLL_NS: u64 = 10_000_000_000;
/// An idle connection is dropped after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// smoltcp's clock: the kit's TSC-based monotonic time.
fn now() -> Instant {
    Instant::from_micros(i64::try_from(time::monotonic_ns() / 1000).unwrap_or(i64::MAX))
}

/// The Solo5 net device as a smoltcp [`phy::Device`].
struct HvtNet {
    net: Net,
    /// Whether the last POLL reported input that has not been read to `AGAIN` yet.
    rx_ready: bool,
    /// The largest frame smoltcp may send (IP MTU plus Ethernet header).
    frame_max: usize,
    rx: [u8; FRAME_BUF_SIZE],
    tx: [u8; FRAME_BUF_SIZE],
}

/// A received frame.
struct RxFrame<'a>(&'a [u8]);

/// Room for one frame to send.
struct TxFrame<'a> {
    net: &'a Net,
    buf: &'a mut [u8; FRAME_BUF_SIZE],
}

impl phy::RxToken for RxFrame<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxFrame<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than `frame_max`, which is below the buffer size.
        let frame = &mut self.buf[..len.min(FRAME_BUF_SIZE)];
        let r = f(frame);
        // A frame the host refuses is a lost frame; TCP retransmits, ping retries.
        let _ = self.net.write(frame);
        r
    }
}

impl phy::Device for HvtNet {
    type RxToken<'a> = RxFrame<'a>;
    type TxToken<'a> = TxFrame<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxFrame<'_>, TxFrame<'_>)> {
        if !self.rx_ready {
            return None;
        }
        match self.net.read(&mut self.rx) {
            Ok(len) => Some((
                RxFrame(&self.rx[..len.min(FRAME_BUF_SIZE)]),
                TxFrame {
                    net: &self.net,
                    buf: &mut self.tx,
                },
            )),
            // `Again`: drained; anything else: nothing usable either. Wait for POLL.
            Err(_) => {
                self.rx_ready = false;
                None
            }
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxFrame<'_>> {
        Some(TxFrame {
            net: &self.net,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_max;
        caps
    }
}

/// Where a connection is in its one request/response exchange.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the request head.
    Reading,
    /// Sending `bytes`, of which `sent` are queued already.
    Sending { bytes: &'static [u8], sent: usize },
    /// Response queued and FIN asked for; waiting for the socket to close.
    Closing,
}

/// One HTTP connection slot: a TCP socket and the request received on it so far.
struct Conn {
    handle: SocketHandle,
    head: [u8; REQUEST_HEAD_MAX],
    len: usize,
    phase: Phase,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            handle: SocketHandle::default(),
            head: [0; REQUEST_HEAD_MAX],
            len: 0,
            phase: Phase::Reading,
        }
    }

    /// Advances the exchange on `sock` as far as it can go now.
    fn serve(&mut self, sock: &mut tcp::Socket<'_>) {
        if !sock.is_open() {
            // Closed or TIME-WAIT: take the next client. `listen` only fails for port 0
            // or an open socket, neither of which is the case.
            let _ = sock.listen(HTTP_PORT);
            self.len = 0;
            self.phase = Phase::Reading;
            return;
        }
        if self.phase == Phase::Reading {
            if sock.can_recv() {
                if let Ok(n) = sock.recv_slice(&mut self.head[self.len..]) {
                    self.len += n;
                }
            }
            let peer_closed = sock.state() == tcp::State::CloseWait;
            let received = &self.head[..self.len];
            if let Some(r) = http::reply_for(received, peer_closed) {
                match sock.remote_endpoint() {
                    Some(peer) => println!(
                        "net: {peer} \"{} {}\" {}",
                        Printable(r.method),
                        Printable(r.target),
                        r.status
                    ),
                    None => println!("net: - {}", r.status),
                }
                self.phase = Phase::Sending {
                    bytes: r.bytes,
                    sent: 0,
                };
            } else if peer_closed {
                // The client left without asking anything.
                sock.close();
                self.phase = Phase::Closing;
            }
        } else if sock.can_recv() {
            // Ignore whatever follows the head (a body, a pipelined request), but keep
            // the window open.
            let _ = sock.recv(|b| (b.len(), ()));
        }
        if let Phase::Sending { bytes, sent } = self.phase {
            let mut sent = sent;
            if sock.can_send() {
                if let Ok(n) = sock.send_slice(&bytes[sent..]) {
                    sent += n;
                }
            }
            if sent >= bytes.len() {
                sock.close();
                self.phase = Phase::Closing;
            } else if !sock.may_send() {
                sock.abort();
                self.phase = Phase::Closing;
            } else {
                self.phase = Phase::Sending { bytes, sent };
            }
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
struct Mac([u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

fn main(si: &StartInfo) -> i32 {
    let cfg = match config::parse(si.args()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            println!("{}", config::USAGE);
            return 0;
        }
        Err(e) => {
            println!("net: {e}\n{}", config::USAGE);
            return 2;
        }
    };
    let Some(net) = petrel_guest::net(NET_NAME) else {
        println!("net: no net device {NET_NAME:?} attached");
        return 1;
    };
    let mac = net.mac();
    if mac[0] & 1 != 0 {
        println!("net: MAC {} is a multicast address", Mac(mac));
        return 1;
    }
    let ip_mtu = match usize::from(net.mtu()) {
        0 => IP_MTU_MAX,
        m => m.min(IP_MTU_MAX),
    };
    let mut dev = HvtNet {
        net,
        rx_ready: true,
        frame_max: ip_mtu + ETH_HEADER_SIZE,
        rx: [0; FRAME_BUF_SIZE],
        tx: [0; FRAME_BUF_SIZE],
    };

    let mut iface_cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    // TCP initial sequence numbers and IP ids: different on every boot is all it takes.
    let mut mac_bytes = [0u8; 8];
    mac_bytes[..6].copy_from_slice(&mac);
    iface_cfg.random_seed =
        time::walltime_ns() ^ time::monotonic_ns().rotate_left(32) ^ u64::from_le_bytes(mac_bytes);
    let mut iface = Interface::new(iface_cfg, &mut dev, now());
    iface.update_ip_addrs(|addrs| {
        // Room for two addresses; this is the first.
        let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(cfg.addr, cfg.prefix_len)));
    });
    if let Some(gw) = cfg.gateway {
        // Room for two routes; this is the only one.
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
    }

    let mut storage = [SocketStorage::EMPTY; CONNECTIONS];
    let mut rx_bufs = [[0u8; TCP_RX_BUF_SIZE]; CONNECTIONS];
    let mut tx_bufs = [[0u8; TCP_TX_BUF_SIZE]; CONNECTIONS];
    let mut conns: [Conn; CONNECTIONS] = core::array::from_fn(|_| Conn::new());
    let mut sockets = SocketSet::new(&mut storage[..]);
    for ((conn, rx), tx) in conns.iter_mut().zip(&mut rx_bufs).zip(&mut tx_bufs) {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        sock.set_timeout(Some(TCP_TIMEOUT));
        sock.set_nagle_enabled(false);
        // Port 80 on a fresh socket cannot fail.
        let _ = sock.listen(HTTP_PORT);
        // Exactly CONNECTIONS sockets go into CONNECTIONS slots.
        conn.handle = sockets.add(sock);
    }

    match cfg.gateway {
        Some(gw) => println!(
            "net: {NET_NAME} mac {} mtu {ip_mtu}, {}/{} gateway {gw}, listening on TCP port {HTTP_PORT}",
            Mac(mac),
            cfg.addr,
            cfg.prefix_len
        ),
        None => println!(
            "net: {NET_NAME} mac {} mtu {ip_mtu}, {}/{}, listening on TCP port {HTTP_PORT}",
            Mac(mac),
            cfg.addr,
            cfg.prefix_len
        ),
    }

    let ready_bit = dev.net.ready_bit();
    loop {
        iface.poll(now(), &mut dev, &mut sockets);
        for conn in &mut conns {
            conn.serve(sockets.get_mut::<tcp::Socket<'_>>(conn.handle));
        }
        let timeout_ns = match iface.poll_delay(now(), &sockets) {
            Some(d) => d.total_micros().saturating_mul(1000),
            None => IDLE_POLL_NS,
        };
        // Zero: smoltcp has work right now (e.g. a response just queued); go round.
        if timeout_ns > 0 && time::poll(timeout_ns) & ready_bit != 0 {
            dev.rx_ready = true;
        }
    }
}
