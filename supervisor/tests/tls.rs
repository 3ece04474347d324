//! Mutual TLS against a real `petreld` on the namespace's loopback: identities from the
//! client chain, and refusals — no client certificate, a certificate from another CA,
//! an expired one, one not yet valid — after each of which the daemon still serves.
//! The client side: wrong device name, wrong pin, the right pin; an unprovisioned daemon
//! with its own self-signed certificate, pinned by the fingerprint it prints.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use petrel_proto::msg::{Command as Cmd, ReplyBody, Sha256Digest};
use petrel_proto::tls::{self, ServerCheck, rustls};
use petrelctl::client::{Client, ClientError, Endpoint};

/// A refused connection: either the connect fails, or the first request does.
fn assert_refused(what: &str, r: Result<Client, ClientError>) {
    match r {
        Err(_) => {}
        Ok(mut c) => {
            let r = c.call(Cmd::Info { name: None });
            assert!(r.is_err(), "{what}: the daemon served a request: {r:?}");
        }
    }
}

/// The daemon still takes a good client.
fn still_serves(d: &Daemon) {
    let mut c = d.remote("ops");
    assert!(
        matches!(c.call(Cmd::Info { name: None }), Ok(ReplyBody::Info(_))),
        "a good client is served"
    );
}

#[test]
fn identities_and_refusals() {
    let d = Daemon::start("tls");
    let mut local = d.local();
    set_policy(&mut local, "ops", roomy_policy());
    set_policy(&mut local, "ops/alice", roomy_policy());

    // Good identities, through a sub-CA too; the identity picks the namespace.
    let mut ops = d.remote("ops");
    create(&mut ops, &Spec::new("ops:mine", "hello"));
    let mut alice = d.remote("ops/alice");
    create(&mut alice, &Spec::new("ops/alice:mine", "hello"));
    let (k, _) = kind_of(try_create(&mut alice, &Spec::new("ops:not-hers", "hello")));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded),
        "{k:?}"
    );

    // No client certificate.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for a in d.pki.anchors() {
            r.add(a).expect("anchor");
        }
        r
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name =
        rustls::pki_types::ServerName::try_from(DEVICE_NAME.to_owned()).expect("server name");
    let ep = Endpoint::Tls {
        addr: format!("127.0.0.1:{TLS_PORT}"),
        config: Arc::new(config),
        server_name,
    };
    assert_refused(
        "no client certificate",
        d.ns.run(move || Client::connect(&ep, std::time::Duration::from_secs(5))),
    );
    still_serves(&d);

    // A certificate from another CA, with the very same identity.
    let other = Pki::new("petrel-test-ca");
    assert_refused("another CA", d.try_remote(&other.identity("ops")));
    still_serves(&d);

    // Expired, and not yet valid.
    let expired = d.pki.identity_with("ops", &validity(-2 * 86_400, -86_400));
    assert_refused("an expired certificate", d.try_remote(&expired));
    let early = d.pki.identity_with("ops", &validity(86_400, 2 * 86_400));
    assert_refused("a certificate not yet valid", d.try_remote(&early));
    still_serves(&d);

    // A sub-CA certificate from another CA under the right names: still refused.
    assert_refused(
        "a chain through another CA",
        d.try_remote(&other.identity("ops/alice")),
    );
    still_serves(&d);

    // The client side: the device must carry the expected name, or the pinned key.
    let creds = d.pki.identity("ops");
    let wrong_name = ServerCheck::Anchor {
        anchors: d.pki.anchors(),
        name: "someone-else.invalid".to_owned(),
    };
    assert!(
        d.try_remote_checked(&creds, wrong_name).is_err(),
        "the client refuses a device certificate for another name"
    );
    let wrong_anchor = ServerCheck::Anchor {
        anchors: other.anchors(),
        name: DEVICE_NAME.to_owned(),
    };
    assert!(
        d.try_remote_checked(&creds, wrong_anchor).is_err(),
        "the client refuses a device certificate from another CA"
    );
    assert!(
        d.try_remote_checked(&creds, ServerCheck::Pin(Sha256Digest([7; 32])))
            .is_err(),
        "the client refuses a device whose fingerprint is not the pin"
    );
    let leaf = tls::certs_from_pem(d.pki.device.chain_pem.as_bytes()).expect("device chain");
    let pin = tls::fingerprint(&leaf[0]);
    let mut pinned = d
        .try_remote_checked(&creds, ServerCheck::Pin(pin))
        .expect("the pinned device certificate is accepted");
    assert!(matches!(
        pinned.call(Cmd::Info { name: None }),
        Ok(ReplyBody::Info(_))
    ));

    // The local socket is root only.
    let mode = std::fs::metadata(d.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the Unix socket is 0600");
    let log = d.log().to_lowercase();
    assert!(
        log.contains("refus") || log.contains("reject") || log.contains("fail"),
        "the daemon logs refused handshakes:\n{log}"
    );
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The fingerprint the daemon printed (`device certificate sha256 <hex>`), the last one.
fn printed_fingerprint(d: &Daemon) -> [u8; 32] {
    let log = d.log();
    let hex = log
        .lines()
        .filter_map(|l| l.split("device certificate sha256 ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .next_back()
        .unwrap_or_else(|| panic!("the daemon printed no fingerprint:\n{log}"));
    parse_hex32(hex).unwrap_or_else(|| panic!("not a sha256: {hex:?}"))
}

#[test]
fn unprovisioned_daemon_is_pinned() {
    let mut d = Daemon::start_with(
        "pin",
        Options {
            device_cert: false,
            ..Options::default()
        },
    );
    let mut local = d.local();
    set_policy(&mut local, "ops", roomy_policy());
    let fp = printed_fingerprint(&d);
    let creds = d.pki.identity("ops");
    let mut c = d
        .try_remote_checked(&creds, ServerCheck::Pin(Sha256Digest(fp)))
        .expect("pin the printed fingerprint");
    assert!(matches!(
        c.call(Cmd::Info { name: None }),
        Ok(ReplyBody::Info(_))
    ));
    assert!(
        d.try_remote(&creds).is_err(),
        "a self-signed device certificate does not pass the anchor check"
    );

    // Generated once: the same certificate after a restart, its key private.
    let keys = d.data_dir().join("keys");
    let private: Vec<_> = std::fs::read_dir(&keys)
        .unwrap_or_else(|e| panic!("{}: {e}", keys.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("key"))
        .collect();
    assert!(!private.is_empty(), "a key file in DATA/keys/");
    for e in private {
        let mode = e.metadata().expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{:?} is private: {mode:o}", e.path());
    }
    drop(c);
    drop(local);
    d.restart();
    assert_eq!(
        printed_fingerprint(&d),
        fp,
        "the device certificate is kept"
    );
}
