//! Errors and the exit codes scripts rely on.
//!
//! Every failure of `petrelctl` is one [`CtlError`], printed once as one line on
//! stderr (`petrelctl: <what>: <cause>`), and mapped to an [`Exit`] code. The table is
//! part of the command line contract: codes are only ever added.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use petrel_proto::msg::{Error as RemoteError, ErrorKind};

/// The exit codes (see the crate documentation for the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Anything not covered below: a local file, the daemon failing, a corrupt transfer.
    Failure = 1,
    /// The command line is wrong (unknown flag, bad value, missing `--yes`).
    Usage = 2,
    /// No connection: socket or host unreachable, TLS refused, protocol mismatch.
    Connect = 3,
    /// No such unikernel, block device, policy or file on the daemon.
    NotFound = 4,
    /// Permission denied or over a quota.
    Denied = 5,
    /// The name is taken (on the daemon, or a file `ca` would overwrite).
    Exists = 6,
    /// Busy: the block device is attached or being transferred.
    Busy = 7,
    /// The daemon refused the request as invalid (bad arguments, manifest mismatch).
    Invalid = 8,
    /// The daemon does not implement this command (e.g. reboot outside an appliance).
    Unsupported = 9,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The code for a daemon's error kind.
    pub fn for_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded => Self::Denied,
            ErrorKind::AlreadyExists => Self::Exists,
            ErrorKind::Busy => Self::Busy,
            ErrorKind::BadRequest | ErrorKind::ManifestMismatch => Self::Invalid,
            ErrorKind::Unsupported => Self::Unsupported,
            ErrorKind::VersionMismatch | ErrorKind::Malformed => Self::Connect,
            ErrorKind::DigestMismatch | ErrorKind::Internal | ErrorKind::Other => Self::Failure,
        }
    }
}

/// Words for an error kind, as printed.
pub fn kind_words(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Other => "error",
        ErrorKind::VersionMismatch => "protocol version mismatch",
        ErrorKind::Malformed => "protocol error",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::BadRequest => "bad request",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::QuotaExceeded => "quota exceeded",
        ErrorKind::NotFound => "not found",
        ErrorKind::AlreadyExists => "already exists",
        ErrorKind::Busy => "busy",
        ErrorKind::ManifestMismatch => "manifest mismatch",
        ErrorKind::DigestMismatch => "digest mismatch",
        ErrorKind::Internal => "daemon failure",
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A bad command line or a value that does not parse.
    #[error("{0}")]
    Usage(String),
    /// No connection to the daemon, or TLS setup or handshake failed.
    #[error("{0}")]
    Connect(String),
    /// The daemon answered with an error.
    #[error("{}: {}", kind_words(.0.kind), .0.message)]
    Remote(RemoteError),
    /// A local file could not be read or written.
    #[error("{}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file `ca` would overwrite.
    #[error("{} exists; not overwriting it", .0.display())]
    Exists(PathBuf),
    /// Anything else.
    #[error("{0}")]
    Failure(String),
}

impl CtlError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Connect(_) => Exit::Connect,
            Self::Remote(e) => Exit::for_kind(e.kind),
            Self::File { .. } | Self::Failure(_) => Exit::Failure,
            Self::Exists(_) => Exit::Exists,
        }
    }

    /// A file error.
    pub fn file(path: &Path, source: io::Error) -> Self {
        Self::File {
            path: path.to_owned(),
            source,
        }
    }

    /// A usage error.
    pub fn usage(message: impl fmt::Display) -> Self {
        Self::Usage(message.to_string())
    }

    /// The one line printed: the error and its causes, joined by `: `.
    pub fn line(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            line.push_str(": ");
            line.push_str(&cause.to_string());
            source = cause.source();
        }
        line.replace('\n', " ")
    }
}
