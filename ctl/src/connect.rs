//! Where to connect and as whom: flags over the configuration file over defaults, the
//! identity directory, and the [`Endpoint`] the client library dials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petrel_proto::msg::Sha256Digest;
use petrel_proto::name::Identity;
use petrel_proto::tls::{self, CertificateDer, PrivateKeyDer, ServerCheck};

use crate::cli::Cli;
use crate::client::Endpoint;
use crate::config::{Config, expand_home, home};
use crate::error::CtlError;
use crate::units::parse_sha256;

/// The daemon's socket when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/run/petrel/petreld.sock";

/// The management port.
pub const DEFAULT_PORT: u16 = 1025;

/// The timeout when nothing else is said.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The identity directory's files.
pub const CERT_FILE: &str = "cert.pem";
/// The private key (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// The trust anchor.
pub const ANCHOR_FILE: &str = "ca.pem";

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local Unix socket.
    Unix(PathBuf),
    /// An appliance over TLS.
    Tls {
        /// `ADDR:PORT`.
        addr: String,
        /// The identity directory.
        identity: PathBuf,
        /// How the device is checked: a pinned fingerprint, or this name (with the anchor).
        pin: Option<Sha256Digest>,
        /// The device name (when not pinned).
        name: String,
    },
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where.
    pub target: Target,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// The owner for bare names, if set by flag or configuration.
    pub owner: Option<Identity>,
}

/// `ADDR` → `ADDR:1025`; `ADDR:PORT` as is; IPv6 `::1` → `[::1]:1025`. Returns the
/// address to dial and the host part (the default device name).
pub fn host_addr(host: &str) -> (String, String) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once(']') {
            let addr = if port.starts_with(':') {
                host.to_owned()
            } else {
                format!("[{ip}]:{DEFAULT_PORT}")
            };
            return (addr, ip.to_owned());
        }
    }
    match host.matches(':').count() {
        0 => (format!("{host}:{DEFAULT_PORT}"), host.to_owned()),
        1 => {
            let (h, _) = host.split_once(':').unwrap_or((host, ""));
            (host.to_owned(), h.to_owned())
        }
        _ => (format!("[{host}]:{DEFAULT_PORT}"), host.to_owned()),
    }
}

/// Resolves the connection settings from the global flags and the configuration.
pub fn resolve(cli: &Cli, config: &Config) -> Result<Settings, CtlError> {
    if cli.socket.is_some() && cli.host.is_some() {
        return Err(CtlError::usage("give --socket or --host, not both"));
    }
    let owner = cli
        .owner
        .as_deref()
        .or(config.owner.as_deref())
        .map(|o| Identity::new(o).map_err(|e| CtlError::usage(format!("owner {o:?}: {e}"))))
        .transpose()?;
    let timeout = cli
        .timeout
        .or(config.timeout_s)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let host = match &cli.socket {
        Some(_) => None,
        None => cli.host.as_deref().or(config.host.as_deref()),
    };
    let target = match host {
        None => Target::Unix(
            cli.socket
                .as_deref()
                .map(|s| expand_home(Path::new(s)))
                .or_else(|| config.socket.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
        ),
        Some(host) => {
            let (addr, host_name) = host_addr(host);
            let identity = cli
                .identity
                .as_deref()
                .map(|s| expand_home(Path::new(s)))
                .or_else(|| config.identity.clone())
                .or_else(|| home().map(|h| h.join(".config/petrel/identity")))
                .ok_or_else(|| CtlError::usage("no --identity and no $HOME to look in"))?;
            let pin = cli
                .pin
                .as_deref()
                .or(config.pin.as_deref())
                .map(|p| parse_sha256(p).map(Sha256Digest).map_err(CtlError::Usage))
                .transpose()?;
            let name = cli
                .name
                .clone()
                .or_else(|| config.name.clone())
                .unwrap_or(host_name);
            Target::Tls {
                addr,
                identity,
                pin,
                name,
            }
        }
    };
    Ok(Settings {
        target,
        timeout,
        owner,
    })
}

/// The credentials of an identity directory.
pub struct IdentityDir {
    /// `cert.pem`: leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// `key.pem`.
    pub key: PrivateKeyDer<'static>,
    /// `ca.pem`.
    pub anchors: Vec<CertificateDer<'static>>,
}

fn read_pem(dir: &Path, file: &str) -> Result<Vec<u8>, CtlError> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|e| CtlError::Connect(format!("identity {}: {e}", path.display())))
}

fn pem_error(dir: &Path, file: &str, e: &tls::TlsError) -> CtlError {
    CtlError::Connect(format!("identity {}: {e}", dir.join(file).display()))
}

impl IdentityDir {
    /// Reads `cert.pem`, `key.pem` and `ca.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CtlError> {
        let chain = tls::certs_from_pem(&read_pem(dir, CERT_FILE)?)
            .map_err(|e| pem_error(dir, CERT_FILE, &e))?;
        let key = tls::key_from_pem(&read_pem(dir, KEY_FILE)?)
            .map_err(|e| pem_error(dir, KEY_FILE, &e))?;
        let anchors = tls::certs_from_pem(&read_pem(dir, ANCHOR_FILE)?)
            .map_err(|e| pem_error(dir, ANCHOR_FILE, &e))?;
        Ok(Self {
            chain,
            key,
            anchors,
        })
    }

    /// The identity the daemon will see: the common names below the anchor.
    pub fn identity(&self) -> Result<Identity, tls::TlsError> {
        tls::peer_identity(&self.chain, &self.anchors)
    }
}

/// The endpoint for `target`, and the caller's identity when it has one (TLS).
pub fn endpoint(target: &Target) -> Result<(Endpoint, Option<Identity>), CtlError> {
    match target {
        Target::Unix(path) => Ok((Endpoint::Unix(path.clone()), None)),
        Target::Tls {
            addr,
            identity,
            pin,
            name,
        } => {
            let dir = IdentityDir::load(identity)?;
            let who = dir.identity().map_err(|e| {
                CtlError::Connect(format!(
                    "identity {}: {e} (is cert.pem issued below ca.pem?)",
                    identity.display()
                ))
            })?;
            let check = match pin {
                Some(digest) => ServerCheck::Pin(*digest),
                None => ServerCheck::Anchor {
                    anchors: dir.anchors.clone(),
                    name: name.clone(),
                },
            };
            let (config, server_name) = tls::client_config(check, dir.chain, dir.key)
                .map_err(|e| CtlError::Connect(format!("TLS setup: {}", error_chain(&e))))?;
            Ok((
                Endpoint::Tls {
                    addr: addr.clone(),
                    config,
                    server_name,
                },
                Some(who),
            ))
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_addresses() {
        assert_eq!(host_addr("box1"), ("box1:1025".into(), "box1".into()));
        assert_eq!(host_addr("box1:99"), ("box1:99".into(), "box1".into()));
        assert_eq!(
            host_addr("10.0.0.1"),
            ("10.0.0.1:1025".into(), "10.0.0.1".into())
        );
        assert_eq!(host_addr("::1"), ("[::1]:1025".into(), "::1".into()));
        assert_eq!(host_addr("[::1]"), ("[::1]:1025".into(), "::1".into()));
        assert_eq!(host_addr("[::1]:7"), ("[::1]:7".into(), "::1".into()));
    }
}
