//! The operator's certificate tooling (rcgen, ECDSA P-256): a self-signed CA (the trust
//! anchor provisioned on devices), sub-CAs, client certificates for identities, device
//! certificates, and the self-signed certificate of an unprovisioned box.
//!
//! Credentials travel as PEM text. A chain is leaf first, then intermediates; the
//! anchor is never part of a chain, except in the anchor's own credentials (from
//! [`init`]), where the chain is the anchor certificate alone.
//!
//! ```
//! use petrel_proto::tls::{self, ca};
//!
//! # fn main() -> Result<(), tls::TlsError> {
//! let validity = ca::Validity::standard();
//! let root = ca::init("Example operator CA", &validity)?;
//! let ops = ca::issue(&root, "ops", ca::Kind::SubCa, &validity)?;
//! let alice = ca::issue(&ops, "alice", ca::Kind::Client, &validity)?;
//! let anchors = tls::certs_from_pem(ca::anchor_pem(&root)?.as_bytes())?;
//! let identity = tls::peer_identity(&alice.certificates()?, &anchors)?;
//! assert_eq!(identity.as_str(), "ops/alice");
//! # Ok(())
//! # }
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::identity::{common_name, parse};
use super::{CertificateDer, PrivateKeyDer, TlsError, certs_from_pem, fingerprint, key_from_pem};
use crate::msg::Sha256Digest;
use crate::name::Identity;

/// 9999-12-31T23:59:59Z, the "no well-defined expiration" date of RFC 5280 §4.1.2.5.
pub const NOT_AFTER_FOREVER_UNIX: i64 = 253_402_300_799;

/// One day, in seconds: how far back [`Validity::standard`] starts.
const DAY_SECONDS: i64 = 86_400;

/// A certificate and its private key, as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The certificates, leaf first, then intermediates; never the anchor (except the
    /// anchor's own credentials, which are the anchor alone).
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The certificates of the chain, leaf first.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certs_from_pem(self.chain_pem.as_bytes())
    }

    /// The leaf's private key.
    pub fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        key_from_pem(self.key_pem.as_bytes())
    }

    /// The SHA-256 fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> Result<Sha256Digest, TlsError> {
        let certs = self.certificates()?;
        certs
            .first()
            .map(fingerprint)
            .ok_or(TlsError::NoCertificate)
    }
}

/// When a certificate is valid, in seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second it is valid.
    pub not_before_unix: i64,
    /// The last second it is valid.
    pub not_after_unix: i64,
}

impl Validity {
    /// One day before now until 9999-12-31T23:59:59Z: a box with a wrong clock still
    /// accepts the certificate (DESIGN §5).
    pub fn standard() -> Self {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self {
            not_before_unix: now_unix.saturating_sub(DAY_SECONDS).max(0),
            not_after_unix: NOT_AFTER_FOREVER_UNIX,
        }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), TlsError> {
        if self.not_before_unix > self.not_after_unix {
            return Err(TlsError::Validity);
        }
        let at = |unix| OffsetDateTime::from_unix_timestamp(unix).map_err(|_| TlsError::Validity);
        params.not_before = at(self.not_before_unix)?;
        params.not_after = at(self.not_after_unix)?;
        Ok(())
    }
}

/// What [`issue`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A client certificate for an identity (extended key usage clientAuth).
    Client,
    /// An intermediate CA for a sub-tree of identities (`ops` → `ops/alice`).
    SubCa,
    /// A device certificate (serverAuth, a subject alternative name `hostname`: a DNS
    /// name or an IP address).
    Device {
        /// The name clients connect with.
        hostname: String,
    },
}

fn base_params(common_name: &str, validity: &Validity) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    validity.apply(&mut params)?;
    Ok(params)
}

fn ca_params(params: &mut CertificateParams) {
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
}

fn device_params(
    common_name: &str,
    hostname: &str,
    validity: &Validity,
) -> Result<CertificateParams, TlsError> {
    let mut params =
        CertificateParams::new(vec![hostname.to_owned()]).map_err(TlsError::Generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    validity.apply(&mut params)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn new_key() -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)
}

/// A new self-signed CA named `common_name`: the operator's trust anchor.
pub fn init(common_name: &str, validity: &Validity) -> Result<Credentials, TlsError> {
    let mut params = base_params(common_name, validity)?;
    ca_params(&mut params);
    let key = new_key()?;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok(Credentials {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new certificate named `common_name`, of `kind`, signed by `issuer` (a CA). The new
/// chain is the new leaf followed by the issuer's chain, unless the issuer is
/// self-signed (the anchor, which is never part of a chain).
///
/// For [`Kind::Client`] and [`Kind::SubCa`], `common_name` must be a valid identity
/// component (`[A-Za-z0-9._-]{1,64}`).
pub fn issue(
    issuer: &Credentials,
    common_name: &str,
    kind: Kind,
    validity: &Validity,
) -> Result<Credentials, TlsError> {
    let issuer_chain = issuer.certificates()?;
    let issuer_der = issuer_chain.first().ok_or(TlsError::NoCertificate)?;
    let issuer_cert = parse(issuer_der)?;
    if !issuer_cert.is_ca() {
        return Err(TlsError::NotCa);
    }
    let issuer_key = KeyPair::from_pem(&issuer.key_pem).map_err(TlsError::Generate)?;
    if issuer_key.public_key_raw() != issuer_cert.public_key().subject_public_key.data.as_ref() {
        return Err(TlsError::KeyMismatch);
    }
    let self_signed = is_self_signed(&issuer_cert);

    let params = match kind {
        Kind::Client | Kind::SubCa => {
            if common_name.contains('/') {
                return Err(TlsError::Identity(crate::name::NameError::BadChar('/')));
            }
            Identity::new(common_name).map_err(TlsError::Identity)?;
            let mut params = base_params(common_name, validity)?;
            if kind == Kind::SubCa {
                ca_params(&mut params);
            } else {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            params
        }
        Kind::Device { hostname } => device_params(common_name, &hostname, validity)?,
    };
    let signer = Issuer::from_ca_cert_der(issuer_der, issuer_key).map_err(TlsError::Generate)?;
    let key = new_key()?;
    let cert = params
        .signed_by(&key, &signer)
        .map_err(TlsError::Generate)?;

    let mut chain_pem = cert.pem();
    if !self_signed {
        for der in &issuer_chain {
            chain_pem.push_str(&cert_pem(der));
        }
    }
    Ok(Credentials {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// A self-signed device certificate named `hostname` (common name and subject
/// alternative name), valid per [`Validity::standard`]: what an unprovisioned box
/// presents; clients pin its fingerprint.
pub fn self_signed_device(hostname: &str) -> Result<Credentials, TlsError> {
    let params = device_params(hostname, hostname, &Validity::standard())?;
    let key = new_key()?;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok(Credentials {
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The anchor certificate of the anchor's own credentials (from [`init`]), as PEM: what
/// devices are provisioned with and clients trust.
pub fn anchor_pem(anchor: &Credentials) -> Result<String, TlsError> {
    let certs = anchor.certificates()?;
    let [cert] = certs.as_slice() else {
        return Err(TlsError::NotAnchor);
    };
    let parsed = parse(cert)?;
    if !parsed.is_ca() || !is_self_signed(&parsed) {
        return Err(TlsError::NotAnchor);
    }
    Ok(cert_pem(cert))
}

/// `der` as a PEM `CERTIFICATE` block, 64 columns, ending in a newline.
pub fn cert_pem(der: &CertificateDer<'_>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.as_ref().chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                b64.push(char::from(ALPHABET[index as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn is_self_signed(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// What `petrelctl ca show` prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's distinguished name (RFC 4514 text).
    pub subject: String,
    /// The subject's common name, if it has exactly one.
    pub common_name: Option<String>,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The first second of validity.
    pub not_before_unix: i64,
    /// The last second of validity.
    pub not_after_unix: i64,
    /// Whether it may issue certificates.
    pub is_ca: bool,
    /// Whether it is self-signed (issuer is subject and its own key verifies it).
    pub self_signed: bool,
    /// The DNS names and IP addresses in its subject alternative names.
    pub names: Vec<String>,
    /// The SHA-256 of its DER.
    pub fingerprint: Sha256Digest,
}

/// Describes one certificate.
pub fn summary(der: &CertificateDer<'_>) -> Result<CertSummary, TlsError> {
    let cert = parse(der)?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        common_name: common_name(&cert).ok(),
        issuer: cert.issuer().to_string(),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        self_signed: is_self_signed(&cert),
        names,
        fingerprint: fingerprint(der),
    })
}
