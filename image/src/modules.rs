//! Kernel module selection and the module index `petrel-init` reads.
//!
//! Layers: [`ModuleTree::scan`] reads a `lib/modules/KVER` tree (the only I/O here);
//! [`ModuleTree::from_modules`], [`select`] and [`Selected::index`] are pure. The
//! selection is two lists ([`Selection`]): the always-needed set, which no modalias ever
//! requests (file systems, KVM, bridge, …, DESIGN §6), and the hardware set, loaded by
//! `petrel-init` when a device's modalias asks for it. Both are closed over `depends=`
//! and `softdep=` (a soft dependency may name an alias, e.g. `libcrc32c`'s `crc32c`,
//! which is resolved to the modules that provide it).
//!
//! The index format is fixed in `docs/formats.md` § "Module index".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::modinfo::{ModInfo, ModInfoError, SoftDepWhen, is_index_token, normalize_name};

/// Version line of the module index.
pub const INDEX_HEADER: &str = "petrel-modules 1";
/// File name of the module index inside `/lib/modules/KVER`.
pub const INDEX_FILE_NAME: &str = "petrel.modules";

/// The modules every Petrel box loads, whatever its hardware: no modalias requests them
/// (DESIGN §6, docs/machine.md § "Debian kernel"). In load order; the closure adds their
/// dependencies in front of each. Both KVM vendors are listed: `petrel-init` loads the
/// one matching the CPU and tolerates the other's ENODEV/EOPNOTSUPP.
pub const ALWAYS: &[&str] = &[
    "crc32c_generic",
    "kvm_amd",
    "kvm_intel",
    "tun",
    "bridge",
    "veth",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "ext4",
    "efivarfs",
    "button",
    "evdev",
];

/// The drivers shipped for hardware: loaded by modalias coldplug when a device asks.
/// Virtual machines (virtio, QEMU's e1000 and i6300esb watchdog), USB sticks and
/// keyboards, SATA/NVMe disks, common NICs, watchdogs.
pub const HARDWARE: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "virtio_console",
    "virtio_rng",
    "i6300esb",
    "iTCO_wdt",
    "crc32c_intel",
    "xhci_pci",
    "ehci_pci",
    "usb_storage",
    "uas",
    "sd_mod",
    "usbhid",
    "hid_generic",
    "ahci",
    "nvme",
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "r8169",
];

/// Why a module tree cannot be read or a selection cannot be made from it.
#[derive(Debug, Error)]
pub enum ModulesError {
    /// The tree (or a file in it) cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory's name is not a usable kernel release.
    #[error("{} does not look like lib/modules/KVER (bad release name)", .0.display())]
    BadRelease(PathBuf),
    /// The tree holds no `.ko` file at all.
    #[error("no kernel modules (*.ko) under {}", .0.display())]
    Empty(PathBuf),
    /// A path in the tree cannot stand in the index (not UTF-8, or with spaces).
    #[error("module path {0:?} cannot be written to the index")]
    BadPath(String),
    /// Two files claim one module name.
    #[error("module {name} found twice: {first} and {second}")]
    Duplicate {
        /// The module name.
        name: String,
        /// The first path.
        first: String,
        /// The second path.
        second: String,
    },
    /// A selected module's `.modinfo` is unreadable.
    #[error("module {name} ({relpath})")]
    BadModule {
        /// The module name.
        name: String,
        /// Its path relative to the tree.
        relpath: String,
        /// The cause.
        #[source]
        source: ModInfoError,
    },
    /// An always-needed module is neither in the tree nor built in: a wrong kernel.
    #[error(
        "always-needed module {0} is neither in the tree nor built into the kernel (is this a Debian amd64 kernel tree?)"
    )]
    MissingAlways(String),
    /// A selected module depends on one that is missing.
    #[error("module {module} depends on {dep}, which is not in the tree")]
    MissingDependency {
        /// The module that names the dependency.
        module: String,
        /// The missing dependency.
        dep: String,
    },
}

/// One module file of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModule {
    /// Normalised module name (`-` → `_`).
    pub name: String,
    /// Path relative to `lib/modules/KVER`, with `/` separators.
    pub relpath: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Its `.modinfo`, or why it could not be read (only an error once selected).
    pub info: Result<ModInfo, ModInfoError>,
}

/// Every module of one kernel release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleTree {
    /// The kernel release (`6.1.0-28-amd64`): the tree directory's name.
    pub kver: String,
    /// Modules by normalised name.
    pub modules: BTreeMap<String, KernelModule>,
    /// Built-in modules (from `modules.builtin`), by normalised name.
    pub builtin: BTreeSet<String>,
}

/// The module name of a `.ko` path (`kernel/crypto/crc32c_generic.ko` → `crc32c_generic`).
pub fn name_from_path(relpath: &str) -> Option<String> {
    let file = relpath.rsplit('/').next()?;
    let stem = file.strip_suffix(".ko")?;
    (!stem.is_empty()).then(|| normalize_name(stem))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModulesError + '_ {
    move |source| ModulesError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ModuleTree {
    /// Reads a `lib/modules/KVER` directory: every `*.ko` file's `.modinfo` and
    /// `modules.builtin`. Compressed modules (`.ko.xz`, …) are not read: Debian 12 ships
    /// them uncompressed.
    pub fn scan(dir: &Path) -> Result<Self, ModulesError> {
        let kver = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_index_token(n) && !n.contains('/'))
            .ok_or_else(|| ModulesError::BadRelease(dir.to_owned()))?
            .to_owned();
        let mut files = Vec::new();
        collect_ko(dir, "", &mut files)?;
        files.sort();
        let mut modules = Vec::with_capacity(files.len());
        for relpath in files {
            let path = dir.join(&relpath);
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            modules.push((relpath, bytes.len() as u64, ModInfo::from_elf(&bytes)));
        }
        let builtin_path = dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| name_from_path(l.trim()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(io_err(&builtin_path)(e)),
        };
        let tree = Self::from_modules(&kver, modules, builtin)?;
        if tree.modules.is_empty() {
            return Err(ModulesError::Empty(dir.to_owned()));
        }
        Ok(tree)
    }

    /// Builds a tree from `(relpath, size, modinfo)` triples (pure).
    pub fn from_modules(
        kver: &str,
        files: Vec<(String, u64, Result<ModInfo, ModInfoError>)>,
        builtin: BTreeSet<String>,
    ) -> Result<Self, ModulesError> {
        let mut modules = BTreeMap::new();
        for (relpath, size_bytes, info) in files {
            if !is_index_token(&relpath) {
                return Err(ModulesError::BadPath(relpath));
            }
            let name =
                name_from_path(&relpath).ok_or_else(|| ModulesError::BadPath(relpath.clone()))?;
            if let Some(first) = modules.get(&name) {
                let first: &KernelModule = first;
                return Err(ModulesError::Duplicate {
                    name,
                    first: first.relpath.clone(),
                    second: relpath,
                });
            }
            modules.insert(
                name.clone(),
                KernelModule {
                    name,
                    relpath,
                    size_bytes,
                    info,
                },
            );
        }
        Ok(ModuleTree {
            kver: kver.to_owned(),
            modules,
            builtin,
        })
    }

    /// The modules a dependency name stands for: the module of that name, else every
    /// module with an alias matching it (as modprobe resolves a softdep; `-` and `_`
    /// are equal on both sides, as in kmod); empty when it is built in or unknown.
    pub fn resolve(&self, name: &str) -> Vec<&str> {
        let name = normalize_name(name);
        if let Some(m) = self.modules.get(&name) {
            return vec![m.name.as_str()];
        }
        if self.builtin.contains(&name) {
            return Vec::new();
        }
        self.modules
            .values()
            .filter(|m| {
                m.info.as_ref().is_ok_and(|i| {
                    i.aliases
                        .iter()
                        .any(|a| glob_match(&normalize_name(a), &name))
                })
            })
            .map(|m| m.name.as_str())
            .collect()
    }
}

fn collect_ko(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), ModulesError> {
    let dir = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| ModulesError::BadPath(name.to_string_lossy().into_owned()))?;
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry.file_type().map_err(io_err(&entry.path()))?;
        if kind.is_dir() {
            collect_ko(root, &child, out)?;
        } else if kind.is_file() && name.ends_with(".ko") {
            out.push(child);
        }
    }
    Ok(())
}

/// Shell-style glob match as modalias patterns use it: `*`, `?`, `[...]` (with ranges
/// and `!`/`^` negation). Iterative, no recursion: linear in practice.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        // An unclosed '[' is a literal.
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns whether it
/// matched and the class's length, or `None` when the class is not closed.
fn class_match(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&hi| hi != b']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// The lists a selection starts from (module names, normalised or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Loaded on every boot, in this order (after their dependencies).
    pub always: Vec<String>,
    /// Shipped for `petrel-init`'s modalias coldplug.
    pub hardware: Vec<String>,
}

impl Selection {
    /// Petrel's lists: [`ALWAYS`] and [`HARDWARE`].
    pub fn petrel() -> Self {
        Selection {
            always: ALWAYS.iter().map(|s| normalize_name(s)).collect(),
            hardware: HARDWARE.iter().map(|s| normalize_name(s)).collect(),
        }
    }
}

/// A selected module with its resolved soft dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedModule {
    /// Normalised name.
    pub name: String,
    /// Path relative to `lib/modules/KVER`.
    pub relpath: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// `depends=`, in modinfo order.
    pub depends: Vec<String>,
    /// Soft dependencies resolved to module names in the selection.
    pub softdeps: Vec<(SoftDepWhen, String)>,
    /// Modalias patterns.
    pub aliases: Vec<String>,
}

/// The outcome of [`select`]: the modules to ship and the index to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Kernel release.
    pub kver: String,
    /// The closure of both lists, by name.
    pub modules: BTreeMap<String, SelectedModule>,
    /// The always-needed closure in load order: dependencies and `pre` softdeps before
    /// a module, `post` softdeps after it.
    pub always: Vec<String>,
    /// Hardware modules the tree lacks (a custom kernel may not have them): shipped
    /// without, reported.
    pub missing_hardware: Vec<String>,
    /// Requested modules that are built into the kernel (nothing to ship).
    pub builtin: Vec<String>,
    /// Soft dependencies that name nothing in the tree (modprobe ignores them too).
    pub unresolved_softdeps: Vec<(String, String)>,
}

impl Selected {
    /// Sum of the selected modules' sizes in bytes.
    pub fn total_size_bytes(&self) -> u64 {
        self.modules.values().map(|m| m.size_bytes).sum()
    }

    /// The module index, as `docs/formats.md` § "Module index" fixes it.
    pub fn index(&self) -> String {
        let mut modules = Vec::new();
        let mut depends = Vec::new();
        let mut softdeps = Vec::new();
        let mut aliases = Vec::new();
        for m in self.modules.values() {
            modules.push(format!("module {} {}", m.name, m.relpath));
            if !m.depends.is_empty() {
                depends.push(format!("depends {} {}", m.name, m.depends.join(" ")));
            }
            for when in [SoftDepWhen::Pre, SoftDepWhen::Post] {
                let targets: Vec<&str> = m
                    .softdeps
                    .iter()
                    .filter(|(w, _)| *w == when)
                    .map(|(_, t)| t.as_str())
                    .collect();
                if !targets.is_empty() {
                    softdeps.push(format!(
                        "softdep {} {} {}",
                        m.name,
                        when.as_str(),
                        targets.join(" ")
                    ));
                }
            }
            for a in &m.aliases {
                aliases.push(format!("alias {} {}", m.name, a));
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{INDEX_HEADER}");
        let _ = writeln!(out, "kernel {}", self.kver);
        for mut group in [modules, depends, softdeps, aliases] {
            group.sort();
            group.dedup();
            for line in group {
                let _ = writeln!(out, "{line}");
            }
        }
        for name in &self.always {
            let _ = writeln!(out, "always {name}");
        }
        out
    }
}

/// Closes `selection` over dependencies and softdeps in `tree` (pure).
pub fn select(tree: &ModuleTree, selection: &Selection) -> Result<Selected, ModulesError> {
    let mut s = Selector {
        tree,
        out: Selected {
            kver: tree.kver.clone(),
            modules: BTreeMap::new(),
            always: Vec::new(),
            missing_hardware: Vec::new(),
            builtin: Vec::new(),
            unresolved_softdeps: Vec::new(),
        },
        visiting: BTreeSet::new(),
        ordered: BTreeSet::new(),
    };
    for name in &selection.always {
        let name = normalize_name(name);
        if tree.modules.contains_key(&name) {
            s.visit(&name, true)?;
        } else if tree.builtin.contains(&name) {
            s.out.builtin.push(name);
        } else {
            return Err(ModulesError::MissingAlways(name));
        }
    }
    for name in &selection.hardware {
        let name = normalize_name(name);
        if tree.modules.contains_key(&name) {
            s.visit(&name, false)?;
        } else if tree.builtin.contains(&name) {
            s.out.builtin.push(name);
        } else {
            s.out.missing_hardware.push(name);
        }
    }
    s.out.unresolved_softdeps.sort();
    s.out.unresolved_softdeps.dedup();
    Ok(s.out)
}

struct Selector<'t> {
    tree: &'t ModuleTree,
    out: Selected,
    /// On the current path (breaks softdep cycles).
    visiting: BTreeSet<String>,
    /// Already placed in `out.always`.
    ordered: BTreeSet<String>,
}

impl Selector<'_> {
    /// Adds `name` and everything it needs; with `ordered`, also appends them to the
    /// always list in load order (depth-first, dependencies first).
    fn visit(&mut self, name: &str, ordered: bool) -> Result<(), ModulesError> {
        let done = if ordered {
            self.ordered.contains(name)
        } else {
            self.out.modules.contains_key(name)
        };
        if done || self.visiting.contains(name) {
            return Ok(());
        }
        self.visiting.insert(name.to_owned());
        let selected = self.take(name)?;
        for dep in &selected.depends {
            if self.tree.modules.contains_key(dep) {
                self.visit(dep, ordered)?;
            } else if !self.tree.builtin.contains(dep) {
                return Err(ModulesError::MissingDependency {
                    module: name.to_owned(),
                    dep: dep.clone(),
                });
            }
        }
        for (_, target) in selected
            .softdeps
            .iter()
            .filter(|(w, _)| *w == SoftDepWhen::Pre)
        {
            self.visit(target, ordered)?;
        }
        if ordered && self.ordered.insert(name.to_owned()) {
            self.out.always.push(name.to_owned());
        }
        self.visiting.remove(name);
        for (_, target) in selected
            .softdeps
            .iter()
            .filter(|(w, _)| *w == SoftDepWhen::Post)
        {
            self.visit(target, ordered)?;
        }
        Ok(())
    }

    /// Records `name` in the selection (once) and returns it.
    fn take(&mut self, name: &str) -> Result<SelectedModule, ModulesError> {
        if let Some(m) = self.out.modules.get(name) {
            return Ok(m.clone());
        }
        let Some(module) = self.tree.modules.get(name) else {
            return Err(ModulesError::MissingAlways(name.to_owned()));
        };
        let info = module.info.as_ref().map_err(|e| ModulesError::BadModule {
            name: name.to_owned(),
            relpath: module.relpath.clone(),
            source: e.clone(),
        })?;
        let mut softdeps = Vec::new();
        for sd in &info.softdeps {
            let targets = self.tree.resolve(&sd.target);
            if targets.is_empty() && !self.tree.builtin.contains(&sd.target) {
                self.out
                    .unresolved_softdeps
                    .push((name.to_owned(), sd.target.clone()));
            }
            for t in targets {
                if t != name && !softdeps.iter().any(|(w, x)| *w == sd.when && x == t) {
                    softdeps.push((sd.when, t.to_owned()));
                }
            }
        }
        let m = SelectedModule {
            name: name.to_owned(),
            relpath: module.relpath.clone(),
            size_bytes: module.size_bytes,
            depends: info.depends.clone(),
            softdeps,
            aliases: info.aliases.clone(),
        };
        self.out.modules.insert(name.to_owned(), m.clone());
        Ok(m)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::modinfo::SoftDep;

    fn info(depends: &[&str], softdeps: &[(SoftDepWhen, &str)], aliases: &[&str]) -> ModInfo {
        ModInfo {
            name: None,
            depends: depends.iter().map(|s| s.to_string()).collect(),
            softdeps: softdeps
                .iter()
                .map(|(when, t)| SoftDep {
                    when: *when,
                    target: t.to_string(),
                })
                .collect(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn tree() -> ModuleTree {
        use SoftDepWhen::*;
        let m = |p: &str, i: ModInfo| (p.to_string(), 100, Ok(i));
        let files = vec![
            m("kernel/virt/lib/irqbypass.ko", info(&[], &[], &[])),
            m("kernel/arch/x86/kvm/kvm.ko", info(&["irqbypass"], &[], &[])),
            m(
                "kernel/drivers/crypto/ccp/ccp.ko",
                info(&[], &[], &["pci:v00001022d00001537sv*sd*bc*sc*i*"]),
            ),
            m(
                "kernel/arch/x86/kvm/kvm-amd.ko",
                info(
                    &["kvm", "ccp"],
                    &[],
                    &["cpu:type:x86,ven*fam*mod*:feature:*0061*"],
                ),
            ),
            m(
                "kernel/lib/libcrc32c.ko",
                info(&[], &[(Pre, "crc32c")], &[]),
            ),
            m(
                "kernel/crypto/crc32c_generic.ko",
                info(&[], &[], &["crypto-crc32c", "crc32c"]),
            ),
            m(
                "kernel/arch/x86/crypto/crc32c-intel.ko",
                info(&[], &[], &["crc32c", "crypto-crc32c-intel"]),
            ),
            m(
                "kernel/fs/ext4/ext4.ko",
                info(
                    &["jbd2", "libcrc32c"],
                    &[(Pre, "crc32c"), (Post, "nothere")],
                    &["fs-ext4"],
                ),
            ),
            m("kernel/fs/jbd2/jbd2.ko", info(&[], &[], &[])),
            m(
                "kernel/drivers/net/e1000/e1000.ko",
                info(&[], &[], &["pci:v00008086d0000100Esv*sd*bc*sc*i*"]),
            ),
            (
                "kernel/drivers/broken.ko".into(),
                5,
                Err(ModInfoError::NoModinfo),
            ),
        ];
        ModuleTree::from_modules("6.1.0-99-amd64", files, ["unix".to_string()].into()).unwrap()
    }

    fn sel(always: &[&str], hardware: &[&str]) -> Selection {
        Selection {
            always: always.iter().map(|s| s.to_string()).collect(),
            hardware: hardware.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn glob_matches_like_fnmatch() {
        assert!(glob_match(
            "pci:v00008086d*sv*",
            "pci:v00008086d0000100Esv1"
        ));
        assert!(!glob_match(
            "pci:v00008086d*sv*",
            "pci:v00008087d0000100Esv1"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a[0-9]c", "a5c"));
        assert!(!glob_match("a[!0-9]c", "a5c"));
        assert!(glob_match("a[]]c", "a]c"));
        assert!(glob_match("a[c", "a[c"));
        assert!(glob_match(
            "*0061*",
            "cpu:type:x86,ven0002fam0019mod0001:feature:,0061,"
        ));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("a*b*c", "aXbYbc"));
    }

    #[test]
    fn closes_over_depends_and_softdeps_in_load_order() {
        let t = tree();
        let s = select(&t, &sel(&["ext4", "kvm_amd"], &["e1000", "r8169"])).unwrap();
        assert_eq!(
            s.always,
            [
                "jbd2",
                "crc32c_generic",
                "crc32c_intel",
                "libcrc32c",
                "ext4",
                "irqbypass",
                "kvm",
                "ccp",
                "kvm_amd"
            ]
        );
        assert_eq!(s.modules.len(), 10);
        assert_eq!(s.missing_hardware, ["r8169"]);
        assert_eq!(
            s.unresolved_softdeps,
            [("ext4".to_string(), "nothere".to_string())]
        );
        assert_eq!(s.total_size_bytes(), 1000);
    }

    #[test]
    fn writes_the_index_as_formats_md_says() {
        let t = tree();
        let s = select(&t, &sel(&["kvm_amd"], &["e1000"])).unwrap();
        let expected = "\
petrel-modules 1
kernel 6.1.0-99-amd64
module ccp kernel/drivers/crypto/ccp/ccp.ko
module e1000 kernel/drivers/net/e1000/e1000.ko
module irqbypass kernel/virt/lib/irqbypass.ko
module kvm kernel/arch/x86/kvm/kvm.ko
module kvm_amd kernel/arch/x86/kvm/kvm-amd.ko
depends kvm irqbypass
depends kvm_amd kvm ccp
alias ccp pci:v00001022d00001537sv*sd*bc*sc*i*
alias e1000 pci:v00008086d0000100Esv*sd*bc*sc*i*
alias kvm_amd cpu:type:x86,ven*fam*mod*:feature:*0061*
always irqbypass
always kvm
always ccp
always kvm_amd
";
        assert_eq!(s.index(), expected);
        let s = select(&t, &sel(&["libcrc32c"], &[])).unwrap();
        assert!(
            s.index()
                .contains("\nsoftdep libcrc32c pre crc32c_generic crc32c_intel\n")
        );
    }

    #[test]
    fn reports_missing_and_broken_modules() {
        let t = tree();
        assert!(matches!(
            select(&t, &sel(&["vfat"], &[])),
            Err(ModulesError::MissingAlways(n)) if n == "vfat"
        ));
        assert!(matches!(
            select(&t, &sel(&["broken"], &[])),
            Err(ModulesError::BadModule { .. })
        ));
        let s = select(&t, &sel(&["unix"], &[])).unwrap();
        assert_eq!(s.builtin, ["unix"]);
        let files = vec![("kernel/a.ko".to_string(), 1, Ok(info(&["b"], &[], &[])))];
        let t = ModuleTree::from_modules("k", files, BTreeSet::new()).unwrap();
        assert!(matches!(
            select(&t, &sel(&[], &["a"])),
            Err(ModulesError::MissingDependency { .. })
        ));
    }

    #[test]
    fn rejects_duplicate_names_and_bad_paths() {
        let m = |p: &str| (p.to_string(), 1, Ok(ModInfo::default()));
        assert!(matches!(
            ModuleTree::from_modules("k", vec![m("a/x-y.ko"), m("b/x_y.ko")], BTreeSet::new()),
            Err(ModulesError::Duplicate { .. })
        ));
        assert!(matches!(
            ModuleTree::from_modules("k", vec![m("a b.ko")], BTreeSet::new()),
            Err(ModulesError::BadPath(_))
        ));
    }
}
