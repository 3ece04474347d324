//! Load order: which modules to load, in which order, for a request — pure.
//!
//! For each requested module: its `softdep pre` modules, its `depends`, the module
//! itself, then its `softdep post` modules, each recursively and each once. A soft
//! dependency may name an alias (`libcrc32c` has `pre: crc32c`); it resolves to every
//! module with that alias, as modprobe does. Cycles (the kernel's `depends` never has
//! them, softdeps can) are broken at the edge that closes them, with a warning.

use std::collections::BTreeSet;

use super::index::ModuleIndex;

/// An ordered list of modules to load, and what was odd about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Module names, dependencies first; none of them in the `done` set.
    pub order: Vec<String>,
    /// Unknown names, broken cycles.
    pub warnings: Vec<String>,
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
    p.plan
}

struct Planner<'a> {
    index: &'a ModuleIndex,
    done: &'a BTreeSet<String>,
    visiting: BTreeSet<String>,
    plan: Plan,
}

impl Planner<'_> {
    /// Resolves a name or alias and visits each module it names.
    fn request(&mut self, name: &str, from: Option<&str>) {
        if self.index.modules.contains_key(name) {
            self.visit(name);
            return;
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
        for t in targets {
            self.visit(&t);
        }
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
        for d in &info.pre {
            self.request(d, Some(name));
        }
        for d in &info.depends {
            self.request(d, Some(name));
        }
        self.visiting.remove(name);
        // A cycle through a post softdep may have placed us already.
        if !self.plan.order.iter().any(|m| m == name) {
            self.plan.order.push(name.to_owned());
        }
        for d in &info.post {
            self.request(d, Some(name));
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
