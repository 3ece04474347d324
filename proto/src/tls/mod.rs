//! Mutual TLS for the management protocol (DESIGN §5), with rustls and the `ring`
//! provider only.
//!
//! - [`certs_from_pem`], [`key_from_pem`], [`fingerprint`]: reading credentials.
//! - [`server_config`]: the daemon's side — TLS 1.3 only, a client certificate is
//!   required and must chain to one of the operator's trust anchors.
//! - [`peer_identity`]: names a verified client chain — the common names from just
//!   below the anchor down to the leaf, joined with `/` (`ops/alice`).
//! - [`client_config`]: `petrelctl`'s side — the device is checked against the anchor
//!   and its name ([`ServerCheck::Anchor`]) or, for an unprovisioned box, against a
//!   pinned certificate fingerprint ([`ServerCheck::Pin`]).
//! - [`ca`]: the operator's certificate tooling (rcgen, ECDSA P-256).
//!
//! Every function that reads PEM or DER returns an error on bad input; none panics.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;

use crate::msg::Sha256Digest;
use crate::name::NameError;

pub mod ca;
mod identity;
mod pin;

pub use rustls;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use identity::peer_identity;

/// The server name a client sends when it checks the device by [`ServerCheck::Pin`]:
/// the device's certificate names are not checked then, so any valid name does.
pub const PINNED_SERVER_NAME: &str = "petrel-device";

/// Why a TLS configuration, a credential or a peer chain was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM text could not be read.
    #[error("malformed PEM")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The PEM text holds no certificate.
    #[error("no certificate in PEM")]
    NoCertificate,
    /// The PEM text holds no private key.
    #[error("no private key in PEM")]
    NoKey,
    /// A certificate's DER could not be parsed.
    #[error("malformed certificate")]
    Certificate(String),
    /// No trust anchor was given, or none could be used.
    #[error("no usable trust anchor")]
    NoAnchor,
    /// A trust anchor was refused.
    #[error("unusable trust anchor")]
    Anchor(#[source] rustls::Error),
    /// rustls refused the configuration (protocol versions, certificate or key).
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client verifier refused")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// The device name is not a valid DNS name or IP address.
    #[error("invalid device name {0:?}")]
    ServerName(String),
    /// The peer presented no certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The presented chain does not link up to a trust anchor.
    #[error("certificate chain does not lead to a trust anchor")]
    Unchained,
    /// A certificate on the path has no usable common name.
    #[error("certificate without a usable common name")]
    NoCommonName,
    /// The common names do not form a valid identity.
    #[error("common names do not form an identity")]
    Identity(#[source] NameError),
    /// Certificate generation failed.
    #[error("certificate generation failed")]
    Generate(#[source] rcgen::Error),
    /// The issuing credentials are not a certificate authority.
    #[error("issuer is not a certificate authority")]
    NotCa,
    /// A validity period that cannot be encoded or is empty.
    #[error("invalid validity period")]
    Validity,
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate")]
    KeyMismatch,
    /// The credentials do not start from a self-signed certificate.
    #[error("credentials are not a self-signed anchor")]
    NotAnchor,
}

/// The certificates in `pem`, in order. Anything but `CERTIFICATE` sections is skipped;
/// each certificate must parse as X.509.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(TlsError::Pem)?;
        identity::parse(&cert)?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, SEC1 or PKCS#1).
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey),
        Err(e) => Err(TlsError::Pem(e)),
    }
}

/// The SHA-256 of the certificate's DER: what `petrelctl --pin` takes.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Sha256Digest {
    Sha256Digest::of(cert.as_ref())
}

/// The one crypto provider: ring, TLS 1.3 cipher suites only.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(anchors: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots.add(anchor.clone()).map_err(TlsError::Anchor)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoAnchor);
    }
    Ok(Arc::new(roots))
}

/// The daemon's TLS configuration: TLS 1.3 only, ring, presenting `chain` (leaf first)
/// with `key`, and requiring a client certificate that chains to one of `anchors`.
pub fn server_config(
    anchors: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(root_store(anchors)?, provider.clone())
            .build()
            .map_err(TlsError::Verifier)?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// How the client checks the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// Ordinary WebPKI verification: the device's certificate chains to one of
    /// `anchors` and names `name` (a DNS name or IP address).
    Anchor {
        /// The operator's trust anchors.
        anchors: Vec<CertificateDer<'static>>,
        /// The device's name as it appears in its certificate.
        name: String,
    },
    /// An unprovisioned box: accept exactly the end-entity certificate with this
    /// SHA-256 fingerprint, whatever its name, issuer or validity. The handshake
    /// signature is still verified against that certificate's key.
    Pin(Sha256Digest),
}

/// `petrelctl`'s TLS configuration: TLS 1.3 only, ring, presenting `chain` (leaf first)
/// with `key`, checking the device as `check` says. Returns the server name to connect
/// with.
pub fn client_config(
    check: ServerCheck,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?;
    let (builder, server_name) = match check {
        ServerCheck::Anchor { anchors, name } => {
            let server_name =
                ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
            (
                builder.with_root_certificates(root_store(&anchors)?),
                server_name,
            )
        }
        ServerCheck::Pin(digest) => {
            let verifier = Arc::new(pin::PinnedServer::new(digest, provider));
            let server_name = ServerName::try_from(PINNED_SERVER_NAME)
                .map_err(|_| TlsError::ServerName(PINNED_SERVER_NAME.to_owned()))?;
            (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier),
                server_name,
            )
        }
    };
    let config = builder
        .with_client_auth_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok((Arc::new(config), server_name))
}
