//! The core: turns protocol [`Command`]s into [`Machine`] events, authorizes them by
//! policy ([`crate::quota`]), and keeps images and block volumes on the data partition.
//!
//! Two halves:
//! - [`Core`] implements [`Service`] for the server's connection threads. It checks
//!   what it can alone (sizes, caps, the image upload and its manifest), streams data
//!   (uploads, downloads, console, logs) and asks the core thread, over a channel, for
//!   everything that reads or changes shared state ([`Op`]).
//! - [`Engine`] is that state: the [`Machine`], the policies, the block volumes. It
//!   lives on the daemon's one core thread ([`crate::daemon`]), which executes the
//!   [`Action`]s it returns (persisting *before* replying) and feeds it tender exits.
//!
//! Authorization (DESIGN §5): the local socket may do everything. A remote identity
//! needs a policy on every prefix of its path (the config's `management.admin` has an
//! implicit unlimited one) and acts only on names in its own subtree; what adds
//! resources (a unikernel, a block volume) is checked against the policies of every
//! prefix of the *owner's* path, with usage summed over each subtree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Sender, SyncSender, sync_channel};
use std::time::Duration;

use hvt_abi::abi::{HVT_CMDLINE_SIZE, MFT_MAX_ENTRIES};
use petrel_proto::msg::{
    BlockAttach, BlockCommand, BlockInfo, Command, CreateSpec, Error, ErrorKind, ImageSource,
    LastExit, MAX_CHUNK_BYTES, NetDeviceInfo, NetStats, Policy as WirePolicy, PolicyCommand,
    PolicyEntry, ReplyBody, RestartPolicy as WireRestart, Sha256Digest, UnikernelInfo,
    UnikernelState, UnikernelStats,
};
use petrel_proto::name::{FullName, Identity, UnikernelName};

use crate::api::{Caller, Outcome, Pull, Service, Sink, Source};
use crate::budget::{Reservation, UploadBudget};
use crate::console::Consoles;
use crate::machine::{self, Action, Event, Machine};
use crate::persist::{BlockVolume, Body};
use crate::quota::{self, Denied, Policy, Usage};
use crate::state::{BlockDevice, ExitStatus, NetDevice, RestartPolicy, RunState, Spec, Unikernel};
use crate::store::{self, DataDir, TempFile};

/// Most arguments of a unikernel.
pub const MAX_ARGS: usize = 256;
/// The largest block volume sector size.
pub const MAX_SECTOR_SIZE: u32 = 64 * 1024;
/// The most guest memory, MiB (64 GiB).
pub const MAX_MEMORY_MIB: u32 = 65_536;
/// Most host CPUs in an affinity list.
pub const MAX_AFFINITY: usize = 1024;
/// The longest bridge name (`IFNAMSIZ - 1`).
pub const MAX_BRIDGE_BYTES: usize = 15;
/// The most log bytes `logs` sends.
pub const MAX_LOG_BYTES: u64 = 4 << 20;
/// The largest trust anchor accepted by `trust rotate`.
pub const MAX_ANCHOR_BYTES: usize = 64 * 1024;
const MIB: u64 = 1 << 20;

/// What the connection threads send to the core thread.
pub enum Msg {
    /// A request; the answer goes back on `reply`.
    Request {
        /// Who asks.
        caller: Caller,
        /// What.
        op: Op,
        /// Where the answer goes.
        reply: SyncSender<Result<Answer, Error>>,
    },
    /// A tender exited (from the runner's reaper).
    Exited(crate::runner::Exited),
    /// A signal to `petreld` (SIGTERM, SIGINT): shut down.
    Signal(i32),
    /// A block volume transfer ended.
    Release(String),
}

/// A request to the core thread.
#[derive(Debug)]
pub enum Op {
    /// `info`.
    Info(Option<FullName>),
    /// Checks a create before its image is uploaded.
    PrepareCreate(Box<CreateSpec>),
    /// Creates with the image (stored under this digest).
    Create(Box<CreateSpec>, Sha256Digest),
    /// `destroy`.
    Destroy(FullName),
    /// `restart`.
    Restart(FullName, Option<Vec<String>>),
    /// May the caller see this unikernel (console)?
    Visible(FullName),
    /// The running tenders to read statistics of.
    Stats(Option<FullName>),
    /// Block volume commands other than transfers.
    Block(BlockCommand),
    /// Starts a transfer: marks the volume busy.
    Acquire {
        /// Which.
        name: FullName,
        /// For an upload, the announced size.
        upload_bytes: Option<u64>,
    },
    /// Policy commands.
    Policy(PolicyCommand),
    /// May the caller administer the whole box (reboot, logs, trust)?
    Admin,
    /// Stop everything, wipe the data partition.
    FactoryReset,
    /// Everything, for the metrics endpoint.
    Metrics,
}

/// What the core thread answers.
#[derive(Debug)]
pub enum Answer {
    /// A reply as it is.
    Reply(ReplyBody),
    /// Reply with the info of this unikernel once the actions ran.
    InfoOf(String),
    /// Reply `Ok` once this unikernel's tender is gone (at once if it had none).
    Destroyed(String),
    /// Allowed, nothing to say.
    Done,
    /// Running tenders.
    Targets(Vec<StatTarget>),
    /// A volume, busy for this transfer.
    Volume {
        /// Its file.
        path: PathBuf,
        /// Its size.
        size_bytes: u64,
    },
    /// For the metrics endpoint.
    Metrics(Vec<UnikernelInfo>, Vec<StatTarget>),
}

/// A running tender, to read the statistics of.
#[derive(Debug, Clone)]
pub struct StatTarget {
    /// The unikernel.
    pub name: FullName,
    /// The tender.
    pub pid: u32,
    /// Since it started.
    pub uptime_ms: u64,
    /// Its taps: (device, interface).
    pub taps: Vec<(String, String)>,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

fn bad(msg: impl Into<String>) -> Error {
    err(ErrorKind::BadRequest, msg)
}

fn denied(d: Denied) -> Error {
    let kind = match d {
        Denied::Unikernels(..) | Denied::Memory(..) | Denied::Block(..) => ErrorKind::QuotaExceeded,
        _ => ErrorKind::PermissionDenied,
    };
    err(kind, d.to_string())
}

fn machine_err(e: machine::Error) -> Error {
    match e {
        machine::Error::AlreadyExists(_) => err(ErrorKind::AlreadyExists, e.to_string()),
        machine::Error::NotFound(_) => err(ErrorKind::NotFound, e.to_string()),
        machine::Error::ShuttingDown => err(ErrorKind::Busy, e.to_string()),
        machine::Error::InvalidSpec(s) => bad(s.to_string()),
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    log::error!("{what}: {e}");
    err(ErrorKind::Internal, format!("{what}: {e}"))
}

/// Checks the arguments of a unikernel: count, NULs and the tender's command line size.
pub fn check_args(args: &[String]) -> Result<(), Error> {
    if args.len() > MAX_ARGS {
        return Err(bad(format!("more than {MAX_ARGS} arguments")));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(bad("an argument contains a NUL byte"));
    }
    let total: usize = args.iter().map(|a| a.len().saturating_add(1)).sum();
    if total >= HVT_CMDLINE_SIZE {
        return Err(bad(format!(
            "the arguments take {total} bytes; the command line holds {}",
            HVT_CMDLINE_SIZE - 1
        )));
    }
    Ok(())
}

fn check_bridge(b: &str) -> Result<(), Error> {
    let ok = !b.is_empty()
        && b.len() <= MAX_BRIDGE_BYTES
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        && b != "."
        && b != "..";
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{b:?} is not a valid bridge name")))
    }
}

/// The request caps of a create, beyond what the frame cap bounds.
pub fn check_create(spec: &CreateSpec) -> Result<(), Error> {
    check_args(&spec.args)?;
    if spec.memory_mib == 0 || spec.memory_mib > MAX_MEMORY_MIB {
        return Err(bad(format!(
            "memory must be 1..={MAX_MEMORY_MIB} MiB, not {}",
            spec.memory_mib
        )));
    }
    if spec.cpus > 1 {
        return Err(bad("an hvt unikernel has exactly one vCPU (cpus 0 or 1)"));
    }
    let devices = spec.devices.len().saturating_add(spec.blocks.len());
    if devices >= MFT_MAX_ENTRIES as usize {
        return Err(bad(format!(
            "{devices} devices; a manifest holds at most {}",
            MFT_MAX_ENTRIES - 1
        )));
    }
    for d in &spec.devices {
        check_bridge(&d.bridge)?;
    }
    if spec.cpu_affinity.len() > MAX_AFFINITY {
        return Err(bad(format!(
            "more than {MAX_AFFINITY} CPUs in the affinity"
        )));
    }
    let volumes: BTreeSet<&UnikernelName> = spec.blocks.iter().map(|b| &b.device).collect();
    if volumes.len() != spec.blocks.len() {
        return Err(bad("a block volume is attached twice"));
    }
    if let ImageSource::Upload { size_bytes, .. } = spec.image
        && size_bytes > store::MAX_IMAGE_BYTES
    {
        return Err(bad(format!(
            "image of {size_bytes} bytes; at most {} accepted",
            store::MAX_IMAGE_BYTES
        )));
    }
    Ok(())
}

fn to_state_restart(r: &WireRestart) -> RestartPolicy {
    match r {
        WireRestart::Never => RestartPolicy::Never,
        WireRestart::Always => RestartPolicy::Always,
        WireRestart::OnExit(codes) => RestartPolicy::OnExit(codes.iter().copied().collect()),
    }
}

fn to_wire_restart(r: &RestartPolicy) -> WireRestart {
    match r {
        RestartPolicy::Never => WireRestart::Never,
        RestartPolicy::Always => WireRestart::Always,
        RestartPolicy::OnExit(codes) => WireRestart::OnExit(codes.iter().copied().collect()),
    }
}

fn to_policy(p: &WirePolicy) -> Policy {
    Policy {
        max_unikernels: p.max_unikernels,
        memory_mib: p.memory_mib,
        block_mib: p.block_bytes / MIB,
        cpus: p.cpus.iter().map(|c| u32::from(*c)).collect(),
        bridges: p.bridges.iter().cloned().collect(),
    }
}

fn to_wire_policy(p: &Policy) -> WirePolicy {
    WirePolicy {
        max_unikernels: p.max_unikernels,
        memory_mib: p.memory_mib,
        block_bytes: p.block_mib.saturating_mul(MIB),
        cpus: p
            .cpus
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
        bridges: p.bridges.iter().cloned().collect(),
    }
}

fn block_mib(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(MIB)
}

/// The wall clock in milliseconds since the Unix epoch (0 before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The core thread's state.
#[derive(Debug)]
pub struct Engine {
    /// The unikernels.
    pub machine: Machine,
    /// Policies by identity path.
    pub policies: BTreeMap<String, Policy>,
    /// Block volumes by full name.
    pub blocks: BTreeMap<String, BlockVolume>,
    /// Imported autostart entries (see [`Body::autostart`]).
    pub autostart: BTreeMap<String, String>,
    /// Volumes being uploaded or downloaded.
    pub busy: BTreeSet<String>,
    /// The taps of running tenders: name → (device, interface).
    pub taps: BTreeMap<String, Vec<(String, String)>>,
    /// When each unikernel last exited (Unix ms; not persisted).
    pub exit_times: BTreeMap<String, u64>,
    /// Set by a factory reset; the daemon shuts down and wipes.
    pub factory_reset: bool,
    admin: Option<String>,
    mac_secret: Vec<u8>,
    data: DataDir,
}

impl Engine {
    /// The state restored from `body` (the machine gets its records; call
    /// [`Event::Boot`] afterwards).
    pub fn new(data: DataDir, mac_secret: Vec<u8>, admin: Option<String>, body: Body) -> Self {
        let mut machine = Machine::new();
        // Restore never fails.
        let _ = machine.handle(Duration::ZERO, Event::Restore(body.unikernels));
        Self {
            machine,
            policies: body.policies,
            blocks: body
                .blocks
                .into_iter()
                .map(|b| (b.name.clone(), b))
                .collect(),
            autostart: body.autostart,
            busy: BTreeSet::new(),
            taps: BTreeMap::new(),
            exit_times: body.exit_times,
            factory_reset: false,
            admin,
            mac_secret,
            data,
        }
    }

    /// What to persist.
    pub fn body(&self) -> Body {
        Body {
            unikernels: self.machine.snapshot(),
            policies: self.policies.clone(),
            blocks: self.blocks.values().cloned().collect(),
            autostart: self.autostart.clone(),
            exit_times: self
                .exit_times
                .iter()
                .filter(|(n, _)| self.live(n).is_some())
                .map(|(n, t)| (n.clone(), *t))
                .collect(),
        }
    }

    /// The image digests still referenced (to keep in the store).
    pub fn referenced_images(&self) -> BTreeSet<String> {
        self.machine
            .unikernels()
            .map(|u| u.spec.image_sha256.clone())
            .collect()
    }

    /// The MAC derivation secret.
    pub fn mac_secret(&self) -> &[u8] {
        &self.mac_secret
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    fn usage(&self) -> BTreeMap<String, Usage> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for u in self.machine.unikernels() {
            let e = usage.entry(u.spec.owner().to_owned()).or_default();
            e.unikernels = e.unikernels.saturating_add(1);
            e.memory_mib = e.memory_mib.saturating_add(u64::from(u.spec.memory_mib));
        }
        for b in self.blocks.values() {
            let owner = b.name.rsplit_once(':').map_or("", |(o, _)| o);
            let e = usage.entry(owner.to_owned()).or_default();
            e.block_mib = e.block_mib.saturating_add(block_mib(b.size_bytes));
        }
        usage
    }

    /// The policies with the admin's implicit unlimited one (allowing what `req` uses).
    fn effective(&self, req: &quota::Request) -> BTreeMap<String, Policy> {
        let mut p = self.policies.clone();
        if let Some(admin) = &self.admin {
            p.insert(
                admin.clone(),
                Policy {
                    max_unikernels: u32::MAX,
                    memory_mib: u64::MAX,
                    block_mib: u64::MAX,
                    cpus: req.cpus.iter().copied().collect(),
                    bridges: req.bridges.iter().cloned().collect(),
                },
            );
        }
        p
    }

    /// A remote caller's access at all: a policy on every prefix of its path.
    fn access<'c>(&self, caller: &'c Caller) -> Result<Option<&'c Identity>, Error> {
        match caller {
            Caller::Local => Ok(None),
            Caller::Remote(id) => {
                let none = quota::Request::default();
                quota::check(&self.effective(&none), &self.usage(), id.as_str(), &none)
                    .map_err(denied)?;
                Ok(Some(id))
            }
        }
    }

    /// May `caller` act on names owned by `owner`?
    fn may_act(&self, caller: &Caller, owner: &Identity) -> Result<(), Error> {
        if let Some(id) = self.access(caller)?
            && !id.is_prefix_of(owner)
        {
            return Err(err(
                ErrorKind::PermissionDenied,
                format!("{id} may not act in the namespace of {owner}"),
            ));
        }
        Ok(())
    }

    /// May `caller` add `req` to `owner`'s namespace?
    fn may_add(
        &self,
        caller: &Caller,
        owner: &Identity,
        req: &quota::Request,
    ) -> Result<(), Error> {
        self.may_act(caller, owner)?;
        if matches!(caller, Caller::Remote(_)) {
            quota::check(&self.effective(req), &self.usage(), owner.as_str(), req)
                .map_err(denied)?;
        }
        Ok(())
    }

    fn is_admin(&self, caller: &Caller) -> Result<(), Error> {
        match caller {
            Caller::Local => Ok(()),
            Caller::Remote(id) if self.admin.as_deref() == Some(id.as_str()) => Ok(()),
            Caller::Remote(id) => Err(err(
                ErrorKind::PermissionDenied,
                format!("{id} is not the administrator of this box"),
            )),
        }
    }

    /// Who may see what: `None` for everything.
    fn scope(&self, caller: &Caller) -> Result<Option<Identity>, Error> {
        Ok(self.access(caller)?.cloned())
    }

    /// The live (not destroyed) unikernel `name`.
    fn live(&self, name: &str) -> Option<&Unikernel> {
        self.machine
            .get(name)
            .filter(|u| u.state != RunState::Destroyed)
    }

    /// Handles one request at `now` (supervisor clock); returns the answer and the
    /// actions to execute before replying.
    pub fn handle(
        &mut self,
        now: Duration,
        caller: &Caller,
        op: Op,
    ) -> (Result<Answer, Error>, Vec<Action>) {
        let mut actions = Vec::new();
        let r = self.handle_inner(now, caller, op, &mut actions);
        (r, actions)
    }

    fn handle_inner(
        &mut self,
        now: Duration,
        caller: &Caller,
        op: Op,
        actions: &mut Vec<Action>,
    ) -> Result<Answer, Error> {
        match op {
            Op::Info(Some(name)) => {
                self.may_act(caller, &name.owner)?;
                let info = self
                    .info(now, &name.to_string())
                    .ok_or_else(|| not_found(&name))?;
                Ok(Answer::Reply(ReplyBody::Info(vec![info])))
            }
            Op::Info(None) => {
                let scope = self.scope(caller)?;
                Ok(Answer::Reply(ReplyBody::Info(
                    self.infos(now, scope.as_ref()),
                )))
            }
            Op::PrepareCreate(spec) => {
                self.check_new(caller, &spec)?;
                Ok(Answer::Done)
            }
            Op::Create(spec, digest) => {
                self.check_new(caller, &spec)?;
                let state_spec = self.state_spec(&spec, &digest);
                let name = state_spec.name.clone();
                actions.extend(
                    self.machine
                        .handle(now, Event::Create(state_spec))
                        .map_err(machine_err)?,
                );
                self.exit_times.remove(&name);
                Ok(Answer::InfoOf(name))
            }
            Op::Destroy(name) => {
                self.may_act(caller, &name.owner)?;
                let full = name.to_string();
                actions.extend(
                    self.machine
                        .handle(now, Event::Destroy { name: full.clone() })
                        .map_err(machine_err)?,
                );
                Ok(Answer::Destroyed(full))
            }
            Op::Restart(name, args) => {
                self.may_act(caller, &name.owner)?;
                if let Some(a) = &args {
                    check_args(a)?;
                }
                let full = name.to_string();
                // A volume in transfer: refused like a create, not an `Ok` whose spawn
                // then fails (the daemon's spawn check) and records a SpawnFailed exit.
                if let Some(u) = self.live(&full) {
                    for b in &u.spec.block {
                        self.not_in_transfer(&b.volume)?;
                    }
                }
                actions.extend(
                    self.machine
                        .handle(
                            now,
                            Event::Restart {
                                name: full.clone(),
                                args,
                            },
                        )
                        .map_err(machine_err)?,
                );
                Ok(Answer::InfoOf(full))
            }
            Op::Visible(name) => {
                self.may_act(caller, &name.owner)?;
                Ok(Answer::Done)
            }
            Op::Stats(name) => {
                let scope = match &name {
                    Some(n) => {
                        self.may_act(caller, &n.owner)?;
                        if self.live(&n.to_string()).is_none() {
                            return Err(not_found(n));
                        }
                        None
                    }
                    None => self.scope(caller)?,
                };
                let targets = self
                    .targets(now)
                    .into_iter()
                    .filter(|t| name.as_ref().is_none_or(|n| *n == t.name))
                    .filter(|t| scope.as_ref().is_none_or(|s| s.is_prefix_of(&t.name.owner)))
                    .collect();
                Ok(Answer::Targets(targets))
            }
            Op::Block(cmd) => self.block(caller, cmd, actions),
            Op::Acquire { name, upload_bytes } => self.acquire(caller, &name, upload_bytes),
            Op::Policy(cmd) => self.policy(caller, cmd, actions),
            Op::Admin => {
                self.is_admin(caller)?;
                Ok(Answer::Done)
            }
            Op::FactoryReset => {
                self.is_admin(caller)?;
                self.factory_reset = true;
                Ok(Answer::Reply(ReplyBody::Ok))
            }
            Op::Metrics => {
                self.is_admin(caller)?;
                Ok(Answer::Metrics(self.infos(now, None), self.targets(now)))
            }
        }
    }

    /// Turns an [`Answer::InfoOf`] into the reply, after the actions ran.
    pub fn resolve(&self, now: Duration, answer: Answer) -> Result<Answer, Error> {
        match answer {
            Answer::InfoOf(name) => match self.info(now, &name) {
                Some(i) => Ok(Answer::Reply(ReplyBody::Unikernel(Box::new(i)))),
                None => Err(err(
                    ErrorKind::NotFound,
                    format!("no unikernel named {name}"),
                )),
            },
            Answer::Destroyed(_) => Ok(Answer::Reply(ReplyBody::Ok)),
            other => Ok(other),
        }
    }

    fn check_new(&self, caller: &Caller, spec: &CreateSpec) -> Result<(), Error> {
        check_create(spec)?;
        let full = spec.name.to_string();
        if self.machine.get(&full).is_some() {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("unikernel {full} already exists"),
            ));
        }
        let req = quota::Request {
            adds: Usage {
                unikernels: 1,
                memory_mib: u64::from(spec.memory_mib),
                block_mib: 0,
            },
            cpus: spec.cpu_affinity.iter().map(|c| u32::from(*c)).collect(),
            bridges: spec.devices.iter().map(|d| d.bridge.clone()).collect(),
        };
        self.may_add(caller, &spec.name.owner, &req)?;
        for b in &spec.blocks {
            let volume = format!("{}:{}", spec.name.owner, b.device);
            if !self.blocks.contains_key(&volume) {
                return Err(err(
                    ErrorKind::NotFound,
                    format!("no block volume named {volume}"),
                ));
            }
            if let Some(user) = self.volume_user(&volume) {
                return Err(err(
                    ErrorKind::Busy,
                    format!("block volume {volume} is attached to {user}"),
                ));
            }
            self.not_in_transfer(&volume)?;
        }
        Ok(())
    }

    /// Refuses `volume` while an upload or download holds it.
    fn not_in_transfer(&self, volume: &str) -> Result<(), Error> {
        if self.busy.contains(volume) {
            return Err(err(
                ErrorKind::Busy,
                format!("block volume {volume} is being transferred"),
            ));
        }
        Ok(())
    }

    fn state_spec(&self, spec: &CreateSpec, digest: &Sha256Digest) -> Spec {
        let full = spec.name.to_string();
        Spec {
            name: full.clone(),
            image_sha256: store::hex(digest),
            args: spec.args.clone(),
            memory_mib: spec.memory_mib,
            cpus: {
                let set: BTreeSet<u32> = spec.cpu_affinity.iter().map(|c| u32::from(*c)).collect();
                set.into_iter().collect()
            },
            net: spec
                .devices
                .iter()
                .map(|d| NetDevice::derive(&self.mac_secret, &full, &d.name, &d.bridge))
                .collect(),
            block: spec
                .blocks
                .iter()
                .map(|b| BlockDevice {
                    name: b.name.clone(),
                    volume: format!("{}:{}", spec.name.owner, b.device),
                })
                .collect(),
            restart: to_state_restart(&spec.restart),
            priority: spec.priority,
        }
    }

    /// The unikernel whose spec attaches `volume`, if any (destroyed ones whose tender
    /// still runs included).
    pub fn volume_user(&self, volume: &str) -> Option<String> {
        self.machine
            .unikernels()
            .find(|u| u.spec.block.iter().any(|b| b.volume == volume))
            .map(|u| u.spec.name.clone())
    }

    /// Info of every unikernel in `scope` (`None`: all).
    pub fn infos(&self, now: Duration, scope: Option<&Identity>) -> Vec<UnikernelInfo> {
        self.machine
            .unikernels()
            .filter(|u| u.state != RunState::Destroyed)
            .filter(|u| {
                scope
                    .is_none_or(|s| Identity::new(u.spec.owner()).is_ok_and(|o| s.is_prefix_of(&o)))
            })
            .filter_map(|u| self.info_of(now, u))
            .collect()
    }

    /// Info of one live unikernel.
    pub fn info(&self, now: Duration, name: &str) -> Option<UnikernelInfo> {
        self.live(name).and_then(|u| self.info_of(now, u))
    }

    fn info_of(&self, now: Duration, u: &Unikernel) -> Option<UnikernelInfo> {
        let name: FullName = u.spec.name.parse().ok()?;
        let (state, pid, uptime_ms) = match &u.state {
            RunState::Starting => (UnikernelState::Starting, None, None),
            RunState::Running { pid, since } => (
                UnikernelState::Running,
                Some(*pid),
                Some(duration_ms(now.saturating_sub(*since))),
            ),
            RunState::Backoff { until } => (
                UnikernelState::Backoff {
                    restart_in_ms: duration_ms(until.saturating_sub(now)),
                },
                None,
                None,
            ),
            RunState::Stopped | RunState::Exited(_) | RunState::Destroyed => {
                (UnikernelState::Stopped, None, None)
            }
        };
        Some(UnikernelInfo {
            name,
            state,
            pid,
            uptime_ms,
            memory_mib: u.spec.memory_mib,
            cpus: 1,
            cpu_affinity: u
                .spec
                .cpus
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            priority: u.spec.priority,
            devices: u
                .spec
                .net
                .iter()
                .map(|d| NetDeviceInfo {
                    name: d.name.clone(),
                    bridge: d.bridge.clone(),
                    mac: d.mac.0,
                })
                .collect(),
            blocks: u
                .spec
                .block
                .iter()
                .filter_map(|b| {
                    let device = b.volume.rsplit_once(':')?.1;
                    Some(BlockAttach {
                        name: b.name.clone(),
                        device: UnikernelName::new(device).ok()?,
                    })
                })
                .collect(),
            image_sha256: store::parse_hex(&u.spec.image_sha256).unwrap_or(Sha256Digest([0; 32])),
            args: u.spec.args.clone(),
            restart: to_wire_restart(&u.spec.restart),
            restart_count: u.restart_count,
            last_exit: u.last_exit.as_ref().map(|e| LastExit {
                status: match e.status {
                    ExitStatus::Code(c) => petrel_proto::msg::ExitStatus::Code(c),
                    ExitStatus::Signal(s) => petrel_proto::msg::ExitStatus::Signal(s),
                    // No wire variant: the reason says it; 127 like a shell's "not run".
                    ExitStatus::SpawnFailed => petrel_proto::msg::ExitStatus::Code(127),
                },
                reason: match e.status {
                    ExitStatus::SpawnFailed => format!("could not start: {}", e.reason),
                    _ => e.reason.clone(),
                },
                at_unix_ms: self.exit_times.get(&u.spec.name).copied().unwrap_or(0),
            }),
        })
    }

    /// Every running tender.
    pub fn targets(&self, now: Duration) -> Vec<StatTarget> {
        self.machine
            .unikernels()
            .filter_map(|u| match u.state {
                RunState::Running { pid, since } => Some(StatTarget {
                    name: u.spec.name.parse().ok()?,
                    pid,
                    uptime_ms: duration_ms(now.saturating_sub(since)),
                    taps: self.taps.get(&u.spec.name).cloned().unwrap_or_default(),
                }),
                _ => None,
            })
            .collect()
    }

    fn block_info(&self, b: &BlockVolume) -> Option<BlockInfo> {
        Some(BlockInfo {
            name: b.name.parse().ok()?,
            size_bytes: b.size_bytes,
            sector_size: b.sector_size,
            attached_to: self.volume_user(&b.name).and_then(|n| n.parse().ok()),
        })
    }

    fn block(
        &mut self,
        caller: &Caller,
        cmd: BlockCommand,
        actions: &mut Vec<Action>,
    ) -> Result<Answer, Error> {
        match cmd {
            BlockCommand::Create {
                name,
                size_bytes,
                sector_size,
            } => {
                if !sector_size.is_power_of_two() || !(512..=MAX_SECTOR_SIZE).contains(&sector_size)
                {
                    return Err(bad(format!(
                        "sector size {sector_size} is not a power of two in 512..={MAX_SECTOR_SIZE}"
                    )));
                }
                if size_bytes == 0
                    || size_bytes % u64::from(sector_size) != 0
                    || size_bytes > store::MAX_BLOCK_BYTES
                {
                    return Err(bad(format!(
                        "size {size_bytes} must be a positive multiple of the sector size {sector_size}, at most {}",
                        store::MAX_BLOCK_BYTES
                    )));
                }
                let full = name.to_string();
                if self.blocks.contains_key(&full) {
                    return Err(err(
                        ErrorKind::AlreadyExists,
                        format!("block volume {full} already exists"),
                    ));
                }
                let req = quota::Request {
                    adds: Usage {
                        block_mib: block_mib(size_bytes),
                        ..Usage::default()
                    },
                    ..quota::Request::default()
                };
                self.may_add(caller, &name.owner, &req)?;
                store::create_block_file(&self.data.block(&full), size_bytes)
                    .map_err(|e| internal(&format!("creating block volume {full}"), e))?;
                let v = BlockVolume {
                    name: full.clone(),
                    size_bytes,
                    sector_size,
                };
                let info = self.block_info(&v);
                self.blocks.insert(full, v);
                actions.push(Action::Persist);
                info.map(|i| Answer::Reply(ReplyBody::Block(i)))
                    .ok_or_else(|| err(ErrorKind::Internal, "bad volume name"))
            }
            BlockCommand::Destroy { name } => {
                self.may_act(caller, &name.owner)?;
                let full = name.to_string();
                if !self.blocks.contains_key(&full) {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("no block volume named {full}"),
                    ));
                }
                if let Some(user) = self.volume_user(&full) {
                    return Err(err(
                        ErrorKind::Busy,
                        format!("block volume {full} is attached to {user}"),
                    ));
                }
                self.not_in_transfer(&full)?;
                self.blocks.remove(&full);
                // The file goes after the state is saved (the daemon removes volume
                // files the state does not list at start).
                actions.push(Action::Persist);
                if let Err(e) = store::remove_block_file(&self.data.block(&full)) {
                    log::warn!("removing block volume {full}: {e}");
                }
                Ok(Answer::Reply(ReplyBody::Ok))
            }
            BlockCommand::List { owner } => {
                let scope = match owner {
                    Some(o) => {
                        self.may_act(caller, &o)?;
                        Some(o)
                    }
                    None => self.scope(caller)?,
                };
                let list = self
                    .blocks
                    .values()
                    .filter(|b| {
                        scope.as_ref().is_none_or(|s| {
                            b.name
                                .rsplit_once(':')
                                .and_then(|(o, _)| Identity::new(o).ok())
                                .is_some_and(|o| s.is_prefix_of(&o))
                        })
                    })
                    .filter_map(|b| self.block_info(b))
                    .collect();
                Ok(Answer::Reply(ReplyBody::Blocks(list)))
            }
            BlockCommand::Upload { name, .. } | BlockCommand::Download { name } => {
                // Transfers go through `Acquire`; this path is not reached.
                Err(bad(format!("transfer of {name} outside a stream")))
            }
        }
    }

    fn acquire(
        &mut self,
        caller: &Caller,
        name: &FullName,
        upload_bytes: Option<u64>,
    ) -> Result<Answer, Error> {
        self.may_act(caller, &name.owner)?;
        let full = name.to_string();
        let v = self
            .blocks
            .get(&full)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no block volume named {full}")))?;
        if let Some(n) = upload_bytes
            && n > v.size_bytes
        {
            return Err(bad(format!(
                "{n} bytes do not fit block volume {full} of {} bytes",
                v.size_bytes
            )));
        }
        self.not_in_transfer(&full)?;
        if let Some(user) = self.volume_user(&full) {
            let idle = self
                .live(&user)
                .is_some_and(|u| matches!(u.state, RunState::Exited(_) | RunState::Stopped));
            if !idle {
                return Err(err(
                    ErrorKind::Busy,
                    format!("block volume {full} is in use by {user}"),
                ));
            }
        }
        let size_bytes = v.size_bytes;
        self.busy.insert(full.clone());
        Ok(Answer::Volume {
            path: self.data.block(&full),
            size_bytes,
        })
    }

    fn policy(
        &mut self,
        caller: &Caller,
        cmd: PolicyCommand,
        actions: &mut Vec<Action>,
    ) -> Result<Answer, Error> {
        let actor = self.access(caller)?.cloned();
        match cmd {
            PolicyCommand::Add { identity, policy } => {
                let p = to_policy(&policy);
                match &actor {
                    None => {
                        self.policies.insert(identity.to_string(), p);
                    }
                    Some(a) => {
                        quota::set_policy(&mut self.policies, a.as_str(), identity.as_str(), p)
                            .map_err(denied)?;
                    }
                }
                actions.push(Action::Persist);
                Ok(Answer::Reply(ReplyBody::Ok))
            }
            PolicyCommand::Remove { identity } => {
                let removed = match &actor {
                    None => self.policies.remove(identity.as_str()).is_some(),
                    Some(a) => {
                        quota::remove_policy(&mut self.policies, a.as_str(), identity.as_str())
                            .map_err(denied)?
                    }
                };
                if !removed {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("no policy for {identity}"),
                    ));
                }
                actions.push(Action::Persist);
                Ok(Answer::Reply(ReplyBody::Ok))
            }
            PolicyCommand::List { identity } => {
                let root = identity.or(actor.clone());
                if let (Some(a), Some(r)) = (&actor, &root)
                    && !a.is_prefix_of(r)
                {
                    return Err(err(
                        ErrorKind::PermissionDenied,
                        format!("{a} may not read the policies of {r}"),
                    ));
                }
                let list = self
                    .policies
                    .iter()
                    .filter(|(id, _)| {
                        root.as_ref()
                            .is_none_or(|r| quota::in_subtree(r.as_str(), id))
                    })
                    .filter_map(|(id, p)| {
                        Some(PolicyEntry {
                            identity: Identity::new(id).ok()?,
                            policy: to_wire_policy(p),
                        })
                    })
                    .collect();
                Ok(Answer::Reply(ReplyBody::Policies(list)))
            }
        }
    }
}

fn not_found(name: &FullName) -> Error {
    err(ErrorKind::NotFound, format!("no unikernel named {name}"))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Settings of the [`Core`].
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Reboot and poweroff signal PID 1 (DESIGN §2a).
    pub appliance: bool,
    /// This boot's log (`/run/petrel/boot.log`).
    pub run_log: PathBuf,
    /// Where `trust rotate` writes the new anchor.
    pub trust_out: PathBuf,
    /// The most uploads in flight may announce in total (see [`crate::budget`]).
    pub upload_budget_bytes: u64,
}

/// The service the server calls: see the module doc.
pub struct Core {
    tx: Sender<Msg>,
    data: DataDir,
    consoles: Arc<Consoles>,
    settings: CoreSettings,
    uploads: Arc<UploadBudget>,
}

impl Core {
    /// A core that sends its requests to the core thread over `tx`.
    pub fn new(
        tx: Sender<Msg>,
        data: DataDir,
        consoles: Arc<Consoles>,
        settings: CoreSettings,
    ) -> Self {
        let uploads = UploadBudget::new(data.root().to_owned(), settings.upload_budget_bytes);
        Self {
            tx,
            data,
            consoles,
            settings,
            uploads,
        }
    }

    /// Asks the core thread.
    pub fn ask(&self, caller: &Caller, op: Op) -> Result<Answer, Error> {
        ask(&self.tx, caller, op)
    }

    fn dispatch(&self, caller: &Caller, command: Command) -> Result<Outcome, Error> {
        let reply = |a: Answer| match a {
            Answer::Reply(r) => Ok(Outcome::Reply(r)),
            _ => Ok(Outcome::Reply(ReplyBody::Ok)),
        };
        match command {
            Command::Info { name } => reply(self.ask(caller, Op::Info(name))?),
            Command::Create(spec) => {
                check_create(&spec)?;
                let (size_bytes, sha256) = match spec.image {
                    ImageSource::Upload { size_bytes, sha256 } => (size_bytes, sha256),
                    ImageSource::Builder { .. } => {
                        return Err(err(
                            ErrorKind::Unsupported,
                            "images from a builder are not supported yet; upload the image",
                        ));
                    }
                };
                self.ask(caller, Op::PrepareCreate(spec.clone()))?;
                let reservation = self.uploads.reserve(size_bytes)?;
                let tmp = TempFile::new(&self.data.images_tmp(), "upload")
                    .map_err(|e| internal("creating an upload file", e))?;
                Ok(Outcome::Receive(Box::new(ImageSink {
                    tx: self.tx.clone(),
                    caller: caller.clone(),
                    spec,
                    size_bytes,
                    sha256,
                    tmp,
                    data: self.data.clone(),
                    reservation,
                })))
            }
            Command::Destroy { name } => reply(self.ask(caller, Op::Destroy(name))?),
            Command::Restart { name, args } => reply(self.ask(caller, Op::Restart(name, args))?),
            Command::Console {
                name,
                history,
                follow,
            } => {
                self.ask(caller, Op::Visible(name.clone()))?;
                let source = self
                    .consoles
                    .source(&name.to_string(), history, follow)
                    .ok_or_else(|| {
                        err(ErrorKind::NotFound, format!("no console output of {name}"))
                    })?;
                Ok(Outcome::Send(source))
            }
            Command::Stats { name } => {
                let Answer::Targets(targets) = self.ask(caller, Op::Stats(name))? else {
                    return Err(err(ErrorKind::Internal, "unexpected answer"));
                };
                Ok(Outcome::Reply(ReplyBody::Stats(
                    targets.iter().map(read_stats).collect(),
                )))
            }
            Command::Block(BlockCommand::Upload {
                name,
                size_bytes,
                sha256,
            }) => {
                let Answer::Volume {
                    path,
                    size_bytes: volume_bytes,
                } = self.ask(
                    caller,
                    Op::Acquire {
                        name: name.clone(),
                        upload_bytes: Some(size_bytes),
                    },
                )?
                else {
                    return Err(err(ErrorKind::Internal, "unexpected answer"));
                };
                let guard = Release {
                    tx: self.tx.clone(),
                    name: name.to_string(),
                };
                // Written to a new file beside the volume: it takes its whole size.
                let reservation = self.uploads.reserve(size_bytes)?;
                let tmp = TempFile::new(&self.data.blocks(), "upload")
                    .map_err(|e| internal("creating an upload file", e))?;
                Ok(Outcome::Receive(Box::new(BlockSink {
                    _guard: guard,
                    path,
                    volume_bytes,
                    size_bytes,
                    sha256,
                    tmp,
                    reservation,
                })))
            }
            Command::Block(BlockCommand::Download { name }) => {
                let Answer::Volume { path, size_bytes } = self.ask(
                    caller,
                    Op::Acquire {
                        name: name.clone(),
                        upload_bytes: None,
                    },
                )?
                else {
                    return Err(err(ErrorKind::Internal, "unexpected answer"));
                };
                let guard = Release {
                    tx: self.tx.clone(),
                    name: name.to_string(),
                };
                let file = File::open(&path)
                    .map_err(|e| internal(&format!("opening block volume {name}"), e))?;
                Ok(Outcome::Send(Box::new(FileSource {
                    _guard: Some(guard),
                    file,
                    left_bytes: size_bytes,
                })))
            }
            Command::Block(cmd) => reply(self.ask(caller, Op::Block(cmd))?),
            Command::Policy(cmd) => reply(self.ask(caller, Op::Policy(cmd))?),
            Command::Reboot | Command::Poweroff => {
                let reboot = matches!(command, Command::Reboot);
                if !self.settings.appliance {
                    return Err(err(
                        ErrorKind::Unsupported,
                        "not an appliance: petreld runs without --appliance and leaves the host alone",
                    ));
                }
                self.ask(caller, Op::Admin)?;
                check_pid1()?;
                signal_init_later(reboot);
                Ok(Outcome::Reply(ReplyBody::Ok))
            }
            Command::Logs { boot, lines } => {
                self.ask(caller, Op::Admin)?;
                let text = crate::daemon::read_logs(
                    &self.settings.run_log,
                    &self.data.log(),
                    boot,
                    lines,
                )?;
                Ok(Outcome::Send(Box::new(BytesSource { data: text, pos: 0 })))
            }
            Command::FactoryReset => {
                if !self.settings.appliance {
                    return Err(err(
                        ErrorKind::Unsupported,
                        "not an appliance: factory reset wipes the data partition of a box",
                    ));
                }
                check_pid1()?;
                reply(self.ask(caller, Op::FactoryReset)?)
            }
            Command::TrustRotate { anchor_der } => {
                self.ask(caller, Op::Admin)?;
                if anchor_der.len() > MAX_ANCHOR_BYTES {
                    return Err(bad("the anchor certificate is too large"));
                }
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(rustls::pki_types::CertificateDer::from(anchor_der.clone()))
                    .map_err(|e| bad(format!("not a usable anchor certificate: {e}")))?;
                let pem = petrel_proto::tls::ca::cert_pem(
                    &rustls::pki_types::CertificateDer::from(anchor_der),
                );
                store::write_atomic(&self.settings.trust_out, pem.as_bytes(), 0o600)
                    .map_err(|e| internal("writing the new trust anchor", e))?;
                log::warn!(
                    "trust anchor replaced ({}); it takes effect when petreld starts again",
                    self.settings.trust_out.display()
                );
                Ok(Outcome::Reply(ReplyBody::Ok))
            }
            Command::Cancel { id } => Err(err(
                ErrorKind::NotFound,
                format!("no stream of request {} to cancel", id.0),
            )),
        }
    }
}

impl Service for Core {
    fn call(&self, caller: &Caller, command: Command) -> Outcome {
        match self.dispatch(caller, command) {
            Ok(o) => o,
            Err(e) => Outcome::Reply(ReplyBody::Error(e)),
        }
    }
}

/// Sends `op` to the core thread and waits for the answer.
pub fn ask(tx: &Sender<Msg>, caller: &Caller, op: Op) -> Result<Answer, Error> {
    let (reply, rx) = sync_channel(1);
    let gone = || err(ErrorKind::Busy, "petreld is shutting down");
    tx.send(Msg::Request {
        caller: caller.clone(),
        op,
        reply,
    })
    .map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// Reads a tender's statistics (missing figures are zero: it may have just exited).
pub fn read_stats(t: &StatTarget) -> UnikernelStats {
    let p = crate::stats::process(t.pid).ok();
    UnikernelStats {
        name: t.name.clone(),
        cpu_user_ms: p.as_ref().map_or(0, |p| p.cpu_user_ms),
        cpu_system_ms: p.as_ref().map_or(0, |p| p.cpu_system_ms),
        rss_bytes: p.as_ref().map_or(0, |p| p.rss_bytes),
        uptime_ms: t.uptime_ms,
        nets: t
            .taps
            .iter()
            .map(|(device, ifname)| {
                let c = crate::stats::tap(ifname).ok();
                NetStats {
                    name: device.clone(),
                    rx_bytes: c.as_ref().map_or(0, |c| c.rx_bytes),
                    rx_packets: c.as_ref().map_or(0, |c| c.rx_packets),
                    tx_bytes: c.as_ref().map_or(0, |c| c.tx_bytes),
                    tx_packets: c.as_ref().map_or(0, |c| c.tx_packets),
                    dropped_packets: c.as_ref().map_or(0, |c| c.dropped),
                }
            })
            .collect(),
    }
}

/// Where the appliance's PID 1, `petrel-init`, lives (the initramfs's `/init`).
pub const PETREL_INIT: &str = "/init";

/// Refuses to signal a PID 1 that is not `petrel-init`: `--appliance` on an ordinary
/// host (a test, a container) must never reboot it.
fn check_pid1() -> Result<(), Error> {
    let exe = std::fs::read_link("/proc/1/exe").map_err(|e| internal("reading /proc/1/exe", e))?;
    if exe == std::path::Path::new(PETREL_INIT) {
        Ok(())
    } else {
        Err(err(
            ErrorKind::Unsupported,
            format!(
                "PID 1 is {}, not petrel-init ({PETREL_INIT}): refusing to signal it",
                exe.display()
            ),
        ))
    }
}

/// Signals PID 1 (SIGTERM: reboot, SIGUSR2: poweroff) a moment after the reply left.
fn signal_init_later(reboot: bool) {
    let spawned = std::thread::Builder::new()
        .name("power".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let sig = if reboot {
                rustix::process::Signal::TERM
            } else {
                rustix::process::Signal::USR2
            };
            log::warn!(
                "{} requested: signalling PID 1",
                if reboot { "reboot" } else { "poweroff" }
            );
            if let Err(e) = rustix::process::kill_process(rustix::process::Pid::INIT, sig) {
                log::error!("signalling PID 1: {e}");
            }
        });
    if let Err(e) = spawned {
        log::error!("starting the power thread: {e}");
    }
}

/// Sends [`Msg::Release`] when a transfer ends, however it ends.
struct Release {
    tx: Sender<Msg>,
    name: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Release(std::mem::take(&mut self.name)));
    }
}

/// An image upload: temporary file → manifest check → the store → create.
struct ImageSink {
    tx: Sender<Msg>,
    caller: Caller,
    spec: Box<CreateSpec>,
    size_bytes: u64,
    sha256: Sha256Digest,
    tmp: TempFile,
    data: DataDir,
    /// Declared after `tmp`: given back once the temporary file is gone.
    reservation: Reservation,
}

impl Sink for ImageSink {
    fn expected(&self) -> (u64, Sha256Digest) {
        (self.size_bytes, self.sha256)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.tmp.written_bytes().saturating_add(data.len() as u64) > self.size_bytes {
            return Err(err(
                ErrorKind::DigestMismatch,
                "more image data than announced",
            ));
        }
        self.tmp
            .write(data)
            .map_err(|e| internal("writing the image", e))?;
        self.reservation.wrote(data.len() as u64);
        Ok(())
    }

    fn finish(self: Box<Self>) -> ReplyBody {
        let this = *self;
        match this.commit() {
            Ok(r) => r,
            Err(e) => ReplyBody::Error(e),
        }
    }

    fn abort(self: Box<Self>) {}
}

impl ImageSink {
    fn commit(self) -> Result<ReplyBody, Error> {
        let digest = self.tmp.digest();
        if digest != self.sha256 || self.tmp.written_bytes() != self.size_bytes {
            return Err(err(
                ErrorKind::DigestMismatch,
                format!(
                    "received {} bytes with sha256 {digest}; announced {} bytes with sha256 {}",
                    self.tmp.written_bytes(),
                    self.size_bytes,
                    self.sha256
                ),
            ));
        }
        let nets: Vec<&str> = self.spec.devices.iter().map(|d| d.name.as_str()).collect();
        let blocks: Vec<&str> = self.spec.blocks.iter().map(|b| b.name.as_str()).collect();
        store::check_manifest(self.tmp.path(), &nets, &blocks).map_err(|e| match e {
            store::ManifestError::Io(m) => internal("reading the uploaded image", m),
            other => err(ErrorKind::ManifestMismatch, other.to_string()),
        })?;
        let dest = self.data.image(&store::hex(&digest));
        if dest.is_file() {
            store::touch(&dest).map_err(|e| internal("storing the image", e))?;
        } else {
            self.tmp
                .commit(&dest)
                .map_err(|e| internal("storing the image", e))?;
        }
        match ask(&self.tx, &self.caller, Op::Create(self.spec, digest))? {
            Answer::Reply(r) => Ok(r),
            _ => Ok(ReplyBody::Ok),
        }
    }
}

/// A block volume upload: temporary file, zero-filled to the volume's size, renamed
/// over the volume.
struct BlockSink {
    _guard: Release,
    path: PathBuf,
    volume_bytes: u64,
    size_bytes: u64,
    sha256: Sha256Digest,
    tmp: TempFile,
    /// Declared after `tmp`: given back once the temporary file is gone.
    reservation: Reservation,
}

impl Sink for BlockSink {
    fn expected(&self) -> (u64, Sha256Digest) {
        (self.size_bytes, self.sha256)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.tmp.written_bytes().saturating_add(data.len() as u64) > self.size_bytes {
            return Err(err(ErrorKind::DigestMismatch, "more data than announced"));
        }
        self.tmp
            .write(data)
            .map_err(|e| internal("writing block data", e))?;
        self.reservation.wrote(data.len() as u64);
        Ok(())
    }

    fn finish(self: Box<Self>) -> ReplyBody {
        let mut this = *self;
        if this.tmp.digest() != this.sha256 || this.tmp.written_bytes() != this.size_bytes {
            return ReplyBody::Error(err(
                ErrorKind::DigestMismatch,
                "block data does not match the announced size and sha256",
            ));
        }
        let r = this
            .tmp
            .set_len(this.volume_bytes)
            .and_then(|()| this.tmp.commit(&this.path));
        match r {
            Ok(()) => ReplyBody::Ok,
            Err(e) => ReplyBody::Error(internal("storing block data", e)),
        }
    }

    fn abort(self: Box<Self>) {}
}

/// A file's first `left_bytes`, in chunks.
struct FileSource {
    _guard: Option<Release>,
    file: File,
    left_bytes: u64,
}

impl Source for FileSource {
    fn next(&mut self, _wait: Duration) -> Pull {
        if self.left_bytes == 0 {
            return Pull::End;
        }
        let want =
            usize::try_from(self.left_bytes.min(MAX_CHUNK_BYTES as u64)).unwrap_or(MAX_CHUNK_BYTES);
        let mut buf = vec![0u8; want];
        match read_full(&mut self.file, &mut buf) {
            Ok(0) => Pull::Failed(err(
                ErrorKind::Internal,
                "block volume shorter than its size",
            )),
            Ok(n) => {
                buf.truncate(n);
                self.left_bytes = self.left_bytes.saturating_sub(n as u64);
                Pull::Data(buf)
            }
            Err(e) => Pull::Failed(internal("reading block volume", e)),
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match f.read(rest)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Bytes in memory, in chunks.
struct BytesSource {
    data: Vec<u8>,
    pos: usize,
}

impl Source for BytesSource {
    fn next(&mut self, _wait: Duration) -> Pull {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Pull::End;
        }
        let n = rest.len().min(MAX_CHUNK_BYTES);
        self.pos += n;
        Pull::Data(rest.get(..n).unwrap_or_default().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_caps() {
        assert!(check_args(&["a".into()]).is_ok());
        assert!(check_args(&vec!["a".to_owned(); MAX_ARGS + 1]).is_err());
        assert!(check_args(&["a\0b".into()]).is_err());
        assert!(check_args(&["x".repeat(HVT_CMDLINE_SIZE)]).is_err());
    }

    #[test]
    fn policy_conversion_round_trips_mib() {
        let w = WirePolicy {
            max_unikernels: 3,
            memory_mib: 64,
            block_bytes: 5 * MIB,
            bridges: vec!["service".into()],
            cpus: vec![0, 1],
        };
        assert_eq!(to_wire_policy(&to_policy(&w)), w);
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use petrel_proto::msg::PolicyCommand;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn engine(tag: &str, admin: Option<&str>) -> (Engine, Tmp) {
        let root =
            std::env::temp_dir().join(format!("petreld-engine-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = DataDir::prepare(&root).expect("data dir");
        let e = Engine::new(
            data,
            b"secret".to_vec(),
            admin.map(str::to_owned),
            Body::default(),
        );
        (e, Tmp(root))
    }

    fn remote(id: &str) -> Caller {
        Caller::Remote(Identity::new(id).expect("identity"))
    }

    fn spec(name: &str, memory_mib: u32, bridge: Option<&str>) -> Box<CreateSpec> {
        Box::new(CreateSpec {
            name: name.parse().expect("name"),
            image: ImageSource::Upload {
                size_bytes: 1,
                sha256: Sha256Digest::of(b"x"),
            },
            args: vec![],
            memory_mib,
            cpus: 1,
            devices: bridge
                .map(|b| petrel_proto::msg::NetDevice {
                    name: "service".into(),
                    bridge: b.into(),
                })
                .into_iter()
                .collect(),
            blocks: vec![],
            restart: WireRestart::Never,
            priority: 0,
            cpu_affinity: vec![],
        })
    }

    fn kind(r: Result<Answer, Error>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind)
    }

    fn create(e: &mut Engine, caller: &Caller, s: Box<CreateSpec>) -> Result<Answer, Error> {
        e.handle(
            Duration::ZERO,
            caller,
            Op::Create(s, Sha256Digest::of(b"x")),
        )
        .0
    }

    fn wire(n: u32, mem: u64, bridges: &[&str]) -> WirePolicy {
        WirePolicy {
            max_unikernels: n,
            memory_mib: mem,
            block_bytes: 4 * MIB,
            bridges: bridges.iter().map(|b| (*b).to_owned()).collect(),
            cpus: vec![],
        }
    }

    #[test]
    fn no_policy_no_access_and_admin_has_everything() {
        let (mut e, _t) = engine("admin", Some("ops"));
        let r = e.handle(Duration::ZERO, &remote("dev"), Op::Info(None)).0;
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        // The admin needs no explicit policy, for any bridge.
        assert!(create(&mut e, &remote("ops"), spec("ops:a", 512, Some("any"))).is_ok());
        // Below the admin, a policy is needed.
        let r = create(&mut e, &remote("ops/alice"), spec("ops/alice:a", 8, None));
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        let add = Op::Policy(PolicyCommand::Add {
            identity: Identity::new("ops/alice").expect("id"),
            policy: wire(1, 16, &["service"]),
        });
        let (r, actions) = e.handle(Duration::ZERO, &remote("ops"), add);
        assert!(r.is_ok());
        assert_eq!(actions, [Action::Persist]);
        assert!(
            create(
                &mut e,
                &remote("ops/alice"),
                spec("ops/alice:a", 8, Some("service"))
            )
            .is_ok()
        );
        // Her limits: one unikernel, 16 MiB, bridge service only.
        let r = create(&mut e, &remote("ops/alice"), spec("ops/alice:b", 8, None));
        assert_eq!(kind(r), Some(ErrorKind::QuotaExceeded));
        // Alice may not touch ops' unikernels, nor set her own policy.
        let r = e
            .handle(
                Duration::ZERO,
                &remote("ops/alice"),
                Op::Destroy("ops:a".parse().expect("n")),
            )
            .0;
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        let own = Op::Policy(PolicyCommand::Add {
            identity: Identity::new("ops/alice").expect("id"),
            policy: wire(9, 999, &[]),
        });
        let r = e.handle(Duration::ZERO, &remote("ops/alice"), own).0;
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        // She sees only her subtree; ops sees both.
        let seen = |e: &mut Engine, who: &str| match e
            .handle(Duration::ZERO, &remote(who), Op::Info(None))
            .0
        {
            Ok(Answer::Reply(ReplyBody::Info(v))) => v.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(seen(&mut e, "ops/alice"), 1);
        assert_eq!(seen(&mut e, "ops"), 2);
        // Admin-only commands.
        assert!(
            e.handle(Duration::ZERO, &remote("ops"), Op::Admin)
                .0
                .is_ok()
        );
        let r = e.handle(Duration::ZERO, &remote("ops/alice"), Op::Admin).0;
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
    }

    #[test]
    fn bridges_memory_and_names() {
        let (mut e, _t) = engine("limits", None);
        let add = Op::Policy(PolicyCommand::Add {
            identity: Identity::new("ops").expect("id"),
            policy: wire(4, 64, &["service"]),
        });
        // Only the local socket may set a top-level policy without an admin.
        let r = e.handle(Duration::ZERO, &remote("ops"), add).0;
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        let add = Op::Policy(PolicyCommand::Add {
            identity: Identity::new("ops").expect("id"),
            policy: wire(4, 64, &["service"]),
        });
        assert!(e.handle(Duration::ZERO, &Caller::Local, add).0.is_ok());
        let ops = remote("ops");
        let r = create(&mut e, &ops, spec("ops:a", 8, Some("mgmt")));
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        let r = create(&mut e, &ops, spec("ops:a", 65, None));
        assert_eq!(kind(r), Some(ErrorKind::QuotaExceeded));
        assert!(create(&mut e, &ops, spec("ops:a", 32, Some("service"))).is_ok());
        let r = create(&mut e, &ops, spec("ops:a", 8, None));
        assert_eq!(kind(r), Some(ErrorKind::AlreadyExists));
        // Outside its namespace.
        let r = create(&mut e, &ops, spec("dev:a", 8, None));
        assert_eq!(kind(r), Some(ErrorKind::PermissionDenied));
        // The MAC is derived and stable.
        let u = e.machine.get("ops:a").expect("created");
        assert_eq!(
            u.spec.net[0].mac,
            crate::mac::derive_mac(b"secret", "ops:a", "service")
        );
    }

    #[test]
    fn block_volumes_count_and_stay_exclusive() {
        let (mut e, _t) = engine("blocks", None);
        let local = Caller::Local;
        let mk = |name: &str, size: u64| {
            Op::Block(BlockCommand::Create {
                name: name.parse().expect("name"),
                size_bytes: size,
                sector_size: 512,
            })
        };
        assert!(e.handle(Duration::ZERO, &local, mk("ops:d", MIB)).0.is_ok());
        assert_eq!(
            kind(e.handle(Duration::ZERO, &local, mk("ops:d", MIB)).0),
            Some(ErrorKind::AlreadyExists)
        );
        assert_eq!(
            kind(e.handle(Duration::ZERO, &local, mk("ops:e", 100)).0),
            Some(ErrorKind::BadRequest)
        );
        let mut s = spec("ops:a", 8, None);
        s.blocks.push(BlockAttach {
            name: "storage".into(),
            device: UnikernelName::new("d").expect("n"),
        });
        assert!(create(&mut e, &local, s.clone()).is_ok());
        // Attached: a second user or a destroy is refused.
        let mut s2 = s.clone();
        s2.name = "ops:b".parse().expect("name");
        assert_eq!(kind(create(&mut e, &local, s2)), Some(ErrorKind::Busy));
        let destroy = Op::Block(BlockCommand::Destroy {
            name: "ops:d".parse().expect("name"),
        });
        assert_eq!(
            kind(e.handle(Duration::ZERO, &local, destroy).0),
            Some(ErrorKind::Busy)
        );
        assert_eq!(e.usage().get("ops").map(|u| u.block_mib), Some(1));
    }
}
