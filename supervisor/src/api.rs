//! The boundary between the management server (transport: sockets, TLS, frames,
//! streams) and the service (the core that owns the unikernels).
//!
//! The server authenticates the peer, decodes one [`Command`] at a time and calls
//! [`Service::call`]; the [`Outcome`] says whether to reply at once or to run a data
//! stream first. The server alone speaks the stream protocol (`Proceed`, `Data` chunks of
//! at most [`petrel_proto::msg::MAX_CHUNK_BYTES`], `End` with the size and sha256,
//! `Cancel`), so the service never sees a frame.

use std::time::Duration;

use petrel_proto::msg::{Command, Error, ReplyBody, Sha256Digest};
use petrel_proto::name::Identity;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The local Unix socket (root only, mode 0600): may do everything.
    Local,
    /// A TLS client whose certificate chain ends at the trust anchor; the identity is
    /// the path of common names below the anchor (DESIGN §5).
    Remote(Identity),
}

/// What the server does with a command.
pub enum Outcome {
    /// Send this reply.
    Reply(ReplyBody),
    /// Reply `Proceed`, then take the client's `Data` chunks into the sink. The server
    /// checks them against [`Sink::expected`] (size before each write, digest at `End`);
    /// on a match it sends the reply of [`Sink::finish`], otherwise (mismatch, `Abort`,
    /// a dropped connection) it calls [`Sink::abort`] and, if it still can, replies with
    /// the error.
    Receive(Box<dyn Sink>),
    /// Reply `Proceed`, then send the source's data as chunks until [`Pull::End`], then
    /// `End` with the size and digest of what was sent (or `Abort` on [`Pull::Failed`]).
    /// A `Cancel` from the client, or its going away, drops the source.
    Send(Box<dyn Source>),
}

/// Where an upload goes (an image, a block device's contents).
pub trait Sink: Send {
    /// The size and digest the request announced.
    fn expected(&self) -> (u64, Sha256Digest);
    /// Stores the next piece, in order. An error ends the stream (the server replies it).
    fn write(&mut self, data: &[u8]) -> Result<(), Error>;
    /// Every byte arrived and the digest matched: commit, and say what to reply
    /// (`ReplyBody::Error` if committing failed).
    fn finish(self: Box<Self>) -> ReplyBody;
    /// The stream failed or was abandoned: discard everything written.
    fn abort(self: Box<Self>);
}

/// One step of a [`Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// More data, at most [`petrel_proto::msg::MAX_CHUNK_BYTES`].
    Data(Vec<u8>),
    /// Nothing new within the wait (a live follow); ask again.
    Idle,
    /// No more data.
    End,
    /// The source failed; the stream ends with `Abort`.
    Failed(Error),
}

/// Where a download comes from (console, logs, a block device's contents).
pub trait Source: Send {
    /// The next piece, waiting at most `wait` for live data.
    fn next(&mut self, wait: Duration) -> Pull;
}

/// The core, as the server sees it. Called from many connection threads at once.
pub trait Service: Send + Sync + 'static {
    /// Carries out one command for `caller` (authorization included).
    fn call(&self, caller: &Caller, command: Command) -> Outcome;
}
