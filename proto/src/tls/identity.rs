//! Naming a verified client chain: the identity of DESIGN §5.

use x509_parser::certificate::X509Certificate;

use super::{CertificateDer, TlsError};
use crate::name::{Identity, MAX_IDENTITY_DEPTH};

/// Parses one DER certificate; trailing bytes are refused.
pub(super) fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, TlsError> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(TlsError::Certificate(
            "trailing bytes after certificate".to_owned(),
        )),
        Err(e) => Err(TlsError::Certificate(e.to_string())),
    }
}

/// The certificate's only common name, as text.
pub(super) fn common_name(cert: &X509Certificate<'_>) -> Result<String, TlsError> {
    let mut names = cert.subject().iter_common_name();
    let first = names.next().ok_or(TlsError::NoCommonName)?;
    if names.next().is_some() {
        return Err(TlsError::NoCommonName);
    }
    first
        .as_str()
        .map(str::to_owned)
        .map_err(|_| TlsError::NoCommonName)
}

/// Whether `issuer` issued `cert`: names match and the signature verifies.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// The identity of a peer whose chain rustls has already verified: the common names
/// from the certificate just below the anchor down to the leaf, joined with `/`.
///
/// `peer_chain` is as presented (leaf first); the path is walked from the leaf, each
/// step to a presented certificate whose subject is the issuer's name and whose key
/// verifies the signature, until a certificate issued by one of `anchors`. A chain that
/// does not link up, is longer than [`MAX_IDENTITY_DEPTH`], or has a certificate without
/// exactly one common name is refused. A presented copy of the anchor is ignored.
pub fn peer_identity(
    peer_chain: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'_>],
) -> Result<Identity, TlsError> {
    let (leaf, rest) = peer_chain
        .split_first()
        .ok_or(TlsError::NoPeerCertificate)?;
    let anchors_der = anchors;
    let anchors = anchors.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    if anchors.is_empty() {
        return Err(TlsError::NoAnchor);
    }
    let presented = rest.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    let mut used = vec![false; presented.len()];

    if anchors_der_contains(anchors_der, leaf) {
        return Err(TlsError::Unchained);
    }
    let leaf = parse(leaf)?;
    let mut current = &leaf;
    let mut names = vec![common_name(current)?];
    loop {
        if anchors.iter().any(|anchor| issued_by(current, anchor)) {
            break;
        }
        if names.len() >= MAX_IDENTITY_DEPTH {
            return Err(TlsError::Unchained);
        }
        let next = presented
            .iter()
            .zip(used.iter_mut())
            .find(|(candidate, used)| !**used && issued_by(current, candidate));
        let Some((issuer, used)) = next else {
            return Err(TlsError::Unchained);
        };
        *used = true;
        names.push(common_name(issuer)?);
        current = issuer;
    }
    names.reverse();
    Identity::from_components(&names).map_err(TlsError::Identity)
}

/// Whether `cert` is byte for byte one of `anchors`.
fn anchors_der_contains(anchors: &[CertificateDer<'_>], cert: &CertificateDer<'_>) -> bool {
    anchors
        .iter()
        .any(|anchor| anchor.as_ref() == cert.as_ref())
}
