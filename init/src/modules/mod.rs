//! Kernel modules: the index (`index`), the load order (`plan`), the modalias matcher
//! (`glob`) — all pure — and the [`Loader`], which does the `finit_module` calls and the
//! sysfs walk of the coldplug.
//!
//! Errors a module load may expectedly meet are not failures: EEXIST (already loaded or
//! built in), and ENODEV/ENXIO/EOPNOTSUPP/EBUSY (the hardware is not there, e.g. the
//! other vendor's KVM or `crc32c_intel` under TCG). Each module is tried once per boot.

pub mod glob;
pub mod index;
pub mod plan;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use index::ModuleIndex;

/// Where module trees live.
pub const MODULES_DIR: &str = "/lib/modules";
/// The index file name inside `/lib/modules/KVER`.
pub const INDEX_FILE: &str = "petrel.modules";
/// At most this many modules load at once (independent ones).
pub const LOAD_THREADS_MAX: usize = 4;
/// Coldplug passes before giving up on convergence (without a uevent socket).
pub const COLDPLUG_MAX_ROUNDS: usize = 16;

/// Outcome of one `finit_module`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadResult {
    /// Loaded now.
    Loaded,
    /// Was there already (EEXIST).
    AlreadyLoaded,
    /// The hardware is not there (ENODEV, ENXIO, EOPNOTSUPP, EBUSY) or the module is the
    /// other CPU vendor's.
    NotApplicable(String),
    /// Anything else.
    Failed(String),
}

/// Classifies a load error by errno.
pub fn classify(err: &std::io::Error) -> LoadResult {
    match err.raw_os_error() {
        Some(libc::EEXIST) => LoadResult::AlreadyLoaded,
        Some(libc::ENODEV | libc::ENXIO | libc::EOPNOTSUPP | libc::EBUSY) => {
            LoadResult::NotApplicable(err.to_string())
        }
        _ => LoadResult::Failed(err.to_string()),
    }
}

/// Counters for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Loaded by us.
    pub loaded: usize,
    /// Already there.
    pub present: usize,
    /// Hardware absent.
    pub not_applicable: usize,
    /// Real failures.
    pub failed: usize,
}

/// Loads modules from one kernel's tree.
pub struct Loader {
    root: PathBuf,
    index: ModuleIndex,
    tried: BTreeSet<String>,
    loaded: BTreeSet<String>,
    seen_modaliases: BTreeSet<String>,
    cpu_vendor: String,
    threads: usize,
    /// What happened so far.
    pub stats: Stats,
}

impl Loader {
    /// Reads `/lib/modules/<release>/petrel.modules`.
    pub fn open(release: &str, cpu_vendor: &str) -> Result<Loader, String> {
        let root = Path::new(MODULES_DIR).join(release);
        let path = root.join(INDEX_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = ModuleIndex::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for w in &parsed.warnings {
            crate::warn!("modules: {INDEX_FILE}: {w}");
        }
        if parsed.index.kernel != release {
            crate::warn!(
                "modules: index is for kernel {:?}, running {release}",
                parsed.index.kernel
            );
        }
        Ok(Loader::new(root, parsed.index, cpu_vendor))
    }

    /// A loader over an index already parsed.
    pub fn new(root: PathBuf, index: ModuleIndex, cpu_vendor: &str) -> Loader {
        Loader {
            root,
            index,
            tried: BTreeSet::new(),
            loaded: BTreeSet::new(),
            seen_modaliases: BTreeSet::new(),
            cpu_vendor: cpu_vendor.to_owned(),
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get().min(LOAD_THREADS_MAX)),
            stats: Stats::default(),
        }
    }

    /// The modules loaded so far, sorted by name.
    pub fn loaded_names(&self) -> impl Iterator<Item = &str> {
        self.loaded.iter().map(String::as_str)
    }

    /// Whether `name` was loaded by this loader (or was already in the kernel).
    pub fn is_loaded(&self, name: &str) -> bool {
        self.loaded.contains(name)
    }

    /// Loads `requested` (names or aliases) with their dependencies; returns how many
    /// modules were newly loaded.
    pub fn load(&mut self, requested: &[&str]) -> usize {
        let plan = plan::plan(&self.index, requested, &self.tried);
        for w in &plan.warnings {
            crate::debug!("modules: {w}");
        }
        self.tried.extend(plan.order.iter().cloned());
        let mut n = 0;
        for (name, result, ms) in self.load_plan(&plan) {
            match &result {
                LoadResult::Loaded => {
                    n += 1;
                    self.stats.loaded += 1;
                    crate::debug!("modules: {name} loaded in {ms} ms");
                    self.loaded.insert(name);
                }
                LoadResult::AlreadyLoaded => {
                    self.stats.present += 1;
                    self.loaded.insert(name);
                }
                LoadResult::NotApplicable(why) => {
                    self.stats.not_applicable += 1;
                    crate::debug!("modules: {name}: {why} (no such hardware)");
                }
                LoadResult::Failed(why) => {
                    self.stats.failed += 1;
                    crate::warn!("modules: {name}: {why}");
                }
            }
        }
        n
    }

    /// Loads a plan on up to [`LOAD_THREADS_MAX`] threads, each module as soon as the
    /// ones it needs have finished ([`plan::Plan::next_ready`]); returns each result with
    /// its time in ms, in plan order. A helper thread that cannot be started only means
    /// less parallelism: the calling thread works through the plan too.
    fn load_plan(&self, plan: &plan::Plan) -> Vec<(String, LoadResult, u128)> {
        struct Progress {
            started: BTreeSet<String>,
            finished: BTreeSet<String>,
            results: Vec<(String, LoadResult, u128)>,
        }
        let progress = Mutex::new(Progress {
            started: BTreeSet::new(),
            finished: BTreeSet::new(),
            results: Vec::new(),
        });
        let changed = Condvar::new();
        let lock = || progress.lock().unwrap_or_else(PoisonError::into_inner);
        let work = || {
            let mut p = lock();
            while p.started.len() < plan.order.len() {
                let Some(name) = plan.next_ready(&p.started, &p.finished).map(str::to_owned) else {
                    // Something is loading; its end may make another module ready.
                    p = changed.wait(p).unwrap_or_else(PoisonError::into_inner);
                    continue;
                };
                p.started.insert(name.clone());
                drop(p);
                let start = Instant::now();
                let result = self.load_one(&name);
                let ms = start.elapsed().as_millis();
                p = lock();
                p.finished.insert(name.clone());
                p.results.push((name, result, ms));
                changed.notify_all();
            }
        };
        let helpers = self.threads.min(plan.order.len()).saturating_sub(1);
        std::thread::scope(|s| {
            for _ in 0..helpers {
                // Failing to start a helper is fine: fewer hands.
                let _ = std::thread::Builder::new().spawn_scoped(s, work);
            }
            work();
        });
        let mut results = progress
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .results;
        results.sort_by_key(|(name, ..)| plan.order.iter().position(|m| m == name));
        results
    }

    fn load_one(&self, name: &str) -> LoadResult {
        if plan::wrong_kvm_vendor(name, &self.cpu_vendor) {
            return LoadResult::NotApplicable(format!("CPU vendor is {}", self.cpu_vendor));
        }
        let Some(info) = self.index.modules.get(name) else {
            return LoadResult::Failed("not in the index".into());
        };
        let path = self.root.join(&info.path);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return LoadResult::Failed(format!("{}: {e}", path.display())),
        };
        match rustix::system::finit_module(&file, c"", 0) {
            Ok(()) => LoadResult::Loaded,
            Err(e) => classify(&std::io::Error::from(e)),
        }
    }

    /// Loads what the modalias `text` asks for; returns how many modules were newly
    /// loaded.
    pub fn load_for_modalias(&mut self, text: &str) -> usize {
        let wanted: Vec<String> = self
            .index
            .lookup(text)
            .into_iter()
            .filter(|m| !self.tried.contains(*m))
            .map(str::to_owned)
            .collect();
        if wanted.is_empty() {
            return 0;
        }
        let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
        self.load(&refs)
    }

    /// One coldplug pass: loads what every device's `modalias` under `sys_bus`
    /// (`/sys/bus`) asks for, skipping modaliases already handled. Returns how many
    /// modules were newly loaded. Devices those drivers create announce themselves with
    /// uevents; without a uevent socket, call this again until it returns 0.
    pub fn coldplug(&mut self, sys_bus: &Path) -> usize {
        let fresh: Vec<String> = scan_modaliases(sys_bus)
            .into_iter()
            .filter(|m| self.seen_modaliases.insert(m.clone()))
            .collect();
        // One plan for every device, so that independent drivers load in parallel.
        let mut wanted: Vec<String> = Vec::new();
        for m in &fresh {
            for module in self.index.lookup(m) {
                if !self.tried.contains(module) && !wanted.iter().any(|w| w == module) {
                    wanted.push(module.to_owned());
                }
            }
        }
        let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let n = self.load(&refs);
        crate::debug!(
            "modules: coldplug: {} new devices, {n} modules",
            fresh.len()
        );
        n
    }

    /// Loads what a device announced by uevent asks for, once per modalias.
    pub fn hotplug(&mut self, modalias: &str) -> usize {
        if !self.seen_modaliases.insert(modalias.to_owned()) {
            return 0;
        }
        self.load_for_modalias(modalias)
    }

    /// Loads the index's always-needed set.
    pub fn load_always(&mut self) -> usize {
        let always = self.index.always.clone();
        let refs: Vec<&str> = always.iter().map(String::as_str).collect();
        self.load(&refs)
    }
}

/// Every distinct `modalias` of the devices under `sys_bus` (`/sys/bus/*/devices/*`):
/// every device that has a modalias sits on a bus, and this is far fewer entries than
/// a walk of `/sys/devices`.
pub fn scan_modaliases(sys_bus: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys_bus) else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devices.flatten() {
            if let Ok(text) = std::fs::read_to_string(dev.path().join("modalias")) {
                let t = text.trim();
                if !t.is_empty() {
                    out.insert(t.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::EEXIST)), LoadResult::AlreadyLoaded);
        assert!(matches!(
            classify(&e(libc::ENODEV)),
            LoadResult::NotApplicable(_)
        ));
        assert!(matches!(
            classify(&e(libc::EOPNOTSUPP)),
            LoadResult::NotApplicable(_)
        ));
        assert!(matches!(classify(&e(libc::ENOENT)), LoadResult::Failed(_)));
        assert!(matches!(classify(&e(libc::ENOEXEC)), LoadResult::Failed(_)));
    }

    #[test]
    fn parallel_loader_tries_each_module_once() {
        // No module file exists: every load fails, but the scheduler must visit each
        // module of the plan exactly once, on several threads, without deadlocking.
        let mut text = String::from("petrel-modules 1\n");
        for i in 0..40 {
            text.push_str(&format!("module m{i} m{i}.ko\n"));
        }
        for i in 1..40 {
            text.push_str(&format!("depends m{i} m{}\n", i / 3));
        }
        text.push_str("softdep m5 post m39\nsoftdep m39 pre m5\n");
        let index = ModuleIndex::parse(&text).unwrap().index;
        let mut loader = Loader::new(PathBuf::from("/nonexistent"), index, "AuthenticAMD");
        loader.threads = 4;
        let all: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(loader.load(&refs), 0);
        assert_eq!(loader.stats.failed, 40);
        assert_eq!(loader.tried.len(), 40);
        // A second request tries nothing again.
        assert_eq!(loader.load(&["m7", "kvm_intel"]), 0);
        assert_eq!(loader.stats.failed, 40);
    }

    #[test]
    fn scans_a_fake_sysfs() {
        let dir = std::env::temp_dir().join(format!("petrel-init-sysfs-{}", std::process::id()));
        let devices = dir.join("devices/pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(devices.join("virtio0")).unwrap();
        std::fs::create_dir_all(dir.join("bus/pci/devices")).unwrap();
        std::fs::create_dir_all(dir.join("bus/virtio/devices")).unwrap();
        std::fs::create_dir_all(dir.join("bus/empty/devices/x")).unwrap();
        std::fs::create_dir_all(dir.join("bus/nodevices")).unwrap();
        std::fs::write(devices.join("modalias"), "pci:v00001AF4d00001000\n").unwrap();
        std::fs::write(
            devices.join("virtio0/modalias"),
            "virtio:d00000001v00001AF4\n",
        )
        .unwrap();
        std::fs::write(dir.join("bus/empty/devices/x/modalias"), "\n").unwrap();
        std::os::unix::fs::symlink(&devices, dir.join("bus/pci/devices/0000:00:03.0")).unwrap();
        std::os::unix::fs::symlink(
            devices.join("virtio0"),
            dir.join("bus/virtio/devices/virtio0"),
        )
        .unwrap();
        let found = scan_modaliases(&dir.join("bus"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["pci:v00001AF4d00001000", "virtio:d00000001v00001AF4"]
        );
    }
}
