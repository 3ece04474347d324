//! The supervisor's transition function over all unikernels.
//!
//! [`Machine::handle`] takes the time and one [`Event`] and returns the [`Action`]s the
//! daemon must carry out; [`Machine::poll_at`] says when the next timer is due (the daemon
//! then sends [`Event::Tick`]). The machine does no I/O and reads no clock, so every
//! policy (backoff, kill escalation, shutdown, boot order) is tested with simulated time.
//!
//! Contracts with the daemon:
//! - `Spawn{name}`: create the taps, open the block files, spawn the tender, then report
//!   `TenderStarted` or (on any failure) `TenderExited` with [`ExitStatus::SpawnFailed`].
//! - Every tender that was spawned is reported exactly once by `TenderExited`; then the
//!   daemon gets `RemoveDevices{name}` (taps close with their fds).
//! - `Persist`: write [`Machine::snapshot`] with [`crate::persist`] *before* replying to
//!   the request that caused it, so nothing acknowledged is lost.
//! - A destroyed unikernel leaves the snapshot at once, even while its tender dies.
//!
//! ```
//! use std::time::Duration;
//! use petreld::machine::{Action, Event, Machine};
//! use petreld::state::{ExitStatus, RestartPolicy, Spec};
//!
//! let spec = Spec {
//!     name: "ops:web".into(),
//!     image_sha256: "ab".repeat(32),
//!     args: vec![],
//!     memory_mib: 32,
//!     cpus: vec![],
//!     net: vec![],
//!     block: vec![],
//!     restart: RestartPolicy::Always,
//!     priority: 0,
//! };
//! let mut m = Machine::new();
//! let t0 = Duration::ZERO;
//! let a = m.handle(t0, Event::Create(spec))?;
//! assert_eq!(a, [Action::Persist, Action::Spawn { name: "ops:web".into() }]);
//! m.handle(t0, Event::TenderStarted { name: "ops:web".into(), pid: 42 })?;
//! // It crashes at once: the restart waits for the backoff timer.
//! let t1 = Duration::from_millis(300);
//! let exit = Event::TenderExited { name: "ops:web".into(), status: ExitStatus::Code(2), reason: "oops".into() };
//! assert_eq!(m.handle(t1, exit)?, [Action::RemoveDevices { name: "ops:web".into() }]);
//! let due = m.poll_at().expect("a timer");
//! assert_eq!(due, t1 + Duration::from_secs(1));
//! assert_eq!(m.handle(due, Event::Tick)?, [Action::Spawn { name: "ops:web".into() }]);
//! # Ok::<(), petreld::machine::Error>(())
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::persist::Record;
use crate::state::{ExitInfo, ExitStatus, RunState, Spec, SpecError, Unikernel};

/// `SIGTERM`: the clean stop request (the tender exits 1 on it, which is expected).
pub const SIGTERM: i32 = 15;
/// `SIGKILL`: after the grace period, or for destroy.
pub const SIGKILL: i32 = 9;

/// The first backoff delay after a crash.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The backoff cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run this long counts as stable and resets the backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long a tender gets after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Load persisted records at start (before [`Event::Boot`]).
    Restore(Vec<Record>),
    /// Start every stopped unikernel, in priority order.
    Boot,
    /// The operator creates a unikernel (image already in the store).
    Create(Spec),
    /// The operator destroys a unikernel.
    Destroy {
        /// Full name.
        name: String,
    },
    /// The operator restarts a unikernel, optionally with new arguments.
    Restart {
        /// Full name.
        name: String,
        /// New arguments; `None` keeps the old ones.
        args: Option<Vec<String>>,
    },
    /// The daemon spawned the tender.
    TenderStarted {
        /// Full name.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// A tender exited (or could not be spawned).
    TenderExited {
        /// Full name.
        name: String,
        /// How.
        status: ExitStatus,
        /// The tender's last stderr line.
        reason: String,
    },
    /// A timer from [`Machine::poll_at`] is due.
    Tick,
    /// SIGTERM to `petreld`: stop everything, save, exit.
    Shutdown,
}

/// Something the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create devices and spawn the tender of this unikernel.
    Spawn {
        /// Full name.
        name: String,
    },
    /// Send `signal` to the tender of this unikernel.
    Kill {
        /// Full name.
        name: String,
        /// Signal number.
        signal: i32,
    },
    /// Release the devices of a tender that exited.
    RemoveDevices {
        /// Full name.
        name: String,
    },
    /// The unikernel is gone: drop its console buffer (after a while) and other leftovers.
    Forget {
        /// Full name.
        name: String,
    },
    /// Write the snapshot.
    Persist,
    /// Shutdown finished: every tender exited and the state was persisted; exit 0.
    Exit,
}

/// Why an operator request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A unikernel of that name exists.
    #[error("unikernel {0} already exists")]
    AlreadyExists(String),
    /// No unikernel of that name.
    #[error("no unikernel named {0}")]
    NotFound(String),
    /// The supervisor is shutting down.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The spec is not valid.
    #[error("invalid unikernel spec")]
    InvalidSpec(#[source] SpecError),
}

/// Why we asked a tender to stop, so its exit is not taken for a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    /// Restart requested: spawn again as soon as it exited.
    ForRestart,
    /// Shutdown: leave it stopped.
    ForShutdown,
}

#[derive(Clone, Debug)]
struct Entry {
    uk: Unikernel,
    stopping: Option<Stopping>,
    /// When SIGKILL follows the SIGTERM already sent.
    kill_at: Option<Duration>,
}

/// All unikernels and the policy that drives them.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    entries: BTreeMap<String, Entry>,
    shutting_down: bool,
    exited: bool,
}

/// The backoff before restart number `failures` (1-based) of a crash loop.
pub fn backoff_delay(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(31);
    BACKOFF_INITIAL
        .checked_mul(1u32 << shift)
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

impl Machine {
    /// An empty machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// One unikernel.
    pub fn get(&self, name: &str) -> Option<&Unikernel> {
        self.entries.get(name).map(|e| &e.uk)
    }

    /// All unikernels, by name (destroyed ones whose tender still dies included).
    pub fn unikernels(&self) -> impl Iterator<Item = &Unikernel> {
        self.entries.values().map(|e| &e.uk)
    }

    /// What must be persisted: every unikernel not destroyed.
    pub fn snapshot(&self) -> Vec<Record> {
        self.entries
            .values()
            .filter(|e| e.uk.state != RunState::Destroyed)
            .map(|e| Record {
                spec: e.uk.spec.clone(),
                restart_count: e.uk.restart_count,
                last_exit: e.uk.last_exit.clone(),
            })
            .collect()
    }

    /// The earliest time a [`Event::Tick`] has something to do.
    pub fn poll_at(&self) -> Option<Duration> {
        self.entries
            .values()
            .filter_map(|e| match e.uk.state {
                RunState::Backoff { until } => Some(until),
                _ => e.kill_at,
            })
            .min()
    }

    /// Feeds one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Duration, event: Event) -> Result<Vec<Action>, Error> {
        let mut out = Vec::new();
        match event {
            Event::Restore(records) => {
                for r in records {
                    let mut uk = Unikernel::new(r.spec);
                    uk.restart_count = r.restart_count;
                    uk.last_exit = r.last_exit;
                    let name = uk.spec.name.clone();
                    self.entries.insert(
                        name,
                        Entry {
                            uk,
                            stopping: None,
                            kill_at: None,
                        },
                    );
                }
            }
            Event::Boot => {
                self.refuse_if_shutting_down()?;
                let mut order: Vec<(&String, &Entry)> = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.uk.state == RunState::Stopped)
                    .collect();
                order.sort_by(|a, b| {
                    b.1.uk
                        .spec
                        .priority
                        .cmp(&a.1.uk.spec.priority)
                        .then(a.0.cmp(b.0))
                });
                let names: Vec<String> = order.into_iter().map(|(n, _)| n.clone()).collect();
                for name in names {
                    self.spawn(&name, &mut out);
                }
            }
            Event::Create(spec) => {
                self.refuse_if_shutting_down()?;
                spec.validate().map_err(Error::InvalidSpec)?;
                let name = spec.name.clone();
                if self.entries.contains_key(&name) {
                    return Err(Error::AlreadyExists(name));
                }
                let uk = Unikernel::new(spec);
                self.entries.insert(
                    name.clone(),
                    Entry {
                        uk,
                        stopping: None,
                        kill_at: None,
                    },
                );
                out.push(Action::Persist);
                self.spawn(&name, &mut out);
            }
            Event::Destroy { name } => {
                let e = self.live_entry(&name)?;
                let had_tender = e.uk.has_tender();
                e.uk.state = RunState::Destroyed;
                e.kill_at = None;
                out.push(Action::Persist);
                if had_tender {
                    out.push(Action::Kill {
                        name,
                        signal: SIGKILL,
                    });
                } else {
                    self.entries.remove(&name);
                    out.push(Action::Forget { name });
                    self.maybe_exit(&mut out);
                }
            }
            Event::Restart { name, args } => {
                self.refuse_if_shutting_down()?;
                let e = self.live_entry(&name)?;
                if let Some(args) = args {
                    e.uk.spec.args = args;
                    out.push(Action::Persist);
                }
                e.uk.consecutive_failures = 0;
                if e.uk.has_tender() {
                    e.stopping = Some(Stopping::ForRestart);
                    if e.kill_at.is_none() {
                        e.kill_at = Some(now.saturating_add(STOP_GRACE));
                        out.push(Action::Kill {
                            name,
                            signal: SIGTERM,
                        });
                    }
                } else {
                    self.spawn(&name, &mut out);
                }
            }
            Event::TenderStarted { name, pid } => {
                if let Some(e) = self.entries.get_mut(&name)
                    && e.uk.state == RunState::Starting
                {
                    e.uk.state = RunState::Running { pid, since: now };
                }
            }
            Event::TenderExited {
                name,
                status,
                reason,
            } => {
                self.exited(now, name, status, reason, &mut out);
            }
            Event::Tick => self.tick(now, &mut out),
            Event::Shutdown => {
                if !self.shutting_down {
                    self.shutting_down = true;
                    for (name, e) in &mut self.entries {
                        match e.uk.state {
                            RunState::Starting | RunState::Running { .. } => {
                                e.stopping = Some(Stopping::ForShutdown);
                                if e.kill_at.is_none() {
                                    e.kill_at = Some(now.saturating_add(STOP_GRACE));
                                    out.push(Action::Kill {
                                        name: name.clone(),
                                        signal: SIGTERM,
                                    });
                                }
                            }
                            RunState::Backoff { .. } => e.uk.state = RunState::Stopped,
                            _ => {}
                        }
                    }
                    self.maybe_exit(&mut out);
                }
            }
        }
        Ok(out)
    }

    fn refuse_if_shutting_down(&self) -> Result<(), Error> {
        if self.shutting_down {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// An entry the operator may act on (not already destroyed).
    fn live_entry(&mut self, name: &str) -> Result<&mut Entry, Error> {
        match self.entries.get_mut(name) {
            Some(e) if e.uk.state != RunState::Destroyed => Ok(e),
            _ => Err(Error::NotFound(name.to_owned())),
        }
    }

    fn spawn(&mut self, name: &str, out: &mut Vec<Action>) {
        if let Some(e) = self.entries.get_mut(name) {
            e.uk.state = RunState::Starting;
            e.stopping = None;
            e.kill_at = None;
            out.push(Action::Spawn {
                name: name.to_owned(),
            });
        }
    }

    fn exited(
        &mut self,
        now: Duration,
        name: String,
        status: ExitStatus,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        let Some(e) = self.entries.get_mut(&name) else {
            return;
        };
        let since = match e.uk.state {
            RunState::Running { since, .. } => Some(since),
            RunState::Starting => None,
            RunState::Destroyed => {
                self.entries.remove(&name);
                out.push(Action::RemoveDevices { name: name.clone() });
                out.push(Action::Forget { name });
                self.maybe_exit(out);
                return;
            }
            // No tender was running: a duplicate or stale report.
            _ => return,
        };
        out.push(Action::RemoveDevices { name: name.clone() });
        let info = ExitInfo { status, reason };
        e.uk.last_exit = Some(info.clone());
        e.kill_at = None;
        match e.stopping.take() {
            Some(Stopping::ForShutdown) => {
                e.uk.state = RunState::Stopped;
                self.maybe_exit(out);
                return;
            }
            Some(Stopping::ForRestart) => {
                self.spawn(&name, out);
                return;
            }
            None => {}
        }
        if self.shutting_down {
            e.uk.state = RunState::Stopped;
            self.maybe_exit(out);
            return;
        }
        if !e.uk.spec.restart.wants_restart(status) {
            e.uk.state = RunState::Exited(info);
            return;
        }
        let stable = since.is_some_and(|s| now.saturating_sub(s) >= STABLE_RUN);
        e.uk.consecutive_failures = if stable {
            1
        } else {
            e.uk.consecutive_failures.saturating_add(1)
        };
        let until = now.saturating_add(backoff_delay(e.uk.consecutive_failures));
        e.uk.state = RunState::Backoff { until };
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        let mut due = Vec::new();
        for (name, e) in &mut self.entries {
            if let RunState::Backoff { until } = e.uk.state
                && until <= now
            {
                due.push(name.clone());
            }
            if e.kill_at.is_some_and(|t| t <= now) && (e.uk.has_tender()) {
                e.kill_at = None;
                out.push(Action::Kill {
                    name: name.clone(),
                    signal: SIGKILL,
                });
            }
        }
        for name in due {
            if let Some(e) = self.entries.get_mut(&name) {
                e.uk.restart_count = e.uk.restart_count.saturating_add(1);
            }
            self.spawn(&name, out);
        }
    }

    /// During shutdown, once no tender is left: persist and exit (once).
    fn maybe_exit(&mut self, out: &mut Vec<Action>) {
        if self.shutting_down
            && !self.exited
            && !self
                .entries
                .values()
                .any(|e| e.uk.has_tender() || e.uk.state == RunState::Destroyed)
        {
            self.exited = true;
            out.push(Action::Persist);
            out.push(Action::Exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RestartPolicy;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn spec(name: &str, restart: RestartPolicy, priority: i32) -> Spec {
        Spec {
            name: name.to_owned(),
            image_sha256: "00".repeat(32),
            args: vec![],
            memory_mib: 32,
            cpus: vec![],
            net: vec![],
            block: vec![],
            restart,
            priority,
        }
    }

    fn spawn(n: &str) -> Action {
        Action::Spawn { name: n.to_owned() }
    }

    fn kill(n: &str, signal: i32) -> Action {
        Action::Kill {
            name: n.to_owned(),
            signal,
        }
    }

    fn rm(n: &str) -> Action {
        Action::RemoveDevices { name: n.to_owned() }
    }

    fn exit(n: &str, status: ExitStatus) -> Event {
        Event::TenderExited {
            name: n.to_owned(),
            status,
            reason: "boom".to_owned(),
        }
    }

    fn started(n: &str, pid: u32) -> Event {
        Event::TenderStarted {
            name: n.to_owned(),
            pid,
        }
    }

    fn ok(m: &mut Machine, now: Duration, ev: Event) -> Vec<Action> {
        m.handle(now, ev).expect("event accepted")
    }

    /// A machine with one running unikernel `ops:a` started at t=0.
    fn running(policy: RestartPolicy) -> Machine {
        let mut m = Machine::new();
        let a = ok(&mut m, secs(0), Event::Create(spec("ops:a", policy, 0)));
        assert_eq!(a, vec![Action::Persist, spawn("ops:a")]);
        assert!(ok(&mut m, secs(0), started("ops:a", 100)).is_empty());
        m
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let d: Vec<u64> = (1..=12).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
        assert_eq!(backoff_delay(0), BACKOFF_INITIAL);
    }

    #[test]
    fn crash_loop_backs_off_and_caps() {
        let mut m = running(RestartPolicy::Always);
        let mut now = secs(0);
        let mut expected_delays = Vec::new();
        for i in 1..=12u32 {
            now += Duration::from_millis(100); // dies right away each time
            let a = ok(&mut m, now, exit("ops:a", ExitStatus::Code(2)));
            assert_eq!(a, vec![rm("ops:a")]);
            let due = m.poll_at().expect("a timer is set");
            expected_delays.push((due - now).as_secs());
            // Nothing happens before the timer.
            assert!(ok(&mut m, due - Duration::from_millis(1), Event::Tick).is_empty());
            now = due;
            assert_eq!(ok(&mut m, now, Event::Tick), vec![spawn("ops:a")]);
            ok(&mut m, now, started("ops:a", 100 + i));
            assert_eq!(m.get("ops:a").map(|u| u.restart_count), Some(i));
        }
        assert_eq!(
            expected_delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(
            m.get("ops:a")
                .and_then(|u| u.last_exit.clone())
                .map(|e| e.reason),
            Some("boom".to_owned())
        );
    }

    #[test]
    fn stable_run_resets_backoff() {
        let mut m = running(RestartPolicy::Always);
        let mut now = secs(0);
        for _ in 0..5 {
            now += secs(1);
            ok(&mut m, now, exit("ops:a", ExitStatus::Code(1)));
            now = m.poll_at().expect("timer");
            ok(&mut m, now, Event::Tick);
            ok(&mut m, now, started("ops:a", 7));
        }
        // Now it runs for a stable minute, then crashes: back to the initial delay.
        now += STABLE_RUN;
        ok(&mut m, now, exit("ops:a", ExitStatus::Code(1)));
        assert_eq!(m.poll_at(), Some(now + BACKOFF_INITIAL));
    }

    #[test]
    fn destroy_during_backoff_wins_immediately() {
        let mut m = running(RestartPolicy::Always);
        ok(&mut m, secs(1), exit("ops:a", ExitStatus::Code(1)));
        assert!(matches!(
            m.get("ops:a").map(|u| &u.state),
            Some(RunState::Backoff { .. })
        ));
        let a = ok(
            &mut m,
            secs(1),
            Event::Destroy {
                name: "ops:a".into(),
            },
        );
        assert_eq!(
            a,
            vec![
                Action::Persist,
                Action::Forget {
                    name: "ops:a".into()
                }
            ]
        );
        assert!(m.get("ops:a").is_none());
        assert!(m.snapshot().is_empty());
        assert_eq!(m.poll_at(), None);
        assert!(ok(&mut m, secs(100), Event::Tick).is_empty());
    }

    #[test]
    fn destroy_while_running_kills_and_never_restarts() {
        let mut m = running(RestartPolicy::Always);
        let a = ok(
            &mut m,
            secs(5),
            Event::Destroy {
                name: "ops:a".into(),
            },
        );
        assert_eq!(a, vec![Action::Persist, kill("ops:a", SIGKILL)]);
        // Gone from the persisted state at once, before the tender died.
        assert!(m.snapshot().is_empty());
        // A second destroy or a restart is refused: it no longer exists for the operator.
        assert_eq!(
            m.handle(
                secs(5),
                Event::Destroy {
                    name: "ops:a".into()
                }
            ),
            Err(Error::NotFound("ops:a".into()))
        );
        assert!(
            m.handle(
                secs(5),
                Event::Restart {
                    name: "ops:a".into(),
                    args: None
                }
            )
            .is_err()
        );
        let a = ok(&mut m, secs(6), exit("ops:a", ExitStatus::Signal(SIGKILL)));
        assert_eq!(
            a,
            vec![
                rm("ops:a"),
                Action::Forget {
                    name: "ops:a".into()
                }
            ]
        );
        assert!(m.get("ops:a").is_none());
        // The name is free again.
        assert!(
            m.handle(
                secs(7),
                Event::Create(spec("ops:a", RestartPolicy::Never, 0))
            )
            .is_ok()
        );
    }

    #[test]
    fn restart_with_new_args() {
        let mut m = running(RestartPolicy::Never);
        let a = ok(
            &mut m,
            secs(3),
            Event::Restart {
                name: "ops:a".into(),
                args: Some(vec!["--x".into()]),
            },
        );
        assert_eq!(a, vec![Action::Persist, kill("ops:a", SIGTERM)]);
        assert_eq!(m.snapshot()[0].spec.args, vec!["--x".to_owned()]);
        // The tender exits 1 on SIGTERM: expected, and restarts now despite Never.
        let a = ok(&mut m, secs(4), exit("ops:a", ExitStatus::Code(1)));
        assert_eq!(a, vec![rm("ops:a"), spawn("ops:a")]);
        assert_eq!(m.get("ops:a").map(|u| u.restart_count), Some(0));
    }

    #[test]
    fn restart_escalates_to_sigkill_after_grace() {
        let mut m = running(RestartPolicy::Never);
        ok(
            &mut m,
            secs(3),
            Event::Restart {
                name: "ops:a".into(),
                args: None,
            },
        );
        assert_eq!(m.poll_at(), Some(secs(3) + STOP_GRACE));
        assert_eq!(
            ok(&mut m, secs(3) + STOP_GRACE, Event::Tick),
            vec![kill("ops:a", SIGKILL)]
        );
        assert_eq!(m.poll_at(), None);
        let a = ok(&mut m, secs(14), exit("ops:a", ExitStatus::Signal(SIGKILL)));
        assert_eq!(a, vec![rm("ops:a"), spawn("ops:a")]);
    }

    #[test]
    fn restart_of_exited_spawns_now() {
        let mut m = running(RestartPolicy::Never);
        ok(&mut m, secs(1), exit("ops:a", ExitStatus::Code(0)));
        assert!(matches!(
            m.get("ops:a").map(|u| &u.state),
            Some(RunState::Exited(_))
        ));
        let a = ok(
            &mut m,
            secs(2),
            Event::Restart {
                name: "ops:a".into(),
                args: None,
            },
        );
        assert_eq!(a, vec![spawn("ops:a")]);
    }

    #[test]
    fn on_exit_codes() {
        let mut m = running(RestartPolicy::OnExit([3].into_iter().collect()));
        ok(&mut m, secs(1), exit("ops:a", ExitStatus::Code(3)));
        assert!(matches!(
            m.get("ops:a").map(|u| &u.state),
            Some(RunState::Backoff { .. })
        ));
        ok(&mut m, secs(2), Event::Tick);
        ok(&mut m, secs(2), started("ops:a", 9));
        ok(&mut m, secs(3), exit("ops:a", ExitStatus::Code(4)));
        assert_eq!(
            m.get("ops:a").map(|u| u.state.clone()),
            Some(RunState::Exited(ExitInfo {
                status: ExitStatus::Code(4),
                reason: "boom".into()
            }))
        );
        assert_eq!(m.poll_at(), None);
    }

    #[test]
    fn spawn_failure_is_an_exit() {
        let mut m = Machine::new();
        ok(
            &mut m,
            secs(0),
            Event::Create(spec("ops:a", RestartPolicy::Always, 0)),
        );
        let a = ok(&mut m, secs(0), exit("ops:a", ExitStatus::SpawnFailed));
        assert_eq!(a, vec![rm("ops:a")]);
        assert_eq!(m.poll_at(), Some(secs(1)));
    }

    #[test]
    fn shutdown_stops_everything_then_exits() {
        let mut m = running(RestartPolicy::Always);
        ok(
            &mut m,
            secs(0),
            Event::Create(spec("ops:b", RestartPolicy::Always, 0)),
        );
        ok(&mut m, secs(0), started("ops:b", 200));
        ok(
            &mut m,
            secs(0),
            Event::Create(spec("ops:c", RestartPolicy::Always, 0)),
        );
        ok(&mut m, secs(1), exit("ops:c", ExitStatus::Code(1))); // c is in backoff
        let a = ok(&mut m, secs(2), Event::Shutdown);
        assert_eq!(a, vec![kill("ops:a", SIGTERM), kill("ops:b", SIGTERM)]);
        assert_eq!(
            m.handle(
                secs(2),
                Event::Create(spec("ops:d", RestartPolicy::Never, 0))
            ),
            Err(Error::ShuttingDown)
        );
        // Backoff timers are cancelled; only the kill escalation remains.
        assert_eq!(m.poll_at(), Some(secs(2) + STOP_GRACE));
        // Exit 1 on SIGTERM is expected: no restart.
        assert_eq!(
            ok(&mut m, secs(3), exit("ops:a", ExitStatus::Code(1))),
            vec![rm("ops:a")]
        );
        let a = ok(&mut m, secs(3), exit("ops:b", ExitStatus::Code(1)));
        assert_eq!(a, vec![rm("ops:b"), Action::Persist, Action::Exit]);
        // Everything is still in the persisted state, to start again at the next boot.
        assert_eq!(m.snapshot().len(), 3);
        assert!(ok(&mut m, secs(30), Event::Tick).is_empty());
    }

    #[test]
    fn shutdown_with_nothing_running_exits_at_once() {
        let mut m = Machine::new();
        assert_eq!(
            ok(&mut m, secs(0), Event::Shutdown),
            vec![Action::Persist, Action::Exit]
        );
        assert!(ok(&mut m, secs(0), Event::Shutdown).is_empty());
    }

    #[test]
    fn shutdown_kills_stragglers() {
        let mut m = running(RestartPolicy::Always);
        ok(&mut m, secs(0), Event::Shutdown);
        assert_eq!(
            ok(&mut m, STOP_GRACE, Event::Tick),
            vec![kill("ops:a", SIGKILL)]
        );
        let a = ok(
            &mut m,
            STOP_GRACE,
            exit("ops:a", ExitStatus::Signal(SIGKILL)),
        );
        assert_eq!(a, vec![rm("ops:a"), Action::Persist, Action::Exit]);
    }

    #[test]
    fn boot_restores_in_priority_order() {
        let mut m = Machine::new();
        let recs = [("ops:low", -1), ("ops:b", 5), ("ops:a", 5), ("ops:mid", 0)]
            .iter()
            .map(|(n, p)| Record {
                spec: spec(n, RestartPolicy::Never, *p),
                restart_count: 2,
                last_exit: None,
            })
            .collect();
        assert!(ok(&mut m, secs(0), Event::Restore(recs)).is_empty());
        let a = ok(&mut m, secs(0), Event::Boot);
        assert_eq!(
            a,
            vec![
                spawn("ops:a"),
                spawn("ops:b"),
                spawn("ops:mid"),
                spawn("ops:low")
            ]
        );
        assert_eq!(m.get("ops:a").map(|u| u.restart_count), Some(2));
    }

    #[test]
    fn invalid_spec_refused() {
        let mut m = Machine::new();
        let bad = Spec {
            memory_mib: 0,
            ..spec("ops:a", RestartPolicy::Never, 0)
        };
        assert_eq!(
            m.handle(secs(0), Event::Create(bad)),
            Err(Error::InvalidSpec(SpecError::Memory))
        );
        assert!(m.get("ops:a").is_none());
    }

    #[test]
    fn errors_and_stale_reports() {
        let mut m = running(RestartPolicy::Never);
        assert_eq!(
            m.handle(
                secs(0),
                Event::Create(spec("ops:a", RestartPolicy::Never, 0))
            ),
            Err(Error::AlreadyExists("ops:a".into()))
        );
        assert_eq!(
            m.handle(secs(0), Event::Destroy { name: "x".into() }),
            Err(Error::NotFound("x".into()))
        );
        // Reports about unknown names or tenders that are not running change nothing.
        assert!(ok(&mut m, secs(0), exit("nope", ExitStatus::Code(0))).is_empty());
        assert!(ok(&mut m, secs(0), started("nope", 1)).is_empty());
        ok(&mut m, secs(1), exit("ops:a", ExitStatus::Code(0)));
        assert!(ok(&mut m, secs(1), exit("ops:a", ExitStatus::Code(0))).is_empty());
    }

    /// A seeded random walk over events: invariants hold after every step.
    #[test]
    fn random_walk_invariants() {
        let mut seed: u64 = 0x5eed_1234;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = ["ops:a", "ops:b", "ops:c"];
        let mut m = Machine::new();
        let mut now = secs(0);
        for _ in 0..20_000 {
            now += Duration::from_millis(rnd(5000));
            let name = names[usize::try_from(rnd(3)).unwrap_or(0)].to_owned();
            let ev = match rnd(8) {
                0 => Event::Create(spec(&name, RestartPolicy::Always, 0)),
                1 => Event::Destroy { name },
                2 => Event::Restart { name, args: None },
                3 => started(&name, 1),
                4 | 5 => exit(&name, ExitStatus::Code(1)),
                _ => Event::Tick,
            };
            let _ = m.handle(now, ev);
            if let Some(t) = m.poll_at() {
                // A timer never lies further out than the longest wait.
                assert!(t <= now + BACKOFF_MAX.max(STOP_GRACE));
            }
            for u in m.unikernels() {
                if let RunState::Backoff { until } = u.state {
                    assert!(until <= now + BACKOFF_MAX);
                }
            }
            assert!(m.snapshot().iter().all(|r| {
                m.get(&r.spec.name)
                    .is_some_and(|u| u.state != RunState::Destroyed)
            }));
        }
    }
}
