//! `petrelctl ca`: the operator's certificate directories, over
//! [`petrel_proto::tls::ca`].
//!
//! A directory holds `cert.pem` (the certificate, then its chain without the anchor),
//! `key.pem` (mode 0600) and `ca.pem` (the trust anchor) — the layout `--identity`
//! reads. For the anchor itself (`ca init`) `cert.pem` and `ca.pem` are the same
//! certificate. Nothing is ever overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use petrel_proto::msg::Sha256Digest;
use petrel_proto::name::Identity;
use petrel_proto::tls::{self, ca};
use serde_json::{Value, json};

use crate::connect::{ANCHOR_FILE, CERT_FILE, KEY_FILE, error_chain};
use crate::error::CtlError;
use crate::output::Table;
use crate::units::format_unix_s;

/// The mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// The mode of certificates.
pub const CERT_MODE: u32 = 0o644;

/// What [`issue`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    /// A client identity.
    Client,
    /// An intermediate CA.
    SubCa,
    /// A device certificate for this host name.
    Device(String),
}

fn tls_error(what: &str, e: &tls::TlsError) -> CtlError {
    CtlError::Failure(format!("{what}: {}", error_chain(e)))
}

/// Writes the three files into `dir`, creating it (0700) if needed; refuses to
/// overwrite any of them.
fn write_dir(dir: &Path, chain_pem: &str, key_pem: &str, anchor_pem: &str) -> Result<(), CtlError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CtlError::file(dir, e))?;
    let files = [
        (CERT_FILE, chain_pem, CERT_MODE),
        (ANCHOR_FILE, anchor_pem, CERT_MODE),
        (KEY_FILE, key_pem, KEY_MODE),
    ];
    for (name, _, _) in &files {
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(CtlError::Exists(path));
        }
    }
    for (name, text, mode) in files {
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => CtlError::Exists(path.clone()),
                _ => CtlError::file(&path, e),
            })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| CtlError::file(&path, e))?;
    }
    Ok(())
}

fn read(dir: &Path, name: &str) -> Result<String, CtlError> {
    let path = dir.join(name);
    fs::read_to_string(&path).map_err(|e| CtlError::file(&path, e))
}

/// `ca init DIR --name CN`: a new self-signed operator CA. Returns the anchor's
/// fingerprint.
pub fn init(dir: &Path, common_name: &str) -> Result<Sha256Digest, CtlError> {
    let creds = ca::init(common_name, &ca::Validity::standard())
        .map_err(|e| tls_error("creating the CA", &e))?;
    let anchor = ca::anchor_pem(&creds).map_err(|e| tls_error("creating the CA", &e))?;
    write_dir(dir, &creds.chain_pem, &creds.key_pem, &anchor)?;
    creds
        .fingerprint()
        .map_err(|e| tls_error("creating the CA", &e))
}

/// `ca issue NAME --ca CA_DIR --out OUT [--sub-ca | --device HOST]`. Returns the
/// summary of what was written.
pub fn issue(
    common_name: &str,
    ca_dir: &Path,
    out: &Path,
    kind: IssueKind,
) -> Result<Summary, CtlError> {
    let issuer = ca::Credentials {
        chain_pem: read(ca_dir, CERT_FILE)?,
        key_pem: read(ca_dir, KEY_FILE)?,
    };
    let anchor_pem = read(ca_dir, ANCHOR_FILE)?;
    let kind = match kind {
        IssueKind::Client | IssueKind::SubCa => {
            if let Err(e) = Identity::new(common_name).and_then(|_| {
                if common_name.contains('/') {
                    Err(petrel_proto::name::NameError::BadChar('/'))
                } else {
                    Ok(())
                }
            }) {
                return Err(CtlError::usage(format!(
                    "name {common_name:?} is not an identity component: {e}"
                )));
            }
            if kind == IssueKind::SubCa {
                ca::Kind::SubCa
            } else {
                ca::Kind::Client
            }
        }
        IssueKind::Device(hostname) => ca::Kind::Device { hostname },
    };
    let creds = ca::issue(&issuer, common_name, kind, &ca::Validity::standard())
        .map_err(|e| tls_error(&format!("issuing with {}", ca_dir.display()), &e))?;
    write_dir(out, &creds.chain_pem, &creds.key_pem, &anchor_pem)?;
    show(out)
}

/// What `ca show` says about a directory (or a PEM file).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Where it was read.
    pub path: PathBuf,
    /// The leaf's details.
    pub leaf: ca::CertSummary,
    /// Certificates in `cert.pem`.
    pub chain_len: usize,
    /// The identity the daemon would see, if the chain leads to `ca.pem`.
    pub identity: Result<Identity, String>,
    /// Whether the key in `key.pem` is present (its mode, if it is).
    pub key_mode: Option<u32>,
}

/// `ca show DIR`.
pub fn show(path: &Path) -> Result<Summary, CtlError> {
    use std::os::unix::fs::PermissionsExt;
    let (cert_path, dir) = if path.is_dir() {
        (path.join(CERT_FILE), Some(path))
    } else {
        (path.to_owned(), None)
    };
    let pem = fs::read(&cert_path).map_err(|e| CtlError::file(&cert_path, e))?;
    let chain =
        tls::certs_from_pem(&pem).map_err(|e| tls_error(&cert_path.display().to_string(), &e))?;
    let leaf_der = chain
        .first()
        .ok_or_else(|| CtlError::Failure(format!("{}: no certificate", cert_path.display())))?;
    let leaf =
        ca::summary(leaf_der).map_err(|e| tls_error(&cert_path.display().to_string(), &e))?;
    let anchors = dir
        .map(|d| d.join(ANCHOR_FILE))
        .and_then(|p| fs::read(p).ok());
    let identity = match anchors {
        None => Err("no ca.pem next to it".to_owned()),
        Some(anchor_pem) => match tls::certs_from_pem(&anchor_pem) {
            Err(e) => Err(format!("ca.pem: {}", error_chain(&e))),
            Ok(anchors) if anchors.iter().any(|a| a == leaf_der) => {
                Err("none: this is the trust anchor".to_owned())
            }
            Ok(anchors) => tls::peer_identity(&chain, &anchors).map_err(|e| error_chain(&e)),
        },
    };
    let key_mode = dir
        .and_then(|d| fs::metadata(d.join(KEY_FILE)).ok())
        .map(|m| m.permissions().mode() & 0o7777);
    Ok(Summary {
        path: path.to_owned(),
        leaf,
        chain_len: chain.len(),
        identity,
        key_mode,
    })
}

impl Summary {
    fn role(&self) -> &'static str {
        match (
            self.leaf.is_ca,
            self.leaf.self_signed,
            self.leaf.names.is_empty(),
        ) {
            (true, true, _) => "trust anchor (operator CA)",
            (true, false, _) => "sub-CA",
            (false, _, false) => "device",
            (false, _, true) => "client",
        }
    }

    /// For people.
    pub fn render(&self) -> String {
        let mut t = Table::default();
        let mut kv = |k: &str, v: String| t.row(vec![k.to_owned(), v]);
        kv("path", self.path.display().to_string());
        kv("role", self.role().to_owned());
        kv("subject", self.leaf.subject.clone());
        kv("issuer", self.leaf.issuer.clone());
        kv(
            "identity",
            match (&self.identity, self.role()) {
                (_, "device") => "(none: a device certificate)".to_owned(),
                (Ok(id), _) => id.to_string(),
                (Err(why), _) => format!("({why})"),
            },
        );
        if !self.leaf.names.is_empty() {
            kv("names", self.leaf.names.join(", "));
        }
        kv("not before", format_unix_s(self.leaf.not_before_unix));
        kv("not after", format_unix_s(self.leaf.not_after_unix));
        kv("sha256", self.leaf.fingerprint.to_string());
        kv(
            "chain",
            format!("{} certificate(s) in cert.pem", self.chain_len),
        );
        if let Some(mode) = self.key_mode {
            kv("key", format!("key.pem, mode {mode:04o}"));
        }
        t.render()
    }

    /// For scripts.
    pub fn json(&self) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "role": self.role(),
            "subject": self.leaf.subject,
            "common_name": self.leaf.common_name,
            "issuer": self.leaf.issuer,
            "identity": self.identity.as_ref().ok().filter(|_| self.role() != "device").map(ToString::to_string),
            "names": self.leaf.names,
            "is_ca": self.leaf.is_ca,
            "self_signed": self.leaf.self_signed,
            "not_before_unix": self.leaf.not_before_unix,
            "not_after_unix": self.leaf.not_after_unix,
            "sha256": self.leaf.fingerprint.to_string(),
            "chain_len": self.chain_len,
            "key_mode": self.key_mode.map(|m| format!("{m:04o}")),
        })
    }
}
