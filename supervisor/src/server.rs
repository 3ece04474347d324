//! The management server: accepts connections on the Unix socket and on TCP with
//! mutual TLS, authenticates the peer, and serves the protocol of [`petrel_proto`]
//! against a [`Service`].
//!
//! Threads: one accept thread polls both listeners (waking every
//! [`ACCEPT_POLL`] to notice [`Server::shutdown`]); each connection gets its own
//! thread, at most [`ServerConfig::max_connections`] at once (more are refused at
//! accept), and at most [`ServerConfig::max_per_identity`] of one TLS identity (counted
//! once it is authenticated; the local socket is exempt). Every socket read waits at
//! most a tick, so no thread blocks for long, and every write at most
//! [`WRITE_TIMEOUT`]. The protocol itself is in `session`.
//!
//! # The conversation
//!
//! - TLS connections are authenticated first: the handshake requires a client
//!   certificate chaining to an anchor, and the caller is
//!   `Caller::Remote(identity)`; if the chain names no valid identity the client is
//!   told (`PermissionDenied`, request id 0) and the connection closes. The Unix
//!   socket (mode 0600) is `Caller::Local`.
//! - An identity that already holds [`ServerConfig::max_per_identity`] connections is
//!   answered `Busy` (request id 0) in place of the server's hello, and the connection
//!   closes.
//! - The client sends a hello; the server answers with its own, or with
//!   `VersionMismatch` / `Malformed` on request id 0 and closes. Both within
//!   [`HANDSHAKE_TIMEOUT`].
//! - Then requests, one at a time. Each gets exactly one final reply, except a
//!   download (console, logs, block download), which gets `Proceed`, `Data` chunks
//!   and one `End` (size and sha256 of what was sent) or `Abort`.
//! - Upload (`Outcome::Receive`): `Proceed`, the client's `Data` chunks, its `End`
//!   (checked against the announced size and digest), the final reply. If the upload
//!   fails part-way (digest, size, the sink's error) the error reply goes out at once
//!   and the server drops the client's remaining chunks up to its `End`/`Abort`; a
//!   client `Abort` is answered with an error reply.
//! - While a stream runs, another request is answered `Busy`; a `Cancel` of the
//!   running stream stops it: the server sends the stream's `End` (figures of what
//!   was sent), then `Ok` to the cancel. A `Cancel` of anything else: `NotFound`.
//! - A frame that breaks the framing (oversized, empty, truncated) or does not decode
//!   gets `Malformed` on request id 0 and the connection closes; so does a hello,
//!   reply or stream chunk out of turn. A recognisable request whose command is
//!   unknown (a newer client) gets `Unsupported` on its own id and the connection
//!   goes on. Request id 0 (reserved) gets `BadRequest`.
//! - A connection with no message for [`ServerConfig::idle_timeout`] is closed
//!   (also mid-upload; a running download is not idle). On shutdown a running
//!   download ends with `Abort` (`Internal`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use petreld::server::{Server, ServerConfig};
//! # fn run(service: Arc<dyn petreld::api::Service>) -> Result<(), petreld::server::ServerError> {
//! let config = ServerConfig {
//!     unix: Some("/run/petrel/petreld.sock".into()),
//!     ..ServerConfig::default()
//! };
//! let server = Server::start(config, service)?;
//! // ... until SIGTERM:
//! server.shutdown();
//! # Ok(())
//! # }
//! ```

mod session;
mod transport;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use petrel_proto::name::Identity;
use petrel_proto::tls::{CertificateDer, peer_identity};
use petrel_proto::{ErrorKind, Message, Reply, RequestId};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustls::{ServerConnection, StreamOwned};

use crate::api::{Caller, Service};
use session::{End, Session};
use transport::{Conn, Transport, Wait, is_timeout};

/// How often the accept thread looks at the stop flag.
pub const ACCEPT_POLL: Duration = Duration::from_millis(250);

/// The socket read timeout of a connection: how often its thread looks at its
/// deadlines and the stop flag while waiting.
pub const READ_TICK: Duration = Duration::from_millis(250);

/// How long a write may block on a peer that does not read before the connection is
/// dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS handshake and the hello must be done within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Server::shutdown`] waits for connection threads to finish.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Stack size of a connection thread. The protocol and rustls need little, but the
/// service's work runs on this thread too (debug builds have large frames); untouched
/// stack pages cost no memory.
const CONNECTION_STACK_BYTES: usize = 1024 * 1024;

/// TCP keepalive, so a follow whose client vanished without a FIN ends eventually.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

/// The TLS listener.
#[derive(Debug, Clone)]
pub struct TlsListen {
    /// Where to listen (port 0: any; see [`Server::tcp_addr`]).
    pub addr: SocketAddr,
    /// From `petrel_proto::tls::server_config`: requires and verifies client
    /// certificates.
    pub config: Arc<rustls::ServerConfig>,
    /// The trust anchors the config verifies against; they name the peer's identity.
    pub anchors: Vec<CertificateDer<'static>>,
}

/// What to listen on, and the limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mutual TLS on TCP, if any.
    pub tls: Option<TlsListen>,
    /// The local socket (created mode 0600; a stale one is replaced), if any.
    pub unix: Option<PathBuf>,
    /// Connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// Connections of one TLS identity at once; more are refused after the handshake
    /// (the local socket is exempt: it is root on the box).
    pub max_per_identity: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    /// No listener, 64 connections (16 per identity), 5 minutes idle.
    fn default() -> Self {
        Self {
            tls: None,
            unix: None,
            max_connections: 64,
            max_per_identity: 16,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither a TLS address nor a socket path was given.
    #[error("nothing to listen on")]
    NoListener,
    /// Binding or configuring the TCP listener failed.
    #[error("cannot listen on {addr}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Creating the Unix socket failed.
    #[error("cannot create the socket {}", path.display())]
    Unix {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another daemon answers on the socket path.
    #[error("{} is in use by a running daemon", path.display())]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket.
    #[error("{} exists and is not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The accept thread could not be started.
    #[error("cannot start the accept thread")]
    Thread(#[source] io::Error),
}

/// A running server. Dropping it stops it too.
pub struct Server {
    tcp_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
    /// The socket we created, and its inode, to remove it on shutdown if still ours.
    unix: Option<(PathBuf, u64, u64)>,
}

/// What every connection thread shares.
struct Shared {
    service: Arc<dyn Service>,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    max_connections: usize,
    identities: IdentitySlots,
    idle_timeout: Duration,
    tls: Option<(Arc<rustls::ServerConfig>, Vec<CertificateDer<'static>>)>,
}

/// The connections each TLS identity holds.
struct IdentitySlots {
    max: usize,
    held: Mutex<BTreeMap<Identity, usize>>,
}

impl IdentitySlots {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// A slot for one more connection of `identity`, unless it holds the most already.
    fn take(&self, identity: &Identity) -> Option<IdentitySlot<'_>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.get(identity).copied().unwrap_or(0);
        if n >= self.max {
            return None;
        }
        held.insert(identity.clone(), n + 1);
        Some(IdentitySlot {
            slots: self,
            identity: identity.clone(),
        })
    }

    /// Connections `identity` holds now.
    #[cfg(test)]
    fn held(&self, identity: &Identity) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(identity).copied().unwrap_or(0)
    }
}

/// One connection of an identity; given back on drop.
struct IdentitySlot<'a> {
    slots: &'a IdentitySlots,
    identity: Identity,
}

impl Drop for IdentitySlot<'_> {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match held.get(&self.identity).copied() {
            Some(n) if n > 1 => {
                held.insert(self.identity.clone(), n - 1);
            }
            _ => {
                held.remove(&self.identity);
            }
        }
    }
}

impl Server {
    /// Binds the listeners, starts the accept thread, returns.
    pub fn start(config: ServerConfig, service: Arc<dyn Service>) -> Result<Server, ServerError> {
        if config.tls.is_none() && config.unix.is_none() {
            return Err(ServerError::NoListener);
        }
        let mut tcp = None;
        let mut tls = None;
        let config_addr = config.tls.as_ref().map(|t| t.addr);
        if let Some(listen) = config.tls {
            let addr = listen.addr;
            let tcp_error = |source| ServerError::Tcp { addr, source };
            let listener = TcpListener::bind(addr).map_err(tcp_error)?;
            listener.set_nonblocking(true).map_err(tcp_error)?;
            tcp = Some(listener);
            tls = Some((listen.config, listen.anchors));
        }
        let mut unix = None;
        let mut unix_id = None;
        if let Some(path) = config.unix {
            let (listener, dev, ino) = bind_unix(&path)?;
            unix = Some(listener);
            unix_id = Some((path, dev, ino));
        }
        let tcp_addr = match (&tcp, &config_addr) {
            (Some(listener), Some(addr)) => {
                let addr = *addr;
                Some(
                    listener
                        .local_addr()
                        .map_err(|source| ServerError::Tcp { addr, source })?,
                )
            }
            _ => None,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            service,
            stop: stop.clone(),
            active: active.clone(),
            max_connections: config.max_connections.max(1),
            identities: IdentitySlots::new(config.max_per_identity),
            idle_timeout: config.idle_timeout,
            tls,
        });
        let accept = thread::Builder::new()
            .name("petreld-accept".into())
            .spawn(move || accept_loop(&shared, tcp.as_ref(), unix.as_ref()))
            .map_err(ServerError::Thread)?;
        if let Some(addr) = tcp_addr {
            log::info!("listening on {addr} (mutual TLS)");
        }
        if let Some((path, ..)) = &unix_id {
            log::info!("listening on {}", path.display());
        }
        Ok(Server {
            tcp_addr,
            stop,
            active,
            accept: Some(accept),
            unix: unix_id,
        })
    }

    /// The bound TCP address (with the real port when the config asked for port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Stops accepting, asks every connection to end (a running download gets
    /// `Abort`), waits up to [`SHUTDOWN_WAIT`] for them, removes the socket.
    pub fn shutdown(self) {
        // Drop does it.
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while self.active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let left = self.active.load(Ordering::Relaxed);
        if left > 0 {
            log::warn!("{left} connections still busy at shutdown");
        }
        if let Some((path, dev, ino)) = self.unix.take() {
            if fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == dev && m.ino() == ino) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the listening socket at `path`, mode 0600 from the start: bound under a
/// temporary name, chmod-ed, then renamed into place. A stale socket (nobody
/// answers) is replaced; a live one or a non-socket is an error.
fn bind_unix(path: &Path) -> Result<(UnixListener, u64, u64), ServerError> {
    let unix_error = |source| ServerError::Unix {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            log::info!("removing stale socket {}", path.display());
            fs::remove_file(path).map_err(unix_error)?;
        }
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unix_error(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(unix_error)?;
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unix_error(e)),
    }
    let listener = UnixListener::bind(&temp).map_err(unix_error)?;
    let placed = fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| listener.set_nonblocking(true))
        .and_then(|()| fs::symlink_metadata(path));
    match placed {
        Ok(meta) => Ok((listener, meta.dev(), meta.ino())),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(unix_error(e))
        }
    }
}

/// Accepts on both listeners until the stop flag is set.
fn accept_loop(shared: &Arc<Shared>, tcp: Option<&TcpListener>, unix: Option<&UnixListener>) {
    let timeout = Timespec::try_from(ACCEPT_POLL).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
    });
    while !shared.stop.load(Ordering::Relaxed) {
        let mut fds = Vec::with_capacity(2);
        if let Some(l) = tcp {
            fds.push(PollFd::from_borrowed_fd(l.as_fd(), PollFlags::IN));
        }
        if let Some(l) = unix {
            fds.push(PollFd::from_borrowed_fd(l.as_fd(), PollFlags::IN));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => {
                log::error!("polling the listeners: {e}");
                thread::sleep(ACCEPT_POLL);
                continue;
            }
        }
        if let Some(l) = tcp {
            loop {
                match l.accept() {
                    Ok((stream, peer)) => admit(shared, Incoming::Tcp(stream, peer)),
                    Err(e) => {
                        accept_error(&e);
                        break;
                    }
                }
            }
        }
        if let Some(l) = unix {
            loop {
                match l.accept() {
                    Ok((stream, _)) => admit(shared, Incoming::Unix(stream)),
                    Err(e) => {
                        accept_error(&e);
                        break;
                    }
                }
            }
        }
    }
}

fn accept_error(e: &io::Error) {
    if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
        // EMFILE and friends: back off a little rather than spin.
        log::warn!("accept: {e}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A freshly accepted connection.
enum Incoming {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Incoming {
    fn peer(&self) -> String {
        match self {
            Self::Tcp(_, addr) => addr.to_string(),
            Self::Unix(_) => String::from("local socket"),
        }
    }
}

/// Decrements the connection count when the connection's thread is done (or was never
/// started).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts a thread for the connection, if below the limit.
fn admit(shared: &Arc<Shared>, incoming: Incoming) {
    let peer = incoming.peer();
    let taken = shared
        .active
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < shared.max_connections).then_some(n + 1)
        });
    if taken.is_err() {
        log::warn!(
            "{peer}: refused, {} connections already",
            shared.max_connections
        );
        if let Incoming::Unix(mut stream) = incoming {
            // Plain text costs nothing to explain; never block the accept thread on it.
            let _ = stream.set_nonblocking(true);
            if let Ok(frame) = Message::Reply(Reply::error(
                RequestId(0),
                ErrorKind::Busy,
                "too many connections",
            ))
            .to_frame()
            {
                let _ = io::Write::write_all(&mut stream, &frame);
            }
        }
        return;
    }
    let slot = Slot(shared.active.clone());
    let shared_for_thread = shared.clone();
    let spawned = thread::Builder::new()
        .name("petreld-conn".into())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || {
            let _slot = slot;
            serve_connection(&shared_for_thread, incoming);
        });
    if let Err(e) = spawned {
        log::error!("{peer}: cannot start a connection thread: {e}");
    }
}

/// Authenticates and serves one connection, logging how it went.
fn serve_connection(shared: &Shared, incoming: Incoming) {
    let peer = incoming.peer();
    let (transport, caller) = match authenticate(shared, incoming) {
        Ok(pair) => pair,
        Err(why) => {
            log::warn!("{peer}: refused: {why}");
            return;
        }
    };
    let who = match &caller {
        Caller::Local => String::from("local"),
        Caller::Remote(identity) => identity.to_string(),
    };
    let _identity_slot = match &caller {
        Caller::Local => None,
        Caller::Remote(identity) => match shared.identities.take(identity) {
            Some(slot) => Some(slot),
            None => {
                let max = shared.identities.max;
                log::warn!("{peer}: refused, {max} connections of {who} already");
                let why = format!("too many connections of identity {who} ({max} at once)");
                refuse_at_hello(transport, &shared.stop, &why);
                return;
            }
        },
    };
    log::info!("{peer}: connected as {who}");
    let session = Session {
        conn: Conn::new(transport),
        caller,
        service: shared.service.as_ref(),
        stop: &shared.stop,
        idle_timeout: shared.idle_timeout,
        hello_timeout: HANDSHAKE_TIMEOUT,
    };
    match session.run() {
        End::Closed => log::info!("{peer} ({who}): closed"),
        End::Idle => log::info!("{peer} ({who}): idle, closed"),
        End::Shutdown => log::info!("{peer} ({who}): closed for shutdown"),
        End::Protocol(why) => log::warn!("{peer} ({who}): protocol error, closed: {why}"),
        End::Failed(e) => log::warn!("{peer} ({who}): {}", error_chain(&e)),
    }
}

/// Waits for the client's hello (within [`HANDSHAKE_TIMEOUT`]), answers it with
/// `Busy` on request id 0 and closes. Waiting first means the client has nothing
/// unread in flight when we close, so it reads the answer rather than a reset.
fn refuse_at_hello(transport: Transport, stop: &AtomicBool, why: &str) {
    let mut conn = Conn::new(transport);
    let _ = conn.recv(Wait::Until(Instant::now() + HANDSHAKE_TIMEOUT), stop);
    let _ = conn.send(&Message::Reply(Reply::error(
        RequestId(0),
        ErrorKind::Busy,
        why,
    )));
    conn.close();
}

/// `error: cause: cause`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Socket options, the TLS handshake and the peer's identity.
fn authenticate(shared: &Shared, incoming: Incoming) -> Result<(Transport, Caller), String> {
    match incoming {
        Incoming::Unix(stream) => {
            // The socket's mode already keeps others out; check the peer anyway.
            let cred = rustix::net::sockopt::socket_peercred(&stream)
                .map_err(|e| format!("peer credentials: {e}"))?;
            if !cred.uid.is_root() && cred.uid != rustix::process::geteuid() {
                return Err(format!(
                    "local peer pid {} runs as uid {}, neither root nor ours",
                    cred.pid.as_raw_nonzero(),
                    cred.uid.as_raw()
                ));
            }
            log::debug!(
                "local peer pid {} uid {}",
                cred.pid.as_raw_nonzero(),
                cred.uid.as_raw()
            );
            stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(READ_TICK)))
                .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
                .map_err(|e| format!("socket options: {e}"))?;
            Ok((Transport::Unix(stream), Caller::Local))
        }
        Incoming::Tcp(stream, _) => {
            let Some((config, anchors)) = &shared.tls else {
                return Err(String::from("TCP without TLS configuration"));
            };
            stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(READ_TICK)))
                .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
                .and_then(|()| stream.set_nodelay(true))
                .map_err(|e| format!("socket options: {e}"))?;
            keepalive(&stream);
            let conn = ServerConnection::new(config.clone()).map_err(|e| format!("TLS: {e}"))?;
            let mut tls = StreamOwned::new(conn, stream);
            handshake(&mut tls, &shared.stop)?;
            let identity = match tls.conn.peer_certificates() {
                Some(chain) => peer_identity(chain, anchors).map_err(|e| error_chain(&e)),
                None => Err(String::from("no client certificate")),
            };
            match identity {
                Ok(identity) => Ok((Transport::Tls(Box::new(tls)), Caller::Remote(identity))),
                Err(why) => {
                    // The handshake passed, so the client can be told.
                    let mut transport = Transport::Tls(Box::new(tls));
                    if let Ok(frame) = Message::Reply(Reply::error(
                        RequestId(0),
                        ErrorKind::PermissionDenied,
                        format!("client certificate refused: {why}"),
                    ))
                    .to_frame()
                    {
                        let _ = io::Write::write_all(&mut transport, &frame);
                        let _ = io::Write::flush(&mut transport);
                    }
                    transport.close();
                    Err(why)
                }
            }
        }
    }
}

/// Best effort: keepalive probes after a minute of silence.
fn keepalive(stream: &TcpStream) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_keepalive(stream, true)
        .and_then(|()| sockopt::set_tcp_keepidle(stream, KEEPALIVE_IDLE))
        .and_then(|()| sockopt::set_tcp_keepintvl(stream, KEEPALIVE_INTERVAL))
        .and_then(|()| sockopt::set_tcp_keepcnt(stream, KEEPALIVE_PROBES));
    if let Err(e) = set {
        log::debug!("TCP keepalive: {e}");
    }
}

/// Runs the TLS handshake to its end, within [`HANDSHAKE_TIMEOUT`].
fn handshake(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while tls.conn.is_handshaking() {
        if stop.load(Ordering::Relaxed) {
            return Err(String::from("shutting down"));
        }
        if Instant::now() >= deadline {
            return Err(String::from("TLS handshake timed out"));
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) if tls.conn.is_handshaking() => {
                return Err(String::from("peer closed during the TLS handshake"));
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("TLS handshake: {}", error_chain(&e))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identity_slots_are_counted_per_identity_and_given_back() {
        let slots = IdentitySlots::new(2);
        let ops = Identity::new("ops").unwrap();
        let alice = Identity::new("ops/alice").unwrap();
        let a = slots.take(&ops).unwrap();
        let b = slots.take(&ops).unwrap();
        assert!(slots.take(&ops).is_none(), "a third of ops");
        // Another identity, even one below, has its own count.
        let c = slots.take(&alice).unwrap();
        assert_eq!((slots.held(&ops), slots.held(&alice)), (2, 1));
        drop(a);
        assert_eq!(slots.held(&ops), 1);
        let d = slots.take(&ops).unwrap();
        drop((b, c, d));
        assert_eq!((slots.held(&ops), slots.held(&alice)), (0, 0));
        assert!(slots.held.lock().unwrap().is_empty(), "no entries left");
    }

    #[test]
    fn at_least_one_connection_per_identity() {
        let slots = IdentitySlots::new(0);
        let ops = Identity::new("ops").unwrap();
        let a = slots.take(&ops);
        assert!(a.is_some());
        assert!(slots.take(&ops).is_none());
    }
}
