//! The messages. Every type here is part of the wire contract: see the crate doc's
//! versioning rule before touching anything (append variants; never reorder, remove or
//! change a variant or field).

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::frame::{FrameError, MAX_FRAME_BYTES, encode_frame};
use crate::name::{FullName, Identity, UnikernelName};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest version this crate still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The largest `Data` chunk of a stream (64 KiB).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Everything that travels in a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The first frame each side sends.
    Hello(Hello),
    /// Client to daemon.
    Request(Request),
    /// Daemon to client: the answer to a request.
    Reply(Reply),
    /// Either way: a chunk of a request's data stream.
    Stream(Stream),
}

/// The version handshake: each side sends one, then both use
/// [`Hello::negotiate`]. A daemon that cannot agree replies with
/// [`ErrorKind::VersionMismatch`] (request id 0) and closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The newest version the sender speaks.
    pub version: u16,
    /// The oldest version the sender speaks.
    pub min_version: u16,
    /// Free text naming the software, e.g. `petrelctl 0.1.0`.
    pub agent: String,
}

/// No version both sides speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no common protocol version: we speak {our_min}..={our_max}, the peer {peer_min}..={peer_max}"
)]
pub struct VersionMismatch {
    /// Our oldest version.
    pub our_min: u16,
    /// Our newest version.
    pub our_max: u16,
    /// The peer's oldest version.
    pub peer_min: u16,
    /// The peer's newest version.
    pub peer_max: u16,
}

impl Hello {
    /// Our hello, with this crate's versions.
    pub fn new(agent: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            agent: agent.into(),
        }
    }

    /// The version to use with `peer`: the newest both speak.
    pub fn negotiate(&self, peer: &Hello) -> Result<u16, VersionMismatch> {
        let version = self.version.min(peer.version);
        if version < self.min_version.max(peer.min_version) || peer.min_version > peer.version {
            return Err(VersionMismatch {
                our_min: self.min_version,
                our_max: self.version,
                peer_min: peer.min_version,
                peer_max: peer.version,
            });
        }
        Ok(version)
    }
}

impl Hello {
    /// The daemon's check of a connection's first message: the version to use, or the
    /// reply to send (id 0) before closing: [`ErrorKind::Malformed`] if it is not a
    /// hello, [`ErrorKind::VersionMismatch`] if no version fits.
    pub fn accept(&self, first: &Message) -> Result<u16, Reply> {
        match first {
            Message::Hello(peer) => self.negotiate(peer).map_err(|e| e.to_reply()),
            _ => Err(Reply::error(
                RequestId(0),
                ErrorKind::Malformed,
                "the first message must be a hello",
            )),
        }
    }
}

impl Reply {
    /// An error reply.
    pub fn error(id: RequestId, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            id,
            body: ReplyBody::Error(Error::new(kind, message)),
        }
    }
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl VersionMismatch {
    /// The reply a daemon sends before closing.
    pub fn to_reply(&self) -> Reply {
        Reply::error(RequestId(0), ErrorKind::VersionMismatch, self.to_string())
    }
}

/// Chosen by the client, unique among its requests in flight on a connection; echoed
/// in every reply and stream chunk of that request. 0 is reserved for connection-level
/// errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u32);

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// See [`RequestId`].
    pub id: RequestId,
    /// What to do.
    pub command: Command,
}

/// The commands.
///
/// Streams: for `Create` with [`ImageSource::Upload`] and [`BlockCommand::Upload`] the
/// daemon first replies [`ReplyBody::Proceed`] (or an error); the client then sends
/// `Data` chunks and an `End`, and the daemon sends the final reply. For `Console`,
/// `Logs` and [`BlockCommand::Download`] the daemon replies `Proceed` and then sends
/// the chunks; a follow ends with `Cancel` from the client, answered by `End`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// One unikernel, or every one the caller may see. Reply: `Info`.
    Info {
        /// `None`: all.
        name: Option<FullName>,
    },
    /// Create and start a unikernel. Reply: `Unikernel`.
    Create(Box<CreateSpec>),
    /// Stop and forget a unikernel. Reply: `Ok`.
    Destroy {
        /// Which.
        name: FullName,
    },
    /// Restart, optionally with new arguments. Reply: `Unikernel`.
    Restart {
        /// Which.
        name: FullName,
        /// `None`: keep the arguments.
        args: Option<Vec<String>>,
    },
    /// Console output: history, then optionally live. Reply: `Proceed`, then chunks.
    Console {
        /// Which.
        name: FullName,
        /// How much history.
        history: ConsoleHistory,
        /// Keep streaming new output until cancelled.
        follow: bool,
    },
    /// Resource usage. Reply: `Stats`.
    Stats {
        /// `None`: all.
        name: Option<FullName>,
    },
    /// Block devices.
    Block(BlockCommand),
    /// Policies.
    Policy(PolicyCommand),
    /// Reboot the appliance. Reply: `Ok`.
    Reboot,
    /// Power off the appliance. Reply: `Ok`.
    Poweroff,
    /// System logs. Reply: `Proceed`, then chunks.
    Logs {
        /// Which boot.
        boot: LogBoot,
        /// The last this many lines; 0: all kept.
        lines: u32,
    },
    /// Erase the data partition (unikernels, images, block devices, policies, logs) but
    /// its `keys/`, then reboot; the ESP (config, certificates) stays. Reply: `Ok`.
    FactoryReset,
    /// Replace the trust anchor. Reply: `Ok`.
    TrustRotate {
        /// The new anchor certificate, DER.
        anchor_der: Vec<u8>,
    },
    /// Stop a stream of an earlier request on this connection. Reply: `Ok`.
    Cancel {
        /// The request whose stream to stop.
        id: RequestId,
    },
}

/// Everything needed to create a unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    /// Its namespaced name.
    pub name: FullName,
    /// Where the executable comes from.
    pub image: ImageSource,
    /// The unikernel's command line.
    pub args: Vec<String>,
    /// Guest memory.
    pub memory_mib: u32,
    /// CPUs counted against the policy.
    pub cpus: u16,
    /// Network devices; must match the image's manifest exactly.
    pub devices: Vec<NetDevice>,
    /// Block devices; must match the image's manifest exactly.
    pub blocks: Vec<BlockAttach>,
    /// What to do when it exits.
    pub restart: RestartPolicy,
    /// Start order after boot: higher first.
    pub priority: i32,
    /// Host CPUs the tender may run on; empty: any.
    pub cpu_affinity: Vec<u16>,
}

/// Where an executable comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// Streamed by the client after `Proceed`.
    Upload {
        /// Its length.
        size_bytes: u64,
        /// Its digest (checked against the stream's `End`).
        sha256: Sha256Digest,
    },
    /// Produced by a builder job.
    Builder {
        /// The job.
        job: String,
        /// The expected digest.
        sha256: Sha256Digest,
    },
}

/// A network device of a unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    /// The manifest's device name.
    pub name: String,
    /// The bridge its tap joins.
    pub bridge: String,
}

/// A block device given to a unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAttach {
    /// The manifest's device name.
    pub name: String,
    /// The block device (owned by the same identity).
    pub device: UnikernelName,
}

/// Restart policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart whatever the exit.
    Always,
    /// Restart when the exit code is one of these.
    OnExit(Vec<i32>),
}

/// How much console history to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleHistory {
    /// None.
    None,
    /// The last this many lines.
    Lines(u32),
    /// Lines since this time (milliseconds since the Unix epoch).
    SinceUnixMs(u64),
    /// Everything kept.
    All,
}

/// Which boot's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogBoot {
    /// This boot.
    Current,
    /// The boot before.
    Previous,
    /// The last failed trial boot.
    FailedTrial,
}

/// Block device commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockCommand {
    /// Reply: `Block`.
    Create {
        /// Its name.
        name: FullName,
        /// Its size; a multiple of `sector_size`.
        size_bytes: u64,
        /// Its sector size in bytes.
        sector_size: u32,
    },
    /// Reply: `Ok`.
    Destroy {
        /// Which.
        name: FullName,
    },
    /// Reply: `Blocks`.
    List {
        /// `None`: every one the caller may see.
        owner: Option<Identity>,
    },
    /// Overwrite the contents: `Proceed`, the client's chunks, then `Ok`.
    Upload {
        /// Which.
        name: FullName,
        /// The length of the data.
        size_bytes: u64,
        /// Its digest.
        sha256: Sha256Digest,
    },
    /// Read the contents: `Proceed`, then the daemon's chunks.
    Download {
        /// Which.
        name: FullName,
    },
}

/// Policy commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyCommand {
    /// Set (or replace) the policy of an identity strictly below the caller. Reply: `Ok`.
    Add {
        /// Whose.
        identity: Identity,
        /// The limits.
        policy: Policy,
    },
    /// Reply: `Ok`.
    Remove {
        /// Whose.
        identity: Identity,
    },
    /// Reply: `Policies`.
    List {
        /// `None`: the caller's subtree.
        identity: Option<Identity>,
    },
}

/// The limits attached to an identity (summed over its subtree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Unikernels.
    pub max_unikernels: u32,
    /// Guest memory, total.
    pub memory_mib: u64,
    /// Block storage, total.
    pub block_bytes: u64,
    /// Bridges devices may join.
    pub bridges: Vec<String>,
    /// Host CPUs tenders may be pinned to.
    pub cpus: Vec<u16>,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: RequestId,
    /// The answer.
    pub body: ReplyBody,
}

/// Reply bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyBody {
    /// Done.
    Ok,
    /// Failed.
    Error(Error),
    /// Stream now (see [`Command`]).
    Proceed,
    /// One unikernel.
    Unikernel(Box<UnikernelInfo>),
    /// Several unikernels.
    Info(Vec<UnikernelInfo>),
    /// Resource usage.
    Stats(Vec<UnikernelStats>),
    /// One block device.
    Block(BlockInfo),
    /// Block devices.
    Blocks(Vec<BlockInfo>),
    /// Policies.
    Policies(Vec<PolicyEntry>),
}

/// An error: a kind for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Error {
    /// The class.
    pub kind: ErrorKind,
    /// Details.
    pub message: String,
}

/// Error classes. On the wire a varint, like an enum's variant index, but kinds added
/// by a newer peer decode as [`ErrorKind::Other`] instead of failing. Append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u32", into = "u32")]
pub enum ErrorKind {
    /// A kind this side does not know.
    Other = 0,
    /// No common protocol version.
    VersionMismatch = 1,
    /// The frame or message could not be decoded, or came out of order.
    Malformed = 2,
    /// A request this daemon does not implement.
    Unsupported = 3,
    /// Semantically invalid arguments.
    BadRequest = 4,
    /// Not allowed for this identity (or no policy).
    PermissionDenied = 5,
    /// Over a policy limit.
    QuotaExceeded = 6,
    /// No such unikernel, block device, policy or request.
    NotFound = 7,
    /// The name is taken.
    AlreadyExists = 8,
    /// In use (e.g. a block device attached or being transferred).
    Busy = 9,
    /// The image's manifest does not match the requested devices.
    ManifestMismatch = 10,
    /// Streamed data does not match the announced size or digest.
    DigestMismatch = 11,
    /// The daemon failed.
    Internal = 12,
}

impl From<ErrorKind> for u32 {
    fn from(kind: ErrorKind) -> u32 {
        kind as u32
    }
}

impl From<u32> for ErrorKind {
    fn from(code: u32) -> Self {
        match code {
            1 => Self::VersionMismatch,
            2 => Self::Malformed,
            3 => Self::Unsupported,
            4 => Self::BadRequest,
            5 => Self::PermissionDenied,
            6 => Self::QuotaExceeded,
            7 => Self::NotFound,
            8 => Self::AlreadyExists,
            9 => Self::Busy,
            10 => Self::ManifestMismatch,
            11 => Self::DigestMismatch,
            12 => Self::Internal,
            _ => Self::Other,
        }
    }
}

/// State of a unikernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnikernelState {
    /// Tender being started.
    Starting,
    /// Tender running.
    Running,
    /// Waiting to restart after an exit.
    Backoff {
        /// How long until the next start.
        restart_in_ms: u64,
    },
    /// Exited, not to be restarted.
    Stopped,
}

/// How a tender ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exit code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// The last exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// How.
    pub status: ExitStatus,
    /// Why, for people (e.g. the tender's last error line).
    pub reason: String,
    /// When (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
}

/// A network device as running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceInfo {
    /// The manifest's device name.
    pub name: String,
    /// The bridge.
    pub bridge: String,
    /// The guest's MAC address.
    pub mac: [u8; 6],
}

/// What `info` says about a unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnikernelInfo {
    /// Its name.
    pub name: FullName,
    /// Its state.
    pub state: UnikernelState,
    /// The tender's pid, while one runs.
    pub pid: Option<u32>,
    /// Since the current tender started.
    pub uptime_ms: Option<u64>,
    /// Guest memory.
    pub memory_mib: u32,
    /// CPUs counted.
    pub cpus: u16,
    /// Host CPUs it may run on; empty: any.
    pub cpu_affinity: Vec<u16>,
    /// Start priority.
    pub priority: i32,
    /// Network devices.
    pub devices: Vec<NetDeviceInfo>,
    /// Block devices.
    pub blocks: Vec<BlockAttach>,
    /// The executable's digest.
    pub image_sha256: Sha256Digest,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// Restarts so far.
    pub restart_count: u32,
    /// The last exit, if any.
    pub last_exit: Option<LastExit>,
}

/// Counters of one network device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// The manifest's device name.
    pub name: String,
    /// Received bytes (by the guest).
    pub rx_bytes: u64,
    /// Received packets.
    pub rx_packets: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Dropped packets, both ways.
    pub dropped_packets: u64,
}

/// Resource usage of one unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnikernelStats {
    /// Its name.
    pub name: FullName,
    /// Tender CPU time in user mode.
    pub cpu_user_ms: u64,
    /// Tender CPU time in kernel mode.
    pub cpu_system_ms: u64,
    /// Tender resident memory.
    pub rss_bytes: u64,
    /// Since the current tender started.
    pub uptime_ms: u64,
    /// Per network device.
    pub nets: Vec<NetStats>,
}

/// A block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Its name.
    pub name: FullName,
    /// Its size.
    pub size_bytes: u64,
    /// Its sector size.
    pub sector_size: u32,
    /// The unikernel using it.
    pub attached_to: Option<FullName>,
}

/// A policy and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// Whose.
    pub identity: Identity,
    /// The limits.
    pub policy: Policy,
}

/// A chunk of a request's data stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The request's id.
    pub id: RequestId,
    /// The chunk.
    pub chunk: Chunk,
}

/// Stream chunks: `Data`* then exactly one `End` or `Abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chunk {
    /// At most [`MAX_CHUNK_BYTES`].
    Data(Vec<u8>),
    /// The stream is complete.
    End {
        /// The bytes sent.
        total_bytes: u64,
        /// Their digest.
        sha256: Sha256Digest,
    },
    /// The sender gave up.
    Abort(Error),
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// postcard refused the bytes.
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// The message does not use all of its frame.
    #[error("{0} bytes after the message")]
    TrailingBytes(usize),
    /// A `Data` chunk over [`MAX_CHUNK_BYTES`].
    #[error("stream chunk of {0} bytes exceeds {MAX_CHUNK_BYTES}")]
    ChunkTooLarge(usize),
    /// The encoding exceeds the frame cap.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl Message {
    fn check(&self) -> Result<(), MessageError> {
        if let Message::Stream(Stream {
            chunk: Chunk::Data(data),
            ..
        }) = self
        {
            if data.len() > MAX_CHUNK_BYTES {
                return Err(MessageError::ChunkTooLarge(data.len()));
            }
        }
        Ok(())
    }

    /// The postcard payload (not framed).
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        self.check()?;
        let payload = postcard::to_allocvec(self).map_err(MessageError::Malformed)?;
        if payload.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge {
                len_bytes: payload.len() as u64,
                max_bytes: MAX_FRAME_BYTES,
            }
            .into());
        }
        Ok(payload)
    }

    /// The framed encoding, ready to write.
    pub fn to_frame(&self) -> Result<Vec<u8>, MessageError> {
        Ok(encode_frame(&self.encode()?)?)
    }

    /// Decodes a frame's payload; all of it must be used.
    pub fn decode(payload: &[u8]) -> Result<Self, MessageError> {
        let (message, rest): (Self, _) =
            postcard::take_from_bytes(payload).map_err(MessageError::Malformed)?;
        if !rest.is_empty() {
            return Err(MessageError::TrailingBytes(rest.len()));
        }
        message.check()?;
        Ok(message)
    }
}

/// Cuts `data` into `Data` chunks and a final `End` for request `id`.
pub fn stream_chunks(id: RequestId, data: &[u8]) -> impl Iterator<Item = Stream> + '_ {
    let end = Stream {
        id,
        chunk: Chunk::End {
            total_bytes: data.len() as u64,
            sha256: Sha256Digest::of(data),
        },
    };
    data.chunks(MAX_CHUNK_BYTES)
        .map(move |c| Stream {
            id,
            chunk: Chunk::Data(c.to_vec()),
        })
        .chain(core::iter::once(end))
}

/// Why a received stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// More data than announced.
    #[error("stream longer than the announced {expected_bytes} bytes")]
    TooLong {
        /// The announced size.
        expected_bytes: u64,
    },
    /// A `Data` chunk over [`MAX_CHUNK_BYTES`].
    #[error("stream chunk of {0} bytes exceeds {MAX_CHUNK_BYTES}")]
    ChunkTooLarge(usize),
    /// `End` disagrees with what arrived or was announced.
    #[error(
        "stream of {got_bytes} bytes, sha256 {got}; expected {expected_bytes} bytes, sha256 {expected}"
    )]
    Mismatch {
        /// Bytes received.
        got_bytes: u64,
        /// Their digest.
        got: Sha256Digest,
        /// Bytes expected.
        expected_bytes: u64,
        /// The expected digest.
        expected: Sha256Digest,
    },
}

/// Checks an incoming stream against its announced size and digest, chunk by chunk.
#[derive(Debug, Clone)]
pub struct StreamCheck {
    hasher: Sha256,
    got_bytes: u64,
    expected_bytes: u64,
    expected: Sha256Digest,
}

impl StreamCheck {
    /// Expects `expected_bytes` bytes with digest `expected`.
    pub fn new(expected_bytes: u64, expected: Sha256Digest) -> Self {
        Self {
            hasher: Sha256::new(),
            got_bytes: 0,
            expected_bytes,
            expected,
        }
    }

    /// Accounts for a `Data` chunk (before it is stored).
    pub fn data(&mut self, data: &[u8]) -> Result<(), StreamError> {
        if data.len() > MAX_CHUNK_BYTES {
            return Err(StreamError::ChunkTooLarge(data.len()));
        }
        let got = self.got_bytes.saturating_add(data.len() as u64);
        if got > self.expected_bytes {
            return Err(StreamError::TooLong {
                expected_bytes: self.expected_bytes,
            });
        }
        self.got_bytes = got;
        self.hasher.update(data);
        Ok(())
    }

    /// Checks the `End` chunk: its figures, what arrived and what was announced must
    /// all agree. Returns the digest.
    pub fn end(self, total_bytes: u64, sha256: Sha256Digest) -> Result<Sha256Digest, StreamError> {
        let got = Sha256Digest(self.hasher.finalize().into());
        if got != self.expected
            || sha256 != self.expected
            || self.got_bytes != self.expected_bytes
            || total_bytes != self.expected_bytes
        {
            return Err(StreamError::Mismatch {
                got_bytes: self.got_bytes,
                got,
                expected_bytes: self.expected_bytes,
                expected: self.expected,
            });
        }
        Ok(got)
    }
}
