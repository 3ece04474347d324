//! One accepted connection as a framed message pipe: the byte transport (a Unix stream
//! or TLS over TCP), a sans-I/O [`FrameDecoder`] and message decoding.
//!
//! Reads use a short socket timeout (a tick) so a connection thread never blocks for
//! long: it comes back to check its deadline and the server's stop flag. Partial frames
//! survive a timeout in the decoder (unlike [`petrel_proto::read_frame`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use petrel_proto::{FrameDecoder, FrameError, Message, MessageError, RequestId};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustls::{ServerConnection, StreamOwned};

/// Bytes read from the socket at a time.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// How long the TLS close_notify may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The byte stream under the frames.
pub(crate) enum Transport {
    /// The local socket.
    Unix(UnixStream),
    /// TLS over TCP (boxed: the rustls state is large).
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Transport {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Unix(s) => s.as_fd(),
            Self::Tls(s) => s.sock.as_fd(),
        }
    }

    /// Whether a read would find something now (buffered plaintext, or the socket is
    /// readable or closed), without blocking.
    fn readable_now(&mut self) -> io::Result<bool> {
        if let Self::Tls(s) = self {
            match s.conn.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                    return Ok(true);
                }
                Ok(_) => {}
                // Let the read report it.
                Err(_) => return Ok(true),
            }
        }
        let mut fds = [PollFd::from_borrowed_fd(self.fd(), PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Best-effort orderly close: TLS close_notify, then shut the socket down.
    pub(crate) fn close(&mut self) {
        match self {
            Self::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Self::Tls(s) => {
                // A peer that stopped reading must not hold the thread for the whole
                // write timeout just to be told goodbye.
                let _ = s.sock.set_write_timeout(Some(CLOSE_WRITE_TIMEOUT));
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
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

/// What [`Conn::recv`] found.
#[derive(Debug)]
pub(crate) enum Recv {
    /// A decoded message.
    Message(Message),
    /// Nothing before the deadline (or nothing ready, for a poll).
    Timeout,
    /// The peer closed the connection at a frame boundary.
    Eof,
}

/// How long [`Conn::recv`] may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Only what is ready now.
    Poll,
    /// Until this instant (checking the stop flag every tick).
    Until(Instant),
}

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The socket or TLS failed.
    #[error("connection I/O")]
    Io(#[source] io::Error),
    /// The framing broke (oversized, empty or truncated frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame that does not decode as a message. `request` is the request id when the
    /// frame is recognisably a request (an unknown command from a newer client).
    #[error("undecodable message")]
    Message {
        /// The request id, if the frame starts like a request.
        request: Option<RequestId>,
        /// Why.
        #[source]
        source: MessageError,
    },
    /// The server is stopping.
    #[error("server shutting down")]
    Shutdown,
}

/// A connection: transport, decoder and read buffer.
pub(crate) struct Conn {
    io: Transport,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    pub(crate) fn new(io: Transport) -> Self {
        Self {
            io,
            decoder: FrameDecoder::new(),
            buf: vec![0; READ_BUFFER_BYTES],
            eof: false,
        }
    }

    /// The next message, waiting as `wait` says.
    pub(crate) fn recv(&mut self, wait: Wait, stop: &AtomicBool) -> Result<Recv, ConnError> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return match Message::decode(&frame) {
                    Ok(message) => Ok(Recv::Message(message)),
                    Err(source) => Err(ConnError::Message {
                        request: request_id_of(&frame),
                        source,
                    }),
                };
            }
            if self.eof {
                self.decoder.finish()?;
                return Ok(Recv::Eof);
            }
            match wait {
                Wait::Poll => {
                    if !self.io.readable_now().map_err(ConnError::Io)? {
                        return Ok(Recv::Timeout);
                    }
                }
                Wait::Until(deadline) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(ConnError::Shutdown);
                    }
                    if Instant::now() >= deadline {
                        return Ok(Recv::Timeout);
                    }
                }
            }
            match self.io.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.push(&self.buf[..n])?,
                Err(e) if is_timeout(&e) => {
                    if matches!(wait, Wait::Poll) {
                        return Ok(Recv::Timeout);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// Sends one message (encoded, framed, flushed).
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), ConnError> {
        let frame = message.to_frame().map_err(|source| ConnError::Message {
            request: None,
            source,
        })?;
        self.io.write_all(&frame).map_err(ConnError::Io)?;
        self.io.flush().map_err(ConnError::Io)
    }

    pub(crate) fn close(mut self) {
        self.io.close();
    }
}

/// Whether a socket error is a read/write timeout (EAGAIN on Linux).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The request id of a frame that starts like `Message::Request` (postcard: the variant
/// index 1, then the id, both varints) but failed to decode as a whole: a newer client's
/// unknown command, which deserves `Unsupported` on its own id rather than a closed
/// connection. Id 0 is reserved, so it yields `None`.
pub(crate) fn request_id_of(payload: &[u8]) -> Option<RequestId> {
    let (variant, rest) = varint_u32(payload)?;
    if variant != 1 {
        return None;
    }
    let (id, _) = varint_u32(rest)?;
    (id != 0).then_some(RequestId(id))
}

/// A LEB128 `u32` (postcard's varint) off the front of `bytes`.
fn varint_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        let part = u32::from(byte & 0x7f);
        let shift = 7 * u32::try_from(i).ok()?;
        // The fifth byte may carry only the top four bits.
        if i == 4 && part > 0x0f {
            return None;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use petrel_proto::{Command, Request};

    #[test]
    fn varints() {
        assert_eq!(varint_u32(&[0]), Some((0, &[][..])));
        assert_eq!(varint_u32(&[0x7f, 9]), Some((127, &[9][..])));
        assert_eq!(varint_u32(&[0x80, 0x01]), Some((128, &[][..])));
        assert_eq!(
            varint_u32(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some((u32::MAX, &[][..]))
        );
        assert_eq!(varint_u32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(varint_u32(&[0x80, 0x80]), None);
        assert_eq!(varint_u32(&[]), None);
    }

    #[test]
    fn request_ids_of_undecodable_requests() {
        let request = Message::Request(Request {
            id: RequestId(300),
            command: Command::Reboot,
        });
        let mut payload = request.encode().unwrap();
        assert_eq!(request_id_of(&payload), Some(RequestId(300)));
        // An unknown command variant: the id is still found.
        let last = payload.len() - 1;
        payload[last] = 0x7f;
        assert!(Message::decode(&payload).is_err());
        assert_eq!(request_id_of(&payload), Some(RequestId(300)));
        // Not a request, or id 0.
        assert_eq!(request_id_of(&[0, 1]), None);
        assert_eq!(request_id_of(&[1, 0, 9]), None);
        assert_eq!(request_id_of(&[1]), None);
    }
}
