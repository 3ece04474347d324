//! Block devices through a real `petreld`: create, list, upload and download (streamed,
//! digest-checked), attach to the `blk` example unikernel which writes and verifies every
//! sector, refusals (geometry, names, busy while attached or in transfer), and a volume
//! held by a running unikernel (the `blk_hold` example) against transfers, a second user
//! and unikernel starts during a transfer.

mod common;
use common::*;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use petrel_proto::msg::{
    BlockCommand, Chunk, Command as Cmd, ExitStatus, MAX_CHUNK_BYTES, Message, ReplyBody,
    RequestId, Sha256Digest, Stream, UnikernelState,
};

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + i / 251).to_le_bytes()[0])
        .collect()
}

#[test]
fn block_devices_end_to_end() {
    let d = Daemon::start("blk");
    let mut c = d.local();
    let size = 128 * 1024;
    let b = try_block_create(&mut c, "ops:disk", size, 512).expect("block create");
    assert_eq!((b.size_bytes, b.sector_size), (size, 512));
    assert_eq!(b.attached_to, None);
    let list = block_list(&mut c, None);
    assert!(
        list.iter().any(|b| b.name.to_string() == "ops:disk"),
        "listed: {list:?}"
    );
    assert!(
        try_block_download(&mut c, "ops:disk")
            .expect("download a new device")
            .iter()
            .all(|&x| x == 0),
        "a new block device reads as zeros"
    );

    // Upload (several chunks) and read it back.
    let data = pattern(usize::try_from(size).expect("size"));
    try_block_upload(&mut c, "ops:disk", &data).expect("upload");
    let back = try_block_download(&mut c, "ops:disk").expect("download");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "downloaded contents equal the upload");

    // Too long: refused.
    let mut long = data.clone();
    long.extend_from_slice(&[1; 512]);
    let (k, msg) = kind_of(try_block_upload(&mut c, "ops:disk", &long));
    assert!(
        matches!(k, ErrorKind::BadRequest | ErrorKind::QuotaExceeded),
        "upload larger than the device: {k:?} {msg}"
    );

    // The blk guest writes and verifies every sector.
    let mut spec = Spec::new("ops:user", "blk");
    spec.block = vec![("storage".to_owned(), "disk".to_owned())];
    let uk = create(&mut c, &spec);
    assert_eq!(uk.blocks.len(), 1);
    assert_eq!(uk.blocks[0].device.as_str(), "disk");
    let done = wait_stopped(&mut c, "ops:user");
    let text = console(&mut c, "ops:user");
    assert_eq!(
        done.last_exit.map(|e| e.status),
        Some(ExitStatus::Code(0)),
        "blk guest:\n{text}"
    );
    assert!(text.contains("blk: OK 256 sectors of 512 bytes"), "{text}");
    let written = try_block_download(&mut c, "ops:disk").expect("download after the guest");
    assert_ne!(written, data, "the guest's writes reached the file");

    // Attached (the unikernel exists): no destroy, no upload.
    let listed = block_list(&mut c, Some("ops"));
    let disk = listed
        .iter()
        .find(|b| b.name.to_string() == "ops:disk")
        .expect("listed");
    assert_eq!(
        disk.attached_to
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("ops:user")
    );
    assert_denied(
        c.call(Cmd::Block(BlockCommand::Destroy {
            name: full("ops:disk"),
        })),
        ErrorKind::Busy,
        "",
    );
    // (An upload while the owner is stopped may be allowed, like writing the disk of a
    // powered-off machine; the guests at hand do not keep a block device busy.)
    // A second unikernel cannot take it too.
    let mut spec2 = Spec::new("ops:user2", "blk");
    spec2.block = vec![("storage".to_owned(), "disk".to_owned())];
    assert_denied(try_create(&mut c, &spec2), ErrorKind::Busy, "disk");

    destroy(&mut c, "ops:user");
    let r = c
        .call(Cmd::Block(BlockCommand::Destroy {
            name: full("ops:disk"),
        }))
        .expect("destroy the detached device");
    assert_eq!(r, ReplyBody::Ok);
    assert!(block_list(&mut c, None).is_empty());
    assert_denied(
        try_block_download(&mut c, "ops:disk"),
        ErrorKind::NotFound,
        "disk",
    );
}

#[test]
fn block_geometry_and_names() {
    let d = Daemon::start("blkgeo");
    let mut c = d.local();
    for (size, sector, why) in [
        (1000, 512, "size not a multiple of the sector"),
        (4096, 0, "sector size 0"),
        (4096, 3, "sector size not a power of two"),
        (0, 512, "empty device"),
    ] {
        let (k, msg) = kind_of(try_block_create(
            &mut c,
            &format!("ops:g{sector}"),
            size,
            sector,
        ));
        assert_eq!(k, ErrorKind::BadRequest, "{why}: {msg}");
    }
    try_block_create(&mut c, "ops:big", 64 * 4096, 4096).expect("4 KiB sectors");
    assert_denied(
        try_block_create(&mut c, "ops:big", 4096, 512),
        ErrorKind::AlreadyExists,
        "big",
    );
    let mut spec = Spec::new("ops:u", "blk");
    spec.block = vec![("storage".to_owned(), "nosuch".to_owned())];
    assert_denied(try_create(&mut c, &spec), ErrorKind::NotFound, "nosuch");

    spec.block = vec![("storage".to_owned(), "big".to_owned())];
    create(&mut c, &spec);
    wait_stopped(&mut c, "ops:u");
    wait_console(
        &mut c,
        "ops:u",
        "blk: OK 64 sectors of 4096 bytes",
        Duration::from_secs(5),
    );

    // A digest that does not match the data.
    let data = vec![9u8; 4096];
    let r = c.upload(
        Cmd::Block(BlockCommand::Upload {
            name: full("ops:nosuch"),
            size_bytes: 4096,
            sha256: Sha256Digest::of(&data),
        }),
        &mut data.as_slice(),
        &mut |_| {},
    );
    assert_denied(r, ErrorKind::NotFound, "nosuch");
    try_block_create(&mut c, "ops:small", 4096, 512).expect("create");
    // The client library checks digests itself: the lie goes by hand.
    let mut raw = Raw::unix(&d);
    let lie = Sha256Digest::of(b"not it");
    let r = raw.request(
        1,
        Cmd::Block(BlockCommand::Upload {
            name: full("ops:small"),
            size_bytes: 4096,
            sha256: lie,
        }),
    );
    assert_eq!(r, ReplyBody::Proceed);
    match raw.stream(1, &data, lie) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::DigestMismatch, "{e}"),
        other => panic!("a block upload that does not match its digest: {other:?}"),
    }
    assert!(
        try_block_download(&mut c, "ops:small")
            .expect("download")
            .iter()
            .all(|&x| x == 0),
        "a refused upload leaves the contents alone"
    );
}

/// A reader that hands out one chunk, then waits for the test to let it go on.
struct Gate {
    first: Option<Vec<u8>>,
    rest: Vec<u8>,
    go: mpsc::Receiver<()>,
    sent_first: mpsc::Sender<()>,
}

impl Read for Gate {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.take() {
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            self.rest.splice(0..0, first[n..].iter().copied());
            let _ = self.sent_first.send(());
            return Ok(n);
        }
        let _ = self.go.recv();
        let n = self.rest.len().min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest.drain(..n);
        Ok(n)
    }
}

#[test]
fn one_transfer_at_a_time() {
    let d = Daemon::start("blkbusy");
    let mut c = d.local();
    let size = 256 * 1024;
    try_block_create(&mut c, "ops:disk", size, 512).expect("create");
    let data = pattern(usize::try_from(size).expect("size"));
    let digest = Sha256Digest::of(&data);
    let (go_tx, go_rx) = mpsc::channel();
    let (first_tx, first_rx) = mpsc::channel();
    let mut slow = d.local();
    let gate = Gate {
        first: Some(data[..64 * 1024].to_vec()),
        rest: data[64 * 1024..].to_vec(),
        go: go_rx,
        sent_first: first_tx,
    };
    let t = std::thread::spawn(move || {
        let mut gate = gate;
        slow.upload(
            Cmd::Block(BlockCommand::Upload {
                name: full("ops:disk"),
                size_bytes: size,
                sha256: digest,
            }),
            &mut gate,
            &mut |_| {},
        )
    });
    first_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow upload started");
    std::thread::sleep(Duration::from_millis(300));
    assert_denied(
        try_block_upload(&mut c, "ops:disk", &data),
        ErrorKind::Busy,
        "",
    );
    assert_denied(try_block_download(&mut c, "ops:disk"), ErrorKind::Busy, "");
    assert_denied(
        c.call(Cmd::Block(BlockCommand::Destroy {
            name: full("ops:disk"),
        })),
        ErrorKind::Busy,
        "",
    );
    drop(go_tx);
    let r = t.join().expect("upload thread");
    assert_eq!(r.expect("the first upload completes"), ReplyBody::Ok);
    assert!(try_block_download(&mut c, "ops:disk").expect("download") == data);
}

#[test]
fn an_abandoned_block_upload_changes_nothing() {
    let d = Daemon::start("blkabandon");
    let mut c = d.local();
    let size = 192 * 1024;
    try_block_create(&mut c, "ops:disk", size, 512).expect("create");
    let old = pattern(usize::try_from(size).expect("size"));
    try_block_upload(&mut c, "ops:disk", &old).expect("upload");
    let new = vec![0xee_u8; old.len()];
    {
        let mut raw = Raw::unix(&d);
        let r = raw.request(
            1,
            Cmd::Block(BlockCommand::Upload {
                name: full("ops:disk"),
                size_bytes: size,
                sha256: Sha256Digest::of(&new),
            }),
        );
        assert_eq!(r, ReplyBody::Proceed);
        for chunk in new.chunks(64 * 1024).take(2) {
            raw.send(&petrel_proto::msg::Message::Stream(
                petrel_proto::msg::Stream {
                    id: petrel_proto::msg::RequestId(1),
                    chunk: petrel_proto::msg::Chunk::Data(chunk.to_vec()),
                },
            ));
        }
        // Dropped mid-stream.
    }
    // Not left busy, and the old contents stand.
    let back = wait_for(
        "the device to be free again",
        Duration::from_secs(10),
        || try_block_download(&mut c, "ops:disk").ok(),
    );
    assert!(
        back == old,
        "an abandoned upload must not change the device (first differing byte at {:?})",
        back.iter().zip(&old).position(|(a, b)| a != b)
    );
}

/// How long a `blk_hold` guest may take to boot and print its lines (software KVM).
const GUEST_BOOT: Duration = Duration::from_secs(30);

/// The `blk_hold` console line for a sector 0 that starts with `data`.
fn sector0_line(data: &[u8]) -> String {
    let hex: String = data[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("blk_hold: sector0 {hex}")
}

/// A `blk_hold` unikernel `name` with `volume` as its device `storage`.
fn holder(name: &str, volume: &str) -> Spec {
    let mut spec = Spec::new(name, "blk_hold");
    spec.block = vec![("storage".to_owned(), volume.to_owned())];
    spec
}

/// A second pattern, different from [`pattern`] from the first byte on.
fn other_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 0x5a).to_le_bytes()[0]).collect()
}

/// A block upload begun by hand: the daemon said `Proceed` and has the first chunk;
/// dropping it abandons the upload (the connection closes mid-stream).
struct HeldUpload {
    raw: Raw,
    data: Vec<u8>,
}

const HELD_ID: u32 = 1;

impl HeldUpload {
    #[track_caller]
    fn begin(d: &Daemon, volume: &str, data: Vec<u8>) -> HeldUpload {
        assert!(
            data.len() > MAX_CHUNK_BYTES,
            "a held upload needs two chunks"
        );
        let mut raw = Raw::unix(d);
        let r = raw.request(
            HELD_ID,
            Cmd::Block(BlockCommand::Upload {
                name: full(volume),
                size_bytes: data.len() as u64,
                sha256: Sha256Digest::of(&data),
            }),
        );
        assert_eq!(r, ReplyBody::Proceed, "the held upload of {volume} starts");
        let mut up = HeldUpload { raw, data };
        up.chunk(Chunk::Data(up.data[..MAX_CHUNK_BYTES].to_vec()));
        up
    }

    fn chunk(&mut self, chunk: Chunk) {
        self.raw.send(&Message::Stream(Stream {
            id: RequestId(HELD_ID),
            chunk,
        }));
    }

    /// Sends the rest and the `End`; returns the daemon's final reply.
    fn finish(mut self) -> ReplyBody {
        let rest = self.data[MAX_CHUNK_BYTES..].to_vec();
        for c in rest.chunks(MAX_CHUNK_BYTES) {
            self.chunk(Chunk::Data(c.to_vec()));
        }
        self.chunk(Chunk::End {
            total_bytes: self.data.len() as u64,
            sha256: Sha256Digest::of(&self.data),
        });
        loop {
            match self.raw.recv() {
                Message::Reply(r) if r.id == RequestId(HELD_ID) => return r.body,
                Message::Stream(_) => {}
                other => panic!("held upload: unexpected {other:?}"),
            }
        }
    }
}

/// Retries `f` while it fails with `Busy` (a transfer's release reaches the daemon's
/// core a moment after the transfer's reply or its connection's end).
#[track_caller]
fn when_not_busy<T: std::fmt::Debug>(
    what: &str,
    mut f: impl FnMut() -> Result<T, petrelctl::client::ClientError>,
) -> T {
    wait_for(what, Duration::from_secs(10), || match f() {
        Ok(v) => Some(v),
        Err(petrelctl::client::ClientError::Remote(e)) if e.kind == ErrorKind::Busy => None,
        Err(e) => panic!("{what}: {e}"),
    })
}

#[test]
fn a_running_unikernel_holds_its_volume() {
    let d = Daemon::start("blkhold");
    let mut c = d.local();
    let size = 128 * 1024;
    let len = usize::try_from(size).expect("size");
    try_block_create(&mut c, "ops:vol", size, 512).expect("create");
    let old = pattern(len);
    try_block_upload(&mut c, "ops:vol", &old).expect("upload");

    // The guest sees the uploaded bytes.
    create(&mut c, &holder("ops:holder", "vol"));
    let text = wait_console(&mut c, "ops:holder", "blk_hold: holding", GUEST_BOOT);
    assert!(text.contains(&sector0_line(&old)), "{text}");
    assert_eq!(info(&mut c, "ops:holder").state, UnikernelState::Running);

    // While it runs: no transfer either way, no destroy, no second user.
    let new = other_pattern(len);
    assert_denied(
        try_block_upload(&mut c, "ops:vol", &new),
        ErrorKind::Busy,
        "in use by ops:holder",
    );
    assert_denied(
        try_block_download(&mut c, "ops:vol"),
        ErrorKind::Busy,
        "in use by ops:holder",
    );
    assert_denied(
        c.call(Cmd::Block(BlockCommand::Destroy {
            name: full("ops:vol"),
        })),
        ErrorKind::Busy,
        "attached to ops:holder",
    );
    assert_denied(
        try_create(&mut c, &holder("ops:second", "vol")),
        ErrorKind::Busy,
        "attached to ops:holder",
    );
    assert_denied(try_info(&mut c, "ops:second"), ErrorKind::NotFound, "");
    // The refused upload left the file alone, and the guest runs on.
    let on_disk = read(&d.data_dir().join("block/ops:vol"));
    assert!(
        on_disk == old,
        "the volume file changed under a running guest"
    );
    let i = info(&mut c, "ops:holder");
    assert_eq!(i.state, UnikernelState::Running, "{i:?}");

    // Once it is gone, the volume is free again.
    destroy(&mut c, "ops:holder");
    let back = try_block_download(&mut c, "ops:vol").expect("download after destroy");
    assert!(back == old, "the refused upload changed the volume");
    try_block_upload(&mut c, "ops:vol", &new).expect("upload after destroy");
    assert!(try_block_download(&mut c, "ops:vol").expect("download") == new);
    create(&mut c, &holder("ops:holder", "vol"));
    let text = wait_console(&mut c, "ops:holder", "blk_hold: holding", GUEST_BOOT);
    assert!(
        text.contains(&sector0_line(&new)) && !text.contains(&sector0_line(&old)),
        "the re-created guest sees the new upload:\n{text}"
    );
    destroy(&mut c, "ops:holder");
}

#[test]
fn a_volume_in_transfer_cannot_be_attached_or_started() {
    let d = Daemon::start("blkxfer");
    let mut c = d.local();
    let size = 128 * 1024;
    let len = usize::try_from(size).expect("size");
    try_block_create(&mut c, "ops:vol", size, 512).expect("create");
    let old = pattern(len);
    try_block_upload(&mut c, "ops:vol", &old).expect("upload");
    let new = other_pattern(len);

    // An upload in progress: no unikernel may attach the volume.
    let held = HeldUpload::begin(&d, "ops:vol", new.clone());
    assert_denied(
        try_create(&mut c, &holder("ops:holder", "vol")),
        ErrorKind::Busy,
        "being transferred",
    );
    assert_denied(try_info(&mut c, "ops:holder"), ErrorKind::NotFound, "");
    // Abandoned: the volume is free, unchanged.
    drop(held);
    when_not_busy("create once the upload is abandoned", || {
        try_create(&mut c, &holder("ops:holder", "vol"))
    });
    let text = wait_console(&mut c, "ops:holder", "blk_hold: holding", GUEST_BOOT);
    assert!(text.contains(&sector0_line(&old)), "{text}");
    destroy(&mut c, "ops:holder");

    // A unikernel that has exited does not hold its volume: an upload may start (like
    // writing the disk of a powered-off machine), but the unikernel may not start again
    // until it is over.
    create(&mut c, &holder("ops:once", "vol").args(&["once"]));
    let done = wait_stopped(&mut c, "ops:once");
    let text = console(&mut c, "ops:once");
    assert_eq!(
        done.last_exit.map(|e| e.status),
        Some(ExitStatus::Code(0)),
        "{text}"
    );
    assert!(text.contains(&sector0_line(&old)), "{text}");
    let held = HeldUpload::begin(&d, "ops:vol", new.clone());
    assert_denied(
        c.call(Cmd::Restart {
            name: full("ops:once"),
            args: None,
        }),
        ErrorKind::Busy,
        "being transferred",
    );
    assert_eq!(info(&mut c, "ops:once").state, UnikernelState::Stopped);
    assert_eq!(held.finish(), ReplyBody::Ok, "the held upload completes");
    when_not_busy("restart once the upload is over", || {
        c.call(Cmd::Restart {
            name: full("ops:once"),
            args: None,
        })
    });
    let text = wait_console(&mut c, "ops:once", &sector0_line(&new), GUEST_BOOT);
    wait_stopped(&mut c, "ops:once");
    assert!(
        try_block_download(&mut c, "ops:vol").expect("download") == new,
        "{text}"
    );
}
