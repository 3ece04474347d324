//! The frame layer: any split of the input gives the same frames; bad lengths are
//! refused before their payload is buffered; truncation is reported; the blocking
//! helpers agree with the decoder.
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::{Cursor, Read};

use common::every_message;
use petrel_proto::*;

fn stream_of_all() -> (Vec<u8>, Vec<Vec<u8>>) {
    let payloads: Vec<Vec<u8>> = every_message()
        .iter()
        .map(|m| m.encode().unwrap())
        .collect();
    let wire = payloads
        .iter()
        .flat_map(|p| encode_frame(p).unwrap())
        .collect();
    (wire, payloads)
}

fn drain(decoder: &mut FrameDecoder) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| decoder.next_frame()).collect()
}

#[test]
fn any_split_gives_the_same_frames() {
    let (wire, payloads) = stream_of_all();
    // Fixed seed, printed on failure through the assert message.
    let mut seed: u64 = 0x5eed_0001;
    for round in 0..200 {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let take = ((seed >> 33) as usize % 97).min(rest.len());
            decoder.push(&rest[..take]).unwrap();
            frames.extend(drain(&mut decoder));
            rest = &rest[take..];
        }
        decoder.finish().unwrap();
        assert_eq!(frames, payloads, "round {round}, seed {seed:#x}");
    }
    let mut decoder = FrameDecoder::new();
    for byte in &wire {
        decoder.push(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(drain(&mut decoder), payloads);
    assert!(decoder.at_boundary());
}

#[test]
fn oversized_length_is_refused_before_the_payload() {
    let mut decoder = FrameDecoder::new();
    let len = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
    decoder.push(&len[..3]).unwrap();
    let err = decoder.push(&len[3..]).unwrap_err();
    assert_eq!(
        err,
        FrameError::TooLarge {
            len_bytes: MAX_FRAME_BYTES as u64 + 1,
            max_bytes: MAX_FRAME_BYTES
        }
    );
    // Poisoned: later bytes are refused with the same error, nothing is queued.
    assert_eq!(decoder.push(&[0; 16]), Err(err));
    assert_eq!(decoder.next_frame(), None);
    assert_eq!(decoder.finish(), Err(err));
    assert!(!decoder.at_boundary());

    // The cap itself is fine.
    let mut decoder = FrameDecoder::new();
    decoder
        .push(&(MAX_FRAME_BYTES as u32).to_be_bytes())
        .unwrap();
    decoder.push(&vec![7; MAX_FRAME_BYTES]).unwrap();
    assert_eq!(decoder.next_frame().unwrap().len(), MAX_FRAME_BYTES);

    // u32::MAX through the blocking reader: refused without reading further.
    let mut reader = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(matches!(
        read_frame(&mut reader),
        Err(FrameIoError::Frame(FrameError::TooLarge {
            len_bytes: 0xffff_ffff,
            ..
        }))
    ));
    assert_eq!(reader.position(), 4);
}

#[test]
fn zero_length_is_refused() {
    let mut decoder = FrameDecoder::new();
    assert_eq!(decoder.push(&[0, 0, 0, 0]), Err(FrameError::Empty));
    assert!(matches!(
        read_frame(&mut Cursor::new([0, 0, 0, 0])),
        Err(FrameIoError::Frame(FrameError::Empty))
    ));
    assert!(matches!(
        write_frame(&mut Vec::new(), &[]),
        Err(FrameIoError::Frame(FrameError::Empty))
    ));
}

#[test]
fn truncation_is_reported() {
    let frame = encode_frame(b"hello").unwrap();
    for cut in 1..frame.len() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame[..cut]).unwrap();
        assert_eq!(decoder.next_frame(), None);
        let need = if cut < FRAME_HEADER_BYTES {
            FRAME_HEADER_BYTES
        } else {
            frame.len()
        };
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                have_bytes: cut,
                need_bytes: need
            }),
            "cut {cut}"
        );
        assert!(matches!(
            read_frame(&mut Cursor::new(&frame[..cut])),
            Err(FrameIoError::Frame(FrameError::Truncated { .. }))
        ));
        assert_eq!(decode_frame(&frame[..cut]), Ok(None));
    }
    // An empty input is a clean end.
    assert!(read_frame(&mut Cursor::new([])).unwrap().is_none());
    FrameDecoder::new().finish().unwrap();
}

#[test]
fn garbage_payloads_are_errors_not_panics() {
    let mut seed: u64 = 42;
    for len in 1..300usize {
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let framed = encode_frame(&payload).unwrap();
        fuzz_check(&framed);
        let _ = Message::decode(&payload);
    }
    // Every truncation and single-byte corruption of every sample message.
    for message in every_message() {
        let payload = message.encode().unwrap();
        for cut in 0..payload.len() {
            assert!(Message::decode(&payload[..cut]).is_err() || cut == payload.len());
        }
        for i in 0..payload.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut bad = payload.clone();
                bad[i] ^= x;
                fuzz_check(&encode_frame(&bad).unwrap());
            }
        }
    }
}

#[test]
fn blocking_helpers_agree_with_the_decoder() {
    let (wire, payloads) = stream_of_all();
    let mut written = Vec::new();
    for p in &payloads {
        write_frame(&mut written, p).unwrap();
    }
    assert_eq!(written, wire);

    // A reader that returns one byte at a time, with interruptions.
    struct Trickle<'a>(&'a [u8], bool);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.0.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut reader = Trickle(&wire, false);
    let read: Vec<Vec<u8>> = std::iter::from_fn(|| read_frame(&mut reader).unwrap()).collect();
    assert_eq!(read, payloads);
}
