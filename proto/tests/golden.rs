//! The compatibility contract: the exact bytes of representative messages (framed),
//! and round trips of every variant. If a golden test fails, the change breaks deployed
//! peers: revert it and add a new variant instead (see the crate doc's versioning rule).
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use petrel_proto::*;

fn golden() -> Vec<(&'static str, Message)> {
    let all = every_message();
    vec![
        ("hello", Message::Hello(Hello::new("petrelctl"))),
        ("info_all", all[1].clone()),
        (
            "info_one",
            req(
                2,
                Command::Info {
                    name: Some(full("ops/alice:web")),
                },
            ),
        ),
        ("create_upload", all[3].clone()),
        ("create_on_exit", all[5].clone()),
        ("restart_args", all[8].clone()),
        (
            "console",
            req(
                300,
                Command::Console {
                    name: full("ops:web"),
                    history: ConsoleHistory::Lines(100),
                    follow: true,
                },
            ),
        ),
        ("block_create", all[10].clone()),
        ("block_upload", all[14].clone()),
        ("policy_add", all[16].clone()),
        ("reboot", all[19].clone()),
        ("trust_rotate", all[22].clone()),
        ("cancel", all[23].clone()),
        ("reply_ok", all[24].clone()),
        ("reply_proceed", all[25].clone()),
        ("reply_unikernel", all[26].clone()),
        ("reply_stats", all[28].clone()),
        ("reply_blocks", all[30].clone()),
        (
            "reply_error",
            reply(70000, ReplyBody::Error(error(ErrorKind::NotFound))),
        ),
        (
            "version_mismatch",
            Message::Reply(
                VersionMismatch {
                    our_min: 1,
                    our_max: 1,
                    peer_min: 2,
                    peer_max: 3,
                }
                .to_reply(),
            ),
        ),
        ("chunk_data", all[32].clone()),
        ("chunk_end", all[34].clone()),
        ("chunk_abort", all[35].clone()),
    ]
}
/// (name, framed bytes in hex), pinned.
const GOLDEN: &[(&str, &str)] = &[
    ("hello", "0000000d0001010970657472656c63746c"),
    ("info_all", "0000000401010000"),
    ("info_one", "0000001201020001096f70732f616c69636503776562"),
    (
        "create_upload",
        "00000066010301096f70732f616c6963650377656200808040ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad01092d2d706f72743d383040010107736572766963650773657276696365010773746f72616765056469736b3000090101",
    ),
    (
        "create_on_exit",
        "0000006e010501096f70732f616c6963650377656201056a6f622d37ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad01092d2d706f72743d383040010107736572766963650773657276696365010773746f72616765056469736b3002030201fe03090101",
    ),
    ("restart_args", "0000000f010803036f70730377656201010161"),
    ("console", "0000000f01ac0204036f707303776562016401"),
    ("block_create", "0000000f010a0600036f707301648080408004"),
    (
        "block_upload",
        "0000002b010e0603036f7073016403ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    (
        "policy_add",
        "0000002901100700096f70732f616c6963650a802080808080040207736572766963650675706c696e6b020001",
    ),
    ("reboot", "00000003011308"),
    ("trust_rotate", "0000000601180c023082"),
    ("cancel", "0000000401190d03"),
    ("reply_ok", "00000003020100"),
    ("reply_proceed", "00000003020202"),
    (
        "reply_unikernel",
        "00000059020303096f70732f616c696365037765620101922101e0d40340010000010773657276696365077365727669636502000012345600ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad00010300",
    ),
    (
        "reply_stats",
        "0000001e02050501036f707303776562010203040107736572766963650506070809",
    ),
    (
        "reply_blocks",
        "0000001702070701036f707301648020802001036f707303776562",
    ),
    ("reply_error", "0000000902f0a2040107026e6f"),
    (
        "version_mismatch",
        "0000003f020001013a6e6f20636f6d6d6f6e2070726f746f636f6c2076657273696f6e3a20776520737065616b20312e2e3d312c20746865207065657220322e2e3d33",
    ),
    ("chunk_data", "0000000a0309000668656c6c6f0a"),
    (
        "chunk_end",
        "0000002403090103ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    ("chunk_abort", "000000070309020c026e6f"),
];

#[test]
fn golden_bytes() {
    let messages = golden();
    assert_eq!(messages.len(), GOLDEN.len());
    for ((name, message), (pinned_name, pinned)) in messages.iter().zip(GOLDEN) {
        assert_eq!(name, pinned_name);
        assert_eq!(
            hex(&message.to_frame().unwrap()),
            *pinned,
            "{name} encodes differently"
        );
        let bytes = unhex(pinned);
        let (payload, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "{name}");
        assert_eq!(
            &Message::decode(payload).unwrap(),
            message,
            "{name} decodes differently"
        );
    }
}

#[test]
fn every_variant_round_trips() {
    for message in every_message() {
        let frame = message.to_frame().unwrap();
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame).unwrap();
        let payload = decoder.next_frame().unwrap();
        assert_eq!(Message::decode(&payload).unwrap(), message);
        decoder.finish().unwrap();
    }
}

#[test]
fn error_kinds_are_append_only_and_unknown_ones_decode_as_other() {
    for (code, kind) in ERROR_KINDS.iter().enumerate() {
        assert_eq!(u32::from(*kind), code as u32);
        assert_eq!(ErrorKind::from(code as u32), *kind);
    }
    // A newer peer's kind 200 (varint c8 01).
    let bytes = unhex("02 0a 01 c801 02 6e6f");
    let Message::Reply(reply) = Message::decode(&bytes).unwrap() else {
        panic!("not a reply")
    };
    assert_eq!(
        reply.body,
        ReplyBody::Error(Error {
            kind: ErrorKind::Other,
            message: "no".into()
        })
    );
}

#[test]
fn unknown_variants_trailing_bytes_and_bad_names_are_errors() {
    // Message variant 4 does not exist (yet).
    assert!(matches!(
        Message::decode(&[4]),
        Err(MessageError::Malformed(_))
    ));
    // Command variant 100.
    assert!(matches!(
        Message::decode(&[1, 1, 100]),
        Err(MessageError::Malformed(_))
    ));
    // A valid reply_ok with a byte too many.
    assert_eq!(
        Message::decode(&[2, 1, 0, 0]),
        Err(MessageError::TrailingBytes(1))
    );
    assert!(matches!(
        Message::decode(&[]),
        Err(MessageError::Malformed(_))
    ));
    // Info { name: Some("ops:w b") }: the name fails validation.
    let mut bytes = vec![1, 1, 0, 1, 3];
    bytes.extend(b"ops");
    bytes.push(3);
    bytes.extend(b"w b");
    assert!(matches!(
        Message::decode(&bytes),
        Err(MessageError::Malformed(_))
    ));
    // An absurd string length claims more than the payload holds.
    assert!(matches!(
        Message::decode(&[0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(MessageError::Malformed(_))
    ));
}

#[test]
fn chunks_are_bounded() {
    let big = stream(1, Chunk::Data(vec![0; MAX_CHUNK_BYTES + 1]));
    assert_eq!(
        big.encode(),
        Err(MessageError::ChunkTooLarge(MAX_CHUNK_BYTES + 1))
    );
    // Hand-encoded, so the decoder sees it too: Stream, id 1, Data, len varint.
    let mut bytes = vec![3, 1, 0, 0x81, 0x80, 0x04];
    bytes.resize(bytes.len() + MAX_CHUNK_BYTES + 1, 0);
    assert_eq!(
        Message::decode(&bytes),
        Err(MessageError::ChunkTooLarge(MAX_CHUNK_BYTES + 1))
    );
    assert!(
        stream(1, Chunk::Data(vec![0; MAX_CHUNK_BYTES]))
            .to_frame()
            .is_ok()
    );
    // A message over the frame cap is refused when encoding.
    let huge = req(
        1,
        Command::TrustRotate {
            anchor_der: vec![0; MAX_FRAME_BYTES],
        },
    );
    assert!(matches!(
        huge.encode(),
        Err(MessageError::Frame(FrameError::TooLarge { .. }))
    ));
}

#[test]
fn version_negotiation() {
    let ours = Hello::new("petreld");
    assert_eq!(
        ours.negotiate(&Hello::new("petrelctl")),
        Ok(PROTOCOL_VERSION)
    );
    let newer = Hello {
        version: PROTOCOL_VERSION + 5,
        min_version: MIN_PROTOCOL_VERSION,
        agent: String::new(),
    };
    assert_eq!(ours.negotiate(&newer), Ok(PROTOCOL_VERSION));
    let too_new = Hello {
        version: PROTOCOL_VERSION + 5,
        min_version: PROTOCOL_VERSION + 1,
        agent: String::new(),
    };
    let err = ours.negotiate(&too_new).unwrap_err();
    let reply = err.to_reply();
    assert_eq!(reply.id, RequestId(0));
    assert!(matches!(
        reply.body,
        ReplyBody::Error(Error {
            kind: ErrorKind::VersionMismatch,
            ..
        })
    ));
    let too_old = Hello {
        version: 0,
        min_version: 0,
        agent: String::new(),
    };
    assert!(ours.negotiate(&too_old).is_err());
    let hello = Message::Hello(Hello::new("petrelctl"));
    assert_eq!(ours.accept(&hello), Ok(PROTOCOL_VERSION));
    assert_eq!(
        ours.accept(&Message::Hello(too_new.clone())),
        Err(err.to_reply())
    );
    let early = ours.accept(&req(1, Command::Reboot)).unwrap_err();
    assert_eq!(early.id, RequestId(0));
    assert!(matches!(
        early.body,
        ReplyBody::Error(Error {
            kind: ErrorKind::Malformed,
            ..
        })
    ));
    let inverted = Hello {
        version: 1,
        min_version: 2,
        agent: String::new(),
    };
    assert!(ours.negotiate(&inverted).is_err());
}

#[test]
fn streams_end_with_size_and_digest() {
    let data: Vec<u8> = (0..MAX_CHUNK_BYTES * 2 + 5).map(|i| i as u8).collect();
    let chunks: Vec<Stream> = stream_chunks(RequestId(7), &data).collect();
    assert_eq!(chunks.len(), 4);
    let digest = Sha256Digest::of(&data);
    let mut check = StreamCheck::new(data.len() as u64, digest);
    let mut got = Vec::new();
    for s in &chunks {
        assert_eq!(s.id, RequestId(7));
        match &s.chunk {
            Chunk::Data(d) => {
                check.data(d).unwrap();
                got.extend_from_slice(d);
            }
            Chunk::End {
                total_bytes,
                sha256,
            } => {
                assert_eq!(check.clone().end(*total_bytes, *sha256), Ok(digest));
            }
            Chunk::Abort(_) => panic!("abort"),
        }
    }
    assert_eq!(got, data);
    // Empty data: just the End.
    let empty: Vec<Stream> = stream_chunks(RequestId(1), &[]).collect();
    assert_eq!(empty.len(), 1);

    // Too long, wrong digest, short.
    let mut check = StreamCheck::new(3, Sha256Digest::of(b"abc"));
    assert_eq!(
        check.data(b"abcd"),
        Err(StreamError::TooLong { expected_bytes: 3 })
    );
    check.data(b"abd").unwrap();
    assert!(matches!(
        check.end(3, Sha256Digest::of(b"abc")),
        Err(StreamError::Mismatch { .. })
    ));
    let mut check = StreamCheck::new(3, Sha256Digest::of(b"abc"));
    check.data(b"ab").unwrap();
    assert!(check.end(3, Sha256Digest::of(b"abc")).is_err());
    let mut check = StreamCheck::new(3, Sha256Digest::of(b"abc"));
    check.data(b"abc").unwrap();
    assert!(check.clone().end(4, Sha256Digest::of(b"abc")).is_err());
    assert!(check.end(3, Sha256Digest::of(b"abd")).is_err());
    assert_eq!(
        Sha256Digest::of(b"abc").to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
