//! PID 1 itself: the boot sequence in order, the main loop (one epoll over the signalfd,
//! the uevent socket and the power buttons, with the supervisor's, watchdog's, clock
//! floor's and trial boot's timers), and the clean shutdown.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::event::epoll;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::boot::{self, Trial};
use crate::cmdline::Cmdline;
use crate::log::{milestone, since_boot};
use crate::modules::Loader;
use crate::supervisor::{Action, Event, ExitStatus, Supervisor};
use crate::watchdog::Watchdog;
use crate::{disk, input, petreld, sys};
use crate::{error, info, warn};

/// How long services get to stop after SIGTERM.
pub const SERVICE_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long every other process gets after SIGTERM, before SIGKILL.
pub const OTHERS_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the clock floor is saved.
pub const FLOOR_SAVE_INTERVAL: Duration = Duration::from_secs(3600);

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_UEVENT: u64 = 1;
const TOKEN_INPUT_BASE: u64 = 16;

/// What ends the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `reboot(RB_POWER_OFF)`.
    Poweroff,
    /// `reboot(RB_AUTOBOOT)`.
    Reboot,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Poweroff => "poweroff",
            Stop::Reboot => "reboot",
        }
    }
}

/// What a signal to PID 1 asks for (DESIGN §2a).
pub fn signal_action(signal: i32) -> Option<Stop> {
    match signal {
        libc::SIGTERM | libc::SIGINT => Some(Stop::Reboot),
        libc::SIGUSR2 | libc::SIGPWR => Some(Stop::Poweroff),
        _ => None,
    }
}

/// The signals PID 1 takes through its signalfd.
pub const SIGNALS: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR2,
    libc::SIGPWR,
    libc::SIGHUP,
];

/// The running PID 1.
pub struct Init {
    epoll: Option<OwnedFd>,
    sigfd: Option<OwnedFd>,
    uevents: Option<OwnedFd>,
    loader: Option<Loader>,
    buttons: Vec<Option<File>>,
    button_names: BTreeSet<String>,
    watchdog: Option<Watchdog>,
    next_ping: Duration,
    supervisor: Supervisor,
    trial: Option<Trial>,
    next_floor_save: Duration,
    data_mounted: bool,
    esp_mounted: bool,
    cmdline: Cmdline,
}

/// Boots the system and runs it until poweroff or reboot. Never returns.
pub fn run() -> ! {
    // First: take the signals (the kernel drops default-disposition signals to PID 1),
    // and make ctrl-alt-del a SIGINT instead of an immediate reset.
    let sigfd = match sys::signalfd(&SIGNALS) {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!("petrel-init: signalfd: {e}");
            None
        }
    };
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::CadOff) {
        eprintln!("petrel-init: reboot(CAD_OFF): {e}");
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let _ = std::env::set_current_dir("/");
    let mut init = Init::new(sigfd);
    init.boot();
    init.main_loop()
}

impl Init {
    fn new(sigfd: Option<OwnedFd>) -> Init {
        Init {
            epoll: None,
            sigfd,
            uevents: None,
            loader: None,
            buttons: Vec::new(),
            button_names: BTreeSet::new(),
            watchdog: None,
            next_ping: Duration::MAX,
            supervisor: Supervisor::new(Vec::new()),
            trial: None,
            next_floor_save: Duration::MAX,
            data_mounted: false,
            esp_mounted: false,
            cmdline: Cmdline::default(),
        }
    }

    fn boot(&mut self) {
        boot::mount_pseudo();
        info!(
            "petrel-init {} starting, kernel {}",
            env!("CARGO_PKG_VERSION"),
            boot::kernel_release()
        );
        self.cmdline =
            Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
        match epoll::create(epoll::CreateFlags::CLOEXEC) {
            Ok(fd) => self.epoll = Some(fd),
            Err(e) => error!("epoll: {e}; signals and devices are polled"),
        }
        if let Some(fd) = &self.sigfd {
            self.watch(fd.as_fd(), TOKEN_SIGNAL);
        }
        // Open before loading modules, so no device event is missed.
        self.uevents = boot::uevent_socket();
        if let Some(fd) = &self.uevents {
            self.watch(fd.as_fd(), TOKEN_UEVENT);
        }

        self.loader = boot::load_modules(self.uevents.as_ref());
        milestone("modules");
        boot::mount_efivars();
        for dev in boot::input_devices() {
            self.add_button(&format!("input/{dev}"));
        }

        let boot_disk = boot::wait_for_boot_disk(self.uevents.as_ref(), self.loader.as_mut());
        if let Some(b) = &boot_disk {
            self.esp_mounted = boot::mount_esp(b);
            if self.esp_mounted {
                milestone("esp");
            }
        }
        let source = crate::config::read(
            self.esp_mounted,
            &Path::new(disk::ESP_MOUNT).join(petrel_config::CONFIG_PATH),
        );
        let config_ok = matches!(&source, crate::config::Source::Text(t)
            if petrel_config::Config::parse(t).is_ok());
        let (config, lines) = crate::config::choose(source);
        boot::log_all(lines);
        boot::set_hostname(&config.hostname);
        if config.boot.watchdog {
            self.watchdog = Watchdog::open();
            if let Some(w) = &self.watchdog {
                self.next_ping = since_boot() + w.interval;
            }
        } else {
            info!("watchdog: disabled by the config");
        }

        if let Some(b) = &boot_disk {
            self.data_mounted = boot::mount_data(b);
        }
        if self.data_mounted {
            if let Err(e) = crate::log::open_persistent_log() {
                warn!("log: {}: {e}", crate::log::PERSIST_DIR);
            }
            milestone("data");
        }
        boot::apply_clock_floor();
        self.next_floor_save = since_boot() + FLOOR_SAVE_INTERVAL;
        boot::save_clock_floor(self.data_mounted);

        let secret = boot::mac_secret();
        let helpers = boot::configure_network(&config, &secret, self.data_mounted);
        milestone("network");

        self.trial = boot::trial_boot(&config);
        let now = since_boot();
        let petreld = boot::petreld_service(config_ok);
        for spec in helpers
            .into_iter()
            .chain(petreld)
            .chain(boot::config_services(&config))
        {
            self.supervisor.add(spec, now);
        }
        let actions = self.supervisor.handle(now, Event::Start);
        self.run_actions(actions);
        let actions = self.supervisor.poll(now);
        self.run_actions(actions);
        milestone("");
        if self.cmdline.poweroff_when_ready {
            self.shutdown(Stop::Poweroff);
        }
        if self.cmdline.reboot_when_ready {
            self.shutdown(Stop::Reboot);
        }
    }

    fn watch(&self, fd: std::os::fd::BorrowedFd<'_>, token: u64) {
        if let Some(ep) = &self.epoll {
            if let Err(e) = epoll::add(
                ep,
                fd,
                epoll::EventData::new_u64(token),
                epoll::EventFlags::IN,
            ) {
                error!("epoll add: {e}");
            }
        }
    }

    fn add_button(&mut self, devname: &str) {
        if self.button_names.contains(devname) {
            return;
        }
        if let Some(f) = boot::open_power_button(devname) {
            self.button_names.insert(devname.to_owned());
            let token = TOKEN_INPUT_BASE + u64::try_from(self.buttons.len()).unwrap_or(0);
            self.watch(f.as_fd(), token);
            self.buttons.push(Some(f));
        }
    }

    /// The epoll timeout: the nearest timer.
    fn next_timer(&self) -> Duration {
        let mut t = self.next_ping.min(self.next_floor_save);
        if let Some(p) = self.supervisor.poll_at() {
            t = t.min(p);
        }
        if let Some(tr) = &self.trial {
            t = t.min(tr.deadline);
        }
        t
    }

    fn main_loop(&mut self) -> ! {
        let mut events = Vec::with_capacity(16);
        loop {
            let now = since_boot();
            let wait = self
                .next_timer()
                .saturating_sub(now)
                .min(Duration::from_secs(3600));
            let timeout = rustix::time::Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(3600),
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            events.clear();
            match &self.epoll {
                Some(ep) => match epoll::wait(
                    ep,
                    rustix::buffer::spare_capacity(&mut events),
                    Some(&timeout),
                ) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => {
                        error!("epoll wait: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                },
                // Degraded: poll everything every 100 ms.
                None => std::thread::sleep(wait.min(Duration::from_millis(100))),
            }
            let tokens: Vec<u64> = if self.epoll.is_some() {
                events.iter().map(|e| e.data.u64()).collect()
            } else {
                let mut all = vec![TOKEN_SIGNAL, TOKEN_UEVENT];
                all.extend(
                    (0..self.buttons.len())
                        .filter_map(|i| u64::try_from(i).ok())
                        .map(|i| TOKEN_INPUT_BASE + i),
                );
                all
            };
            for token in tokens {
                match token {
                    TOKEN_SIGNAL => self.on_signals(),
                    TOKEN_UEVENT => self.on_uevents(),
                    t => self.on_button(t - TOKEN_INPUT_BASE),
                }
            }
            // SIGCHLD may be coalesced or missed; reaping is cheap.
            let _ = self.reap();
            self.on_timers();
        }
    }

    fn on_signals(&mut self) {
        let Some(fd) = &self.sigfd else { return };
        let mut buf = [0u8; 128 * 8];
        let mut stop = None;
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            for s in sys::signalfd_signals(buf.get(..n).unwrap_or_default()) {
                if let Some(st) = signal_action(s) {
                    info!("signal {s}: {}", st.as_str());
                    stop = stop.or(Some(st));
                }
            }
        }
        if let Some(st) = stop {
            self.shutdown(st);
        }
    }

    fn on_uevents(&mut self) {
        let Some(sock) = &self.uevents else { return };
        let drained = boot::drain_uevents(sock, self.loader.as_mut());
        if drained.loaded > 0 {
            info!("modules: {} loaded for new devices", drained.loaded);
        }
        for dev in drained.inputs {
            self.add_button(&dev);
        }
        if drained.lost {
            warn!("uevents lost; scanning devices again");
            if let Some(l) = self.loader.as_mut() {
                l.coldplug(Path::new("/sys/bus"));
            }
            for dev in boot::input_devices() {
                self.add_button(&format!("input/{dev}"));
            }
        }
    }

    fn on_button(&mut self, index: u64) {
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.buttons.get_mut(i))
        else {
            return;
        };
        let Some(f) = slot else { return };
        let mut buf = [0u8; input::INPUT_EVENT_BYTES * 64];
        let mut pressed = false;
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pressed |= input::has_power_press(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn!("power: input device gone: {e}");
                    if let (Some(ep), Some(f)) = (&self.epoll, slot.as_ref()) {
                        let _ = epoll::delete(ep, f);
                    }
                    *slot = None;
                    break;
                }
            }
        }
        if pressed {
            info!("power button pressed");
            self.shutdown(Stop::Poweroff);
        }
    }

    fn on_timers(&mut self) {
        let now = since_boot();
        if now >= self.next_ping {
            if let Some(w) = &self.watchdog {
                w.ping();
                self.next_ping = now + w.interval;
            }
        }
        if now >= self.next_floor_save {
            boot::save_clock_floor(self.data_mounted);
            self.next_floor_save = now + FLOOR_SAVE_INTERVAL;
        }
        let actions = self.supervisor.poll(now);
        self.run_actions(actions);
        if let Some(tr) = self.trial.take_if(|t| now >= t.deadline) {
            // Without the ESP nothing can have blessed it (and a reboot may find it).
            if tr.path.exists() || !self.esp_mounted {
                error!(
                    "boot: trial boot not blessed in time ({} still has its counter); rebooting",
                    tr.path.display()
                );
                self.shutdown(Stop::Reboot);
            }
            info!("boot: trial boot blessed");
        }
    }

    /// Reaps every child that has exited, ours or orphans; returns whether no child is
    /// left at all (ECHILD).
    fn reap(&mut self) -> bool {
        loop {
            // `wait` is waitpid(-1): every child; rustix's `waitpid(None)` would be only our
            // process group, and services run in their own.
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let status = match (status.exit_status(), status.terminating_signal()) {
                        (Some(code), _) => ExitStatus::Code(code),
                        (None, Some(sig)) => ExitStatus::Signal(sig),
                        (None, None) => continue,
                    };
                    let actions = self.supervisor.handle(
                        since_boot(),
                        Event::Exited {
                            pid: pid.as_raw_nonzero().get(),
                            status,
                        },
                    );
                    self.run_actions(actions);
                }
                Ok(None) => return false,
                Err(e) => return e == rustix::io::Errno::CHILD,
            }
        }
    }

    fn run_actions(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Log(line) => info!("{line}"),
                Action::Terminate(pid) => {
                    if let Some(p) = Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, Signal::TERM);
                    }
                }
                Action::Spawn(id) => {
                    let event = match self.supervisor.spec(id).map(spawn) {
                        Some(Ok(pid)) => Event::Spawned { id, pid },
                        Some(Err(reason)) => Event::SpawnFailed { id, reason },
                        None => continue,
                    };
                    queue.extend(self.supervisor.handle(since_boot(), event));
                }
            }
        }
    }

    /// Stops everything and powers off or reboots. Never returns.
    fn shutdown(&mut self, stop: Stop) -> ! {
        // petreld first: it stops the unikernels cleanly and saves its state while
        // everything it needs is still there.
        let actions = self.supervisor.stop_first(petreld::SERVICE_NAME);
        if !actions.is_empty() {
            info!("{}: stopping petreld", stop.as_str());
            self.run_actions(actions);
            let stopped = self.wait_children(petreld::STOP_TIMEOUT, |s| {
                !s.supervisor.is_running(petreld::SERVICE_NAME)
            });
            if !stopped {
                warn!(
                    "{}: petreld still running after {} s",
                    stop.as_str(),
                    petreld::STOP_TIMEOUT.as_secs()
                );
            }
        }
        info!("{}: stopping services", stop.as_str());
        let actions = self.supervisor.handle(since_boot(), Event::Shutdown);
        self.run_actions(actions);
        self.wait_children(SERVICE_STOP_TIMEOUT, |s| !s.supervisor.any_running());
        if let Err(e) = sys::kill_all(libc::SIGTERM) {
            warn!("kill(-1, SIGTERM): {e}");
        }
        if !self.wait_children(OTHERS_STOP_TIMEOUT, |_| false) {
            let _ = sys::kill_all(libc::SIGKILL);
            self.wait_children(Duration::from_secs(2), |_| false);
        }
        boot::save_clock_floor(self.data_mounted);
        crate::log::close_persistent_log();
        rustix::fs::sync();
        if self.data_mounted {
            unmount(disk::DATA_MOUNT);
        }
        if self.esp_mounted {
            unmount(disk::ESP_MOUNT);
        }
        rustix::fs::sync();
        if let Some(w) = self.watchdog.take() {
            w.disarm();
        }
        info!("{}", stop.as_str());
        let cmd = match stop {
            Stop::Poweroff => rustix::system::RebootCommand::PowerOff,
            Stop::Reboot => rustix::system::RebootCommand::Restart,
        };
        if let Err(e) = rustix::system::reboot(cmd) {
            error!("reboot({}): {e}", stop.as_str());
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    /// Reaps until no child is left, `done` says so, or `timeout` passes; returns whether
    /// it ended before the timeout.
    fn wait_children(&mut self, timeout: Duration, done: impl Fn(&Init) -> bool) -> bool {
        let deadline = since_boot() + timeout;
        loop {
            let none_left = self.reap();
            if none_left || done(self) {
                return true;
            }
            if since_boot() >= deadline {
                return false;
            }
            if let Some(w) = &self.watchdog {
                w.ping();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Unmounts `target`; when busy, remounts it read-only so that nothing is left unwritten.
fn unmount(target: &str) {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => info!("unmounted {target}"),
        Err(e) => {
            warn!("unmount {target}: {e}; remounting read-only");
            if let Err(e) =
                rustix::mount::mount_remount(target, rustix::mount::MountFlags::RDONLY, "")
            {
                error!("remount {target} read-only: {e}");
            }
        }
    }
}

/// Starts a service: stdin from /dev/null, stdout and stderr on PID 1's console, its own
/// process group, a minimal environment, an empty signal mask (not the one PID 1 blocks
/// for its signalfd).
pub fn spawn(spec: &crate::supervisor::ServiceSpec) -> Result<i32, String> {
    let (program, args) = spec.command.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(program);
    sys::clear_signal_mask_on_exec(&mut cmd);
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .env_clear()
        .env("PATH", "/bin")
        .env("HOME", "/")
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    i32::try_from(child.id()).map_err(|_| "pid out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_the_contract() {
        assert_eq!(signal_action(libc::SIGTERM), Some(Stop::Reboot));
        assert_eq!(signal_action(libc::SIGINT), Some(Stop::Reboot));
        assert_eq!(signal_action(libc::SIGUSR2), Some(Stop::Poweroff));
        assert_eq!(signal_action(libc::SIGCHLD), None);
        assert_eq!(signal_action(libc::SIGHUP), None);
    }
}
