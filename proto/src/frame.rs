//! Framing: a 4-byte big-endian payload length, then the payload.
//!
//! The length is checked against [`MAX_FRAME_BYTES`] as soon as its four bytes are
//! known, before any payload byte is buffered, so a peer cannot make us allocate more
//! than the cap. A zero length is refused too: no message encodes to nothing.
//!
//! [`FrameDecoder`] is sans-I/O (fed with [`FrameDecoder::push`], drained with
//! [`FrameDecoder::next_frame`]); [`read_frame`] and [`write_frame`] are the blocking
//! equivalents over [`std::io`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The largest payload a frame may carry (1 MiB). Larger lengths are refused before
/// allocation; stream chunks ([`crate::MAX_CHUNK_BYTES`]) fit well below it.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME_BYTES`].
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// The announced (or attempted) payload length.
        len_bytes: u64,
        /// [`MAX_FRAME_BYTES`].
        max_bytes: usize,
    },
    /// The length prefix is zero.
    #[error("empty frame")]
    Empty,
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({have_bytes} of {need_bytes} bytes)")]
    Truncated {
        /// Bytes of the frame (header included) received.
        have_bytes: usize,
        /// Bytes the frame needs (header included), or the header size if the header
        /// itself is incomplete.
        need_bytes: usize,
    },
}

/// Errors of the blocking helpers.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// The stream broke.
    #[error("frame I/O")]
    Io(#[source] io::Error),
    /// The frame itself is invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Checks a payload length read from (or about to be written to) the wire.
fn check_len(len_bytes: u64) -> Result<usize, FrameError> {
    match usize::try_from(len_bytes) {
        Ok(0) => Err(FrameError::Empty),
        Ok(len) if len <= MAX_FRAME_BYTES => Ok(len),
        _ => Err(FrameError::TooLarge {
            len_bytes,
            max_bytes: MAX_FRAME_BYTES,
        }),
    }
}

/// Prefixes `payload` with its length. Refuses payloads the receiver would refuse.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = check_len(payload.len() as u64)?;
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len_bytes: payload.len() as u64,
        max_bytes: MAX_FRAME_BYTES,
    })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits one frame off the front of `input` without copying.
///
/// Returns `Ok(None)` when more bytes are needed, or the payload and the number of
/// bytes the frame took (header included).
pub fn decode_frame(input: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some((header, rest)) = input.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(None);
    };
    let len = check_len(u64::from(u32::from_be_bytes(*header)))?;
    Ok(rest
        .get(..len)
        .map(|payload| (payload, FRAME_HEADER_BYTES + len)))
}

/// An incremental frame decoder: push bytes as they arrive, take complete frames out.
///
/// After an error the decoder is poisoned and keeps returning it: the stream has lost
/// its framing and the connection must be closed (after a best-effort error reply).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; FRAME_HEADER_BYTES],
    header_len: usize,
    /// The payload length, once the header is complete.
    payload_len: Option<usize>,
    payload: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
    error: Option<FrameError>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes. Complete frames queue up for [`Self::next_frame`]; the queue never
    /// holds more bytes than were pushed.
    pub fn push(&mut self, mut input: &[u8]) -> Result<(), FrameError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        while !input.is_empty() {
            match self.payload_len {
                None => {
                    let want = FRAME_HEADER_BYTES - self.header_len;
                    let (head, rest) = input.split_at(want.min(input.len()));
                    self.header[self.header_len..self.header_len + head.len()]
                        .copy_from_slice(head);
                    self.header_len += head.len();
                    input = rest;
                    if self.header_len == FRAME_HEADER_BYTES {
                        let len = u64::from(u32::from_be_bytes(self.header));
                        match check_len(len) {
                            Ok(len) => self.payload_len = Some(len),
                            Err(error) => {
                                self.error = Some(error);
                                return Err(error);
                            }
                        }
                    }
                }
                Some(len) => {
                    let want = len - self.payload.len();
                    let (body, rest) = input.split_at(want.min(input.len()));
                    // Grows with the data actually received, not with the announced length.
                    self.payload.extend_from_slice(body);
                    input = rest;
                    if self.payload.len() == len {
                        self.ready.push_back(std::mem::take(&mut self.payload));
                        self.payload_len = None;
                        self.header_len = 0;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next complete frame's payload, if any.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Whether no partial frame is buffered (complete frames may still be queued).
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.error.is_none()
    }

    /// To call at end of input: an error if it ended inside a frame (or after one).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.header_len == 0 {
            return Ok(());
        }
        Err(FrameError::Truncated {
            have_bytes: self.header_len + self.payload.len(),
            need_bytes: FRAME_HEADER_BYTES + self.payload_len.unwrap_or(0),
        })
    }
}

/// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub fn read_frame<R: Read>(reader: &mut R) -> Result<Option<Vec<u8>>, FrameIoError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut have = 0;
    while have < FRAME_HEADER_BYTES {
        match reader.read(&mut header[have..]) {
            Ok(0) if have == 0 => return Ok(None),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    have_bytes: have,
                    need_bytes: FRAME_HEADER_BYTES,
                }
                .into());
            }
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameIoError::Io(e)),
        }
    }
    let len = check_len(u64::from(u32::from_be_bytes(header)))?;
    let mut payload = Vec::new();
    // `take` bounds the read; the buffer grows with what arrives.
    reader
        .take(len as u64)
        .read_to_end(&mut payload)
        .map_err(FrameIoError::Io)?;
    if payload.len() != len {
        return Err(FrameError::Truncated {
            have_bytes: FRAME_HEADER_BYTES + payload.len(),
            need_bytes: FRAME_HEADER_BYTES + len,
        }
        .into());
    }
    Ok(Some(payload))
}

/// Writes one frame (one `write_all` of header and payload together).
pub fn write_frame<W: Write>(writer: &mut W, payload: &[u8]) -> Result<(), FrameIoError> {
    let frame = encode_frame(payload)?;
    writer.write_all(&frame).map_err(FrameIoError::Io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encodes_big_endian_length() {
        assert_eq!(encode_frame(b"ab").unwrap(), [0, 0, 0, 2, b'a', b'b']);
        assert_eq!(encode_frame(b""), Err(FrameError::Empty));
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            encode_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(encode_frame(&big[..MAX_FRAME_BYTES]).is_ok());
    }

    #[test]
    fn decode_frame_slices() {
        assert_eq!(decode_frame(&[0, 0, 0]), Ok(None));
        assert_eq!(decode_frame(&[0, 0, 0, 2, 1]), Ok(None));
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 1, 2, 3]),
            Ok(Some((&[1, 2][..], 6)))
        );
        assert_eq!(decode_frame(&[0, 0, 0, 0]), Err(FrameError::Empty));
        assert_eq!(
            decode_frame(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge {
                len_bytes: 0xffff_ffff,
                max_bytes: MAX_FRAME_BYTES
            })
        );
    }
}
