//! Authorization over TLS (DESIGN §5) against a real `petreld`: identities from client
//! certificates (`ops`, `ops/alice` through a sub-CA), policies set over the local
//! socket, every denial path — no policy, unikernel count, memory, block storage,
//! bridge, CPU, limits summed over a subtree, other namespaces, policies only strictly
//! below oneself.

mod common;
use common::*;

use petrel_proto::msg::{BlockCommand, Command as Cmd, Policy, PolicyCommand, ReplyBody};

const MIB: u64 = 1 << 20;

fn policy(max: u32, mem: u64, block_mib: u64, bridges: &[&str], cpus: &[u16]) -> Policy {
    Policy {
        max_unikernels: max,
        memory_mib: mem,
        block_bytes: block_mib * MIB,
        bridges: bridges.iter().map(|b| (*b).to_owned()).collect(),
        cpus: cpus.to_vec(),
    }
}

fn policies(c: &mut petrelctl::client::Client, who: Option<&str>) -> Vec<String> {
    match c.call(Cmd::Policy(PolicyCommand::List {
        identity: who.map(identity),
    })) {
        Ok(ReplyBody::Policies(v)) => v.into_iter().map(|p| p.identity.to_string()).collect(),
        other => panic!("policy list: {other:?}"),
    }
}

/// Either refusal kind, with the message naming `needle`.
fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, petrelctl::client::ClientError>,
    needle: &str,
) -> String {
    let (k, msg) = kind_of(r);
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded),
        "refused as denied or over quota, not {k:?}: {msg}"
    );
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "{k:?} message {msg:?} does not name {needle:?}"
    );
    msg
}

#[test]
fn every_denial_path() {
    let d = Daemon::start("quota");
    d.ns.add_bridge("other");
    let mut local = d.local();
    set_policy(
        &mut local,
        "ops",
        policy(3, 64, 2, &["service", "other"], &[0, 1]),
    );
    set_policy(
        &mut local,
        "ops/alice",
        policy(2, 32, 1, &["service"], &[1]),
    );
    set_policy(
        &mut local,
        "ops/bob",
        policy(5, 64, 2, &["service"], &[0, 1]),
    );

    // No policy, no access.
    let mut eve = d.remote("eve");
    assert_denied(
        try_create(&mut eve, &Spec::new("eve:x", "hello")),
        ErrorKind::PermissionDenied,
        "eve",
    );
    assert_denied(
        try_block_create(&mut eve, "eve:d", MIB, 512),
        ErrorKind::PermissionDenied,
        "eve",
    );
    match eve.call(Cmd::Info { name: None }) {
        Ok(ReplyBody::Info(v)) => assert!(v.is_empty(), "eve sees nothing: {v:?}"),
        Err(petrelctl::client::ClientError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}")
        }
        other => panic!("info as eve: {other:?}"),
    }

    let mut alice = d.remote("ops/alice");
    // Memory.
    let mut big = Spec::new("ops/alice:big", "hello");
    big.memory_mib = 33;
    let (k, msg) = kind_of(try_create(&mut alice, &big));
    assert_eq!(k, ErrorKind::QuotaExceeded, "{msg}");
    assert!(
        msg.contains("ops/alice") && msg.to_lowercase().contains("memory"),
        "{msg}"
    );
    // Bridge.
    let mut net = Spec::net("ops/alice:net", None);
    net.net = vec![("service0".to_owned(), "other".to_owned())];
    assert_refused(try_create(&mut alice, &net), "other");
    // CPU.
    let mut pinned = Spec::new("ops/alice:pinned", "hello");
    pinned.cpu_affinity = vec![0];
    assert_refused(try_create(&mut alice, &pinned), "cpu");
    pinned.cpu_affinity = vec![1];
    create(&mut alice, &pinned);
    // Count.
    create(&mut alice, &Spec::new("ops/alice:two", "hello"));
    let (k, msg) = kind_of(try_create(
        &mut alice,
        &Spec::new("ops/alice:three", "hello"),
    ));
    assert_eq!(k, ErrorKind::QuotaExceeded, "{msg}");
    assert!(
        msg.contains("ops/alice"),
        "names the policy that said no: {msg}"
    );
    // Block storage.
    let (k, msg) = kind_of(try_block_create(&mut alice, "ops/alice:disk", 2 * MIB, 512));
    assert_eq!(k, ErrorKind::QuotaExceeded, "{msg}");
    try_block_create(&mut alice, "ops/alice:disk", MIB, 512).expect("within the block quota");
    let (k, msg) = kind_of(try_block_create(&mut alice, "ops/alice:disk2", 4096, 512));
    assert_eq!(
        k,
        ErrorKind::QuotaExceeded,
        "the block quota is used up: {msg}"
    );

    // Other namespaces.
    let mut bob = d.remote("ops/bob");
    create(&mut bob, &Spec::new("ops/bob:b1", "hello"));
    try_block_create(&mut bob, "ops/bob:bdisk", 4096, 512).expect("bob's block");
    assert_refused(
        try_create(&mut alice, &Spec::new("ops/bob:evil", "hello")),
        "",
    );
    let (k, _) = kind_of(try_info(&mut alice, "ops/bob:b1"));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{k:?}"
    );
    let (k, _) = kind_of(try_destroy(&mut alice, "ops/bob:b1"));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{k:?}"
    );
    let (k, _) = kind_of(try_console(&mut alice, "ops/bob:b1"));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{k:?}"
    );
    let (k, _) = kind_of(try_block_download(&mut alice, "ops/bob:bdisk"));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{k:?}"
    );
    let (k, _) = kind_of(alice.call(Cmd::Block(BlockCommand::Destroy {
        name: full("ops/bob:bdisk"),
    })));
    assert!(
        matches!(k, ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{k:?}"
    );
    info(&mut bob, "ops/bob:b1");
    let seen: Vec<String> = info_all(&mut alice)
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert!(
        seen.iter().all(|n| n.starts_with("ops/alice:")),
        "alice sees only her namespace: {seen:?}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    let blocks = block_list(&mut alice, None);
    assert!(
        blocks.iter().all(|b| b.name.owner.as_str() == "ops/alice"),
        "{blocks:?}"
    );

    // Summed over the subtree: ops allows 3; alice has 2 and bob 1.
    let (k, msg) = kind_of(try_create(&mut bob, &Spec::new("ops/bob:b2", "hello")));
    assert_eq!(k, ErrorKind::QuotaExceeded, "{msg}");
    assert!(
        !msg.contains("ops/bob"),
        "bob's own policy allows 5; the parent's said no: {msg}"
    );

    // Policies only strictly below oneself.
    try_policy(
        &mut alice,
        "ops/alice/kid",
        policy(5, 64, 1, &["service"], &[1]),
    )
    .expect("alice sets a policy below herself");
    assert_denied(
        try_policy(
            &mut alice,
            "ops/alice",
            policy(9, 999, 9, &["service"], &[0, 1]),
        ),
        ErrorKind::PermissionDenied,
        "",
    );
    assert_denied(
        try_policy(
            &mut alice,
            "ops/bob",
            policy(9, 999, 9, &["service"], &[0, 1]),
        ),
        ErrorKind::PermissionDenied,
        "",
    );
    assert_denied(
        try_policy(&mut alice, "ops", policy(9, 999, 9, &["service"], &[0, 1])),
        ErrorKind::PermissionDenied,
        "",
    );
    assert_denied(
        alice.call(Cmd::Policy(PolicyCommand::Remove {
            identity: identity("ops/bob"),
        })),
        ErrorKind::PermissionDenied,
        "",
    );
    let mine = policies(&mut alice, None);
    assert!(mine.contains(&"ops/alice/kid".to_owned()), "{mine:?}");
    assert!(!mine.contains(&"ops/bob".to_owned()), "{mine:?}");

    // The kid's own policy allows 5, but alice's subtree is full.
    let mut kid = d.remote("ops/alice/kid");
    let (k, msg) = kind_of(try_create(&mut kid, &Spec::new("ops/alice/kid:k", "hello")));
    assert_eq!(k, ErrorKind::QuotaExceeded, "{msg}");
    assert!(msg.contains("ops"), "names a policy above the kid: {msg}");
    destroy(&mut alice, "ops/alice:two");

    // A block device of another owner cannot be attached.
    let mut thief = Spec::new("ops/alice/kid:thief", "blk");
    thief.block = vec![("storage".to_owned(), "bdisk".to_owned())];
    let (k, _) = kind_of(try_create(&mut kid, &thief));
    assert!(
        matches!(k, ErrorKind::NotFound | ErrorKind::PermissionDenied),
        "{k:?}"
    );
    create(&mut kid, &Spec::new("ops/alice/kid:k", "hello"));

    // Removing a policy removes access.
    let r = local
        .call(Cmd::Policy(PolicyCommand::Remove {
            identity: identity("ops/bob"),
        }))
        .expect("local removes bob's policy");
    assert_eq!(r, ReplyBody::Ok);
    assert_denied(
        try_create(&mut bob, &Spec::new("ops/bob:b3", "hello")),
        ErrorKind::PermissionDenied,
        "ops/bob",
    );

    // The local socket may do everything, quotas or not.
    create(&mut local, &Spec::new("ops/alice:extra", "hello"));
    let all = policies(&mut local, None);
    for who in ["ops", "ops/alice", "ops/alice/kid"] {
        assert!(all.contains(&who.to_owned()), "{who} in {all:?}");
    }
}

#[test]
fn parent_identity_sees_its_subtree() {
    let d = Daemon::start("subtree");
    let mut local = d.local();
    set_policy(&mut local, "ops", roomy_policy());
    set_policy(&mut local, "ops/alice", roomy_policy());
    let mut alice = d.remote("ops/alice");
    create(&mut alice, &Spec::new("ops/alice:web", "hello"));
    let mut ops = d.remote("ops");
    let seen: Vec<String> = info_all(&mut ops)
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(seen, ["ops/alice:web"], "ops sees its subtree");
    // The caller's own namespace works over TLS too.
    create(&mut ops, &Spec::new("ops:own", "hello"));
    wait_stopped(&mut ops, "ops:own");
    wait_console(
        &mut ops,
        "ops:own",
        "Hello, world",
        std::time::Duration::from_secs(5),
    );
}
