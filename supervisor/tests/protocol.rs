//! The management server against a mock service, driven by the real client library
//! (`petrelctl::client`) and by hand-made frames: the hello, several commands per
//! connection, uploads and downloads with their digests, cancel, every kind of bad
//! frame (each answered, and the daemon keeps serving others), limits and timeouts,
//! the socket file, and mutual TLS with its refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use petrel_proto::tls::ca::{self, Credentials, Kind, Validity};
use petrel_proto::tls::{self, CertificateDer, ServerCheck, rustls};
use petrel_proto::{
    BlockCommand, Chunk, Command, ConsoleHistory, Error, ErrorKind, FullName, Hello, LogBoot,
    MAX_CHUNK_BYTES, Message, Policy, PolicyCommand, PolicyEntry, Reply, ReplyBody, Request,
    RequestId, Sha256Digest, Stream, encode_frame,
};
use petrelctl::client::{Client, ClientError, Endpoint};
use petreld::api::{Caller, Outcome, Pull, Service, Sink, Source};
use petreld::server::{Server, ServerConfig, ServerError, TlsListen};

const TIMEOUT: Duration = Duration::from_secs(10);
const DEVICE: &str = "box1.petrel.test";

// ---------------------------------------------------------------------------------
// The mock service.

/// Answers from memory: block devices are byte vectors, a console follow ticks
/// forever, logs fail half-way. Records every caller.
#[derive(Default)]
struct Mock {
    callers: Mutex<Vec<Caller>>,
    blocks: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Sources dropped (a cancelled follow must be dropped).
    dropped: Arc<AtomicUsize>,
    /// Sinks aborted.
    aborted: Arc<AtomicUsize>,
}

struct MemSink {
    key: String,
    expected: (u64, Sha256Digest),
    data: Vec<u8>,
    blocks: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    aborted: Arc<AtomicUsize>,
    /// Fail the write after this many bytes.
    fail_after: Option<usize>,
}

impl Sink for MemSink {
    fn expected(&self) -> (u64, Sha256Digest) {
        self.expected
    }
    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self
            .fail_after
            .is_some_and(|n| self.data.len() + data.len() > n)
        {
            return Err(Error::new(ErrorKind::Internal, "disk full"));
        }
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> ReplyBody {
        self.blocks.lock().unwrap().insert(self.key, self.data);
        ReplyBody::Ok
    }
    fn abort(self: Box<Self>) {
        self.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

/// Hands out `data` in pieces of `piece` bytes (larger than a chunk: the server
/// must cut them), then fails if `fail` is set.
struct VecSource {
    data: Vec<u8>,
    at: usize,
    piece: usize,
    fail: Option<Error>,
    dropped: Arc<AtomicUsize>,
}

impl Source for VecSource {
    fn next(&mut self, _wait: Duration) -> Pull {
        if self.at < self.data.len() {
            let end = (self.at + self.piece).min(self.data.len());
            let piece = self.data[self.at..end].to_vec();
            self.at = end;
            return Pull::Data(piece);
        }
        match self.fail.take() {
            Some(e) => Pull::Failed(e),
            None => Pull::End,
        }
    }
}

impl Drop for VecSource {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A live console: a line every 20 ms, idle in between, forever.
struct Ticker {
    n: u64,
    next_at: Instant,
    dropped: Arc<AtomicUsize>,
}

impl Source for Ticker {
    fn next(&mut self, wait: Duration) -> Pull {
        let now = Instant::now();
        if now < self.next_at {
            thread::sleep((self.next_at - now).min(wait));
            if Instant::now() < self.next_at {
                return Pull::Idle;
            }
        }
        self.next_at += Duration::from_millis(20);
        self.n += 1;
        Pull::Data(format!("line {}\n", self.n).into_bytes())
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Service for Mock {
    fn call(&self, caller: &Caller, command: Command) -> Outcome {
        self.callers.lock().unwrap().push(caller.clone());
        let error =
            |kind, message: String| Outcome::Reply(ReplyBody::Error(Error::new(kind, message)));
        match command {
            Command::Info { name: None } => Outcome::Reply(ReplyBody::Info(Vec::new())),
            Command::Info { name: Some(name) } => error(ErrorKind::NotFound, name.to_string()),
            Command::Reboot => Outcome::Reply(ReplyBody::Ok),
            Command::Block(BlockCommand::Upload {
                name,
                size_bytes,
                sha256,
            }) => Outcome::Receive(Box::new(MemSink {
                fail_after: (name.name.as_str() == "full").then_some(100_000),
                key: name.to_string(),
                expected: (size_bytes, sha256),
                data: Vec::new(),
                blocks: self.blocks.clone(),
                aborted: self.aborted.clone(),
            })),
            Command::Block(BlockCommand::Download { name }) => {
                match self.blocks.lock().unwrap().get(&name.to_string()) {
                    Some(data) => Outcome::Send(Box::new(VecSource {
                        data: data.clone(),
                        at: 0,
                        piece: 100_000,
                        fail: None,
                        dropped: self.dropped.clone(),
                    })),
                    None => error(ErrorKind::NotFound, name.to_string()),
                }
            }
            Command::Console { follow: true, .. } => Outcome::Send(Box::new(Ticker {
                n: 0,
                next_at: Instant::now(),
                dropped: self.dropped.clone(),
            })),
            Command::Console { .. } => Outcome::Send(Box::new(VecSource {
                data: b"one\ntwo\n".to_vec(),
                at: 0,
                piece: 4,
                fail: None,
                dropped: self.dropped.clone(),
            })),
            Command::Logs { .. } => Outcome::Send(Box::new(VecSource {
                data: vec![b'x'; 1000],
                at: 0,
                piece: 1000,
                fail: Some(Error::new(ErrorKind::Internal, "log file vanished")),
                dropped: self.dropped.clone(),
            })),
            // A reply too large for a frame.
            Command::Policy(PolicyCommand::List { .. }) => {
                Outcome::Reply(ReplyBody::Policies(vec![PolicyEntry {
                    identity: "ops".parse().unwrap(),
                    policy: Policy {
                        max_unikernels: 1,
                        memory_mib: 1,
                        block_bytes: 1,
                        bridges: vec![String::from("b"); 600_000],
                        cpus: Vec::new(),
                    },
                }]))
            }
            _ => error(ErrorKind::Unsupported, String::from("not in the mock")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Helpers.

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "petrel-proto-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server on a fresh Unix socket.
struct Fixture {
    server: Option<Server>,
    mock: Arc<Mock>,
    socket: PathBuf,
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        Self::with(tag, |_| {})
    }

    fn with(tag: &str, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = temp_dir(tag);
        let socket = dir.join("petreld.sock");
        let mut config = ServerConfig {
            unix: Some(socket.clone()),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let mock = Arc::new(Mock::default());
        let server = Server::start(config, mock.clone()).unwrap();
        Self {
            server: Some(server),
            mock,
            socket,
            dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&Endpoint::Unix(self.socket.clone()), TIMEOUT).unwrap()
    }

    fn raw(&self) -> Raw {
        Raw::connect(&self.socket)
    }

    /// A fresh client still gets served.
    fn still_serving(&self) {
        let mut client = self.client();
        assert_eq!(
            client.call(Command::Info { name: None }).unwrap(),
            ReplyBody::Info(Vec::new())
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A hand-driven connection: frames in, messages out.
struct Raw {
    stream: UnixStream,
}

impl Raw {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Self { stream }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn send(&mut self, message: &Message) {
        self.send_bytes(&message.to_frame().unwrap());
    }

    fn request(&mut self, id: u32, command: Command) {
        self.send(&Message::Request(Request {
            id: RequestId(id),
            command,
        }));
    }

    /// The next message, or `None` at end of stream.
    fn recv(&mut self) -> Option<Message> {
        petrel_proto::read_frame(&mut self.stream)
            .unwrap()
            .map(|payload| Message::decode(&payload).unwrap())
    }

    fn hello(&mut self) {
        self.send(&Message::Hello(Hello::new("raw test")));
        assert!(matches!(self.recv(), Some(Message::Hello(_))));
    }

    fn expect_reply(&mut self, id: u32) -> ReplyBody {
        match self.recv() {
            Some(Message::Reply(Reply { id: got, body })) if got == RequestId(id) => body,
            other => panic!("expected reply {id}, got {other:?}"),
        }
    }

    /// An error reply on id 0 of `kind`, then the connection closes.
    fn expect_refusal(&mut self, kind: ErrorKind) -> String {
        let message = match self.recv() {
            Some(Message::Reply(Reply {
                id: RequestId(0),
                body: ReplyBody::Error(e),
            })) if e.kind == kind => e.message,
            other => panic!("expected a {kind:?} refusal, got {other:?}"),
        };
        assert_eq!(self.recv(), None, "the connection closes after a refusal");
        message
    }
}

/// Deterministic test data (xorshift, fixed seed).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn name(s: &str) -> FullName {
    s.parse().unwrap()
}

fn upload(name_: &str, bytes: &[u8]) -> Command {
    Command::Block(BlockCommand::Upload {
        name: name(name_),
        size_bytes: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
    })
}

fn download(name_: &str) -> Command {
    Command::Block(BlockCommand::Download { name: name(name_) })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// The exchange.

/// The bytes on the wire for a hello and an `info`, pinned.
#[test]
fn golden_exchange() {
    let fx = Fixture::new("golden");
    let mut raw = fx.raw();
    // Hello { version 1, min_version 1, agent "t" }.
    raw.send_bytes(&[0, 0, 0, 5, 0, 1, 1, 1, b't']);
    let mut header = [0u8; 4];
    raw.stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    raw.stream.read_exact(&mut payload).unwrap();
    let agent = concat!("petreld ", env!("CARGO_PKG_VERSION"));
    let mut expected = vec![0, 1, 1, u8::try_from(agent.len()).unwrap()];
    expected.extend_from_slice(agent.as_bytes());
    assert_eq!(payload, expected);
    // Request { id 1, Info { name: None } } -> Reply { id 1, Info([]) }.
    raw.send_bytes(&[0, 0, 0, 4, 1, 1, 0, 0]);
    let mut reply = [0u8; 8];
    raw.stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0, 0, 0, 4, 2, 1, 4, 0]);
}

#[test]
fn several_commands_per_connection() {
    let fx = Fixture::new("several");
    let mut client = fx.client();
    assert_eq!(client.version(), petrel_proto::PROTOCOL_VERSION);
    assert!(client.server_agent().starts_with("petreld "));
    for _ in 0..3 {
        assert_eq!(
            client.call(Command::Info { name: None }).unwrap(),
            ReplyBody::Info(Vec::new())
        );
        assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    }
    // An error reply is an error, and the connection goes on.
    match client.call(Command::Info {
        name: Some(name("ops:web")),
    }) {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::NotFound);
            assert_eq!(e.message, "ops:web");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    // A request over the frame cap is not sent; the connection goes on.
    let huge = Command::TrustRotate {
        anchor_der: vec![0; 2 << 20],
    };
    assert!(matches!(client.call(huge), Err(ClientError::Encode(_))));
    // A reply over the frame cap becomes an error reply; the connection goes on.
    match client.call(Command::Policy(PolicyCommand::List { identity: None })) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::Internal),
        other => panic!("{other:?}"),
    }
    let callers = fx.mock.callers.lock().unwrap().clone();
    assert_eq!(callers.len(), 9);
    assert!(callers.iter().all(|c| *c == Caller::Local));
    // Streaming commands are refused by `call` before anything is sent.
    assert!(matches!(
        client.call(download("ops:disk")),
        Err(ClientError::Usage(_))
    ));
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn upload_then_download_with_digests() {
    let fx = Fixture::new("updown");
    let mut client = fx.client();
    // Several chunks and a ragged end; the source hands out pieces bigger than a chunk.
    let bytes = data(3 * MAX_CHUNK_BYTES + 12_345, 7);
    let mut seen = Vec::new();
    let reply = client
        .upload(upload("ops:disk", &bytes), &mut &bytes[..], &mut |n| {
            seen.push(n)
        })
        .unwrap();
    assert_eq!(reply, ReplyBody::Ok);
    assert_eq!(seen.last(), Some(&(bytes.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(fx.mock.blocks.lock().unwrap()["ops:disk"], bytes);

    let mut out = Vec::new();
    let mut seen = Vec::new();
    let n = client
        .download(download("ops:disk"), &mut out, &mut |n| seen.push(n))
        .unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(out, bytes);
    assert_eq!(seen.last(), Some(&n));

    // Empty data works too.
    assert_eq!(
        client
            .upload(upload("ops:empty", b""), &mut &b""[..], &mut |_| {})
            .unwrap(),
        ReplyBody::Ok
    );
    let mut out = Vec::new();
    assert_eq!(
        client
            .download(download("ops:empty"), &mut out, &mut |_| {})
            .unwrap(),
        0
    );
    // A missing one is an error reply, not a stream.
    assert!(matches!(
        client.download(download("ops:nope"), &mut Vec::new(), &mut |_| {}),
        Err(ClientError::Remote(Error {
            kind: ErrorKind::NotFound,
            ..
        }))
    ));
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn upload_not_matching_its_announcement() {
    let fx = Fixture::new("upbad");
    let mut client = fx.client();
    let bytes = data(100_000, 3);
    // Longer than announced: the client stops, aborts, and says so.
    let short = upload("ops:a", &bytes[..1000]);
    assert!(matches!(
        client.upload(short, &mut &bytes[..], &mut |_| {}),
        Err(ClientError::Input { .. })
    ));
    // Other bytes than announced.
    let mut other = bytes.clone();
    other[5] ^= 1;
    assert!(matches!(
        client.upload(upload("ops:a", &bytes), &mut &other[..], &mut |_| {}),
        Err(ClientError::Input { got: Some(_), .. })
    ));
    // A reader that fails.
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        client.upload(upload("ops:a", &bytes), &mut Failing, &mut |_| {}),
        Err(ClientError::Read(_))
    ));
    assert!(!fx.mock.blocks.lock().unwrap().contains_key("ops:a"));
    assert_eq!(fx.mock.aborted.load(Ordering::SeqCst), 3);
    // The connection is still in step.
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn server_checks_the_stream_itself() {
    let fx = Fixture::new("srvcheck");
    let mut raw = fx.raw();
    raw.hello();
    let bytes = data(5000, 9);

    // The End disagrees with the data: DigestMismatch, nothing stored.
    raw.request(1, upload("ops:b", &bytes));
    assert_eq!(raw.expect_reply(1), ReplyBody::Proceed);
    let mut tampered = bytes.clone();
    tampered[0] ^= 0xff;
    for chunk in petrel_proto::stream_chunks(RequestId(1), &tampered) {
        raw.send(&Message::Stream(chunk));
    }
    match raw.expect_reply(1) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::DigestMismatch),
        other => panic!("{other:?}"),
    }

    // More data than announced: refused at once, the rest drained, one reply only.
    raw.request(2, upload("ops:b", &bytes[..100]));
    assert_eq!(raw.expect_reply(2), ReplyBody::Proceed);
    for chunk in petrel_proto::stream_chunks(RequestId(2), &bytes) {
        raw.send(&Message::Stream(chunk));
    }
    match raw.expect_reply(2) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::DigestMismatch),
        other => panic!("{other:?}"),
    }

    // The client gives up: an error reply.
    raw.request(3, upload("ops:b", &bytes));
    assert_eq!(raw.expect_reply(3), ReplyBody::Proceed);
    raw.send(&Message::Stream(Stream {
        id: RequestId(3),
        chunk: Chunk::Abort(Error::new(ErrorKind::Other, "changed my mind")),
    }));
    assert!(matches!(raw.expect_reply(3), ReplyBody::Error(_)));

    // A request in the middle of an upload is answered Busy; the upload goes on.
    raw.request(4, upload("ops:b", &bytes));
    assert_eq!(raw.expect_reply(4), ReplyBody::Proceed);
    raw.request(5, Command::Reboot);
    match raw.expect_reply(5) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::Busy),
        other => panic!("{other:?}"),
    }
    for chunk in petrel_proto::stream_chunks(RequestId(4), &bytes) {
        raw.send(&Message::Stream(chunk));
    }
    assert_eq!(raw.expect_reply(4), ReplyBody::Ok);
    assert_eq!(fx.mock.blocks.lock().unwrap()["ops:b"], bytes);
    assert_eq!(fx.mock.aborted.load(Ordering::SeqCst), 3);

    // Cancel with nothing running; request id 0.
    raw.request(6, Command::Cancel { id: RequestId(4) });
    assert!(matches!(
        raw.expect_reply(6),
        ReplyBody::Error(Error {
            kind: ErrorKind::NotFound,
            ..
        })
    ));
    raw.request(0, Command::Reboot);
    assert!(matches!(
        raw.expect_reply(0),
        ReplyBody::Error(Error {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));
    raw.request(7, Command::Reboot);
    assert_eq!(raw.expect_reply(7), ReplyBody::Ok);
}

#[test]
fn sink_failure_is_replied_at_once() {
    let fx = Fixture::new("sinkfail");
    let mut client = fx.client();
    let bytes = data(4 << 20, 5);
    let mut sent = 0;
    match client.upload(upload("ops:full", &bytes), &mut &bytes[..], &mut |n| {
        sent = n
    }) {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Internal);
            assert_eq!(e.message, "disk full");
        }
        other => panic!("{other:?}"),
    }
    // The client noticed the early reply and stopped sending.
    assert!(sent < bytes.len() as u64, "sent all {sent} bytes");
    assert_eq!(fx.mock.aborted.load(Ordering::SeqCst), 1);
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn downloads_end_abort_and_cancel() {
    let fx = Fixture::new("streams");
    let mut client = fx.client();
    // A finite console.
    let mut out = Vec::new();
    let console = Command::Console {
        name: name("ops:web"),
        history: ConsoleHistory::All,
        follow: false,
    };
    client.download(console, &mut out, &mut |_| {}).unwrap();
    assert_eq!(out, b"one\ntwo\n");
    // A source that fails: Abort, reported as the daemon's error.
    let logs = Command::Logs {
        boot: LogBoot::Current,
        lines: 0,
    };
    match client.download(logs, &mut Vec::new(), &mut |_| {}) {
        Err(ClientError::Remote(e)) => assert_eq!(e.message, "log file vanished"),
        other => panic!("{other:?}"),
    }
    // A follow, stopped by the output: the client cancels, the source is dropped.
    struct Until(Vec<u8>);
    impl Write for Until {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0.len() > 40 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "enough"));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let dropped_before = fx.mock.dropped.load(Ordering::SeqCst);
    let follow = Command::Console {
        name: name("ops:web"),
        history: ConsoleHistory::None,
        follow: true,
    };
    let mut out = Until(Vec::new());
    assert!(matches!(
        client.download(follow, &mut out, &mut |_| {}),
        Err(ClientError::Write(_))
    ));
    assert!(
        String::from_utf8(out.0)
            .unwrap()
            .starts_with("line 1\nline 2\n")
    );
    wait_until("the follow's source to be dropped", || {
        fx.mock.dropped.load(Ordering::SeqCst) > dropped_before
    });
    // Still in step.
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn requests_during_a_download_and_cancel_by_hand() {
    let fx = Fixture::new("cancel");
    let mut raw = fx.raw();
    raw.hello();
    raw.request(
        1,
        Command::Console {
            name: name("ops:web"),
            history: ConsoleHistory::None,
            follow: true,
        },
    );
    assert_eq!(raw.expect_reply(1), ReplyBody::Proceed);
    raw.request(2, Command::Reboot);
    raw.request(3, Command::Cancel { id: RequestId(9) });
    let mut busy = false;
    let mut not_found = false;
    let mut got = Vec::new();
    while !(busy && not_found) {
        match raw.recv().unwrap() {
            Message::Stream(Stream {
                id: RequestId(1),
                chunk: Chunk::Data(d),
            }) => got.extend(d),
            Message::Reply(Reply {
                id: RequestId(2),
                body: ReplyBody::Error(e),
            }) if e.kind == ErrorKind::Busy => busy = true,
            Message::Reply(Reply {
                id: RequestId(3),
                body: ReplyBody::Error(e),
            }) if e.kind == ErrorKind::NotFound => not_found = true,
            other => panic!("{other:?}"),
        }
    }
    raw.request(4, Command::Cancel { id: RequestId(1) });
    // Data until the End, whose figures cover all the data sent; then the cancel's Ok.
    loop {
        match raw.recv().unwrap() {
            Message::Stream(Stream {
                id: RequestId(1),
                chunk: Chunk::Data(d),
            }) => got.extend(d),
            Message::Stream(Stream {
                id: RequestId(1),
                chunk:
                    Chunk::End {
                        total_bytes,
                        sha256,
                    },
            }) => {
                assert_eq!(total_bytes, got.len() as u64);
                assert_eq!(sha256, Sha256Digest::of(&got));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(raw.expect_reply(4), ReplyBody::Ok);
    raw.request(5, Command::Reboot);
    assert_eq!(raw.expect_reply(5), ReplyBody::Ok);
}

// ---------------------------------------------------------------------------------
// Bad frames: answered on id 0, connection closed, others still served.

#[test]
fn oversized_frame() {
    let fx = Fixture::new("oversized");
    let mut raw = fx.raw();
    raw.hello();
    raw.send_bytes(&[0x00, 0x10, 0x00, 0x01]); // 1 MiB + 1
    let why = raw.expect_refusal(ErrorKind::Malformed);
    assert!(why.contains("exceeds"), "{why}");
    fx.still_serving();
}

#[test]
fn empty_frame() {
    let fx = Fixture::new("empty");
    let mut raw = fx.raw();
    raw.hello();
    raw.send_bytes(&[0, 0, 0, 0]);
    raw.expect_refusal(ErrorKind::Malformed);
    fx.still_serving();
}

#[test]
fn truncated_frame() {
    let fx = Fixture::new("truncated");
    let mut raw = fx.raw();
    raw.hello();
    raw.send_bytes(&[0, 0, 0, 10, 1, 2]);
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let why = raw.expect_refusal(ErrorKind::Malformed);
    assert!(why.contains("ended inside a frame"), "{why}");
    fx.still_serving();
}

#[test]
fn garbage_payload() {
    let fx = Fixture::new("garbage");
    let mut raw = fx.raw();
    raw.hello();
    raw.send_bytes(&encode_frame(&[9, 9, 9]).unwrap());
    raw.expect_refusal(ErrorKind::Malformed);
    // Garbage before the hello, too.
    let mut raw = fx.raw();
    raw.send_bytes(&encode_frame(&[0xff; 40]).unwrap());
    raw.expect_refusal(ErrorKind::Malformed);
    fx.still_serving();
}

#[test]
fn unknown_command_from_a_newer_client() {
    let fx = Fixture::new("newer");
    let mut raw = fx.raw();
    raw.hello();
    // Message::Request, id 42, command variant 120 (not yet invented).
    raw.send_bytes(&encode_frame(&[1, 42, 120, 0, 0]).unwrap());
    match raw.expect_reply(42) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::Unsupported),
        other => panic!("{other:?}"),
    }
    // The connection goes on.
    raw.request(43, Command::Reboot);
    assert_eq!(raw.expect_reply(43), ReplyBody::Ok);
}

#[test]
fn unknown_version_and_missing_hello() {
    let fx = Fixture::new("version");
    let mut raw = fx.raw();
    raw.send(&Message::Hello(Hello {
        version: 900,
        min_version: 800,
        agent: "from the future".into(),
    }));
    let why = raw.expect_refusal(ErrorKind::VersionMismatch);
    assert!(why.contains("800..=900"), "{why}");

    let mut raw = fx.raw();
    raw.request(1, Command::Reboot);
    raw.expect_refusal(ErrorKind::Malformed);

    // A second hello, a reply or a stream chunk from the client: out of turn.
    for message in [
        Message::Hello(Hello::new("again")),
        Message::Reply(Reply {
            id: RequestId(1),
            body: ReplyBody::Ok,
        }),
        Message::Stream(Stream {
            id: RequestId(1),
            chunk: Chunk::Data(vec![1]),
        }),
    ] {
        let mut raw = fx.raw();
        raw.hello();
        raw.send(&message);
        raw.expect_refusal(ErrorKind::Malformed);
    }
    // The client library reports the version refusal as the daemon's error.
    fx.still_serving();
}

#[test]
fn second_client_served_while_the_first_misbehaves() {
    let fx = Fixture::new("concurrent");
    // One stalls inside a frame, one never says hello, one floods a bad length.
    let mut stalled = fx.raw();
    stalled.hello();
    stalled.send_bytes(&[0, 0, 0, 50, 1, 1]);
    let _silent = fx.raw();
    let mut upload_stalled = fx.raw();
    upload_stalled.hello();
    let bytes = data(1000, 1);
    upload_stalled.request(1, upload("ops:slow", &bytes));
    assert_eq!(upload_stalled.expect_reply(1), ReplyBody::Proceed);

    let started = Instant::now();
    let mut clients: Vec<Client> = (0..4).map(|_| fx.client()).collect();
    for client in &mut clients {
        assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fx.server.as_ref().unwrap().connections(), 7);
}

#[test]
fn idle_connections_are_closed() {
    let fx = Fixture::with("idle", |c| c.idle_timeout = Duration::from_millis(300));
    let mut raw = fx.raw();
    raw.hello();
    raw.request(1, Command::Reboot);
    assert_eq!(raw.expect_reply(1), ReplyBody::Ok);
    let started = Instant::now();
    assert_eq!(raw.recv(), None);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A partial frame does not keep it open either.
    let mut raw = fx.raw();
    raw.hello();
    raw.send_bytes(&[0, 0]);
    assert_eq!(raw.recv(), None);
    wait_until("the connections to end", || {
        fx.server.as_ref().unwrap().connections() == 0
    });
}

#[test]
fn connection_limit() {
    let fx = Fixture::with("limit", |c| c.max_connections = 2);
    let mut a = fx.raw();
    a.hello();
    let mut b = fx.raw();
    b.hello();
    let mut c = fx.raw();
    c.expect_refusal(ErrorKind::Busy);
    drop(a);
    wait_until("a slot to free", || {
        fx.server.as_ref().unwrap().connections() < 2
    });
    fx.still_serving();
    b.request(1, Command::Reboot);
    assert_eq!(b.expect_reply(1), ReplyBody::Ok);
}

/// Seeded random junk on many connections: every connection ends (the server
/// replies or closes, never hangs), everything it sends is a well-formed message, and
/// it keeps serving. In release builds a panic would abort the whole test binary.
#[test]
fn random_junk_never_hurts() {
    let fx = Fixture::new("junk");
    let seed = 0x5eed_u64;
    eprintln!("seed {seed:#x}");
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let hello = Message::Hello(Hello::new("junk")).to_frame().unwrap();
    let valid = [
        Command::Reboot,
        Command::Info { name: None },
        upload("ops:j", b"abc"),
        download("ops:j"),
        Command::Console {
            name: name("ops:web"),
            history: ConsoleHistory::Lines(3),
            follow: true,
        },
    ]
    .map(|command| {
        Message::Request(Request {
            id: RequestId(7),
            command,
        })
        .to_frame()
        .unwrap()
    });
    for round in 0..300 {
        let mut bytes = Vec::new();
        let kind = next() % 4;
        if kind > 0 {
            bytes.extend_from_slice(&hello);
        }
        let junk_len = usize::try_from(next() % 64).unwrap();
        match kind {
            // Raw junk, with or without a hello.
            0 | 1 => bytes.extend((0..junk_len).map(|_| next().to_le_bytes()[0])),
            // Well-framed junk.
            2 => {
                let payload: Vec<u8> = (0..=junk_len).map(|_| next().to_le_bytes()[0]).collect();
                bytes.extend(encode_frame(&payload).unwrap());
            }
            // A valid request with one byte flipped.
            _ => {
                let mut frame = valid[usize::try_from(next() % 5).unwrap()].clone();
                let at = 4 + usize::try_from(next()).unwrap() % (frame.len() - 4);
                frame[at] ^= 1 << (next() % 8);
                bytes.extend(frame);
            }
        }
        let mut raw = fx.raw();
        raw.send_bytes(&bytes);
        raw.stream.shutdown(Shutdown::Write).unwrap();
        loop {
            match petrel_proto::read_frame(&mut raw.stream) {
                Ok(Some(payload)) => {
                    Message::decode(&payload)
                        .unwrap_or_else(|e| panic!("round {round}: the server sent junk: {e}"));
                }
                Ok(None) => break,
                Err(petrel_proto::FrameIoError::Io(e))
                    if e.kind() == io::ErrorKind::ConnectionReset =>
                {
                    break;
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
    fx.still_serving();
    wait_until("every connection to end", || {
        fx.server.as_ref().unwrap().connections() == 0
    });
}

// ---------------------------------------------------------------------------------
// The socket file and shutdown.

#[test]
fn socket_file_mode_stale_and_live() {
    let dir = temp_dir("sockfile");
    let path = dir.join("petreld.sock");
    // A stale socket (its listener gone) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let mock: Arc<dyn Service> = Arc::new(Mock::default());
    let config = ServerConfig {
        unix: Some(path.clone()),
        ..ServerConfig::default()
    };
    let server = Server::start(config.clone(), mock.clone()).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A live one is not.
    assert!(matches!(
        Server::start(config.clone(), mock.clone()),
        Err(ServerError::SocketInUse { .. })
    ));
    // Shutdown removes it.
    server.shutdown();
    assert!(!path.exists());
    // Something else at the path is left alone.
    std::fs::write(&path, b"not a socket").unwrap();
    assert!(matches!(
        Server::start(config, mock.clone()),
        Err(ServerError::NotASocket { .. })
    ));
    assert!(matches!(
        Server::start(ServerConfig::default(), mock),
        Err(ServerError::NoListener)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shutdown_ends_a_follow() {
    let mut fx = Fixture::new("shutdown");
    let socket = fx.socket.clone();
    let follower = thread::spawn(move || {
        let mut client = Client::connect(&Endpoint::Unix(socket), TIMEOUT).unwrap();
        let follow = Command::Console {
            name: name("ops:web"),
            history: ConsoleHistory::None,
            follow: true,
        };
        client.download(follow, &mut io::sink(), &mut |_| {})
    });
    wait_until("the follow to run", || {
        fx.mock.callers.lock().unwrap().len() == 1
    });
    let started = Instant::now();
    fx.server.take().unwrap().shutdown();
    assert!(started.elapsed() < Duration::from_secs(4));
    match follower.join().unwrap() {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::Internal),
        other => panic!("{other:?}"),
    }
    assert!(Client::connect(&Endpoint::Unix(fx.socket.clone()), TIMEOUT).is_err());
}

// ---------------------------------------------------------------------------------
// Mutual TLS.

fn now_unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// An operator CA, a device certificate, and a server with TLS on 127.0.0.1:0.
struct TlsWorld {
    root: Credentials,
    anchors: Vec<CertificateDer<'static>>,
    device: Credentials,
    addr: SocketAddr,
    mock: Arc<Mock>,
    server: Option<Server>,
}

impl TlsWorld {
    fn new() -> Self {
        Self::with_limit(ServerConfig::default().max_connections)
    }

    fn with_limit(max_connections: usize) -> Self {
        let validity = Validity::standard();
        let root = ca::init("Petrel test CA", &validity).unwrap();
        let anchors = tls::certs_from_pem(ca::anchor_pem(&root).unwrap().as_bytes()).unwrap();
        let device = ca::issue(
            &root,
            "box1",
            Kind::Device {
                hostname: DEVICE.to_owned(),
            },
            &validity,
        )
        .unwrap();
        let config = tls::server_config(
            &anchors,
            device.certificates().unwrap(),
            device.key().unwrap(),
        )
        .unwrap();
        let mock = Arc::new(Mock::default());
        let server = Server::start(
            ServerConfig {
                tls: Some(TlsListen {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    config,
                    anchors: anchors.clone(),
                }),
                max_connections,
                ..ServerConfig::default()
            },
            mock.clone(),
        )
        .unwrap();
        Self {
            root,
            anchors,
            device,
            addr: server.tcp_addr().unwrap(),
            mock,
            server: Some(server),
        }
    }

    fn issue(&self, issuer: &Credentials, name: &str, kind: Kind) -> Credentials {
        ca::issue(issuer, name, kind, &Validity::standard()).unwrap()
    }

    fn endpoint_with(&self, check: ServerCheck, credentials: &Credentials) -> Endpoint {
        let (config, server_name) = tls::client_config(
            check,
            credentials.certificates().unwrap(),
            credentials.key().unwrap(),
        )
        .unwrap();
        Endpoint::Tls {
            addr: self.addr.to_string(),
            config,
            server_name,
        }
    }

    fn endpoint(&self, credentials: &Credentials) -> Endpoint {
        self.endpoint_with(
            ServerCheck::Anchor {
                anchors: self.anchors.clone(),
                name: DEVICE.to_owned(),
            },
            credentials,
        )
    }

    fn last_caller(&self) -> Caller {
        self.mock.callers.lock().unwrap().last().cloned().unwrap()
    }

    /// After a refusal, a good client still gets served.
    fn still_serving(&self) {
        let ops = self.issue(&self.root, "ops", Kind::Client);
        let mut client = Client::connect(&self.endpoint(&ops), TIMEOUT).unwrap();
        assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    }
}

impl Drop for TlsWorld {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

fn remote(identity: &str) -> Caller {
    Caller::Remote(identity.parse().unwrap())
}

#[test]
fn tls_identities_and_streams() {
    let world = TlsWorld::new();
    let ops = world.issue(&world.root, "ops", Kind::Client);
    let mut client = Client::connect(&world.endpoint(&ops), TIMEOUT).unwrap();
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    assert_eq!(world.last_caller(), remote("ops"));

    // Uploads and downloads over TLS.
    let bytes = data(2 * MAX_CHUNK_BYTES + 99, 11);
    client
        .upload(upload("ops:disk", &bytes), &mut &bytes[..], &mut |_| {})
        .unwrap();
    let mut out = Vec::new();
    client
        .download(download("ops:disk"), &mut out, &mut |_| {})
        .unwrap();
    assert_eq!(out, bytes);

    // A sink failing part-way: the client notices the early reply over TLS too.
    let big = data(4 << 20, 13);
    let mut sent = 0;
    assert!(matches!(
        client.upload(upload("ops:full", &big), &mut &big[..], &mut |n| sent = n),
        Err(ClientError::Remote(Error {
            kind: ErrorKind::Internal,
            ..
        }))
    ));
    assert!(sent < big.len() as u64, "sent all {sent} bytes");
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);

    // A follow cancelled over TLS (the cancel is read between chunks).
    let follow = Command::Console {
        name: name("ops:web"),
        history: ConsoleHistory::None,
        follow: true,
    };
    struct Three(usize);
    impl Write for Three {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += 1;
            if self.0 > 3 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "enough"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(
        client.download(follow, &mut Three(0), &mut |_| {}),
        Err(ClientError::Write(_))
    ));
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);

    // An identity below a sub-CA.
    let sub = world.issue(&world.root, "ops", Kind::SubCa);
    let alice = world.issue(&sub, "alice", Kind::Client);
    let mut client = Client::connect(&world.endpoint(&alice), TIMEOUT).unwrap();
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    assert_eq!(world.last_caller(), remote("ops/alice"));

    // A pinned device certificate.
    let pin = world.device.fingerprint().unwrap();
    let mut client =
        Client::connect(&world.endpoint_with(ServerCheck::Pin(pin), &ops), TIMEOUT).unwrap();
    assert_eq!(client.call(Command::Reboot).unwrap(), ReplyBody::Ok);
}

#[test]
fn tls_without_client_certificate_is_refused() {
    let world = TlsWorld::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(world.anchors[0].clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let endpoint = Endpoint::Tls {
        addr: world.addr.to_string(),
        config: Arc::new(config),
        server_name: DEVICE.try_into().unwrap(),
    };
    let refused = Client::connect(&endpoint, TIMEOUT).err().unwrap();
    assert!(refused.is_connect(), "{refused:?}");
    assert!(world.mock.callers.lock().unwrap().is_empty());
    world.still_serving();
}

#[test]
fn tls_client_from_another_ca_is_refused() {
    let world = TlsWorld::new();
    let other = ca::init("Other CA", &Validity::standard()).unwrap();
    let mallory = world.issue(&other, "ops", Kind::Client);
    let refused = Client::connect(&world.endpoint(&mallory), TIMEOUT)
        .err()
        .unwrap();
    assert!(refused.is_connect(), "{refused:?}");
    assert!(world.mock.callers.lock().unwrap().is_empty());
    world.still_serving();
}

#[test]
fn tls_expired_client_is_refused() {
    let world = TlsWorld::new();
    let now = now_unix();
    let past = Validity {
        not_before_unix: now - 10 * 86_400,
        not_after_unix: now - 86_400,
    };
    let old = ca::issue(&world.root, "ops", Kind::Client, &past).unwrap();
    let refused = Client::connect(&world.endpoint(&old), TIMEOUT)
        .err()
        .unwrap();
    assert!(refused.is_connect(), "{refused:?}");
    assert!(world.mock.callers.lock().unwrap().is_empty());
    world.still_serving();
}

#[test]
fn tls_client_refuses_the_wrong_device() {
    let world = TlsWorld::new();
    let ops = world.issue(&world.root, "ops", Kind::Client);
    let wrong_name = world.endpoint_with(
        ServerCheck::Anchor {
            anchors: world.anchors.clone(),
            name: "box2.petrel.test".into(),
        },
        &ops,
    );
    assert!(matches!(
        Client::connect(&wrong_name, TIMEOUT),
        Err(ClientError::Tls(_))
    ));
    let wrong_pin = world.endpoint_with(ServerCheck::Pin(Sha256Digest([7; 32])), &ops);
    assert!(matches!(
        Client::connect(&wrong_pin, TIMEOUT),
        Err(ClientError::Tls(_))
    ));
    world.still_serving();
}

#[test]
fn tls_garbage_and_silence() {
    let world = TlsWorld::new();
    // Not TLS at all.
    let mut plain = std::net::TcpStream::connect(world.addr).unwrap();
    plain.set_read_timeout(Some(TIMEOUT)).unwrap();
    plain.write_all(&[0, 0, 0, 5, 0, 1, 1, 1, b't']).unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    // A silent TCP connection does not stop others.
    let _silent = std::net::TcpStream::connect(world.addr).unwrap();
    world.still_serving();
    // Nothing to connect to.
    let ops = world.issue(&world.root, "ops", Kind::Client);
    let mut endpoint = world.endpoint(&ops);
    if let Endpoint::Tls { addr, .. } = &mut endpoint {
        *addr = String::from("127.0.0.1:1");
    }
    assert!(matches!(
        Client::connect(&endpoint, TIMEOUT),
        Err(ClientError::Connect { .. })
    ));
}

/// Request latency over loopback TLS with a trivial service: the server's own share
/// of the `info` p99 target (10 ms). Printed; asserted generously (a shared, loaded
/// machine, debug builds).
#[test]
fn tls_call_latency() {
    let world = TlsWorld::new();
    let ops = world.issue(&world.root, "ops", Kind::Client);
    let mut client = Client::connect(&world.endpoint(&ops), TIMEOUT).unwrap();
    let mut samples: Vec<Duration> = (0..500)
        .map(|_| {
            let started = Instant::now();
            client.call(Command::Info { name: None }).unwrap();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    eprintln!("info over loopback TLS: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}

#[test]
fn tls_connection_limit() {
    let world = TlsWorld::with_limit(1);
    let ops = world.issue(&world.root, "ops", Kind::Client);
    let mut first = Client::connect(&world.endpoint(&ops), TIMEOUT).unwrap();
    let refused = Client::connect(&world.endpoint(&ops), TIMEOUT)
        .err()
        .unwrap();
    assert!(refused.is_connect(), "{refused:?}");
    assert_eq!(first.call(Command::Reboot).unwrap(), ReplyBody::Ok);
    drop(first);
    wait_until("the slot to free", || {
        world.server.as_ref().unwrap().connections() == 0
    });
    world.still_serving();
}
