//! Block devices through a real `petreld`: create, list, upload and download (streamed,
//! digest-checked), attach to the `blk` example unikernel which writes and verifies every
//! sector, refusals (geometry, names, busy while attached or in transfer).

mod common;
use common::*;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use petrel_proto::msg::{BlockCommand, Command as Cmd, ExitStatus, ReplyBody, Sha256Digest};

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
