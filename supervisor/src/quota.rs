//! Authorization by policy per identity path (DESIGN §5).
//!
//! An identity is a path of certificate common names below the trust anchor, joined with
//! `/` (`ops`, `ops/alice`). A [`Policy`] attaches to an identity path. A request by
//! `ops/alice` is allowed only if the policy of *every* prefix (`ops`, then `ops/alice`)
//! allows it, with usage summed over that prefix's whole subtree; a prefix without a
//! policy denies. An identity may set or remove policies only strictly below itself.
//! Pure functions over maps: the daemon supplies current usage per owner.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What an identity path (and its subtree, summed) may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Unikernels at most.
    #[serde(default)]
    pub max_unikernels: u32,
    /// Guest memory at most, MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Block storage at most, MiB.
    #[serde(default)]
    pub block_mib: u64,
    /// Host CPUs unikernels may be pinned to.
    #[serde(default)]
    pub cpus: BTreeSet<u32>,
    /// Bridges network devices may be attached to.
    #[serde(default)]
    pub bridges: BTreeSet<String>,
}

/// What an owner uses now (or what a request adds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Unikernels.
    pub unikernels: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Block storage, MiB.
    pub block_mib: u64,
}

impl Usage {
    fn plus(self, o: Usage) -> Usage {
        Usage {
            unikernels: self.unikernels.saturating_add(o.unikernels),
            memory_mib: self.memory_mib.saturating_add(o.memory_mib),
            block_mib: self.block_mib.saturating_add(o.block_mib),
        }
    }
}

/// A request to check: the resources it adds and the CPUs and bridges it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// What it adds.
    pub adds: Usage,
    /// CPUs it pins to.
    pub cpus: Vec<u32>,
    /// Bridges it attaches to.
    pub bridges: Vec<String>,
}

/// Why a request or a policy change was refused. Each names the identity path whose
/// policy said no, so the operator knows where to look.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not a valid identity path.
    #[error("{0:?} is not a valid identity path")]
    BadIdentity(String),
    /// No policy on this prefix.
    #[error("no policy for {0}")]
    NoPolicy(String),
    /// Too many unikernels in this subtree.
    #[error("{0}: unikernel limit {1} reached")]
    Unikernels(String, u32),
    /// Too much memory in this subtree.
    #[error("{0}: memory limit {1} MiB exceeded")]
    Memory(String, u64),
    /// Too much block storage in this subtree.
    #[error("{0}: block storage limit {1} MiB exceeded")]
    Block(String, u64),
    /// A CPU not allowed.
    #[error("{0}: CPU {1} not allowed")]
    Cpu(String, u32),
    /// A bridge not allowed.
    #[error("{0}: bridge {1} not allowed")]
    Bridge(String, String),
    /// Policies are set only strictly below oneself.
    #[error("{actor} may not set the policy of {target}")]
    NotBelow {
        /// Who asked.
        actor: String,
        /// For whom.
        target: String,
    },
}

/// True for `a`, `a/b`, ...: non-empty components without `:` or control characters.
pub fn is_valid_identity(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && !c.chars().any(|ch| ch == ':' || ch.is_control()))
}

/// `ops/alice` → `["ops", "ops/alice"]`.
pub fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

/// True when `path` is `root` or lies in its subtree.
pub fn in_subtree(root: &str, path: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// True when `target` lies strictly below `actor`.
pub fn strictly_below(actor: &str, target: &str) -> bool {
    target != actor && in_subtree(actor, target)
}

/// Checks a request by `identity` against every prefix's policy, with `usage` per owner
/// identity summed over each prefix's subtree.
pub fn check(
    policies: &BTreeMap<String, Policy>,
    usage: &BTreeMap<String, Usage>,
    identity: &str,
    req: &Request,
) -> Result<(), Denied> {
    if !is_valid_identity(identity) {
        return Err(Denied::BadIdentity(identity.to_owned()));
    }
    for prefix in prefixes(identity) {
        let p = policies
            .get(prefix)
            .ok_or_else(|| Denied::NoPolicy(prefix.to_owned()))?;
        let used = usage
            .iter()
            .filter(|(owner, _)| in_subtree(prefix, owner))
            .fold(Usage::default(), |acc, (_, u)| acc.plus(*u))
            .plus(req.adds);
        let name = || prefix.to_owned();
        if req.adds.unikernels > 0 && used.unikernels > p.max_unikernels {
            return Err(Denied::Unikernels(name(), p.max_unikernels));
        }
        if req.adds.memory_mib > 0 && used.memory_mib > p.memory_mib {
            return Err(Denied::Memory(name(), p.memory_mib));
        }
        if req.adds.block_mib > 0 && used.block_mib > p.block_mib {
            return Err(Denied::Block(name(), p.block_mib));
        }
        if let Some(c) = req.cpus.iter().find(|c| !p.cpus.contains(c)) {
            return Err(Denied::Cpu(name(), *c));
        }
        if let Some(b) = req.bridges.iter().find(|b| !p.bridges.contains(*b)) {
            return Err(Denied::Bridge(name(), b.clone()));
        }
    }
    Ok(())
}

/// Sets (or replaces) the policy of `target` on behalf of `actor`.
pub fn set_policy(
    policies: &mut BTreeMap<String, Policy>,
    actor: &str,
    target: &str,
    policy: Policy,
) -> Result<(), Denied> {
    may_administer(actor, target)?;
    policies.insert(target.to_owned(), policy);
    Ok(())
}

/// Removes the policy of `target` on behalf of `actor`; returns whether there was one.
pub fn remove_policy(
    policies: &mut BTreeMap<String, Policy>,
    actor: &str,
    target: &str,
) -> Result<bool, Denied> {
    may_administer(actor, target)?;
    Ok(policies.remove(target).is_some())
}

fn may_administer(actor: &str, target: &str) -> Result<(), Denied> {
    for p in [actor, target] {
        if !is_valid_identity(p) {
            return Err(Denied::BadIdentity(p.to_owned()));
        }
    }
    if strictly_below(actor, target) {
        Ok(())
    } else {
        Err(Denied::NotBelow {
            actor: actor.to_owned(),
            target: target.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(n: u32, mem: u64, block: u64) -> Policy {
        Policy {
            max_unikernels: n,
            memory_mib: mem,
            block_mib: block,
            cpus: [0, 1].into_iter().collect(),
            bridges: ["service".to_owned()].into_iter().collect(),
        }
    }

    fn uk(mem: u64) -> Request {
        Request {
            adds: Usage {
                unikernels: 1,
                memory_mib: mem,
                block_mib: 0,
            },
            cpus: vec![],
            bridges: vec!["service".into()],
        }
    }

    fn setup() -> BTreeMap<String, Policy> {
        [
            ("ops".to_owned(), pol(4, 256, 1024)),
            ("ops/alice".to_owned(), pol(2, 128, 100)),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn paths() {
        assert_eq!(
            prefixes("ops/alice/x").collect::<Vec<_>>(),
            ["ops", "ops/alice", "ops/alice/x"]
        );
        assert!(in_subtree("ops", "ops/alice") && in_subtree("ops", "ops"));
        assert!(!in_subtree("ops", "opsx") && !in_subtree("ops/alice", "ops"));
        assert!(strictly_below("ops", "ops/a") && !strictly_below("ops", "ops"));
        assert!(
            !is_valid_identity("") && !is_valid_identity("ops//a") && !is_valid_identity("a:b")
        );
        assert!(!is_valid_identity("/ops") && is_valid_identity("ops/alice"));
    }

    #[test]
    fn allowed_when_every_prefix_allows() {
        let p = setup();
        assert_eq!(check(&p, &BTreeMap::new(), "ops/alice", &uk(64)), Ok(()));
        assert_eq!(check(&p, &BTreeMap::new(), "ops", &uk(200)), Ok(()));
    }

    #[test]
    fn no_policy_no_access() {
        let p = setup();
        let none = BTreeMap::new();
        assert_eq!(
            check(&p, &none, "ops/bob", &uk(1)),
            Err(Denied::NoPolicy("ops/bob".into()))
        );
        assert_eq!(
            check(&p, &none, "dev", &uk(1)),
            Err(Denied::NoPolicy("dev".into()))
        );
        assert_eq!(
            check(&BTreeMap::new(), &none, "ops", &uk(1)),
            Err(Denied::NoPolicy("ops".into()))
        );
        // A child policy without the parent's is useless.
        let only_child: BTreeMap<_, _> = [("ops/alice".to_owned(), pol(9, 999, 999))]
            .into_iter()
            .collect();
        assert_eq!(
            check(&only_child, &none, "ops/alice", &uk(1)),
            Err(Denied::NoPolicy("ops".into()))
        );
    }

    #[test]
    fn own_limits_and_summed_subtree_limits() {
        let p = setup();
        let mut usage = BTreeMap::new();
        usage.insert(
            "ops/alice".to_owned(),
            Usage {
                unikernels: 2,
                memory_mib: 64,
                block_mib: 0,
            },
        );
        assert_eq!(
            check(&p, &usage, "ops/alice", &uk(1)),
            Err(Denied::Unikernels("ops/alice".into(), 2))
        );
        usage.insert(
            "ops/alice".to_owned(),
            Usage {
                unikernels: 1,
                memory_mib: 100,
                block_mib: 0,
            },
        );
        assert_eq!(
            check(&p, &usage, "ops/alice", &uk(64)),
            Err(Denied::Memory("ops/alice".into(), 128))
        );
        // Alice is within her own policy, but ops' subtree as a whole is full.
        usage.insert(
            "ops".to_owned(),
            Usage {
                unikernels: 2,
                memory_mib: 100,
                block_mib: 0,
            },
        );
        usage.insert(
            "ops/carol".to_owned(),
            Usage {
                unikernels: 1,
                memory_mib: 0,
                block_mib: 0,
            },
        );
        assert_eq!(
            check(&p, &usage, "ops/alice", &uk(8)),
            Err(Denied::Unikernels("ops".into(), 4))
        );
        usage.remove("ops/carol");
        assert_eq!(check(&p, &usage, "ops/alice", &uk(8)), Ok(()));
        // Usage outside the subtree does not count.
        usage.insert(
            "opsx".to_owned(),
            Usage {
                unikernels: 100,
                memory_mib: 1 << 20,
                block_mib: 0,
            },
        );
        assert_eq!(check(&p, &usage, "ops/alice", &uk(8)), Ok(()));
    }

    #[test]
    fn block_cpus_and_bridges() {
        let p = setup();
        let none = BTreeMap::new();
        let block = Request {
            adds: Usage {
                block_mib: 101,
                ..Usage::default()
            },
            ..Request::default()
        };
        assert_eq!(
            check(&p, &none, "ops/alice", &block),
            Err(Denied::Block("ops/alice".into(), 100))
        );
        let cpu = Request {
            cpus: vec![1, 3],
            ..uk(1)
        };
        assert_eq!(
            check(&p, &none, "ops/alice", &cpu),
            Err(Denied::Cpu("ops".into(), 3))
        );
        let br = Request {
            bridges: vec!["mgmt".into()],
            ..uk(1)
        };
        assert_eq!(
            check(&p, &none, "ops/alice", &br),
            Err(Denied::Bridge("ops".into(), "mgmt".into()))
        );
    }

    #[test]
    fn a_full_subtree_still_allows_requests_that_add_nothing() {
        let p = setup();
        let mut usage = BTreeMap::new();
        usage.insert(
            "ops/alice".to_owned(),
            Usage {
                unikernels: 9,
                memory_mib: 999,
                block_mib: 0,
            },
        );
        let restart = Request {
            bridges: vec!["service".into()],
            ..Request::default()
        };
        assert_eq!(check(&p, &usage, "ops/alice", &restart), Ok(()));
    }

    #[test]
    fn policies_only_strictly_below() {
        let mut p = setup();
        assert_eq!(set_policy(&mut p, "ops", "ops/bob", pol(1, 1, 1)), Ok(()));
        assert!(p.contains_key("ops/bob"));
        assert_eq!(
            set_policy(&mut p, "ops/alice", "ops/alice/ci", pol(1, 1, 1)),
            Ok(())
        );
        for (actor, target) in [
            ("ops/alice", "ops/alice"),
            ("ops/alice", "ops"),
            ("ops/alice", "ops/bob"),
            ("ops", "opsx/a"),
        ] {
            assert_eq!(
                set_policy(&mut p, actor, target, pol(9, 9, 9)),
                Err(Denied::NotBelow {
                    actor: actor.into(),
                    target: target.into()
                })
            );
        }
        assert_eq!(
            remove_policy(&mut p, "ops/alice", "ops"),
            Err(Denied::NotBelow {
                actor: "ops/alice".into(),
                target: "ops".into()
            })
        );
        assert_eq!(remove_policy(&mut p, "ops", "ops/bob"), Ok(true));
        assert_eq!(remove_policy(&mut p, "ops", "ops/bob"), Ok(false));
        assert_eq!(
            set_policy(&mut p, "ops", "ops//x", pol(1, 1, 1)),
            Err(Denied::BadIdentity("ops//x".into()))
        );
    }
}
