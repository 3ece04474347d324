//! The model of one unikernel: what the operator asked for ([`Spec`]) and what it is
//! doing now ([`RunState`]), plus the history an operator needs to see why it died.
//!
//! Every persisted type here is serde with `#[serde(default)]` on fields added after
//! version 1, and unknown fields are ignored, so the previous firmware reads what the new
//! one wrote (DESIGN §2a).

use std::collections::BTreeSet;
use std::time::Duration;

use hvt_abi::abi::MFT_NAME_MAX;
use serde::{Deserialize, Serialize};

use crate::mac::Mac;

/// A network device: a tap enslaved to `bridge`, seen by the guest as `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    /// The manifest name of the device in the guest (`service`, ...).
    pub name: String,
    /// The host bridge the tap is enslaved to.
    pub bridge: String,
    /// The MAC derived by [`crate::mac::derive_mac`]; stored so it never changes even if
    /// the derivation or the secret ever did.
    pub mac: Mac,
}

/// A block device backed by a file under the data partition's `block/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// The manifest name of the device in the guest.
    pub name: String,
    /// The name of the block volume (in the owner's namespace) that backs it.
    pub volume: String,
}

/// When the supervisor starts a unikernel again after its tender exited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never: an exit is final until an operator restarts it.
    #[default]
    Never,
    /// After every exit, with backoff.
    Always,
    /// Only when the tender exited with one of these codes (signals never match).
    OnExit(BTreeSet<i32>),
}

/// What the operator asked for. Immutable except for `args` (restart with new arguments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Full name in the owner's namespace: `ops/alice:web`.
    pub name: String,
    /// Lowercase hex sha256 of the image in the content store.
    pub image_sha256: String,
    /// Arguments passed to the unikernel.
    #[serde(default)]
    pub args: Vec<String>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Host CPUs the tender is pinned to (empty: no pinning).
    #[serde(default)]
    pub cpus: Vec<u32>,
    /// Network devices.
    #[serde(default)]
    pub net: Vec<NetDevice>,
    /// Block devices.
    #[serde(default)]
    pub block: Vec<BlockDevice>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Startup priority: higher starts first at boot; ties by name.
    #[serde(default)]
    pub priority: i32,
}

/// How a tender ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// The supervisor could not start it at all (tap, image or fork failure).
    SpawnFailed,
}

/// The last exit: status and the tender's last stderr line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// How it ended.
    pub status: ExitStatus,
    /// The tender's last error line (or the spawn error), possibly empty.
    #[serde(default)]
    pub reason: String,
}

/// What a unikernel is doing now. Not persisted: after a restart of `petreld` every
/// unikernel starts from `Stopped`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not running and not scheduled (before boot, or during shutdown).
    Stopped,
    /// `Spawn` was issued; waiting for `TenderStarted` (or a spawn failure).
    Starting,
    /// The tender runs as `pid` since `since` (supervisor clock).
    Running {
        /// Process id of the tender.
        pid: u32,
        /// When it started.
        since: Duration,
    },
    /// Crashed; will be spawned again at `until`.
    Backoff {
        /// When the next attempt is due.
        until: Duration,
    },
    /// Exited and the policy said not to restart.
    Exited(ExitInfo),
    /// Destroyed; the tender is being killed and the entry goes away when it exits.
    Destroyed,
}

/// One unikernel as the supervisor knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unikernel {
    /// What the operator asked for.
    pub spec: Spec,
    /// What it is doing now.
    pub state: RunState,
    /// How many times the restart policy started it again.
    pub restart_count: u32,
    /// The last exit, if any.
    pub last_exit: Option<ExitInfo>,
    /// Consecutive crashes without a stable run in between (drives the backoff).
    pub consecutive_failures: u32,
}

impl Unikernel {
    /// A new, stopped unikernel.
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            state: RunState::Stopped,
            restart_count: 0,
            last_exit: None,
            consecutive_failures: 0,
        }
    }

    /// True when a tender process exists (or is being created) for it.
    pub fn has_tender(&self) -> bool {
        matches!(self.state, RunState::Starting | RunState::Running { .. })
    }
}

impl NetDevice {
    /// A device with its MAC derived from the box's `secret` (see [`crate::mac`]).
    pub fn derive(secret: &[u8], full_name: &str, name: &str, bridge: &str) -> Self {
        Self {
            name: name.to_owned(),
            bridge: bridge.to_owned(),
            mac: crate::mac::derive_mac(secret, full_name, name),
        }
    }
}

/// Why a [`Spec`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not `owner:name` with a valid owner identity path and a non-empty name.
    #[error("{0:?} is not a valid full unikernel name (owner:name)")]
    Name(String),
    /// Not 64 lowercase hex digits.
    #[error("image sha256 {0:?} is not 64 lowercase hex digits")]
    ImageSha256(String),
    /// Zero memory.
    #[error("memory must be at least 1 MiB")]
    Memory,
    /// Two devices with the same name.
    #[error("device {0:?} appears twice")]
    DuplicateDevice(String),
    /// An empty or overlong device name.
    #[error("device name {0:?} is empty or longer than {MFT_NAME_MAX} bytes")]
    DeviceName(String),
}

impl Spec {
    /// The owner identity path (`ops/alice` of `ops/alice:web`).
    pub fn owner(&self) -> &str {
        self.name.split_once(':').map_or("", |(o, _)| o)
    }

    /// Checks what the operator sent before anything is created.
    pub fn validate(&self) -> Result<(), SpecError> {
        let ok_name = self.name.split_once(':').is_some_and(|(owner, n)| {
            crate::quota::is_valid_identity(owner)
                && !n.is_empty()
                && !n.contains([':', '/'])
                && !n.chars().any(char::is_control)
        });
        if !ok_name {
            return Err(SpecError::Name(self.name.clone()));
        }
        let h = &self.image_sha256;
        if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SpecError::ImageSha256(h.clone()));
        }
        if self.memory_mib == 0 {
            return Err(SpecError::Memory);
        }
        let mut seen = BTreeSet::new();
        let names = self
            .net
            .iter()
            .map(|d| &d.name)
            .chain(self.block.iter().map(|d| &d.name));
        for n in names {
            if n.is_empty() || n.len() > MFT_NAME_MAX {
                return Err(SpecError::DeviceName(n.clone()));
            }
            if !seen.insert(n) {
                return Err(SpecError::DuplicateDevice(n.clone()));
            }
        }
        Ok(())
    }
}

impl RestartPolicy {
    /// Whether an exit with `status` calls for a restart.
    pub fn wants_restart(&self, status: ExitStatus) -> bool {
        match (self, status) {
            (RestartPolicy::Never, _) => false,
            (RestartPolicy::Always, _) => true,
            (RestartPolicy::OnExit(codes), ExitStatus::Code(c)) => codes.contains(&c),
            (RestartPolicy::OnExit(_), _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_decisions() {
        let on: RestartPolicy = RestartPolicy::OnExit([2, 3].into_iter().collect());
        assert!(on.wants_restart(ExitStatus::Code(2)));
        assert!(!on.wants_restart(ExitStatus::Code(0)));
        assert!(!on.wants_restart(ExitStatus::Signal(9)));
        assert!(RestartPolicy::Always.wants_restart(ExitStatus::SpawnFailed));
        assert!(!RestartPolicy::Never.wants_restart(ExitStatus::Code(1)));
    }

    fn good() -> Spec {
        Spec {
            name: "ops/alice:web".into(),
            image_sha256: "0f".repeat(32),
            args: vec![],
            memory_mib: 32,
            cpus: vec![],
            net: vec![NetDevice::derive(
                b"s",
                "ops/alice:web",
                "service",
                "service",
            )],
            block: vec![BlockDevice {
                name: "storage".into(),
                volume: "ops/alice:disk".into(),
            }],
            restart: RestartPolicy::Always,
            priority: 0,
        }
    }

    #[test]
    fn validation() {
        assert_eq!(good().validate(), Ok(()));
        assert_eq!(good().owner(), "ops/alice");
        for bad in ["web", ":web", "ops:", "ops//a:web", "ops:we:b", "ops:a/b"] {
            let s = Spec {
                name: bad.into(),
                ..good()
            };
            assert_eq!(s.validate(), Err(SpecError::Name(bad.into())), "{bad}");
        }
        let s = Spec {
            image_sha256: "0F".repeat(32),
            ..good()
        };
        assert!(matches!(s.validate(), Err(SpecError::ImageSha256(_))));
        let s = Spec {
            memory_mib: 0,
            ..good()
        };
        assert_eq!(s.validate(), Err(SpecError::Memory));
        let mut s = good();
        s.block[0].name = "service".into();
        assert_eq!(
            s.validate(),
            Err(SpecError::DuplicateDevice("service".into()))
        );
        s.block[0].name = "x".repeat(MFT_NAME_MAX + 1);
        assert!(matches!(s.validate(), Err(SpecError::DeviceName(_))));
        assert_eq!(
            good().net[0].mac,
            crate::mac::derive_mac(b"s", "ops/alice:web", "service")
        );
    }

    #[test]
    fn spec_defaults_for_missing_fields() {
        let s: Spec = serde_json::from_str(
            r#"{"name":"ops:web","image_sha256":"ab","memory_mib":32,"future":1}"#,
        )
        .expect("parses");
        assert_eq!(s.restart, RestartPolicy::Never);
        assert!(s.net.is_empty() && s.args.is_empty());
        assert_eq!(s.priority, 0);
    }
}
