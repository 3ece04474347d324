//! Starting and restarting PID 1's children — a pure state machine with time as an
//! argument (`handle(now, event) -> actions`, `poll(now)`, `poll_at()`), so the backoff is
//! tested with simulated time and no sleeps.
//!
//! Backoff: a service that exits waits 1 s before its restart, doubling on each further
//! exit up to 60 s; a run of 60 s or more resets the delay to 1 s. `restart` decides
//! whether it comes back at all (`always`, `on-failure`: exit status not 0 or a signal,
//! `never`). After [`Event::Shutdown`] nothing restarts and every running service gets
//! SIGTERM.

use std::time::Duration;

/// First restart delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// When a service is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// After every exit.
    Always,
    /// After an exit with a status other than 0, or a signal.
    OnFailure,
    /// Never.
    Never,
}

/// A program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The name used in logs.
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Restart policy.
    pub restart: Restart,
}

/// Index of a service in the supervisor.
pub type ServiceId = usize;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl ExitStatus {
    fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "status {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start every service (once, at boot).
    Start,
    /// A [`Action::Spawn`] succeeded.
    Spawned {
        /// Which service.
        id: ServiceId,
        /// Its process.
        pid: i32,
    },
    /// A [`Action::Spawn`] failed (no such program, ...).
    SpawnFailed {
        /// Which service.
        id: ServiceId,
        /// Why, for the log.
        reason: String,
    },
    /// A child was reaped (it may not be ours: orphans are reaped too).
    Exited {
        /// The process.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The system is going down.
    Shutdown,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the service; report [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn(ServiceId),
    /// Send SIGTERM to the process.
    Terminate(i32),
    /// Write a line to the log.
    Log(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Spawning,
    Running { pid: i32, since: Duration },
    Waiting { until: Duration },
    Stopped,
}

#[derive(Debug, Clone)]
struct Service {
    spec: ServiceSpec,
    state: State,
    delay: Duration,
}

/// The supervisor of PID 1's children.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    services: Vec<Service>,
    shutting_down: bool,
}

impl Supervisor {
    /// A supervisor for `specs`; nothing runs until [`Event::Start`].
    pub fn new(specs: Vec<ServiceSpec>) -> Supervisor {
        let services = specs
            .into_iter()
            .map(|spec| Service {
                spec,
                state: State::Idle,
                delay: BACKOFF_INITIAL,
            })
            .collect();
        Supervisor {
            services,
            shutting_down: false,
        }
    }

    /// Adds a service (at boot, before or after [`Event::Start`]); it starts with the
    /// next [`Supervisor::poll`] if the supervisor has started.
    pub fn add(&mut self, spec: ServiceSpec, now: Duration) -> ServiceId {
        let state = if self.shutting_down {
            State::Stopped
        } else {
            State::Waiting { until: now }
        };
        self.services.push(Service {
            spec,
            state,
            delay: BACKOFF_INITIAL,
        });
        self.services.len() - 1
    }

    /// The spec of a service.
    pub fn spec(&self, id: ServiceId) -> Option<&ServiceSpec> {
        self.services.get(id).map(|s| &s.spec)
    }

    /// The name of the service running as `pid`.
    pub fn name_of(&self, pid: i32) -> Option<&str> {
        self.by_pid(pid)
            .and_then(|id| self.services.get(id))
            .map(|s| s.spec.name.as_str())
    }

    /// Whether any service process is still running.
    pub fn any_running(&self) -> bool {
        self.services
            .iter()
            .any(|s| matches!(s.state, State::Running { .. } | State::Spawning))
    }

    /// Whether the service named `name` has a process now.
    pub fn is_running(&self, name: &str) -> bool {
        self.services.iter().any(|s| {
            s.spec.name == name && matches!(s.state, State::Running { .. } | State::Spawning)
        })
    }

    /// The first step of a shutdown that stops one service before the others: nothing
    /// restarts any more (as after [`Event::Shutdown`]), `name` gets SIGTERM, the others
    /// keep running until [`Event::Shutdown`].
    pub fn stop_first(&mut self, name: &str) -> Vec<Action> {
        self.shutting_down = true;
        let mut out = Vec::new();
        for s in &mut self.services {
            match s.state {
                State::Running { pid, .. } if s.spec.name == name => {
                    out.push(Action::Terminate(pid));
                }
                State::Idle | State::Waiting { .. } => s.state = State::Stopped,
                _ => {}
            }
        }
        out
    }

    fn by_pid(&self, pid: i32) -> Option<ServiceId> {
        self.services
            .iter()
            .position(|s| matches!(s.state, State::Running { pid: p, .. } if p == pid))
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                for (id, s) in self.services.iter_mut().enumerate() {
                    if s.state == State::Idle && !self.shutting_down {
                        s.state = State::Spawning;
                        out.push(Action::Spawn(id));
                    }
                }
            }
            Event::Spawned { id, pid } => {
                if let Some(s) = self.services.get_mut(id) {
                    s.state = State::Running { pid, since: now };
                    out.push(Action::Log(format!("{} started (pid {pid})", s.spec.name)));
                    if self.shutting_down {
                        out.push(Action::Terminate(pid));
                    }
                }
            }
            Event::SpawnFailed { id, reason } => {
                if let Some(s) = self.services.get_mut(id) {
                    let what = format!("{} could not start: {reason}", s.spec.name);
                    Self::ended(s, now, now, false, what, self.shutting_down, &mut out);
                }
            }
            Event::Exited { pid, status } => {
                if let Some(s) = self.by_pid(pid).and_then(|id| self.services.get_mut(id)) {
                    let since = match s.state {
                        State::Running { since, .. } => since,
                        _ => now,
                    };
                    let what = format!("{} (pid {pid}) exited with {status}", s.spec.name);
                    Self::ended(
                        s,
                        now,
                        since,
                        status.success(),
                        what,
                        self.shutting_down,
                        &mut out,
                    );
                }
            }
            Event::Shutdown => {
                self.shutting_down = true;
                for s in &mut self.services {
                    match s.state {
                        State::Running { pid, .. } => out.push(Action::Terminate(pid)),
                        State::Spawning => {}
                        _ => s.state = State::Stopped,
                    }
                }
            }
        }
        out
    }

    fn ended(
        s: &mut Service,
        now: Duration,
        since: Duration,
        success: bool,
        what: String,
        shutting_down: bool,
        out: &mut Vec<Action>,
    ) {
        if now.saturating_sub(since) >= BACKOFF_RESET_AFTER {
            s.delay = BACKOFF_INITIAL;
        }
        let again = !shutting_down
            && match s.spec.restart {
                Restart::Always => true,
                Restart::OnFailure => !success,
                Restart::Never => false,
            };
        if again {
            out.push(Action::Log(format!(
                "{what}; restarting in {} s",
                s.delay.as_secs()
            )));
            s.state = State::Waiting {
                until: now + s.delay,
            };
            s.delay = (s.delay * 2).min(BACKOFF_MAX);
        } else {
            out.push(Action::Log(what));
            s.state = State::Stopped;
        }
    }

    /// Starts the services whose backoff has run out.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        for (id, s) in self.services.iter_mut().enumerate() {
            if let State::Waiting { until } = s.state {
                if until <= now && !self.shutting_down {
                    s.state = State::Spawning;
                    out.push(Action::Spawn(id));
                }
            }
        }
        out
    }

    /// When [`Supervisor::poll`] has something to do next.
    pub fn poll_at(&self) -> Option<Duration> {
        if self.shutting_down {
            return None;
        }
        self.services
            .iter()
            .filter_map(|s| match s.state {
                State::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, restart: Restart) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command: vec!["/bin/x".into()],
            restart,
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn spawns(actions: &[Action]) -> Vec<ServiceId> {
        actions
            .iter()
            .filter_map(|a| {
                if let Action::Spawn(id) = a {
                    Some(*id)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Runs a service that always dies after `run` seconds; returns the start times.
    fn simulate(restart: Restart, run: u64, status: ExitStatus, until: u64) -> Vec<u64> {
        let mut sup = Supervisor::new(vec![spec("svc", restart)]);
        let mut now = s(0);
        let mut starts = Vec::new();
        let mut pid = 100;
        let mut pending = sup.handle(now, Event::Start);
        loop {
            for id in spawns(&pending) {
                starts.push(now.as_secs());
                pid += 1;
                sup.handle(now, Event::Spawned { id, pid });
                now += s(run);
                sup.handle(now, Event::Exited { pid, status });
            }
            match sup.poll_at() {
                Some(t) if t.as_secs() <= until => {
                    now = now.max(t);
                    pending = sup.poll(now);
                }
                _ => return starts,
            }
        }
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let starts = simulate(Restart::Always, 0, ExitStatus::Code(1), 400);
        assert_eq!(starts, [0, 1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 363]);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let starts = simulate(Restart::Always, 60, ExitStatus::Code(0), 300);
        assert_eq!(starts, [0, 61, 122, 183, 244]);
        let starts = simulate(Restart::Always, 59, ExitStatus::Code(0), 250);
        assert_eq!(starts, [0, 60, 121, 184]);
    }

    #[test]
    fn policies() {
        assert_eq!(simulate(Restart::Never, 0, ExitStatus::Code(1), 100), [0]);
        assert_eq!(
            simulate(Restart::OnFailure, 0, ExitStatus::Code(0), 100),
            [0]
        );
        assert_eq!(
            simulate(Restart::OnFailure, 5, ExitStatus::Signal(9), 20),
            [0, 6, 13]
        );
        assert_eq!(
            simulate(Restart::OnFailure, 5, ExitStatus::Code(2), 20),
            [0, 6, 13]
        );
    }

    #[test]
    fn spawn_failures_back_off_too() {
        let mut sup = Supervisor::new(vec![spec("a", Restart::Always), spec("b", Restart::Never)]);
        assert_eq!(
            sup.handle(s(0), Event::Start),
            [Action::Spawn(0), Action::Spawn(1)]
        );
        let a = sup.handle(
            s(0),
            Event::SpawnFailed {
                id: 0,
                reason: "no such file".into(),
            },
        );
        assert_eq!(
            a,
            [Action::Log(
                "a could not start: no such file; restarting in 1 s".into()
            )]
        );
        sup.handle(
            s(0),
            Event::SpawnFailed {
                id: 1,
                reason: "x".into(),
            },
        );
        assert_eq!(sup.poll_at(), Some(s(1)));
        assert!(sup.poll(s(0)).is_empty());
        assert_eq!(sup.poll(s(1)), [Action::Spawn(0)]);
        sup.handle(
            s(1),
            Event::SpawnFailed {
                id: 0,
                reason: "x".into(),
            },
        );
        assert_eq!(sup.poll_at(), Some(s(3)));
    }

    #[test]
    fn orphans_are_ignored_and_names_known() {
        let mut sup = Supervisor::new(vec![spec("a", Restart::Always)]);
        sup.handle(s(0), Event::Start);
        sup.handle(s(0), Event::Spawned { id: 0, pid: 7 });
        assert_eq!(sup.name_of(7), Some("a"));
        assert_eq!(sup.name_of(8), None);
        assert!(
            sup.handle(
                s(1),
                Event::Exited {
                    pid: 8,
                    status: ExitStatus::Code(0)
                }
            )
            .is_empty()
        );
        assert!(sup.any_running());
    }

    #[test]
    fn shutdown_terminates_and_stops_restarts() {
        let mut sup = Supervisor::new(vec![spec("a", Restart::Always), spec("b", Restart::Always)]);
        sup.handle(s(0), Event::Start);
        sup.handle(s(0), Event::Spawned { id: 0, pid: 7 });
        sup.handle(
            s(0),
            Event::SpawnFailed {
                id: 1,
                reason: "x".into(),
            },
        );
        assert_eq!(sup.handle(s(5), Event::Shutdown), [Action::Terminate(7)]);
        assert_eq!(sup.poll_at(), None);
        assert!(sup.poll(s(100)).is_empty());
        let a = sup.handle(
            s(6),
            Event::Exited {
                pid: 7,
                status: ExitStatus::Signal(15),
            },
        );
        assert_eq!(a, [Action::Log("a (pid 7) exited with signal 15".into())]);
        assert!(!sup.any_running());
        // Added late: never started.
        let id = sup.add(spec("c", Restart::Always), s(7));
        assert!(sup.poll(s(8)).is_empty());
        assert_eq!(sup.spec(id).map(|s| s.name.as_str()), Some("c"));
    }

    #[test]
    fn stop_first_stops_one_and_restarts_nothing() {
        let mut sup = Supervisor::new(vec![
            spec("petreld", Restart::Always),
            spec("dhcp", Restart::Always),
            spec("late", Restart::Always),
        ]);
        sup.handle(s(0), Event::Start);
        sup.handle(s(0), Event::Spawned { id: 0, pid: 10 });
        sup.handle(s(0), Event::Spawned { id: 1, pid: 11 });
        sup.handle(
            s(0),
            Event::SpawnFailed {
                id: 2,
                reason: "x".into(),
            },
        );
        assert!(sup.is_running("petreld") && sup.is_running("dhcp"));
        assert!(!sup.is_running("late") && !sup.is_running("nope"));
        assert_eq!(sup.stop_first("petreld"), [Action::Terminate(10)]);
        // The others run on; nothing waits to restart.
        assert!(sup.is_running("dhcp"));
        assert_eq!(sup.poll_at(), None);
        let a = sup.handle(
            s(1),
            Event::Exited {
                pid: 10,
                status: ExitStatus::Code(0),
            },
        );
        assert_eq!(
            a,
            [Action::Log("petreld (pid 10) exited with status 0".into())]
        );
        assert!(!sup.is_running("petreld"));
        assert!(sup.poll(s(100)).is_empty());
        // Then the rest.
        assert_eq!(sup.handle(s(2), Event::Shutdown), [Action::Terminate(11)]);
        // Stopping a service that does not run is a no-op.
        assert!(sup.stop_first("petreld").is_empty());
    }

    #[test]
    fn added_services_start_on_poll() {
        let mut sup = Supervisor::new(vec![]);
        assert!(sup.handle(s(0), Event::Start).is_empty());
        let id = sup.add(spec("dhcp", Restart::Always), s(2));
        assert_eq!(sup.poll_at(), Some(s(2)));
        assert_eq!(sup.poll(s(2)), [Action::Spawn(id)]);
    }
}
