//! The daemon: setup, the one long-lived core thread and its event loop.
//!
//! [`run`] prepares the data directory, loads the state (and imports the config's
//! autostart unikernels into it), starts the tender runner, the management server
//! (Unix socket, and TLS when a trust anchor is given), the optional metrics listener
//! and a signal thread, then runs the core loop on the calling thread, which is the
//! thread that spawns every tender (so `PR_SET_PDEATHSIG` ties them to `petreld`).
//!
//! The loop takes one [`Msg`] at a time (a request with its reply channel, a tender
//! exit, a signal, the end of a block transfer) or, when the machine's next timer is
//! due, a tick; it executes the machine's actions in order (spawn, kill, remove
//! devices, forget, persist, exit) and replies only after they ran, so a reply never
//! acknowledges a change that was not saved. SIGTERM (or SIGINT) stops every tender
//! cleanly, saves, and returns, for an exit status 0.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use petrel_config::{Autostart, Config};
use petrel_proto::msg::{Error, ErrorKind, LogBoot, ReplyBody};
use petrel_proto::tls::{self, CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::console::{ConsoleLimits, Consoles};
use crate::machine::{Action, Event};
use crate::persist::{self, Body, Record};
use crate::runner::{Launch, LaunchBlock, LaunchNet, Runner, RunnerConfig, Spawned};
use crate::server::{Server, ServerConfig, TlsListen};
use crate::service::{Answer, Core, CoreSettings, Engine, Msg};
use crate::state::{ExitStatus, NetDevice, RestartPolicy, Spec};
use crate::store::{self, DataDir};

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/petrel";
/// The default local socket.
pub const DEFAULT_SOCKET: &str = "/run/petrel/petreld.sock";
/// The default tender.
pub const DEFAULT_TENDER: &str = "/bin/petrel-hvt";
/// This boot's log, written by PID 1.
pub const RUN_LOG: &str = "/run/petrel/boot.log";
/// Management connections at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Management connections at once of one TLS identity (the local socket is exempt).
pub const MAX_CONNECTIONS_PER_IDENTITY: usize = 16;
/// A management connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The owner of autostart unikernels when the config names no admin.
pub const LOCAL_OWNER: &str = "local";

/// What `petreld` was asked to do (flags over the config file).
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The local socket; `None`: none.
    pub socket: Option<PathBuf>,
    /// The TLS listener (overrides the config's `management.listen`).
    pub listen: Option<SocketAddr>,
    /// The operator trust anchor (PEM).
    pub trust: Option<PathBuf>,
    /// The device certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// The device key (PEM).
    pub key: Option<PathBuf>,
    /// The tender binary.
    pub tender: PathBuf,
    /// The device config.
    pub config: Option<PathBuf>,
    /// The OpenMetrics listener (overrides the config's `management.metrics`).
    pub metrics: Option<SocketAddr>,
    /// Running as the appliance's supervisor (PID 1 is `petrel-init`).
    pub appliance: bool,
    /// This boot's log file.
    pub run_log: PathBuf,
    /// The most uploads in flight may announce in total (see [`crate::budget`]).
    pub upload_budget_bytes: u64,
}

impl Options {
    /// The defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            socket: Some(PathBuf::from(DEFAULT_SOCKET)),
            listen: None,
            trust: None,
            cert: None,
            key: None,
            tender: PathBuf::from(DEFAULT_TENDER),
            config: None,
            metrics: None,
            appliance: false,
            run_log: PathBuf::from(RUN_LOG),
            upload_budget_bytes: crate::budget::DEFAULT_UPLOAD_BUDGET_BYTES,
        }
    }
}

/// Why `petreld` could not start.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct DaemonError {
    /// What was being done.
    pub what: String,
    /// Why it failed.
    pub detail: String,
}

fn fail(what: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> DaemonError {
    let what = what.into();
    move |e| DaemonError {
        what,
        detail: e.to_string(),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A logger writing `petreld: LEVEL: message` lines to stderr.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = r.level().to_string().to_lowercase();
            eprintln!("petreld: {level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the stderr logger (once; later calls only change the level).
pub fn init_logger(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The config, and whether it came from the file (not the defaults after an error).
fn load_config(opts: &Options) -> Result<(Config, bool), DaemonError> {
    let Some(path) = &opts.config else {
        return Ok((Config::default(), false));
    };
    let parsed = fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| Config::parse(&text).map_err(|e| e.to_string()));
    match parsed {
        Ok(p) => {
            for w in p.warnings {
                log::warn!("config: {}: {w}", path.display());
            }
            Ok((p.config, true))
        }
        // The box must stay reachable: an appliance falls back to the defaults.
        Err(e) if opts.appliance => {
            log::error!("config: {}: {e}; using the defaults", path.display());
            Ok((Config::default(), false))
        }
        Err(e) => Err(fail(format!("config {}", path.display()))(&e)),
    }
}

fn open_state(data: &DataDir, appliance: bool) -> Result<(persist::Store, Body), DaemonError> {
    match persist::Store::open(&data.state()) {
        Ok((st, loaded)) => {
            for w in loaded.warnings {
                log::warn!("state: {w}");
            }
            Ok((st, loaded.state.body))
        }
        Err(e) if appliance => {
            // Unmanageable is worse than empty: keep the bad copies for a post-mortem.
            log::error!(
                "state: {}; moving the copies aside and starting empty",
                chain(&e)
            );
            for name in [persist::PRIMARY, persist::BACKUP] {
                let p = data.state().join(name);
                let _ = fs::rename(&p, data.state().join(format!("{name}.corrupt")));
            }
            let (st, loaded) =
                persist::Store::open(&data.state()).map_err(|e| fail("state")(&chain(&e)))?;
            Ok((st, loaded.state.body))
        }
        Err(e) => Err(fail("state")(&chain(&e))),
    }
}

/// The digest recorded for an imported autostart entry.
fn autostart_key(a: &Autostart, image_hex: &str) -> String {
    let text = format!("{a:?}|{image_hex}");
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Imports the config's autostart unikernels (images from `images_dir`) into `body`:
/// new or changed entries replace the unikernel of that name; unchanged ones are left
/// alone, so one the operator destroyed stays destroyed; a unikernel imported from an
/// entry the config no longer has is removed with it.
pub fn import_autostart(
    data: &DataDir,
    entries: &[Autostart],
    images_dir: &Path,
    owner: &str,
    secret: &[u8],
    body: &mut Body,
) {
    let wanted: BTreeSet<String> = entries
        .iter()
        .map(|a| format!("{owner}:{}", a.name))
        .collect();
    let gone: Vec<String> = body
        .autostart
        .keys()
        .filter(|n| !wanted.contains(*n))
        .cloned()
        .collect();
    for name in gone {
        body.autostart.remove(&name);
        let before = body.unikernels.len();
        body.unikernels.retain(|r| r.spec.name != name);
        if body.unikernels.len() != before {
            log::info!("autostart {name}: no longer in the config; removed");
        }
    }
    for a in entries {
        let full = format!("{owner}:{}", a.name);
        let src = images_dir.join(&a.image);
        let digest = match store::import_image(data, &src) {
            Ok(d) => d,
            Err(e) => {
                log::error!("autostart {full}: {}: {e}", src.display());
                continue;
            }
        };
        let hex = store::hex(&digest);
        let nets: Vec<&str> = a.net.iter().map(|n| n.device.as_str()).collect();
        if let Err(e) = store::check_manifest(&data.image(&hex), &nets, &[]) {
            log::error!("autostart {full}: {}: {e}", src.display());
            continue;
        }
        let key = autostart_key(a, &hex);
        if body.autostart.get(&full) == Some(&key) {
            continue;
        }
        let spec = Spec {
            name: full.clone(),
            image_sha256: hex.clone(),
            args: a.args.clone(),
            memory_mib: a.memory_mib,
            cpus: vec![],
            net: a
                .net
                .iter()
                .map(|n| NetDevice::derive(secret, &full, &n.device, &n.bridge))
                .collect(),
            block: vec![],
            restart: match a.restart {
                petrel_config::Restart::Always => RestartPolicy::Always,
                petrel_config::Restart::Never => RestartPolicy::Never,
                // A failure: a non-zero exit code (signals do not match OnExit).
                petrel_config::Restart::OnFailure => RestartPolicy::OnExit((1..=255).collect()),
            },
            priority: a.priority,
        };
        if let Err(e) = spec.validate() {
            log::error!("autostart {full}: {e}");
            continue;
        }
        body.unikernels.retain(|r| r.spec.name != full);
        body.unikernels.push(Record {
            spec,
            restart_count: 0,
            last_exit: None,
        });
        body.autostart.insert(full.clone(), key);
        log::info!("autostart {full}: imported (image sha256 {hex})");
    }
}

/// Removes block volume files the state does not list (a crash between creating or
/// destroying a volume and saving the state).
fn remove_orphan_volumes(data: &DataDir, body: &Body) {
    let known: BTreeSet<PathBuf> = body.blocks.iter().map(|b| data.block(&b.name)).collect();
    let Ok(entries) = fs::read_dir(data.blocks()) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !known.contains(&p) {
            log::warn!("removing {}: no block volume of that name", p.display());
            let _ = fs::remove_file(&p);
        }
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, DaemonError> {
    fs::read(path).map_err(|e| fail(path.display().to_string())(&e))
}

/// The device certificate and key: the given files, or one generated once into
/// `keys/` (self-signed, for pinning).
fn device_credentials(
    opts: &Options,
    data: &DataDir,
    hostname: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), DaemonError> {
    let (cert_path, key_path) = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let c = data.keys().join("device.crt.pem");
            let k = data.keys().join("device.key.pem");
            if !(c.is_file() && k.is_file()) {
                let creds = tls::ca::self_signed_device(hostname)
                    .map_err(|e| fail("generating the device certificate")(&e))?;
                store::write_atomic(&k, creds.key_pem.as_bytes(), 0o600)
                    .map_err(|e| fail(k.display().to_string())(&e))?;
                store::write_atomic(&c, creds.chain_pem.as_bytes(), 0o600)
                    .map_err(|e| fail(c.display().to_string())(&e))?;
                log::info!(
                    "generated a self-signed device certificate in {}",
                    c.display()
                );
            }
            (c, k)
        }
        _ => {
            return Err(DaemonError {
                what: "flags".into(),
                detail: "--cert and --key go together".into(),
            });
        }
    };
    let chain = tls::certs_from_pem(&read_pem(&cert_path)?)
        .map_err(|e| fail(cert_path.display().to_string())(&e))?;
    let key = tls::key_from_pem(&read_pem(&key_path)?)
        .map_err(|e| fail(key_path.display().to_string())(&e))?;
    if chain.is_empty() {
        return Err(DaemonError {
            what: cert_path.display().to_string(),
            detail: "no certificate in it".into(),
        });
    }
    Ok((chain, key))
}

/// The trust anchor: one rotated in by `trust rotate` (in `keys/`), else `--trust`.
fn trust_anchor_path(opts: &Options, data: &DataDir) -> Option<PathBuf> {
    let rotated = data.keys().join("trust.pem");
    if rotated.is_file() {
        Some(rotated)
    } else {
        opts.trust.clone()
    }
}

fn tls_listen(
    opts: &Options,
    config: &Config,
    data: &DataDir,
) -> Result<Option<TlsListen>, DaemonError> {
    let Some(anchor_path) = trust_anchor_path(opts, data) else {
        if let Some(addr) = opts.listen {
            return Err(DaemonError {
                what: format!("--listen {addr}"),
                detail: "TLS needs the operator's trust anchor: add --trust CA.pem".into(),
            });
        }
        log::info!("no trust anchor: TLS management is off (local socket only)");
        return Ok(None);
    };
    let anchors = tls::certs_from_pem(&read_pem(&anchor_path)?)
        .map_err(|e| fail(anchor_path.display().to_string())(&e))?;
    if anchors.is_empty() {
        return Err(DaemonError {
            what: anchor_path.display().to_string(),
            detail: "no certificate in it".into(),
        });
    }
    let (chain, key) = device_credentials(opts, data, &config.hostname)?;
    if let Some(leaf) = chain.first() {
        let fp = tls::fingerprint(leaf);
        eprintln!("petreld: device certificate sha256 {fp} (pin it: petrelctl --pin {fp})");
    }
    let server =
        tls::server_config(&anchors, chain, key).map_err(|e| fail("TLS configuration")(&e))?;
    Ok(Some(TlsListen {
        addr: opts.listen.unwrap_or(config.management.listen),
        config: server,
        anchors,
    }))
}

/// Starts `petreld` and runs it until SIGTERM (or a factory reset) has stopped every
/// tender and saved the state.
pub fn run(opts: Options) -> Result<(), DaemonError> {
    let (config, config_read) = load_config(&opts)?;
    let data = DataDir::prepare(&opts.data_dir)
        .map_err(|e| fail(format!("data directory {}", opts.data_dir.display()))(&e))?;
    let secret = store::mac_secret(&data).map_err(|e| fail("keys/mac-secret")(&e))?;
    let (state_store, mut body) = open_state(&data, opts.appliance)?;
    let admin = config.management.admin.clone();
    if let Some(a) = &admin
        && !crate::quota::is_valid_identity(a)
    {
        return Err(DaemonError {
            what: "management.admin".into(),
            detail: format!("{a:?} is not an identity path"),
        });
    }
    // Autostart entries are imported (and pruned) only from a config that was read.
    if let Some(cfg_path) = &opts.config
        && config_read
    {
        let images = cfg_path.parent().unwrap_or(Path::new(".")).join("images");
        let owner = admin.as_deref().unwrap_or(LOCAL_OWNER);
        import_autostart(
            &data,
            &config.unikernels,
            &images,
            owner,
            &secret,
            &mut body,
        );
    }
    remove_orphan_volumes(&data, &body);
    let keep: BTreeSet<String> = body
        .unikernels
        .iter()
        .map(|r| r.spec.image_sha256.clone())
        .collect();
    store::gc_images(&data, &keep, store::IMAGE_GC_GRACE);

    let engine = Engine::new(data.clone(), secret, admin, body);
    let consoles =
        Consoles::new(ConsoleLimits::default()).map_err(|e| fail("consoles")(&chain(&e)))?;
    let (tx, rx) = mpsc::channel::<Msg>();
    let exits = tx.clone();
    let runner = Runner::new(
        RunnerConfig {
            tender: opts.tender.clone(),
        },
        Arc::clone(&consoles),
        Box::new(move |ex| {
            let _ = exits.send(Msg::Exited(ex));
        }),
    )
    .map_err(|e| fail("tender runner")(&chain(&e)))?;
    start_signal_thread(tx.clone())?;

    let tls = tls_listen(&opts, &config, &data)?;
    if let Some(sock) = &opts.socket
        && let Some(dir) = sock.parent()
    {
        fs::create_dir_all(dir).map_err(|e| fail(dir.display().to_string())(&e))?;
    }
    let core = Core::new(
        tx.clone(),
        data.clone(),
        Arc::clone(&consoles),
        CoreSettings {
            appliance: opts.appliance,
            run_log: opts.run_log.clone(),
            trust_out: data.keys().join("trust.pem"),
            upload_budget_bytes: opts.upload_budget_bytes,
        },
    );
    let server = Server::start(
        ServerConfig {
            tls,
            unix: opts.socket.clone(),
            max_connections: MAX_CONNECTIONS,
            max_per_identity: MAX_CONNECTIONS_PER_IDENTITY,
            idle_timeout: IDLE_TIMEOUT,
        },
        Arc::new(core),
    )
    .map_err(|e| fail("management server")(&chain(&e)))?;
    if let Some(addr) = server.tcp_addr() {
        eprintln!("petreld: listening on {addr}");
    }
    let metrics_addr = opts.metrics.or(config.management.metrics);
    if let Some(addr) = metrics_addr {
        let bound = crate::metrics::serve(addr, tx.clone())
            .map_err(|e| fail(format!("metrics listener {addr}"))(&e))?;
        log::info!("metrics on http://{bound}/metrics");
    }
    drop(tx);

    let mut d = Daemon {
        engine,
        runner,
        consoles,
        store: state_store,
        start: Instant::now(),
        pids: BTreeMap::new(),
        waiting: Vec::new(),
        exit: false,
        shutting_down: false,
        persist_error: None,
    };
    d.persist();
    d.event(Event::Boot);
    log::info!("ready");
    d.run_loop(&rx);
    server.shutdown();
    if d.engine.factory_reset {
        factory_wipe(&data);
        // The request was refused unless PID 1 is petrel-init (see `service`).
        if opts.appliance {
            log::warn!("factory reset done: rebooting");
            let _ = rustix::process::kill_process(
                rustix::process::Pid::INIT,
                rustix::process::Signal::TERM,
            );
        }
    }
    log::info!("stopped");
    Ok(())
}

fn start_signal_thread(tx: mpsc::Sender<Msg>) -> Result<(), DaemonError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| fail("signal handlers")(&e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Msg::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| fail("signal thread")(&e))?;
    Ok(())
}

/// Empties the data directory for a factory reset: state, images, block volumes and logs
/// go; `keys/` stays (the MAC secret, the self-signed device key, a rotated trust anchor),
/// so the box comes back at the same address, with the same fingerprint, trusting the same
/// operators (DESIGN §3).
fn factory_wipe(data: &DataDir) {
    let Ok(entries) = fs::read_dir(data.root()) else {
        return;
    };
    let keys = data.keys();
    for e in entries.flatten() {
        let p = e.path();
        if p == keys {
            continue;
        }
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if let Err(err) = r {
            log::error!("factory reset: removing {}: {err}", p.display());
        }
    }
    let _ = store::sync_dir(data.root());
}

/// How long a destroy's reply waits for the tender to die.
pub const DESTROY_WAIT: Duration = Duration::from_secs(5);

/// A destroy reply waiting for the tender's exit.
struct Waiting {
    name: String,
    reply: SyncSender<Result<Answer, Error>>,
    deadline: Duration,
}

/// The core thread's state.
struct Daemon {
    engine: Engine,
    runner: Runner,
    consoles: Arc<Consoles>,
    store: persist::Store,
    start: Instant,
    /// The tender of each unikernel that has one.
    pids: BTreeMap<String, u32>,
    /// Destroy replies waiting for tenders to die.
    waiting: Vec<Waiting>,
    exit: bool,
    shutting_down: bool,
    /// The last save failure since the current request began.
    persist_error: Option<String>,
}

impl Daemon {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn run_loop(&mut self, rx: &Receiver<Msg>) {
        while !self.exit {
            let due = self.engine.machine.poll_at();
            let due = match (due, self.waiting.iter().map(|w| w.deadline).min()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let msg = match due {
                Some(at) => match rx.recv_timeout(at.saturating_sub(self.now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            match msg {
                None => {
                    self.event(Event::Tick);
                    self.expire_waiting();
                }
                Some(Msg::Request { caller, op, reply }) => {
                    let (result, actions) = self.engine.handle(self.now(), &caller, op);
                    self.persist_error = None;
                    self.execute(actions);
                    let result = match (result, self.persist_error.take()) {
                        (Ok(_), Some(e)) => Err(Error::new(
                            ErrorKind::Internal,
                            format!("the change could not be saved: {e}"),
                        )),
                        (r, _) => r,
                    };
                    match result {
                        // The reply waits for the tender's end (a SIGKILL: milliseconds),
                        // so the name and the resources are free when it arrives.
                        Ok(Answer::Destroyed(name)) if self.engine.machine.get(&name).is_some() => {
                            self.waiting.push(Waiting {
                                name,
                                reply,
                                deadline: self.now().saturating_add(DESTROY_WAIT),
                            });
                        }
                        r => {
                            let _ = reply.send(r.and_then(|a| self.engine.resolve(self.now(), a)));
                        }
                    }
                    if self.engine.factory_reset && !self.shutting_down {
                        log::warn!("factory reset requested: stopping every unikernel");
                        self.shutdown();
                    }
                }
                Some(Msg::Exited(ex)) => {
                    if self.pids.get(&ex.name) != Some(&ex.pid) {
                        log::debug!("stale exit report of {} (pid {})", ex.name, ex.pid);
                        continue;
                    }
                    self.pids.remove(&ex.name);
                    log::info!(
                        "{} (pid {}) exited: {:?} {}",
                        ex.name,
                        ex.pid,
                        ex.status,
                        ex.reason
                    );
                    self.engine
                        .exit_times
                        .insert(ex.name.clone(), crate::service::now_unix_ms());
                    self.event(Event::TenderExited {
                        name: ex.name,
                        status: ex.status,
                        reason: ex.reason,
                    });
                }
                Some(Msg::Signal(sig)) => {
                    log::info!("signal {sig}: stopping every unikernel");
                    self.shutdown();
                }
                Some(Msg::Release(name)) => {
                    self.engine.busy.remove(&name);
                }
            }
        }
        // Destroys are saved; their tenders are gone with everything else.
        self.release_waiting(|_| true);
    }

    /// Replies `Ok` to the destroys `which` selects.
    fn release_waiting(&mut self, which: impl Fn(&Waiting) -> bool) {
        let (done, keep): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| which(w));
        self.waiting = keep;
        for w in done {
            let _ = w.reply.send(Ok(Answer::Reply(ReplyBody::Ok)));
        }
    }

    /// Destroys whose tender outlived [`DESTROY_WAIT`]: acknowledged anyway (the
    /// destroy is saved; the tender goes when the kernel lets it).
    fn expire_waiting(&mut self) {
        let now = self.now();
        for w in self.waiting.iter().filter(|w| w.deadline <= now) {
            log::warn!(
                "{}: the tender is slow to die; destroy acknowledged",
                w.name
            );
        }
        self.release_waiting(|w| w.deadline <= now);
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        self.event(Event::Shutdown);
    }

    fn event(&mut self, ev: Event) {
        let actions = self.machine_event(ev);
        self.execute(actions);
    }

    fn machine_event(&mut self, ev: Event) -> Vec<Action> {
        let now = self.now();
        match self.engine.machine.handle(now, ev) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("{e}");
                Vec::new()
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Spawn { name } => {
                    let ev = match self.spawn(&name) {
                        Ok(sp) => {
                            log::info!("{name} started (pid {})", sp.pid);
                            self.pids.insert(name.clone(), sp.pid);
                            self.engine.taps.insert(name.clone(), sp.taps);
                            Event::TenderStarted { name, pid: sp.pid }
                        }
                        Err(reason) => {
                            log::warn!("{name}: cannot start: {reason}");
                            self.engine
                                .exit_times
                                .insert(name.clone(), crate::service::now_unix_ms());
                            Event::TenderExited {
                                name,
                                status: ExitStatus::SpawnFailed,
                                reason,
                            }
                        }
                    };
                    queue.extend(self.machine_event(ev));
                }
                Action::Kill { name, signal } => {
                    // By the daemon's own record: a destroyed unikernel's state no
                    // longer names its pid.
                    if let Some(&pid) = self.pids.get(&name)
                        && let Err(e) = self.runner.signal(pid, signal)
                    {
                        log::debug!("{name}: signal {signal} to {pid}: {e}");
                    }
                }
                Action::RemoveDevices { name } => {
                    // The taps vanish with the tender's fds; forget their names.
                    self.engine.taps.remove(&name);
                }
                Action::Forget { name } => {
                    self.release_waiting(|w| w.name == name);
                    self.consoles.forget(&name);
                    self.engine.exit_times.remove(&name);
                    store::gc_images(
                        self.engine.data(),
                        &self.engine.referenced_images(),
                        store::IMAGE_GC_GRACE,
                    );
                }
                Action::Persist => self.persist(),
                Action::Exit => self.exit = true,
            }
        }
    }

    fn persist(&mut self) {
        if let Err(e) = self.store.save(&self.engine.body()) {
            let msg = chain(&e);
            log::error!("saving the state: {msg}");
            self.persist_error = Some(msg);
        }
    }

    fn spawn(&self, name: &str) -> Result<Spawned, String> {
        let u = self
            .engine
            .machine
            .get(name)
            .ok_or_else(|| "unknown unikernel".to_owned())?;
        let spec = &u.spec;
        let data = self.engine.data();
        let image = data.image(&spec.image_sha256);
        if !image.is_file() {
            return Err(format!(
                "image sha256 {} is missing from the store",
                spec.image_sha256
            ));
        }
        let mut block = Vec::new();
        for b in &spec.block {
            let v = self
                .engine
                .blocks
                .get(&b.volume)
                .ok_or_else(|| format!("block volume {} does not exist", b.volume))?;
            if self.engine.busy.contains(&b.volume) {
                return Err(format!("block volume {} is being transferred", b.volume));
            }
            block.push(LaunchBlock {
                device: b.name.clone(),
                path: data.block(&b.volume),
                sector_size: Some(v.sector_size),
            });
        }
        let launch = Launch {
            name: name.to_owned(),
            image,
            args: spec.args.clone(),
            memory_mib: spec.memory_mib,
            net: spec
                .net
                .iter()
                .map(|d| LaunchNet {
                    device: d.name.clone(),
                    bridge: d.bridge.clone(),
                    mac: d.mac,
                })
                .collect(),
            block,
            cpus: spec.cpus.clone(),
        };
        self.runner.spawn(&launch).map_err(|e| chain(&e))
    }
}

/// The text of a boot's log, the last `lines` lines (0: all), at most
/// [`crate::service::MAX_LOG_BYTES`] from its end.
pub fn read_logs(
    run_log: &Path,
    log_dir: &Path,
    boot: LogBoot,
    lines: u32,
) -> Result<Vec<u8>, Error> {
    let path = match boot {
        LogBoot::Current => {
            if run_log.is_file() {
                run_log.to_owned()
            } else {
                log_dir.join("boot.log")
            }
        }
        LogBoot::Previous => log_dir.join("boot.log.1"),
        LogBoot::FailedTrial => (1..=4)
            .map(|i| log_dir.join(format!("boot.log.{i}")))
            .find(|p| {
                tail(p, crate::service::MAX_LOG_BYTES)
                    .is_ok_and(|t| contains(&t, b"trial boot not blessed"))
            })
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "no failed trial boot in the kept logs")
            })?,
    };
    let mut text = tail(&path, crate::service::MAX_LOG_BYTES).map_err(|e| {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Internal
        };
        Error::new(kind, format!("{}: {e}", path.display()))
    })?;
    if lines > 0 {
        let want = usize::try_from(lines).unwrap_or(usize::MAX);
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let cut = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(want.saturating_sub(1))
            .map_or(0, |(i, _)| i + 1);
        text = text.split_off(cut);
    }
    Ok(text)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn tail(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max_bytes {
        f.seek(SeekFrom::Start(len - max_bytes))?;
    }
    let mut buf = Vec::new();
    f.take(max_bytes).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_factory_wipe_keeps_only_the_keys() {
        let root = std::env::temp_dir().join(format!("petreld-wipe-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let data = DataDir::prepare(&root).expect("prepare");
        fs::write(data.keys().join("mac-secret"), b"secret").expect("write");
        fs::write(root.join("state").join("state.json"), b"{}").expect("write");
        fs::create_dir_all(root.join("log")).expect("mkdir");
        fs::write(root.join("log").join("boot.log.1"), b"old").expect("write");
        fs::write(root.join("stray"), b"x").expect("write");
        factory_wipe(&data);
        let mut left: Vec<String> = fs::read_dir(&root)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keys"]);
        assert_eq!(
            fs::read(data.keys().join("mac-secret")).expect("kept"),
            b"secret"
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn log_tail_by_lines() {
        let dir = std::env::temp_dir().join(format!("petreld-logs-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let run = dir.join("boot.log");
        fs::write(&run, b"a\nb\nc\n").expect("write");
        let all = read_logs(&run, &dir, LogBoot::Current, 0).expect("read");
        assert_eq!(all, b"a\nb\nc\n");
        let two = read_logs(&run, &dir, LogBoot::Current, 2).expect("read");
        assert_eq!(two, b"b\nc\n");
        let many = read_logs(&run, &dir, LogBoot::Current, 10).expect("read");
        assert_eq!(many, b"a\nb\nc\n");
        let e = read_logs(&run, &dir, LogBoot::Previous, 0).expect_err("none");
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = read_logs(&run, &dir, LogBoot::FailedTrial, 0).expect_err("none");
        assert_eq!(e.kind, ErrorKind::NotFound);
        fs::write(
            dir.join("boot.log.2"),
            b"x\npetrel-init: boot: trial boot not blessed in time\n",
        )
        .expect("write");
        let t = read_logs(&run, &dir, LogBoot::FailedTrial, 1).expect("found");
        assert!(t.starts_with(b"petrel-init: boot: trial"));
        let _ = fs::remove_dir_all(&dir);
    }
}
