//! The protocol on one authenticated connection: the hello, then requests one at a
//! time, with the data streams of [`Outcome::Receive`] and [`Outcome::Send`].
//!
//! The rules are in the `server` module's documentation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use petrel_proto::{
    Chunk, Command, Error, ErrorKind, Hello, MAX_CHUNK_BYTES, Message, Reply, ReplyBody, RequestId,
    Sha256Digest, Stream, StreamCheck,
};
use sha2::{Digest, Sha256};

use super::transport::{Conn, ConnError, Recv, Wait};
use crate::api::{Caller, Outcome, Pull, Service, Sink, Source};

/// How long a source may wait for live data before we look at the client again.
const PULL_WAIT: Duration = Duration::from_millis(200);

/// How a session ended (for the log).
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed the connection.
    Closed,
    /// Nothing from the client for the idle timeout.
    Idle,
    /// The server is stopping.
    Shutdown,
    /// The client broke the protocol; it was told why (request id 0).
    Protocol(String),
    /// The connection failed.
    Failed(ConnError),
}

/// One connection's protocol state.
pub(crate) struct Session<'a> {
    pub(crate) conn: Conn,
    pub(crate) caller: Caller,
    pub(crate) service: &'a dyn Service,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) idle_timeout: Duration,
    pub(crate) hello_timeout: Duration,
}

/// Control flow inside a session: stop with this end.
type Step<T> = Result<T, End>;

impl Session<'_> {
    /// Runs the session to its end.
    pub(crate) fn run(mut self) -> End {
        let end = match self.hello() {
            Ok(()) => self.serve(),
            Err(end) => end,
        };
        self.conn.close();
        end
    }

    fn send(&mut self, message: &Message) -> Step<()> {
        self.conn.send(message).map_err(End::Failed)
    }

    fn reply(&mut self, id: RequestId, body: ReplyBody) -> Step<()> {
        match self.conn.send(&Message::Reply(Reply { id, body })) {
            // Our own reply does not encode (over the frame cap): say so instead.
            Err(ConnError::Message { source, .. }) => {
                log::error!("reply to request {} not sent: {source}", id.0);
                let why = format!("the reply could not be sent: {source}");
                self.send(&Message::Reply(Reply::error(id, ErrorKind::Internal, why)))
            }
            other => other.map_err(End::Failed),
        }
    }

    fn chunk(&mut self, id: RequestId, chunk: Chunk) -> Step<()> {
        self.send(&Message::Stream(Stream { id, chunk }))
    }

    /// Tells the client why the connection closes (best effort) and ends it.
    fn refuse<T>(&mut self, kind: ErrorKind, why: String) -> Step<T> {
        let _ = self.conn.send(&Message::Reply(Reply::error(
            RequestId(0),
            kind,
            why.clone(),
        )));
        Err(End::Protocol(why))
    }

    /// The next message, or the end of the session. Undecodable requests are answered
    /// here and skipped.
    fn next(&mut self, wait: Wait) -> Step<Option<Message>> {
        loop {
            match self.conn.recv(wait, self.stop) {
                Ok(Recv::Message(message)) => return Ok(Some(message)),
                Ok(Recv::Timeout) => return Ok(None),
                Ok(Recv::Eof) => return Err(End::Closed),
                Err(ConnError::Shutdown) => return Err(End::Shutdown),
                Err(ConnError::Frame(e)) => {
                    return self.refuse(ErrorKind::Malformed, e.to_string());
                }
                Err(ConnError::Message {
                    request: Some(id),
                    source,
                }) => {
                    let message = format!("request not understood ({source}); a newer client?");
                    self.reply(
                        id,
                        ReplyBody::Error(Error::new(ErrorKind::Unsupported, message)),
                    )?;
                }
                Err(ConnError::Message {
                    request: None,
                    source,
                }) => {
                    return self.refuse(ErrorKind::Malformed, source.to_string());
                }
                Err(e @ ConnError::Io(_)) => return Err(End::Failed(e)),
            }
        }
    }

    /// Waits for a message up to the idle timeout.
    fn next_before_idle(&mut self) -> Step<Message> {
        let deadline = Instant::now() + self.idle_timeout;
        match self.next(Wait::Until(deadline))? {
            Some(message) => Ok(message),
            None => Err(End::Idle),
        }
    }

    fn hello(&mut self) -> Step<()> {
        let deadline = Instant::now() + self.hello_timeout;
        let Some(first) = self.next(Wait::Until(deadline))? else {
            return Err(End::Idle);
        };
        let ours = Hello::new(concat!("petreld ", env!("CARGO_PKG_VERSION")));
        match ours.accept(&first) {
            Ok(_version) => self.send(&Message::Hello(ours)),
            Err(reply) => {
                let why = match &reply.body {
                    ReplyBody::Error(e) => e.message.clone(),
                    _ => String::from("bad hello"),
                };
                let _ = self.conn.send(&Message::Reply(reply));
                Err(End::Protocol(why))
            }
        }
    }

    fn serve(&mut self) -> End {
        loop {
            let step = self
                .next_before_idle()
                .and_then(|message| self.dispatch(message));
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// One message while no stream runs.
    fn dispatch(&mut self, message: Message) -> Step<()> {
        let request = match message {
            Message::Request(request) => request,
            Message::Hello(_) => {
                return self.refuse(ErrorKind::Malformed, "a second hello".into());
            }
            Message::Reply(_) => {
                return self.refuse(ErrorKind::Malformed, "a reply from the client".into());
            }
            Message::Stream(s) => {
                return self.refuse(
                    ErrorKind::Malformed,
                    format!("stream chunk for request {} with no stream running", s.id.0),
                );
            }
        };
        let id = request.id;
        if id == RequestId(0) {
            return self.reply(
                id,
                ReplyBody::Error(Error::new(
                    ErrorKind::BadRequest,
                    "request id 0 is reserved",
                )),
            );
        }
        if let Command::Cancel { id: target } = request.command {
            return self.reply(
                id,
                ReplyBody::Error(Error::new(
                    ErrorKind::NotFound,
                    format!("no stream of request {} is running", target.0),
                )),
            );
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(End::Shutdown);
        }
        match self.service.call(&self.caller, request.command) {
            Outcome::Reply(body) => self.reply(id, body),
            Outcome::Receive(sink) => self.receive(id, sink),
            Outcome::Send(source) => self.send_stream(id, source),
        }
    }

    /// Answers a request that arrived while the stream of `streaming` runs. Returns
    /// whether it cancelled that stream (the caller then sends the stream's end and
    /// the reply to `cancel`).
    fn during_stream(&mut self, streaming: RequestId, message: Message) -> Step<Option<RequestId>> {
        match message {
            Message::Request(request) => match request.command {
                Command::Cancel { id } if id == streaming => Ok(Some(request.id)),
                Command::Cancel { id } => {
                    let e = Error::new(
                        ErrorKind::NotFound,
                        format!("no stream of request {} is running", id.0),
                    );
                    self.reply(request.id, ReplyBody::Error(e))?;
                    Ok(None)
                }
                _ => {
                    let e = Error::new(
                        ErrorKind::Busy,
                        format!(
                            "request {} is streaming; one request at a time per connection",
                            streaming.0
                        ),
                    );
                    self.reply(request.id, ReplyBody::Error(e))?;
                    Ok(None)
                }
            },
            Message::Stream(s) => self.refuse(
                ErrorKind::Malformed,
                format!("stream chunk for request {} out of turn", s.id.0),
            ),
            Message::Hello(_) | Message::Reply(_) => self.refuse(
                ErrorKind::Malformed,
                "unexpected message during a stream".into(),
            ),
        }
    }

    /// An upload: `Proceed`, the client's chunks into the sink, the final reply.
    fn receive(&mut self, id: RequestId, sink: Box<dyn Sink>) -> Step<()> {
        let mut upload = Upload::new(sink);
        let result = self.receive_into(id, &mut upload);
        // Whatever happened, an unfinished sink is discarded.
        upload.abort();
        result
    }

    fn receive_into(&mut self, id: RequestId, upload: &mut Upload) -> Step<()> {
        self.reply(id, ReplyBody::Proceed)?;
        loop {
            let message = self.next_before_idle()?;
            let chunk = match message {
                Message::Stream(Stream { id: sid, chunk }) if sid == id => chunk,
                other => {
                    if let Some(cancel) = self.during_stream(id, other)? {
                        if let Some(e) = upload.fail(ErrorKind::BadRequest, "upload cancelled") {
                            self.reply(id, ReplyBody::Error(e))?;
                        }
                        return self.reply(cancel, ReplyBody::Ok);
                    }
                    continue;
                }
            };
            match chunk {
                Chunk::Data(data) => {
                    if let Some(e) = upload.data(&data) {
                        // Tell the client now; its remaining chunks are drained.
                        self.reply(id, ReplyBody::Error(e))?;
                    }
                }
                Chunk::End {
                    total_bytes,
                    sha256,
                } => {
                    return match upload.end(total_bytes, sha256) {
                        Some(body) => self.reply(id, body),
                        None => Ok(()),
                    };
                }
                Chunk::Abort(e) => {
                    let why = format!("upload aborted by the client: {}", e.message);
                    return match upload.fail(ErrorKind::BadRequest, &why) {
                        Some(e) => self.reply(id, ReplyBody::Error(e)),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    /// A download: `Proceed`, the source's chunks, `End` (or `Abort`).
    fn send_stream(&mut self, id: RequestId, mut source: Box<dyn Source>) -> Step<()> {
        self.reply(id, ReplyBody::Proceed)?;
        let mut hasher = Sha256::new();
        let mut total_bytes: u64 = 0;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                let e = Error::new(ErrorKind::Internal, "the daemon is shutting down");
                self.chunk(id, Chunk::Abort(e))?;
                return Err(End::Shutdown);
            }
            // Look at the client without waiting: a cancel, a request out of turn,
            // or its going away.
            while let Some(message) = self.next(Wait::Poll)? {
                if let Some(cancel) = self.during_stream(id, message)? {
                    let sha256 = Sha256Digest(hasher.finalize().into());
                    self.chunk(
                        id,
                        Chunk::End {
                            total_bytes,
                            sha256,
                        },
                    )?;
                    return self.reply(cancel, ReplyBody::Ok);
                }
            }
            match source.next(PULL_WAIT) {
                Pull::Data(data) => {
                    for piece in data.chunks(MAX_CHUNK_BYTES) {
                        hasher.update(piece);
                        total_bytes = total_bytes.saturating_add(piece.len() as u64);
                        self.chunk(id, Chunk::Data(piece.to_vec()))?;
                    }
                }
                Pull::Idle => {}
                Pull::End => {
                    let sha256 = Sha256Digest(hasher.finalize().into());
                    return self.chunk(
                        id,
                        Chunk::End {
                            total_bytes,
                            sha256,
                        },
                    );
                }
                Pull::Failed(e) => return self.chunk(id, Chunk::Abort(e)),
            }
        }
    }
}

/// An upload in progress: the sink (until it is finished or discarded) and the check
/// of size and digest.
struct Upload {
    sink: Option<Box<dyn Sink>>,
    check: Option<StreamCheck>,
}

impl Upload {
    fn new(sink: Box<dyn Sink>) -> Self {
        let (size_bytes, sha256) = sink.expected();
        Self {
            sink: Some(sink),
            check: Some(StreamCheck::new(size_bytes, sha256)),
        }
    }

    /// Discards the sink, if still held.
    fn abort(&mut self) {
        self.check = None;
        if let Some(sink) = self.sink.take() {
            sink.abort();
        }
    }

    /// Fails the upload: the error to reply, unless it failed already (then the reply
    /// went out before).
    fn fail(&mut self, kind: ErrorKind, why: &str) -> Option<Error> {
        let live = self.sink.is_some();
        self.abort();
        live.then(|| Error::new(kind, why))
    }

    /// A data chunk: the error to reply if it fails the upload now.
    fn data(&mut self, data: &[u8]) -> Option<Error> {
        let (Some(check), Some(sink)) = (self.check.as_mut(), self.sink.as_mut()) else {
            return None; // draining after a failure
        };
        if let Err(e) = check.data(data) {
            return self.fail(ErrorKind::DigestMismatch, &e.to_string());
        }
        if let Err(e) = sink.write(data) {
            self.abort();
            return Some(e);
        }
        None
    }

    /// The `End` chunk: the final reply, unless the upload failed before.
    fn end(&mut self, total_bytes: u64, sha256: Sha256Digest) -> Option<ReplyBody> {
        let (Some(check), Some(sink)) = (self.check.take(), self.sink.take()) else {
            return None;
        };
        match check.end(total_bytes, sha256) {
            Ok(_) => Some(sink.finish()),
            Err(e) => {
                sink.abort();
                Some(ReplyBody::Error(Error::new(
                    ErrorKind::DigestMismatch,
                    e.to_string(),
                )))
            }
        }
    }
}
