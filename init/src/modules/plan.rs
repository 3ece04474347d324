//! Load order: which modules to load, in which order, for a request — pure.
//!
//! For each requested module: its `softdep pre` modules, its `depends`, the module
//! itself, then its `softdep post` modules, each recursively and each once. A soft
//! dependency may name an alias (`libcrc32c` has `pre: crc32c`); it resolves to every
//! module with that alias, as modprobe does. Cycles (the kernel's `depends` never has
//! them, softdeps can) are broken at the edge that closes them, with a warning.
//!
//! [`Plan::next_ready`] tells a parallel loader which module may start as soon as the
//! ones it needs have finished.

use std::collections::{BTreeMap, BTreeSet};

use super::index::ModuleIndex;

/// An ordered list of modules to load, and what was odd about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Module names, dependencies first; none of them in the `done` set.
    pub order: Vec<String>,
    /// Unknown names, broken cycles.
    pub warnings: Vec<String>,
    /// For each module, the modules of `order` that must be loaded before it (its
    /// dependencies, its pre softdeps, and the module whose post softdep it is).
    pub after: BTreeMap<String, BTreeSet<String>>,
}

impl Plan {
    /// The next module a loader may start, given those `started` already (running or
    /// done) and those `finished`: the first of `order` not started whose every
    /// predecessor that comes earlier in `order` has finished. (A broken cycle's back
    /// edge points later in the order and is ignored.) `None` when nothing may start now.
    pub fn next_ready(
        &self,
        started: &BTreeSet<String>,
        finished: &BTreeSet<String>,
    ) -> Option<&str> {
        self.order
            .iter()
            .enumerate()
            .find(|(i, m)| {
                !started.contains(*m)
                    && self.after.get(*m).into_iter().flatten().all(|p| {
                        finished.contains(p)
                            || !self
                                .order
                                .get(..*i)
                                .is_some_and(|before| before.contains(p))
                    })
            })
            .map(|(_, m)| m.as_str())
    }
}

/// Plans the loading of `requested` (module names or aliases), skipping `done` (modules
/// loaded or tried already).
pub fn plan<S: AsRef<str>>(index: &ModuleIndex, requested: &[S], done: &BTreeSet<String>) -> Plan {
    let mut p = Planner {
        index,
        done,
        visiting: BTreeSet::new(),
        plan: Plan::default(),
    };
    for r in requested {
        p.request(r.as_ref(), None);
    }
    // Edges to modules loaded before this plan are no constraint.
    let placed: BTreeSet<&String> = p.plan.order.iter().collect();
    for preds in p.plan.after.values_mut() {
        preds.retain(|m| placed.contains(m));
    }
    p.plan
}

struct Planner<'a> {
    index: &'a ModuleIndex,
    done: &'a BTreeSet<String>,
    visiting: BTreeSet<String>,
    plan: Plan,
}

impl Planner<'_> {
    /// Resolves a name or alias, visits each module it names, and returns them.
    fn request(&mut self, name: &str, from: Option<&str>) -> Vec<String> {
        if self.index.modules.contains_key(name) {
            self.visit(name);
            return vec![name.to_owned()];
        }
        let targets: Vec<String> = self
            .index
            .lookup(name)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if targets.is_empty() {
            let msg = match from {
                Some(f) => format!("{f}: needs {name}, which is not in the index"),
                None => format!("{name}: not in the index"),
            };
            self.plan.warnings.push(msg);
        }
        for t in &targets {
            self.visit(t);
        }
        targets
    }

    fn visit(&mut self, name: &str) {
        if self.done.contains(name) || self.plan.order.iter().any(|m| m == name) {
            return;
        }
        if self.visiting.contains(name) {
            self.plan
                .warnings
                .push(format!("{name}: dependency cycle, broken here"));
            return;
        }
        let Some(info) = self.index.modules.get(name) else {
            return;
        };
        self.visiting.insert(name.to_owned());
        for d in info.pre.iter().chain(&info.depends) {
            let before = self.request(d, Some(name));
            self.plan
                .after
                .entry(name.to_owned())
                .or_default()
                .extend(before);
        }
        self.visiting.remove(name);
        // A cycle through a post softdep may have placed us already.
        if !self.plan.order.iter().any(|m| m == name) {
            self.plan.order.push(name.to_owned());
        }
        for d in &info.post {
            for t in self.request(d, Some(name)) {
                self.plan
                    .after
                    .entry(t)
                    .or_default()
                    .insert(name.to_owned());
            }
        }
    }
}

/// The CPU vendor's KVM module wins; the other vendor's is skipped (it would fail anyway).
pub fn wrong_kvm_vendor(module: &str, cpu_vendor: &str) -> bool {
    match module {
        "kvm_amd" => cpu_vendor == "GenuineIntel",
        "kvm_intel" => matches!(cpu_vendor, "AuthenticAMD" | "HygonGenuine"),
        _ => false,
    }
}

/// The `vendor_id` of the first CPU in `/proc/cpuinfo` text.
pub fn cpu_vendor(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "vendor_id").then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::index::ModuleIndex;

    fn idx(text: &str) -> ModuleIndex {
        ModuleIndex::parse(&format!("petrel-modules 1\n{text}"))
            .unwrap()
            .index
    }

    fn order(index: &ModuleIndex, req: &[&str]) -> Vec<String> {
        plan(index, req, &BTreeSet::new()).order
    }

    #[test]
    fn depends_first_each_once() {
        let i = idx(
            "module bridge b.ko\nmodule stp s.ko\nmodule llc l.ko\nmodule tun t.ko\n\
                     depends bridge stp llc\ndepends stp llc\n",
        );
        assert_eq!(
            order(&i, &["bridge", "tun", "stp"]),
            ["llc", "stp", "bridge", "tun"]
        );
        let done = BTreeSet::from(["llc".to_owned()]);
        assert_eq!(plan(&i, &["bridge"], &done).order, ["stp", "bridge"]);
    }

    #[test]
    fn kvm_chain() {
        let i = idx(
            "module irqbypass i.ko\nmodule kvm k.ko\nmodule ccp c.ko\nmodule kvm_amd a.ko\n\
                     depends kvm irqbypass\ndepends kvm_amd kvm ccp\n",
        );
        assert_eq!(
            order(&i, &["kvm_amd"]),
            ["irqbypass", "kvm", "ccp", "kvm_amd"]
        );
    }

    #[test]
    fn softdeps_pre_post_and_aliases() {
        let i = idx(
            "module libcrc32c l.ko\nmodule crc32c_generic g.ko\nmodule crc32c_intel i.ko\n\
                     module a a.ko\nmodule p p.ko\nmodule q q.ko\n\
                     softdep libcrc32c pre crc32c\nsoftdep a pre p\nsoftdep a post q\n\
                     alias crc32c_intel crc32c\nalias crc32c_generic crc32c\n",
        );
        assert_eq!(
            order(&i, &["libcrc32c"]),
            ["crc32c_intel", "crc32c_generic", "libcrc32c"]
        );
        assert_eq!(order(&i, &["a"]), ["p", "a", "q"]);
        // A request by alias.
        assert_eq!(order(&i, &["crc32c"]), ["crc32c_intel", "crc32c_generic"]);
    }

    #[test]
    fn cycles_are_broken_with_a_warning() {
        let i = idx("module a a.ko\nmodule b b.ko\nsoftdep a pre b\nsoftdep b pre a\n");
        let p = plan(&i, &["a"], &BTreeSet::new());
        assert_eq!(p.order, ["b", "a"]);
        assert_eq!(p.warnings.len(), 1);
        let i = idx("module a a.ko\nmodule b b.ko\nsoftdep a post b\nsoftdep b pre a\n");
        assert_eq!(order(&i, &["a"]), ["a", "b"]);
        let i = idx("module a a.ko\nmodule b b.ko\ndepends a b\nsoftdep b post a\n");
        assert_eq!(order(&i, &["a"]), ["b", "a"]);
        let i = idx("module a a.ko\ndepends a a\n");
        assert_eq!(order(&i, &["a"]), ["a"]);
    }

    #[test]
    fn unknown_names_warn() {
        let i = idx("module a a.ko\ndepends a missing\n");
        let p = plan(&i, &["a", "nothere"], &BTreeSet::new());
        assert_eq!(p.order, ["a"]);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    }

    /// Simulates a loader with unlimited threads where every load takes one tick;
    /// returns the modules started at each tick.
    fn ticks(p: &Plan) -> Vec<Vec<String>> {
        let (mut started, mut finished) = (BTreeSet::new(), BTreeSet::new());
        let mut out = Vec::new();
        while finished.len() < p.order.len() {
            let mut now = Vec::new();
            while let Some(m) = p.next_ready(&started, &finished) {
                started.insert(m.to_owned());
                now.push(m.to_owned());
            }
            assert!(!now.is_empty(), "stuck: {p:?}");
            finished.extend(now.iter().cloned());
            out.push(now);
        }
        out
    }

    fn waves(index: &ModuleIndex, req: &[&str]) -> Vec<Vec<String>> {
        ticks(&plan(index, req, &BTreeSet::new()))
    }

    #[test]
    fn parallel_schedule() {
        let i = idx(
            "module irqbypass i.ko\nmodule kvm k.ko\nmodule ccp c.ko\nmodule kvm_amd a.ko\n\
                     module virtio_ring r.ko\nmodule virtio v.ko\nmodule virtio_pci p.ko\nmodule tun t.ko\n\
                     depends kvm irqbypass\ndepends kvm_amd kvm ccp\ndepends virtio virtio_ring\n\
                     depends virtio_pci virtio virtio_ring\n",
        );
        assert_eq!(
            waves(&i, &["kvm_amd", "virtio_pci", "tun"]),
            [
                vec!["irqbypass", "ccp", "virtio_ring", "tun"],
                vec!["kvm", "virtio"],
                vec!["kvm_amd", "virtio_pci"]
            ]
        );
        // Nothing starts before what it needs has finished.
        let p = plan(&i, &["kvm_amd"], &BTreeSet::new());
        let started = BTreeSet::from(["irqbypass".to_owned(), "ccp".to_owned()]);
        assert_eq!(p.next_ready(&started, &BTreeSet::new()), None);
        assert_eq!(
            p.next_ready(&started, &BTreeSet::from(["irqbypass".to_owned()])),
            Some("kvm")
        );
        // Softdeps: pre before, post after; aliases resolved.
        let i = idx(
            "module a a.ko\nmodule p p.ko\nmodule q q.ko\nmodule g g.ko\n\
                     softdep a pre p crc\nsoftdep a post q\nalias g crc\n",
        );
        assert_eq!(waves(&i, &["a"]), [vec!["p", "g"], vec!["a"], vec!["q"]]);
        // A broken cycle never deadlocks.
        let i = idx("module a a.ko\nmodule b b.ko\nsoftdep a pre b\nsoftdep b pre a\n");
        assert_eq!(waves(&i, &["a"]), [vec!["b"], vec!["a"]]);
        let i = idx(
            "module a a.ko\nmodule b b.ko\nmodule c c.ko\nsoftdep a pre b\nsoftdep b pre c\nsoftdep c pre a\n",
        );
        assert_eq!(waves(&i, &["a"]).concat().len(), 3);
        // Modules loaded before are no constraint.
        let i = idx("module a a.ko\nmodule b b.ko\ndepends b a\n");
        let p = plan(&i, &["b"], &BTreeSet::from(["a".to_owned()]));
        assert_eq!(ticks(&p), [vec!["b"]]);
    }

    #[test]
    fn vendor() {
        let amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
        assert_eq!(cpu_vendor(amd), Some("AuthenticAMD"));
        assert_eq!(cpu_vendor("nothing"), None);
        assert!(wrong_kvm_vendor("kvm_intel", "AuthenticAMD"));
        assert!(!wrong_kvm_vendor("kvm_amd", "AuthenticAMD"));
        assert!(wrong_kvm_vendor("kvm_amd", "GenuineIntel"));
        assert!(!wrong_kvm_vendor("tun", "GenuineIntel"));
    }
}
