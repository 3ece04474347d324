//! The management protocol between `petrelctl` and `petreld`: messages, framing,
//! versioning and names. Pure: no sockets, no clocks; the daemon and the client drive
//! it over TLS (TCP port 1025) or the Unix socket `/run/petrel/petreld.sock`.
//!
//! # Layers
//!
//! - [`frame`]: a 4-byte big-endian length, then the payload, at most
//!   [`MAX_FRAME_BYTES`]; the cap is checked before anything is allocated.
//!   [`FrameDecoder`] is sans-I/O (push bytes, take frames); [`read_frame`] and
//!   [`write_frame`] are blocking helpers over `std::io`.
//! - [`msg`]: each frame carries one postcard-encoded [`Message`]: a [`Hello`]
//!   first from each side, then [`Request`]s, [`Reply`]s and [`Stream`] chunks, each
//!   tagged with the [`RequestId`] the client chose, so several commands share a
//!   connection. Large data (images, block contents, console, logs) travels as `Data`
//!   chunks of at most [`MAX_CHUNK_BYTES`] and an `End` carrying the total size and
//!   SHA-256 ([`stream_chunks`] cuts, [`StreamCheck`] verifies).
//! - [`name`]: validated [`UnikernelName`], [`Identity`] (`ops/alice`) and
//!   [`FullName`] (`ops/alice:web`). Authorization lives in `petreld`.
//!
//! A session:
//!
//! ```
//! use petrel_proto::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hello = Message::Hello(Hello::new("petrelctl 0.1.0"));
//! let info = Message::Request(Request { id: RequestId(1), command: Command::Info { name: None } });
//! let mut wire = hello.to_frame()?;
//! wire.extend(info.to_frame()?);
//!
//! let mut decoder = FrameDecoder::new();
//! for byte in &wire {
//!     decoder.push(std::slice::from_ref(byte))?; // any split works
//! }
//! let Message::Hello(theirs) = Message::decode(&decoder.next_frame().ok_or("no hello")?)? else {
//!     return Err("expected hello".into());
//! };
//! assert_eq!(Hello::new("petreld").negotiate(&theirs)?, PROTOCOL_VERSION);
//! assert_eq!(Message::decode(&decoder.next_frame().ok_or("no request")?)?, info);
//! decoder.finish()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Versioning rule (the compatibility contract)
//!
//! postcard is not self-describing: an enum is its variant index (a varint) and a
//! struct is its fields in order. So, for every type in [`msg`] and [`name`]:
//!
//! - **append only**: a new command, reply, chunk or error kind is a new variant at the
//!   end of its enum; a new field means a new variant (e.g. `CreateV2`), never a field
//!   added to an existing struct or variant;
//! - **never** reorder, remove, rename into another type, or change the type of an
//!   existing variant or field;
//! - bump [`PROTOCOL_VERSION`] when adding variants, so a peer can tell what the other
//!   understands; raise [`MIN_PROTOCOL_VERSION`] only to drop support deliberately.
//!
//! A message with a variant the receiver does not know fails to decode
//! ([`MessageError::Malformed`]); the daemon answers [`ErrorKind::Unsupported`] or
//! [`ErrorKind::Malformed`] and keeps serving. Unknown [`ErrorKind`]s decode as
//! [`ErrorKind::Other`]. The golden tests in `tests/golden.rs` pin the bytes; a change
//! that breaks them breaks deployed peers.
//!
//! # Panic contract
//!
//! No function here panics, whatever the input bytes: decoders check every length
//! before indexing or allocating and return typed errors. [`fuzz_check`], the fuzzing
//! harness, is the exception: it asserts invariants and panics when one fails.
#![forbid(unsafe_code)]

pub mod frame;
pub mod msg;
pub mod name;
#[cfg(feature = "tls")]
pub mod tls;

pub use frame::{
    FRAME_HEADER_BYTES, FrameDecoder, FrameError, FrameIoError, MAX_FRAME_BYTES, decode_frame,
    encode_frame, read_frame, write_frame,
};
pub use msg::*;
pub use name::{FullName, Identity, MAX_IDENTITY_DEPTH, MAX_NAME_BYTES, NameError, UnikernelName};

/// The fuzzing entry point (the `proto_frame` target in `fuzz/`), also used by
/// `tests/robust.rs` to replay the corpus on stable Rust.
///
/// It runs `bytes` through [`FrameDecoder`] whole, byte by byte and in uneven pieces,
/// through [`decode_frame`] and [`read_frame`], and checks that they agree; every frame
/// is decoded as a [`Message`], and every message that decodes must survive
/// re-encoding unchanged.
///
/// # Panics
///
/// When an invariant fails (that is its job).
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub fn fuzz_check(bytes: &[u8]) {
    type Outcome = (Vec<Vec<u8>>, Result<(), FrameError>);

    fn by_pieces(bytes: &[u8], piece: usize) -> Outcome {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for part in bytes.chunks(piece.max(1)) {
            if let Err(e) = decoder.push(part) {
                while let Some(f) = decoder.next_frame() {
                    frames.push(f);
                }
                return (frames, Err(e));
            }
            while let Some(f) = decoder.next_frame() {
                frames.push(f);
            }
        }
        let end = decoder.finish();
        (frames, end)
    }

    let whole = by_pieces(bytes, bytes.len());
    for piece in [1, 3, 7, 4096] {
        assert_eq!(
            by_pieces(bytes, piece),
            whole,
            "split into {piece}-byte pieces"
        );
    }

    // The slice decoder and the blocking reader agree on the frames.
    let mut rest = bytes;
    let mut cursor = std::io::Cursor::new(bytes);
    for frame in &whole.0 {
        let (payload, used) = decode_frame(rest).unwrap().unwrap();
        assert_eq!(payload, &frame[..]);
        rest = &rest[used..];
        assert_eq!(read_frame(&mut cursor).unwrap().as_ref(), Some(frame));
    }
    match whole.1 {
        Ok(()) => {
            assert!(rest.is_empty());
            assert!(read_frame(&mut cursor).unwrap().is_none());
        }
        Err(FrameError::Truncated { .. }) => {
            assert_eq!(decode_frame(rest), Ok(None));
            assert!(read_frame(&mut cursor).is_err());
        }
        Err(e) => {
            assert_eq!(decode_frame(rest), Err(e));
            assert!(read_frame(&mut cursor).is_err());
        }
    }

    // Also try the whole input as one payload, so the fuzzer reaches the messages
    // without having to learn the framing first.
    for payload in whole.0.iter().map(Vec::as_slice).chain([bytes]) {
        if let Ok(message) = Message::decode(payload) {
            let again = message.encode().expect("a decoded message re-encodes");
            assert_eq!(Message::decode(&again).expect("re-decodes"), message);
        }
    }
}
