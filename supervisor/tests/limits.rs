//! The server's limits against a real `petreld`: the disk budget of uploads in flight
//! (`--upload-budget-mib`; images and block contents alike, given back when an upload
//! finishes, fails, is cancelled or abandoned) and the connections of one TLS identity.
//! The free-space floor needs a nearly full partition; its arithmetic is unit-tested in
//! `petreld::budget`.

mod common;
use common::*;

use std::time::Duration;

use petrelctl::client::{Client, ClientError};

use petrel_proto::msg::{
    BlockCommand, Chunk, Command as Cmd, CreateSpec, ImageSource, MAX_CHUNK_BYTES, Message,
    ReplyBody, Request, RequestId, RestartPolicy, Sha256Digest, Stream,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// How long the daemon may take to notice a closed connection.
const NOTICE: Duration = Duration::from_secs(20);

/// `create` of `name` with an uploaded image of `size_bytes`.
fn create_cmd(name: &str, size_bytes: u64, sha256: Sha256Digest) -> Cmd {
    Cmd::Create(Box::new(CreateSpec {
        name: full(name),
        image: ImageSource::Upload { size_bytes, sha256 },
        args: Vec::new(),
        memory_mib: 8,
        cpus: 1,
        devices: Vec::new(),
        blocks: Vec::new(),
        restart: RestartPolicy::Never,
        priority: 0,
        cpu_affinity: Vec::new(),
    }))
}

/// A block upload of `size_bytes` into `name`.
fn block_cmd(name: &str, size_bytes: u64, sha256: Sha256Digest) -> Cmd {
    Cmd::Block(BlockCommand::Upload {
        name: full(name),
        size_bytes,
        sha256,
    })
}

#[track_caller]
fn assert_error(body: ReplyBody, kind: ErrorKind, needle: &str) {
    match body {
        ReplyBody::Error(e) => {
            assert_eq!(e.kind, kind, "{}", e.message);
            assert!(e.message.contains(needle), "{needle:?} in {:?}", e.message);
        }
        other => panic!("expected a {kind:?} error, got {other:?}"),
    }
}

#[track_caller]
fn assert_proceed(body: ReplyBody) {
    assert!(
        matches!(body, ReplyBody::Proceed),
        "expected Proceed, got {body:?}"
    );
}

/// The error a refused connection was told.
fn refusal(r: Result<Client, ClientError>) -> (ErrorKind, String) {
    match r {
        Err(ClientError::Remote(e)) => (e.kind, e.message),
        Err(other) => panic!("expected an error reply, got {other}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| i.to_le_bytes()[0] ^ 0x5a).collect()
}

#[test]
fn upload_budget() {
    let d = Daemon::start_with(
        "budget",
        Options {
            tls: false,
            device_cert: false,
            extra: vec!["--upload-budget-mib".into(), "1".into()],
        },
    );
    let mut local = d.local();
    try_block_create(&mut local, "ops:disk", 4 * MIB, 512).expect("block create");

    // Larger than the whole budget: refused at once, image or block contents.
    let mut r = Raw::unix(&d);
    let any = Sha256Digest::of(b"never sent");
    assert_error(
        r.request(1, create_cmd("ops:big", 2 * MIB, any)),
        ErrorKind::QuotaExceeded,
        "upload budget of 1 MiB",
    );
    assert_error(
        r.request(2, block_cmd("ops:disk", 2 * MIB, any)),
        ErrorKind::QuotaExceeded,
        "--upload-budget-mib",
    );

    // Two of 600 KiB: the second waits while the first is open.
    let data = pattern(600 * KIB);
    let sha = Sha256Digest::of(&data);
    let n = data.len() as u64;
    let mut first = Raw::unix(&d);
    assert_proceed(first.request(1, create_cmd("ops:first", n, sha)));
    let mut second = Raw::unix(&d);
    assert_error(
        second.request(1, create_cmd("ops:second", n, sha)),
        ErrorKind::Busy,
        "upload budget",
    );
    assert_error(
        second.request(2, block_cmd("ops:disk", n, sha)),
        ErrorKind::Busy,
        "upload budget",
    );

    // The first finishes (not a valid image, so refused at the manifest check, after
    // every byte arrived): its reservation is back before its reply.
    assert_error(first.stream(1, &data, sha), ErrorKind::ManifestMismatch, "");
    assert_proceed(second.request(3, create_cmd("ops:second", n, sha)));

    // Abandoned half-way (the connection drops): back once the daemon notices.
    second.send(&Message::Stream(Stream {
        id: RequestId(3),
        chunk: Chunk::Data(data[..MAX_CHUNK_BYTES].to_vec()),
    }));
    drop(second);
    let mut third = Raw::unix(&d);
    let mut id = 0;
    wait_for("the abandoned upload's reservation", NOTICE, || {
        id += 1;
        match third.request(id, block_cmd("ops:disk", n, sha)) {
            ReplyBody::Proceed => Some(()),
            ReplyBody::Error(e) if e.kind == ErrorKind::Busy => None,
            other => panic!("block upload: {other:?}"),
        }
    });

    // Held: another is refused; cancelled: back before the cancel is answered.
    assert_error(
        first.request(2, create_cmd("ops:other", n, sha)),
        ErrorKind::Busy,
        "upload budget",
    );
    third.send(&Message::Request(Request {
        id: RequestId(1000),
        command: Cmd::Cancel { id: RequestId(id) },
    }));
    let mut answers = Vec::new();
    for _ in 0..2 {
        match third.recv() {
            Message::Reply(reply) => answers.push((reply.id, reply.body)),
            other => panic!("expected replies to the cancel, got {other:?}"),
        }
    }
    assert!(
        matches!(&answers[..], [(a, ReplyBody::Error(_)), (c, ReplyBody::Ok)]
            if *a == RequestId(id) && *c == RequestId(1000)),
        "{answers:?}"
    );

    // A digest mismatch gives it back too.
    assert_proceed(first.request(3, block_cmd("ops:disk", n, sha)));
    assert_error(
        first.stream(3, &data, Sha256Digest::of(b"something else")),
        ErrorKind::DigestMismatch,
        "",
    );

    // And a successful upload, whose data arrives.
    assert_proceed(third.request(1001, block_cmd("ops:disk", n, sha)));
    assert!(
        matches!(third.stream(1001, &data, sha), ReplyBody::Ok),
        "block upload within the budget"
    );
    let back = try_block_download(&mut local, "ops:disk").expect("download");
    assert_eq!(back.len() as u64, 4 * MIB);
    assert!(back[..data.len()] == data[..], "uploaded data reads back");
    assert!(
        back[data.len()..].iter().all(|&b| b == 0),
        "the rest is zeros"
    );

    // Nothing is held any more: the whole budget is free for one upload.
    let whole = pattern(MIB);
    assert_proceed(first.request(4, block_cmd("ops:disk", MIB, Sha256Digest::of(&whole))));
    assert!(matches!(
        first.stream(4, &whole, Sha256Digest::of(&whole)),
        ReplyBody::Ok
    ));
    assert!(d.log().contains("upload refused"), "refusals are logged");
}

#[test]
fn connections_per_identity() {
    let d = Daemon::start("percap");
    let mut local = d.local();
    set_policy(&mut local, "ops", roomy_policy());
    let ops = d.pki.identity("ops");
    let mut held: Vec<_> = (0..16)
        .map(|i| {
            d.try_remote(&ops)
                .unwrap_or_else(|e| panic!("connection {i} of ops: {e}"))
        })
        .collect();

    // The 17th of ops is told why.
    let (kind, message) = refusal(d.try_remote(&ops));
    assert_eq!(kind, ErrorKind::Busy, "{message}");
    assert!(
        message.contains("too many connections of identity ops (16 at once)"),
        "{message}"
    );
    // Another identity gets in, and so does the local socket (exempt).
    let _dev = d.remote("dev");
    let mut local2 = d.local();
    assert!(matches!(
        local2.call(Cmd::Info { name: None }),
        Ok(ReplyBody::Info(_))
    ));
    // The 16 are served.
    for c in &mut held {
        assert!(matches!(
            c.call(Cmd::Info { name: None }),
            Ok(ReplyBody::Info(_))
        ));
    }

    // One ends: ops may connect again once the daemon noticed.
    drop(held.pop());
    let mut again = wait_for("a free connection of ops", NOTICE, || {
        d.try_remote(&ops).ok()
    });
    assert!(matches!(
        again.call(Cmd::Info { name: None }),
        Ok(ReplyBody::Info(_))
    ));
    held.push(again);
    let (kind, _) = refusal(d.try_remote(&ops));
    assert_eq!(kind, ErrorKind::Busy, "16 again");
    assert!(
        d.log().contains("connections of ops already"),
        "the refusal is logged"
    );
}
