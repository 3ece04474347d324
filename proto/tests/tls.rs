//! Mutual TLS over loopback TCP, both sides real rustls with the configs of
//! `petrel_proto::tls`, plus the identity walk and the certificate tooling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use petrel_proto::Sha256Digest;
use petrel_proto::tls::ca::{self, Credentials, Kind, Validity};
use petrel_proto::tls::{
    self, CertificateDer, ServerCheck, TlsError, certs_from_pem, client_config, key_from_pem,
    peer_identity, rustls, server_config,
};

const DEVICE: &str = "box1.petrel.test";
const TIMEOUT: Duration = Duration::from_secs(20);

fn now_unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The operator's world: an anchor, a device certificate, clients.
struct World {
    root: Credentials,
    anchors: Vec<CertificateDer<'static>>,
    device: Credentials,
}

impl World {
    fn new() -> Self {
        let validity = Validity::standard();
        let root = ca::init("Petrel test CA", &validity).unwrap();
        let anchors = certs_from_pem(ca::anchor_pem(&root).unwrap().as_bytes()).unwrap();
        let device = ca::issue(
            &root,
            "box1",
            Kind::Device {
                hostname: DEVICE.to_owned(),
            },
            &validity,
        )
        .unwrap();
        Self {
            root,
            anchors,
            device,
        }
    }

    fn server(&self) -> Arc<rustls::ServerConfig> {
        server_for(&self.anchors, &self.device)
    }

    fn client(&self, credentials: &Credentials) -> (Arc<rustls::ClientConfig>, ServerNameOwned) {
        client_config(
            ServerCheck::Anchor {
                anchors: self.anchors.clone(),
                name: DEVICE.to_owned(),
            },
            credentials.certificates().unwrap(),
            credentials.key().unwrap(),
        )
        .unwrap()
    }

    fn issue(&self, name: &str, kind: Kind) -> Credentials {
        ca::issue(&self.root, name, kind, &Validity::standard()).unwrap()
    }
}

type ServerNameOwned = rustls::pki_types::ServerName<'static>;

fn server_for(
    anchors: &[CertificateDer<'static>],
    device: &Credentials,
) -> Arc<rustls::ServerConfig> {
    server_config(
        anchors,
        device.certificates().unwrap(),
        device.key().unwrap(),
    )
    .unwrap()
}

/// What each side saw of one connection.
#[derive(Debug)]
struct Outcome {
    /// The server's handshake result: the peer's identity, or why it refused.
    server: Result<String, String>,
    /// The client's result: the line the server sent (its view of our identity).
    client: Result<String, String>,
}

/// One connection over loopback: the server completes the handshake, names the peer
/// with `peer_identity` and sends the name back as a line.
fn exchange(
    server: Arc<rustls::ServerConfig>,
    anchors: Vec<CertificateDer<'static>>,
    client: Arc<rustls::ClientConfig>,
    name: ServerNameOwned,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = thread::spawn(move || -> Result<String, String> {
        let (mut sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = rustls::ServerConnection::new(server).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                // Deliver the alert, as a real server would.
                let _ = conn.write_tls(&mut sock);
                return Err(e.to_string());
            }
        }
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let chain = conn
            .peer_certificates()
            .ok_or("no peer certificates")?
            .to_vec();
        let identity = peer_identity(&chain, &anchors).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        writeln!(tls, "{}", identity.as_str()).map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| e.to_string())?;
        Ok(identity.as_str().to_owned())
    });

    let client_side = (|| -> Result<String, String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let conn = rustls::ClientConnection::new(client, name).map_err(|e| e.to_string())?;
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
        let mut line = String::new();
        tls.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("connection closed".to_owned());
        }
        Ok(line.trim_end().to_owned())
    })();
    let server = server_side.join().unwrap();
    Outcome {
        server,
        client: client_side,
    }
}

fn assert_refused_by_server(outcome: &Outcome, why: &str) {
    println!("{outcome:?}");
    let err = outcome.server.as_ref().expect_err("server accepted");
    assert!(err.contains(why), "server error {err:?} lacks {why:?}");
    assert!(outcome.client.is_err(), "client got {:?}", outcome.client);
}

fn assert_refused_by_client(outcome: &Outcome, why: &str) {
    println!("{outcome:?}");
    let err = outcome.client.as_ref().expect_err("client accepted");
    assert!(err.contains(why), "client error {err:?} lacks {why:?}");
    assert!(outcome.server.is_err(), "server got {:?}", outcome.server);
}

#[test]
fn handshake_names_a_direct_client() {
    let world = World::new();
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = world.client(&ops);
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_eq!(outcome.server.as_deref(), Ok("ops"));
    assert_eq!(outcome.client.as_deref(), Ok("ops"));
}

#[test]
fn handshake_names_a_client_below_a_sub_ca() {
    let world = World::new();
    let ops = world.issue("ops", Kind::SubCa);
    let alice = ca::issue(&ops, "alice", Kind::Client, &Validity::standard()).unwrap();
    assert_eq!(
        alice.certificates().unwrap().len(),
        2,
        "alice + ops, no anchor"
    );
    let (client, name) = world.client(&alice);
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_eq!(outcome.server.as_deref(), Ok("ops/alice"));
    assert_eq!(outcome.client.as_deref(), Ok("ops/alice"));
}

#[test]
fn device_certificate_below_a_sub_ca_is_accepted() {
    let world = World::new();
    let fleet = world.issue("fleet", Kind::SubCa);
    let device = ca::issue(
        &fleet,
        "box1",
        Kind::Device {
            hostname: DEVICE.to_owned(),
        },
        &Validity::standard(),
    )
    .unwrap();
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = world.client(&ops);
    let outcome = exchange(
        server_for(&world.anchors, &device),
        world.anchors.clone(),
        client,
        name,
    );
    assert_eq!(outcome.server.as_deref(), Ok("ops"));
}

#[test]
fn client_without_certificate_is_refused() {
    let world = World::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(world.anchors[0].clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let outcome = exchange(
        world.server(),
        world.anchors.clone(),
        Arc::new(client),
        DEVICE.try_into().unwrap(),
    );
    assert_refused_by_server(&outcome, "peer sent no certificates");
}

#[test]
fn client_from_another_ca_is_refused() {
    let world = World::new();
    let other = ca::init("Other CA", &Validity::standard()).unwrap();
    let mallory = ca::issue(&other, "ops", Kind::Client, &Validity::standard()).unwrap();
    let (client, name) = world.client(&mallory);
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_refused_by_server(&outcome, "UnknownIssuer");
}

#[test]
fn expired_client_is_refused() {
    let world = World::new();
    let now = now_unix();
    let past = Validity {
        not_before_unix: now - 10 * 86_400,
        not_after_unix: now - 86_400,
    };
    let old = ca::issue(&world.root, "ops", Kind::Client, &past).unwrap();
    let (client, name) = world.client(&old);
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_refused_by_server(&outcome, "certificate expired");
}

#[test]
fn not_yet_valid_client_is_refused() {
    let world = World::new();
    let now = now_unix();
    let future = Validity {
        not_before_unix: now + 86_400,
        not_after_unix: ca::NOT_AFTER_FOREVER_UNIX,
    };
    let early = ca::issue(&world.root, "ops", Kind::Client, &future).unwrap();
    let (client, name) = world.client(&early);
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_refused_by_server(&outcome, "certificate not valid yet");
}

#[test]
fn client_certificate_cannot_serve_as_device() {
    // A client certificate lacks serverAuth: the client refuses it as a device.
    let world = World::new();
    let ops = world.issue("ops", Kind::Client);
    let other = world.issue("other", Kind::Client);
    let (client, name) = client_config(
        ServerCheck::Anchor {
            anchors: world.anchors.clone(),
            name: "other".to_owned(),
        },
        ops.certificates().unwrap(),
        ops.key().unwrap(),
    )
    .unwrap();
    let outcome = exchange(
        server_for(&world.anchors, &other),
        world.anchors.clone(),
        client,
        name,
    );
    assert!(outcome.client.is_err(), "{outcome:?}");
}

#[test]
fn client_refuses_wrong_device_name() {
    let world = World::new();
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = client_config(
        ServerCheck::Anchor {
            anchors: world.anchors.clone(),
            name: "box2.petrel.test".to_owned(),
        },
        ops.certificates().unwrap(),
        ops.key().unwrap(),
    )
    .unwrap();
    let outcome = exchange(world.server(), world.anchors.clone(), client, name);
    assert_refused_by_client(&outcome, "not valid for name");
}

#[test]
fn client_refuses_device_from_another_ca() {
    let world = World::new();
    let other = ca::init("Other CA", &Validity::standard()).unwrap();
    let fake = ca::issue(
        &other,
        "box1",
        Kind::Device {
            hostname: DEVICE.to_owned(),
        },
        &Validity::standard(),
    )
    .unwrap();
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = world.client(&ops);
    let outcome = exchange(
        server_for(&world.anchors, &fake),
        world.anchors.clone(),
        client,
        name,
    );
    assert_refused_by_client(&outcome, "UnknownIssuer");
}

#[test]
fn pinned_self_signed_device_is_accepted() {
    let world = World::new();
    let device = ca::self_signed_device("petrel-unprovisioned").unwrap();
    let pin = device.fingerprint().unwrap();
    assert_eq!(pin, tls::fingerprint(&device.certificates().unwrap()[0]));
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = client_config(
        ServerCheck::Pin(pin),
        ops.certificates().unwrap(),
        ops.key().unwrap(),
    )
    .unwrap();
    let outcome = exchange(
        server_for(&world.anchors, &device),
        world.anchors.clone(),
        client,
        name,
    );
    assert_eq!(outcome.server.as_deref(), Ok("ops"));
    assert_eq!(outcome.client.as_deref(), Ok("ops"));
}

#[test]
fn client_refuses_wrong_pin() {
    let world = World::new();
    let device = ca::self_signed_device("petrel-unprovisioned").unwrap();
    let impostor = ca::self_signed_device("petrel-unprovisioned").unwrap();
    let ops = world.issue("ops", Kind::Client);
    for pin in [Sha256Digest([0; 32]), impostor.fingerprint().unwrap()] {
        let (client, name) = client_config(
            ServerCheck::Pin(pin),
            ops.certificates().unwrap(),
            ops.key().unwrap(),
        )
        .unwrap();
        let outcome = exchange(
            server_for(&world.anchors, &device),
            world.anchors.clone(),
            client,
            name,
        );
        assert_refused_by_client(&outcome, "ApplicationVerificationFailure");
    }
}

/// An impostor that copies the pinned certificate but lacks its key fails the
/// handshake signature check: the pin does not replace the proof of possession.
#[test]
fn pinned_certificate_without_its_key_is_refused() {
    let world = World::new();
    let device = ca::self_signed_device("petrel-unprovisioned").unwrap();
    let other_key = ca::self_signed_device("x").unwrap().key().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider.key_provider.load_private_key(other_key).unwrap();
    let stolen = rustls::sign::CertifiedKey::new(device.certificates().unwrap(), signer);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(world.anchors[0].clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let impostor = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(stolen)));
    let ops = world.issue("ops", Kind::Client);
    let (client, name) = client_config(
        ServerCheck::Pin(device.fingerprint().unwrap()),
        ops.certificates().unwrap(),
        ops.key().unwrap(),
    )
    .unwrap();
    let outcome = exchange(Arc::new(impostor), world.anchors.clone(), client, name);
    assert_refused_by_client(&outcome, "BadSignature");
}

#[test]
fn peer_identity_walks_intermediates_in_any_order() {
    let world = World::new();
    let v = Validity::standard();
    let ops = world.issue("ops", Kind::SubCa);
    let team = ca::issue(&ops, "team.a", Kind::SubCa, &v).unwrap();
    let alice = ca::issue(&team, "alice", Kind::Client, &v).unwrap();
    let chain = alice.certificates().unwrap();
    assert_eq!(chain.len(), 3);
    let name = |chain: &[CertificateDer<'static>]| {
        peer_identity(chain, &world.anchors).map(|i| i.as_str().to_owned())
    };
    assert_eq!(name(&chain).unwrap(), "ops/team.a/alice");
    // Shuffled intermediates, and a presented copy of the anchor, change nothing.
    let mut shuffled = vec![chain[0].clone(), chain[2].clone(), chain[1].clone()];
    assert_eq!(name(&shuffled).unwrap(), "ops/team.a/alice");
    shuffled.push(world.anchors[0].clone());
    assert_eq!(name(&shuffled).unwrap(), "ops/team.a/alice");
    // A missing link, or an unrelated certificate in its place, is refused.
    assert!(matches!(
        name(&[chain[0].clone(), chain[2].clone()]),
        Err(TlsError::Unchained)
    ));
    let stranger = world.issue("team.a", Kind::SubCa).certificates().unwrap();
    assert!(matches!(
        name(&[chain[0].clone(), stranger[0].clone(), chain[2].clone()]),
        Err(TlsError::Unchained)
    ));
    // Other anchors, no anchors, no chain, the anchor itself as leaf.
    let other = certs_from_pem(
        ca::anchor_pem(&ca::init("Other", &v).unwrap())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        peer_identity(&chain, &other),
        Err(TlsError::Unchained)
    ));
    assert!(matches!(
        peer_identity(&chain, &[]),
        Err(TlsError::NoAnchor)
    ));
    assert!(matches!(
        peer_identity(&[], &world.anchors),
        Err(TlsError::NoPeerCertificate)
    ));
    assert!(matches!(
        peer_identity(&world.anchors, &world.anchors),
        Err(TlsError::Unchained)
    ));
}

#[test]
fn peer_identity_refuses_names_that_are_not_identities() {
    let world = World::new();
    for bad in ["a/b", "..", "has space"] {
        // The tooling refuses such client names up front...
        assert!(matches!(
            ca::issue(&world.root, bad, Kind::Client, &Validity::standard()),
            Err(TlsError::Identity(_))
        ));
        // ...and a certificate made otherwise is refused when named.
        let odd = world.issue(
            bad,
            Kind::Device {
                hostname: "x.test".to_owned(),
            },
        );
        assert!(matches!(
            peer_identity(&odd.certificates().unwrap(), &world.anchors),
            Err(TlsError::Identity(_))
        ));
    }
}

#[test]
fn tooling_refusals_and_summary() {
    let world = World::new();
    let v = Validity::standard();
    let ops = world.issue("ops", Kind::Client);
    assert!(matches!(
        ca::issue(&ops, "alice", Kind::Client, &v),
        Err(TlsError::NotCa)
    ));
    let mismatched = Credentials {
        chain_pem: world.root.chain_pem.clone(),
        key_pem: ops.key_pem.clone(),
    };
    assert!(matches!(
        ca::issue(&mismatched, "alice", Kind::Client, &v),
        Err(TlsError::KeyMismatch)
    ));
    assert!(matches!(ca::anchor_pem(&ops), Err(TlsError::NotAnchor)));
    let backwards = Validity {
        not_before_unix: 10,
        not_after_unix: 5,
    };
    assert!(matches!(ca::init("x", &backwards), Err(TlsError::Validity)));
    assert!(matches!(
        ca::init(
            "x",
            &Validity {
                not_before_unix: i64::MIN,
                not_after_unix: 0
            }
        ),
        Err(TlsError::Validity)
    ));

    let standard = Validity::standard();
    let now = now_unix();
    assert!((now - 86_400 - 60..=now - 86_400 + 60).contains(&standard.not_before_unix));
    assert_eq!(standard.not_after_unix, ca::NOT_AFTER_FOREVER_UNIX);

    let root = ca::summary(&world.anchors[0]).unwrap();
    assert!(root.is_ca && root.self_signed);
    assert_eq!(root.common_name.as_deref(), Some("Petrel test CA"));
    let device = ca::summary(&world.device.certificates().unwrap()[0]).unwrap();
    assert!(!device.is_ca && !device.self_signed);
    assert_eq!(device.names, [DEVICE]);
    assert_eq!(device.not_after_unix, ca::NOT_AFTER_FOREVER_UNIX);
    assert_eq!(device.fingerprint, world.device.fingerprint().unwrap());
    let ip = ca::self_signed_device("192.0.2.7").unwrap();
    assert_eq!(
        ca::summary(&ip.certificates().unwrap()[0]).unwrap().names,
        ["192.0.2.7"]
    );
    // PEM out and back in is the same DER; the Debug form hides the key.
    for cert in world.device.certificates().unwrap() {
        assert_eq!(
            certs_from_pem(ca::cert_pem(&cert).as_bytes()).unwrap(),
            [cert]
        );
    }
    assert!(!format!("{:?}", world.root).contains("PRIVATE"));
}

#[test]
fn config_refusals() {
    let world = World::new();
    let ops = world.issue("ops", Kind::Client);
    assert!(matches!(
        server_config(
            &[],
            world.device.certificates().unwrap(),
            world.device.key().unwrap()
        ),
        Err(TlsError::NoAnchor)
    ));
    // A key that is not the certificate's.
    assert!(matches!(
        server_config(
            &world.anchors,
            world.device.certificates().unwrap(),
            ops.key().unwrap()
        ),
        Err(TlsError::Config(_))
    ));
    assert!(matches!(
        client_config(
            ServerCheck::Anchor {
                anchors: world.anchors.clone(),
                name: "not a name!".to_owned()
            },
            ops.certificates().unwrap(),
            ops.key().unwrap()
        ),
        Err(TlsError::ServerName(_))
    ));
    assert!(matches!(
        client_config(
            ServerCheck::Anchor {
                anchors: vec![],
                name: DEVICE.to_owned()
            },
            ops.certificates().unwrap(),
            ops.key().unwrap()
        ),
        Err(TlsError::NoAnchor)
    ));
    assert!(matches!(
        server_config(
            &[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])],
            world.device.certificates().unwrap(),
            world.device.key().unwrap()
        ),
        Err(TlsError::Anchor(_))
    ));
}

#[test]
fn pem_readers_refuse_garbage() {
    let world = World::new();
    assert!(matches!(certs_from_pem(b""), Err(TlsError::NoCertificate)));
    assert!(matches!(
        certs_from_pem(world.root.key_pem.as_bytes()),
        Err(TlsError::NoCertificate)
    ));
    assert!(matches!(
        key_from_pem(world.root.chain_pem.as_bytes()),
        Err(TlsError::NoKey)
    ));
    assert!(key_from_pem(world.root.key_pem.as_bytes()).is_ok());
    // Valid base64 that is not a certificate.
    let not_x509 = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        certs_from_pem(not_x509.as_bytes()),
        Err(TlsError::Certificate(_))
    ));
    // Unterminated section.
    let pem = &world.root.chain_pem;
    assert!(certs_from_pem(&pem.as_bytes()[..pem.len() / 2]).is_err());
    // Trailing bytes inside the DER.
    let mut der = world.anchors[0].as_ref().to_vec();
    der.push(0);
    assert!(matches!(
        certs_from_pem(ca::cert_pem(&der.into()).as_bytes()),
        Err(TlsError::Certificate(_))
    ));
}

/// Deterministic mutations of real PEM and DER: every reader returns, none panics.
#[test]
fn mutated_inputs_never_panic() {
    let world = World::new();
    let ops = world.issue("ops", Kind::SubCa);
    let alice = ca::issue(&ops, "alice", Kind::Client, &Validity::standard()).unwrap();
    let chain = alice.certificates().unwrap();
    let pem = format!("{}{}", alice.chain_pem, alice.key_pem);

    let mut seed: u64 = 0x5eed_0004;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap()
    };
    println!("seed 0x5eed0004");
    for round in 0..400 {
        // DER: flip bytes, truncate, or extend the leaf and the intermediate.
        let which = round % 2;
        let mut der = chain[which].as_ref().to_vec();
        match next() % 3 {
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = next() % der.len();
                    der[at] ^= u8::try_from(1 + next() % 255).unwrap();
                }
            }
            1 => der.truncate(next() % der.len()),
            _ => der.extend((0..next() % 8).map(|i| u8::try_from(i).unwrap())),
        }
        let mut mutated = chain.clone();
        mutated[which] = der.clone().into();
        let _ = peer_identity(&mutated, &world.anchors);
        let _ = peer_identity(&chain, &[der.clone().into()]);
        let _ = ca::summary(&der.into());

        // PEM: flip or cut characters.
        let mut text = pem.clone().into_bytes();
        let at = next() % text.len();
        if next() % 2 == 0 {
            text[at] = b"A/+=-\n\0"[next() % 7];
        } else {
            text.truncate(at);
        }
        let _ = certs_from_pem(&text);
        let _ = key_from_pem(&text);
        let creds = Credentials {
            chain_pem: String::from_utf8_lossy(&text).into_owned(),
            key_pem: alice.key_pem.clone(),
        };
        let _ = ca::issue(&creds, "x", Kind::Client, &Validity::standard());
        let _ = ca::anchor_pem(&creds);
    }
}
