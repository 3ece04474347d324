//! The client side of the management protocol: connect (Unix socket or mutual TLS),
//! exchange hellos, then one command at a time — plain calls, uploads and downloads
//! with their size and SHA-256 checked.
//!
//! Blocking I/O with socket timeouts: every wait for the daemon is bounded by the
//! timeout given to [`Client::connect`], except a console follow, which runs until the
//! daemon ends it (or the output refuses more data, which cancels it).
//!
//! ```no_run
//! use std::time::Duration;
//! use petrel_proto::msg::{Command, ReplyBody};
//! use petrelctl::client::{Client, Endpoint};
//!
//! # fn main() -> Result<(), petrelctl::client::ClientError> {
//! let endpoint = Endpoint::Unix("/run/petrel/petreld.sock".into());
//! let mut client = Client::connect(&endpoint, Duration::from_secs(10))?;
//! if let ReplyBody::Info(unikernels) = client.call(Command::Info { name: None })? {
//!     println!("{} unikernels", unikernels.len());
//! }
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use petrel_proto::msg::{
    BlockCommand, Chunk, Command, Error, ErrorKind, Hello, ImageSource, MAX_CHUNK_BYTES, Message,
    Reply, ReplyBody, Request, RequestId, Sha256Digest, Stream, VersionMismatch,
};
use petrel_proto::tls::rustls;
use petrel_proto::{FrameDecoder, FrameError, MessageError};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use sha2::{Digest, Sha256};

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The local socket (no TLS; the daemon treats the caller as local).
    Unix(PathBuf),
    /// Mutual TLS over TCP.
    Tls {
        /// `host:port`.
        addr: String,
        /// From `petrel_proto::tls::client_config`.
        config: Arc<rustls::ClientConfig>,
        /// The name the device's certificate is checked against (from `client_config`).
        server_name: ServerName<'static>,
    },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address or socket path.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake or session failed (wrong device, refused certificate, ...).
    #[error("TLS")]
    Tls(#[source] rustls::Error),
    /// The connection failed.
    #[error("connection")]
    Io(#[source] io::Error),
    /// The daemon did not answer in time.
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Closed,
    /// A frame from the daemon broke the framing.
    #[error("bad frame from the daemon")]
    Frame(#[source] FrameError),
    /// A frame from the daemon did not decode.
    #[error("bad message")]
    Message(#[source] MessageError),
    /// Our request cannot be encoded (over the frame cap); nothing was sent.
    #[error("the request cannot be sent")]
    Encode(#[source] MessageError),
    /// No protocol version in common.
    #[error(transparent)]
    Version(VersionMismatch),
    /// The daemon sent something out of turn.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The command cannot be used this way (e.g. a streaming command with `call`).
    #[error("{0}")]
    Usage(&'static str),
    /// The daemon answered with an error.
    #[error(transparent)]
    Remote(Error),
    /// The downloaded data does not match the daemon's size or digest.
    #[error(
        "download of {got_bytes} bytes, sha256 {got}; the daemon sent {sent_bytes} bytes, sha256 {sent}"
    )]
    Digest {
        /// Bytes received.
        got_bytes: u64,
        /// Their digest.
        got: Sha256Digest,
        /// Bytes the daemon says it sent.
        sent_bytes: u64,
        /// The digest the daemon announced.
        sent: Sha256Digest,
    },
    /// The data to upload does not match the size or digest in the command.
    #[error(
        "the data to upload is {got_bytes} bytes (sha256 {got:?}), the command announced {announced_bytes} bytes, sha256 {announced}"
    )]
    Input {
        /// Bytes read before stopping (past the announced size: announced + 1).
        got_bytes: u64,
        /// Their digest, when all was read.
        got: Option<Sha256Digest>,
        /// The command's size.
        announced_bytes: u64,
        /// The command's digest.
        announced: Sha256Digest,
    },
    /// Reading the data to upload failed.
    #[error("reading the data to upload")]
    Read(#[source] io::Error),
    /// Writing the downloaded data failed (the stream was cancelled).
    #[error("writing the downloaded data")]
    Write(#[source] io::Error),
    /// An earlier failure left the connection unusable.
    #[error("the connection is no longer usable after an earlier error")]
    Broken,
}

impl ClientError {
    /// Whether the daemon could not be reached or authenticated (the CLI's exit
    /// code 3), as opposed to a failure after a working connection.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Tls(_))
    }
}

/// An io::Error from rustls' stream carries the TLS error inside.
fn io_error(e: io::Error) -> ClientError {
    if !e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return ClientError::Io(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => ClientError::Tls(*tls),
        _ => ClientError::Protocol(String::from("TLS failure")),
    }
}

/// Whether a socket error is a read/write timeout (EAGAIN on Linux).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

enum Transport {
    Unix(UnixStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Transport {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_nonblocking(on),
            Self::Tls(s) => s.sock.set_nonblocking(on),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// A connection to `petreld`.
pub struct Client {
    io: Transport,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    timeout: Duration,
    next_id: u32,
    version: u16,
    agent: String,
    broken: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        match &mut self.io {
            Transport::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Transport::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Which way a command's data flows.
enum Flow {
    None,
    Upload(u64, Sha256Digest),
    Download { follow: bool },
}

fn flow(command: &Command) -> Flow {
    match command {
        Command::Create(spec) => match spec.image {
            ImageSource::Upload { size_bytes, sha256 } => Flow::Upload(size_bytes, sha256),
            ImageSource::Builder { .. } => Flow::None,
        },
        Command::Block(BlockCommand::Upload {
            size_bytes, sha256, ..
        }) => Flow::Upload(*size_bytes, *sha256),
        Command::Block(BlockCommand::Download { .. }) | Command::Logs { .. } => {
            Flow::Download { follow: false }
        }
        Command::Console { follow, .. } => Flow::Download { follow: *follow },
        _ => Flow::None,
    }
}

impl Client {
    /// Connects, runs the TLS handshake (for [`Endpoint::Tls`]) and the hello. Every
    /// later wait for the daemon is bounded by `timeout` (except a console follow).
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Client, ClientError> {
        let timeout = timeout.max(Duration::from_millis(1));
        let io = match endpoint {
            Endpoint::Unix(path) => {
                let connect_error = |source| ClientError::Connect {
                    addr: path.display().to_string(),
                    source,
                };
                let stream = UnixStream::connect(path).map_err(connect_error)?;
                stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .map_err(connect_error)?;
                Transport::Unix(stream)
            }
            Endpoint::Tls {
                addr,
                config,
                server_name,
            } => {
                let stream = connect_tcp(addr, timeout)?;
                let conn = ClientConnection::new(config.clone(), server_name.clone())
                    .map_err(ClientError::Tls)?;
                let mut tls = StreamOwned::new(conn, stream);
                let deadline = Instant::now() + timeout;
                while tls.conn.is_handshaking() {
                    if Instant::now() >= deadline {
                        return Err(ClientError::Timeout(timeout));
                    }
                    match tls.conn.complete_io(&mut tls.sock) {
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                        // A plain I/O failure here (reset, closed: the daemon at its
                        // connection limit) is a failure to connect.
                        Err(e) => {
                            return Err(match io_error(e) {
                                ClientError::Io(source) => ClientError::Connect {
                                    addr: addr.clone(),
                                    source,
                                },
                                other => other,
                            });
                        }
                    }
                }
                Transport::Tls(Box::new(tls))
            }
        };
        let mut client = Client {
            io,
            decoder: FrameDecoder::new(),
            buf: vec![0; READ_BUFFER_BYTES],
            timeout,
            next_id: 1,
            version: 0,
            agent: String::new(),
            broken: false,
        };
        // A refusal during setup (the daemon closing on a refused client certificate,
        // which TLS 1.3 reports only after the handshake) is a failure to connect.
        let addr = match endpoint {
            Endpoint::Unix(path) => path.display().to_string(),
            Endpoint::Tls { addr, .. } => addr.clone(),
        };
        client.hello().map_err(|e| match e {
            ClientError::Io(source) => ClientError::Connect { addr, source },
            ClientError::Closed => ClientError::Connect {
                addr,
                source: io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the daemon closed the connection during the hello",
                ),
            },
            other => other,
        })?;
        Ok(client)
    }

    fn hello(&mut self) -> Result<(), ClientError> {
        let ours = Hello::new(concat!("petrelctl ", env!("CARGO_PKG_VERSION")));
        self.send(&Message::Hello(ours.clone()))?;
        let deadline = Some(Instant::now() + self.timeout);
        match self.recv(deadline)? {
            Message::Hello(theirs) => {
                self.version = ours.negotiate(&theirs).map_err(ClientError::Version)?;
                self.agent = theirs.agent;
                Ok(())
            }
            Message::Reply(Reply {
                body: ReplyBody::Error(e),
                ..
            }) => Err(ClientError::Remote(e)),
            other => Err(ClientError::Protocol(format!(
                "expected a hello, got {}",
                describe(&other)
            ))),
        }
    }

    /// The protocol version in use.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The daemon's self-description from its hello (e.g. `petreld 0.1.0`).
    pub fn server_agent(&self) -> &str {
        &self.agent
    }

    /// A command without a data stream. An `Error` reply is [`ClientError::Remote`].
    pub fn call(&mut self, command: Command) -> Result<ReplyBody, ClientError> {
        if !matches!(flow(&command), Flow::None) {
            return Err(ClientError::Usage(
                "this command streams data: use upload or download",
            ));
        }
        if matches!(command, Command::Cancel { .. }) {
            return Err(ClientError::Usage("cancel is sent by download itself"));
        }
        self.guard(|client| {
            let id = client.request(command)?;
            let deadline = client.deadline();
            client.final_reply(id, deadline)
        })
    }

    /// An upload command (`Create` with [`ImageSource::Upload`], `Block(Upload)`):
    /// streams `data`, which must have the size and digest the command announces,
    /// reporting the bytes sent so far to `progress`; returns the daemon's final reply.
    /// If the daemon answers at once without asking for the data (it may already have
    /// it), that answer is returned and `data` is not read.
    pub fn upload(
        &mut self,
        command: Command,
        data: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ReplyBody, ClientError> {
        let Flow::Upload(size_bytes, sha256) = flow(&command) else {
            return Err(ClientError::Usage("not an upload command"));
        };
        self.guard(|client| {
            let id = client.request(command)?;
            let deadline = client.deadline();
            match client.reply(id, deadline)? {
                ReplyBody::Proceed => {}
                ReplyBody::Error(e) => return Err(ClientError::Remote(e)),
                body => return Ok(body),
            }
            match client.stream_out(id, data, size_bytes, sha256, progress) {
                // The daemon's final reply came early (its error), or the connection
                // is gone: nothing more to read.
                Err(e @ (ClientError::Remote(_) | ClientError::Protocol(_))) => Err(e),
                sent => {
                    // Otherwise the daemon sends one final reply.
                    let deadline = client.deadline();
                    let last = client.final_reply(id, deadline);
                    sent.and(last)
                }
            }
        })
    }

    /// Sends `data` as chunks and an `End`; on a local problem sends `Abort` instead
    /// and returns the problem.
    fn stream_out(
        &mut self,
        id: RequestId,
        data: &mut dyn Read,
        size_bytes: u64,
        sha256: Sha256Digest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ClientError> {
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut chunk = vec![0u8; MAX_CHUNK_BYTES];
        let problem = loop {
            let n = match read_full(data, &mut chunk) {
                Ok(n) => n,
                Err(e) => break ClientError::Read(e),
            };
            if n == 0 {
                let got = Sha256Digest(hasher.finalize().into());
                if total == size_bytes && got == sha256 {
                    return self.chunk(
                        id,
                        Chunk::End {
                            total_bytes: total,
                            sha256: got,
                        },
                    );
                }
                break ClientError::Input {
                    got_bytes: total,
                    got: Some(got),
                    announced_bytes: size_bytes,
                    announced: sha256,
                };
            }
            let piece = chunk.get(..n).unwrap_or_default();
            total = total.saturating_add(n as u64);
            if total > size_bytes {
                break ClientError::Input {
                    got_bytes: size_bytes.saturating_add(1),
                    got: None,
                    announced_bytes: size_bytes,
                    announced: sha256,
                };
            }
            hasher.update(piece);
            self.chunk(id, Chunk::Data(piece.to_vec()))?;
            progress(total);
            // The daemon may refuse part-way (a failed write): stop sending then.
            if let Some(message) = self.poll()? {
                return match message {
                    Message::Reply(Reply {
                        id: got,
                        body: ReplyBody::Error(e),
                    }) if got == id => {
                        // It drains until our end of the stream.
                        let why = Error::new(ErrorKind::Other, "stopping after the daemon's error");
                        self.chunk(id, Chunk::Abort(why))?;
                        Err(ClientError::Remote(e))
                    }
                    Message::Reply(Reply {
                        id: RequestId(0),
                        body: ReplyBody::Error(e),
                    }) => {
                        self.broken = true;
                        Err(ClientError::Remote(e))
                    }
                    other => Err(ClientError::Protocol(format!(
                        "unexpected {} during an upload",
                        describe(&other)
                    ))),
                };
            }
        };
        let why = Error::new(ErrorKind::BadRequest, problem.to_string());
        self.chunk(id, Chunk::Abort(why))?;
        Err(problem)
    }

    /// A download command (`Console`, `Logs`, `Block(Download)`): writes the data to
    /// `out`, reporting the bytes so far to `progress`, and checks the final size and
    /// digest. Returns the byte count. A console follow runs until the daemon ends the
    /// stream; if `out` fails, the stream is cancelled and the error returned.
    pub fn download(
        &mut self,
        command: Command,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let Flow::Download { follow } = flow(&command) else {
            return Err(ClientError::Usage("not a download command"));
        };
        self.guard(|client| {
            let id = client.request(command)?;
            let deadline = client.deadline();
            match client.reply(id, deadline)? {
                ReplyBody::Proceed => {}
                ReplyBody::Error(e) => return Err(ClientError::Remote(e)),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected proceed, got {}",
                        describe_body(&other)
                    )));
                }
            }
            let mut hasher = Sha256::new();
            let mut total: u64 = 0;
            loop {
                let deadline = if follow { None } else { client.deadline() };
                match client.stream_chunk(id, deadline)? {
                    Chunk::Data(data) => {
                        hasher.update(&data);
                        total = total.saturating_add(data.len() as u64);
                        if let Err(e) = out.write_all(&data) {
                            client.cancel(id)?;
                            return Err(ClientError::Write(e));
                        }
                        progress(total);
                    }
                    Chunk::End {
                        total_bytes,
                        sha256,
                    } => {
                        let got = Sha256Digest(hasher.finalize().into());
                        if got != sha256 || total != total_bytes {
                            return Err(ClientError::Digest {
                                got_bytes: total,
                                got,
                                sent_bytes: total_bytes,
                                sent: sha256,
                            });
                        }
                        return out.flush().map(|()| total).map_err(ClientError::Write);
                    }
                    Chunk::Abort(e) => return Err(ClientError::Remote(e)),
                }
            }
        })
    }

    /// Cancels the running download `id`: sends `Cancel`, then reads (and drops) the
    /// stream up to its end and the cancel's reply, so the connection stays usable.
    fn cancel(&mut self, id: RequestId) -> Result<(), ClientError> {
        let cancel = self.request(Command::Cancel { id })?;
        loop {
            let deadline = self.deadline();
            match self.stream_chunk(id, deadline)? {
                Chunk::Data(_) => {}
                Chunk::End { .. } | Chunk::Abort(_) => break,
            }
        }
        let deadline = self.deadline();
        // `NotFound` when the stream had ended before the cancel arrived: fine.
        match self.reply(cancel, deadline)? {
            ReplyBody::Ok | ReplyBody::Error(_) => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "unexpected reply to cancel: {}",
                describe_body(&other)
            ))),
        }
    }

    /// Runs `f`; a failure that may have left the stream out of step marks the
    /// connection broken, so later calls fail fast instead of misreading replies.
    fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        let result = f(self);
        if let Err(e) = &result {
            // Errors after which the daemon and we still agree on where we are.
            let in_step = matches!(
                e,
                ClientError::Remote(_)
                    | ClientError::Encode(_)
                    | ClientError::Input { .. }
                    | ClientError::Read(_)
                    | ClientError::Write(_)
                    | ClientError::Digest { .. }
            );
            if !in_step {
                self.broken = true;
            }
        }
        result
    }

    fn deadline(&self) -> Option<Instant> {
        Some(Instant::now() + self.timeout)
    }

    /// Sends a request with a fresh id.
    fn request(&mut self, command: Command) -> Result<RequestId, ClientError> {
        let id = RequestId(self.next_id);
        // 0 is reserved for connection-level errors.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.send(&Message::Request(Request { id, command }))?;
        Ok(id)
    }

    fn chunk(&mut self, id: RequestId, chunk: Chunk) -> Result<(), ClientError> {
        self.send(&Message::Stream(Stream { id, chunk }))
    }

    /// A message that has already arrived, without waiting for one.
    fn poll(&mut self) -> Result<Option<Message>, ClientError> {
        if self.decoder.at_boundary() {
            if let Some(frame) = self.decoder.next_frame() {
                return Message::decode(&frame)
                    .map(Some)
                    .map_err(ClientError::Message);
            }
        }
        self.io.set_nonblocking(true).map_err(ClientError::Io)?;
        let read = self.io.read(&mut self.buf);
        self.io.set_nonblocking(false).map_err(ClientError::Io)?;
        match read {
            Ok(0) => {
                self.decoder.finish().map_err(ClientError::Frame)?;
                return Err(ClientError::Closed);
            }
            Ok(n) => {
                let got = self.buf.get(..n).unwrap_or_default();
                self.decoder.push(got).map_err(ClientError::Frame)?;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
        match self.decoder.next_frame() {
            Some(frame) => Message::decode(&frame)
                .map(Some)
                .map_err(ClientError::Message),
            None => Ok(None),
        }
    }

    fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        let frame = message.to_frame().map_err(ClientError::Encode)?;
        self.io.write_all(&frame).map_err(io_error)?;
        self.io.flush().map_err(io_error)
    }

    /// The reply to `id`; a connection-level error (id 0) is returned as `Remote`.
    fn reply(
        &mut self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<ReplyBody, ClientError> {
        match self.recv(deadline)? {
            Message::Reply(reply) if reply.id == id => Ok(reply.body),
            Message::Reply(Reply {
                id: RequestId(0),
                body: ReplyBody::Error(e),
            }) => {
                self.broken = true;
                Err(ClientError::Remote(e))
            }
            other => Err(ClientError::Protocol(format!(
                "expected the reply to request {}, got {}",
                id.0,
                describe(&other)
            ))),
        }
    }

    /// The final reply to `id`: `Error` becomes [`ClientError::Remote`].
    fn final_reply(
        &mut self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<ReplyBody, ClientError> {
        match self.reply(id, deadline)? {
            ReplyBody::Error(e) => Err(ClientError::Remote(e)),
            ReplyBody::Proceed => Err(ClientError::Protocol(String::from("unexpected proceed"))),
            body => Ok(body),
        }
    }

    /// The next chunk of the stream of `id`.
    fn stream_chunk(
        &mut self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<Chunk, ClientError> {
        match self.recv(deadline)? {
            Message::Stream(stream) if stream.id == id => Ok(stream.chunk),
            Message::Reply(Reply {
                id: RequestId(0),
                body: ReplyBody::Error(e),
            }) => {
                self.broken = true;
                Err(ClientError::Remote(e))
            }
            other => Err(ClientError::Protocol(format!(
                "expected data of request {}, got {}",
                id.0,
                describe(&other)
            ))),
        }
    }

    /// The next message, waiting until `deadline` (`None`: as long as it takes).
    fn recv(&mut self, deadline: Option<Instant>) -> Result<Message, ClientError> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return Message::decode(&frame).map_err(ClientError::Message);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Timeout(self.timeout));
            }
            match self.io.read(&mut self.buf) {
                Ok(0) => {
                    self.decoder.finish().map_err(ClientError::Frame)?;
                    return Err(ClientError::Closed);
                }
                Ok(n) => {
                    let got = self.buf.get(..n).unwrap_or_default();
                    self.decoder.push(got).map_err(ClientError::Frame)?;
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    }
}

/// Connects to the first address of `addr` that answers.
fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for candidate in addr.to_socket_addrs().map_err(connect_error)? {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .and_then(|()| stream.set_nodelay(true))
                    .map_err(connect_error)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_error(last))
}

/// Reads until `buf` is full or the input ends.
fn read_full(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    while have < buf.len() {
        let Some(rest) = buf.get_mut(have..) else {
            break;
        };
        match data.read(rest) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(have)
}

/// A short description of a message, for protocol errors.
fn describe(message: &Message) -> String {
    match message {
        Message::Hello(_) => String::from("a hello"),
        Message::Request(r) => format!("request {}", r.id.0),
        Message::Reply(r) => format!("reply {} ({})", r.id.0, describe_body(&r.body)),
        Message::Stream(s) => format!("stream data of request {}", s.id.0),
    }
}

fn describe_body(body: &ReplyBody) -> String {
    match body {
        ReplyBody::Error(e) => e.to_string(),
        other => {
            let text = format!("{other:?}");
            text.chars().take(60).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::os::unix::net::UnixListener;
    use std::thread;

    use petrel_proto::msg::{ConsoleHistory, ErrorKind};
    use petrel_proto::{name::FullName, read_frame};

    use super::*;

    /// A fake daemon on a fresh socket: answers the hello, then runs `script` with
    /// the connection and each request it reads.
    fn fake(
        tag: &str,
        hello: Hello,
        script: impl FnOnce(&mut UnixStream, Request) + Send + 'static,
    ) -> Endpoint {
        let dir = std::env::temp_dir().join(format!("petrelctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let first = read_frame(&mut stream).unwrap().unwrap();
            assert!(matches!(
                Message::decode(&first).unwrap(),
                Message::Hello(_)
            ));
            stream
                .write_all(&Message::Hello(hello).to_frame().unwrap())
                .unwrap();
            let Some(frame) = read_frame(&mut stream).ok().flatten() else {
                return;
            };
            let Message::Request(request) = Message::decode(&frame).unwrap() else {
                panic!("expected a request");
            };
            script(&mut stream, request);
            // Keep the connection open until the client goes away.
            let _ = read_frame(&mut stream);
        });
        Endpoint::Unix(path)
    }

    fn send(stream: &mut UnixStream, message: Message) {
        stream.write_all(&message.to_frame().unwrap()).unwrap();
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn oversized_frame_from_the_daemon() {
        let endpoint = fake("big", Hello::new("fake"), |s, _| {
            s.write_all(&[0x7f, 0, 0, 0]).unwrap();
        });
        let mut client = Client::connect(&endpoint, SHORT).unwrap();
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Frame(FrameError::TooLarge { .. }))
        ));
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Broken)
        ));
    }

    #[test]
    fn reply_to_another_request() {
        let endpoint = fake("otherid", Hello::new("fake"), |s, r| {
            let id = RequestId(r.id.0 + 5);
            send(
                s,
                Message::Reply(Reply {
                    id,
                    body: ReplyBody::Ok,
                }),
            );
        });
        let mut client = Client::connect(&endpoint, SHORT).unwrap();
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn silent_daemon_times_out() {
        let endpoint = fake("silent", Hello::new("fake"), |_, _| {});
        let mut client = Client::connect(&endpoint, SHORT).unwrap();
        let started = Instant::now();
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Timeout(_))
        ));
        assert!(started.elapsed() < SHORT * 10);
    }

    #[test]
    fn incompatible_daemon() {
        let hello = Hello {
            version: 500,
            min_version: 400,
            agent: "future".into(),
        };
        let endpoint = fake("version", hello, |_, _| {});
        assert!(matches!(
            Client::connect(&endpoint, SHORT),
            Err(ClientError::Version(_))
        ));
    }

    #[test]
    fn download_with_a_wrong_digest() {
        let endpoint = fake("digest", Hello::new("fake"), |s, r| {
            send(
                s,
                Message::Reply(Reply {
                    id: r.id,
                    body: ReplyBody::Proceed,
                }),
            );
            let stream = |chunk| Message::Stream(Stream { id: r.id, chunk });
            send(s, stream(Chunk::Data(b"hello".to_vec())));
            send(
                s,
                stream(Chunk::End {
                    total_bytes: 5,
                    sha256: Sha256Digest::of(b"hellO"),
                }),
            );
        });
        let mut client = Client::connect(&endpoint, SHORT).unwrap();
        let console = Command::Console {
            name: "ops:web".parse::<FullName>().unwrap(),
            history: ConsoleHistory::All,
            follow: false,
        };
        let mut out = Vec::new();
        assert!(matches!(
            client.download(console, &mut out, &mut |_| {}),
            Err(ClientError::Digest { got_bytes: 5, .. })
        ));
    }

    #[test]
    fn connection_level_error_breaks_the_client() {
        let endpoint = fake("id0", Hello::new("fake"), |s, _| {
            let reply = Reply::error(RequestId(0), ErrorKind::Malformed, "what?");
            send(s, Message::Reply(reply));
        });
        let mut client = Client::connect(&endpoint, SHORT).unwrap();
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Remote(Error {
                kind: ErrorKind::Malformed,
                ..
            }))
        ));
        assert!(matches!(
            client.call(Command::Reboot),
            Err(ClientError::Broken)
        ));
    }

    #[test]
    fn nothing_listening() {
        let endpoint = Endpoint::Unix("/nonexistent/petrel.sock".into());
        let e = Client::connect(&endpoint, SHORT).err().unwrap();
        assert!(e.is_connect());
    }
}
