//! The module index `/lib/modules/KVER/petrel.modules` (format in `docs/formats.md`),
//! written by `petrel-image`, parsed here without I/O.
//!
//! Parsing is lenient where the format may grow (unknown record kinds and malformed lines
//! are reported as warnings and skipped, so an older init still boots a newer index) and
//! strict where it must be: the header, and records that name no module.

use std::collections::BTreeMap;

use super::glob;

/// The index's first line.
pub const INDEX_MAGIC: &str = "petrel-modules";
/// The index format version this parser reads.
pub const INDEX_VERSION: u32 = 1;
/// Upper bound on the index size we accept (a full Debian module set is well below).
pub const INDEX_MAX_BYTES: usize = 16 << 20;

/// One module: where its file is and what must be loaded around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Path relative to `/lib/modules/KVER`.
    pub path: String,
    /// Hard dependencies (`depends=`), loaded first.
    pub depends: Vec<String>,
    /// Soft dependencies loaded before (`softdep=pre:`), by module name or alias.
    pub pre: Vec<String>,
    /// Soft dependencies loaded after (`softdep=post:`), by module name or alias.
    pub post: Vec<String>,
}

/// An `alias` record: a modalias glob and the module it requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The glob (`*`, `?`, `[..]`).
    pub pattern: String,
    /// The pattern's bytes before its first wildcard, for a quick reject.
    prefix_len: usize,
    /// The module name.
    pub module: String,
}

impl Alias {
    /// A new alias record.
    pub fn new(pattern: &str, module: &str) -> Alias {
        Alias {
            pattern: pattern.to_owned(),
            prefix_len: glob::literal_prefix(pattern.as_bytes()).len(),
            module: module.to_owned(),
        }
    }

    /// Whether the modalias `text` matches this alias.
    pub fn matches(&self, text: &str) -> bool {
        let p = self.pattern.as_bytes();
        let prefix = p.get(..self.prefix_len).unwrap_or(p);
        text.as_bytes().starts_with(prefix) && glob::matches(p, text.as_bytes())
    }
}

/// The parsed index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    /// The kernel release the index was written for (`uname -r`).
    pub kernel: String,
    /// Every module by name (`_`, never `-`).
    pub modules: BTreeMap<String, ModuleInfo>,
    /// Every alias record, in file order.
    pub aliases: Vec<Alias>,
    /// The always-needed set, in file order.
    pub always: Vec<String>,
}

/// Why an index cannot be used at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The first line is not `petrel-modules 1`.
    #[error("not a petrel module index (first line {0:?})")]
    BadHeader(String),
    /// The header names a version this init does not read.
    #[error("module index version {0} (this init reads {INDEX_VERSION})")]
    Version(String),
    /// The file exceeds [`INDEX_MAX_BYTES`].
    #[error("module index of {0} bytes is too large")]
    TooLarge(usize),
}

/// A parsed index and the lines that were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The index.
    pub index: ModuleIndex,
    /// One message per skipped line (`line N: why`).
    pub warnings: Vec<String>,
}

/// Module names use `_`; `.modinfo` and people sometimes write `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl ModuleIndex {
    /// Parses the index text.
    pub fn parse(text: &str) -> Result<Parsed, IndexError> {
        if text.len() > INDEX_MAX_BYTES {
            return Err(IndexError::TooLarge(text.len()));
        }
        let mut lines = text.lines().enumerate();
        let header = lines
            .by_ref()
            .map(|(_, l)| strip_comment(l))
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        let mut words = header.split_ascii_whitespace();
        if words.next() != Some(INDEX_MAGIC) {
            return Err(IndexError::BadHeader(header.chars().take(64).collect()));
        }
        match words.next() {
            Some(v) if v.parse::<u32>() == Ok(INDEX_VERSION) => {}
            other => return Err(IndexError::Version(other.unwrap_or("").to_owned())),
        }

        let mut index = ModuleIndex::default();
        let mut warnings = Vec::new();
        // Records for modules that appear later in the file (sorted by kind, not name).
        let mut pending: Vec<(usize, &str, Vec<&str>)> = Vec::new();
        for (n, raw) in lines {
            let line = strip_comment(raw);
            if line.is_empty() {
                continue;
            }
            let mut w = line.split_ascii_whitespace();
            let kind = w.next().unwrap_or_default();
            let args: Vec<&str> = w.collect();
            match (kind, args.as_slice()) {
                ("kernel", [release]) => index.kernel = (*release).to_owned(),
                ("module", [name, path]) => {
                    let entry = index.modules.entry(normalize(name)).or_default();
                    entry.path = (*path).to_owned();
                }
                ("depends" | "softdep", [_, _, ..]) => pending.push((n + 1, kind, args)),
                ("alias", [name, pattern]) => {
                    index.aliases.push(Alias::new(pattern, &normalize(name)))
                }
                ("always", [name]) => index.always.push(normalize(name)),
                ("kernel" | "module" | "depends" | "softdep" | "alias" | "always", _) => {
                    warnings.push(format!("line {}: malformed {kind} record", n + 1));
                }
                _ => warnings.push(format!("line {}: unknown record {kind:?}", n + 1)),
            }
        }
        for (line, kind, args) in pending {
            let Some((name, rest)) = args.split_first() else {
                continue;
            };
            let Some(info) = index.modules.get_mut(&normalize(name)) else {
                warnings.push(format!("line {line}: {kind} for unknown module {name}"));
                continue;
            };
            match (kind, rest) {
                ("depends", deps) => info.depends.extend(deps.iter().map(|d| normalize(d))),
                ("softdep", [when, mods @ ..]) if *when == "pre" => {
                    info.pre.extend(mods.iter().map(|d| normalize(d)));
                }
                ("softdep", [when, mods @ ..]) if *when == "post" => {
                    info.post.extend(mods.iter().map(|d| normalize(d)));
                }
                _ => warnings.push(format!("line {line}: malformed {kind} record")),
            }
        }
        for name in &index.always {
            if !index.modules.contains_key(name) {
                warnings.push(format!("always: unknown module {name}"));
            }
        }
        Ok(Parsed { index, warnings })
    }

    /// The modules whose aliases match the modalias `text`, each once, in index order.
    pub fn lookup(&self, text: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in &self.aliases {
            if !out.contains(&a.module.as_str()) && a.matches(text) {
                out.push(&a.module);
            }
        }
        out
    }
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = "\
# written by petrel-image
petrel-modules 1
kernel 6.1.0-28-amd64
module bridge kernel/net/bridge/bridge.ko
module crc32c_generic kernel/crypto/crc32c_generic.ko
module kvm kernel/arch/x86/kvm/kvm.ko
module kvm_amd kernel/arch/x86/kvm/kvm-amd.ko
module libcrc32c kernel/lib/libcrc32c.ko
module llc kernel/net/llc/llc.ko
module stp kernel/net/802/stp.ko
module virtio_net kernel/drivers/net/virtio_net.ko
depends bridge stp llc
depends kvm_amd kvm
depends stp llc
softdep libcrc32c pre crc32c
alias crc32c_generic crc32c
alias crc32c_generic crypto-crc32c
alias virtio_net virtio:d00000001v*
always kvm_amd
always bridge
";

    #[test]
    fn parses_sample() {
        let p = ModuleIndex::parse(SAMPLE).unwrap();
        assert_eq!(p.warnings, Vec::<String>::new());
        let i = p.index;
        assert_eq!(i.kernel, "6.1.0-28-amd64");
        assert_eq!(i.modules.len(), 8);
        assert_eq!(i.modules["bridge"].depends, ["stp", "llc"]);
        assert_eq!(i.modules["kvm_amd"].path, "kernel/arch/x86/kvm/kvm-amd.ko");
        assert_eq!(i.modules["libcrc32c"].pre, ["crc32c"]);
        assert_eq!(i.always, ["kvm_amd", "bridge"]);
        assert_eq!(i.lookup("virtio:d00000001v00001AF4"), ["virtio_net"]);
        assert_eq!(i.lookup("crc32c"), ["crc32c_generic"]);
        assert!(i.lookup("virtio:d00000002v00001AF4").is_empty());
    }

    #[test]
    fn header_is_checked() {
        assert!(matches!(
            ModuleIndex::parse(""),
            Err(IndexError::BadHeader(_))
        ));
        assert!(matches!(
            ModuleIndex::parse("hello 1\n"),
            Err(IndexError::BadHeader(_))
        ));
        assert!(matches!(
            ModuleIndex::parse("petrel-modules 2\n"),
            Err(IndexError::Version(_))
        ));
        assert!(matches!(
            ModuleIndex::parse("petrel-modules\n"),
            Err(IndexError::Version(_))
        ));
        assert!(ModuleIndex::parse("# c\n\npetrel-modules 1 # x\n").is_ok());
    }

    #[test]
    fn bad_lines_are_warnings() {
        let text = "petrel-modules 1\nmodule a a.ko\nmodule b\nfrobnicate x\n\
                    depends zz a\nsoftdep a sideways b\nalways q\nsoftdep a post b-c\n";
        let p = ModuleIndex::parse(text).unwrap();
        assert_eq!(p.warnings.len(), 5, "{:?}", p.warnings);
        assert_eq!(p.index.modules["a"].post, ["b_c"]);
    }
}
