//! A kernel module's `.modinfo` section: NUL-separated `key=value` strings written by
//! `modpost` (`name=`, `depends=`, `softdep=`, `alias=`, `license=`, …).
//!
//! Debian's kernel package ships no `modules.dep`, so this is where dependencies come
//! from. The bytes come from a downloaded package and are treated as untrusted: the ELF
//! reader checks every range, and every name that ends up in the module index (a
//! space-separated text file) is checked to contain no whitespace or control character.
//! Memory use is bounded by the input's size.

use thiserror::Error;

use crate::elf::{Elf, ElfError};

/// When a soft dependency loads, relative to the module that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SoftDepWhen {
    /// Before the module (`softdep=pre: …`).
    Pre,
    /// After the module (`softdep=post: …`).
    Post,
}

impl SoftDepWhen {
    /// The word used in `softdep=` and in the module index.
    pub fn as_str(self) -> &'static str {
        match self {
            SoftDepWhen::Pre => "pre",
            SoftDepWhen::Post => "post",
        }
    }
}

/// One soft dependency: a module name or an alias to load before or after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SoftDep {
    /// Before or after.
    pub when: SoftDepWhen,
    /// A module name (normalised, `-` → `_`) or an alias such as `crc32c`.
    pub target: String,
}

/// What the module index needs from one `.modinfo` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, normalised (`-` → `_`), when present.
    pub name: Option<String>,
    /// `depends=`, normalised, in the order given.
    pub depends: Vec<String>,
    /// Every `softdep=`, in the order given.
    pub softdeps: Vec<SoftDep>,
    /// Every `alias=` (modalias globs), in the order given.
    pub aliases: Vec<String>,
}

/// Why a module's `.modinfo` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModInfoError {
    /// The file is not a readable ELF64 object.
    #[error("bad ELF object")]
    Elf(#[from] ElfError),
    /// The object has no `.modinfo` section: not a kernel module.
    #[error("no .modinfo section (not a kernel module)")]
    NoModinfo,
    /// A `key=value` entry we rely on is not UTF-8 or has a character the index cannot
    /// carry (whitespace, control characters).
    #[error("bad {key}= entry in .modinfo")]
    BadEntry {
        /// The key of the entry.
        key: &'static str,
    },
}

/// Normalises a module name the way the kernel does (`-` and `_` are equal).
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Whether `s` can stand as one field of the module index: non-empty, printable ASCII,
/// no whitespace.
pub fn is_index_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic())
}

const KEYS: [&str; 4] = ["name", "depends", "softdep", "alias"];

impl ModInfo {
    /// Reads the `.modinfo` section of a module file.
    pub fn from_elf(bytes: &[u8]) -> Result<Self, ModInfoError> {
        let elf = Elf::parse(bytes)?;
        let section = elf.section(".modinfo")?.ok_or(ModInfoError::NoModinfo)?;
        Self::parse(section)
    }

    /// Parses the contents of a `.modinfo` section.
    pub fn parse(section: &[u8]) -> Result<Self, ModInfoError> {
        let mut info = ModInfo::default();
        for entry in section.split(|&c| c == 0).filter(|e| !e.is_empty()) {
            let Some(eq) = entry.iter().position(|&c| c == b'=') else {
                continue; // not key=value: padding or a tool's oddity; nothing we need
            };
            let (key, value) = (&entry[..eq], &entry[eq + 1..]);
            let Some(key) = KEYS.iter().copied().find(|k| k.as_bytes() == key) else {
                continue;
            };
            let value = std::str::from_utf8(value).map_err(|_| ModInfoError::BadEntry { key })?;
            match key {
                "name" => {
                    if !is_index_token(value) {
                        return Err(ModInfoError::BadEntry { key });
                    }
                    info.name = Some(normalize_name(value));
                }
                "depends" => {
                    for dep in value.split(',').filter(|d| !d.is_empty()) {
                        if !is_index_token(dep) {
                            return Err(ModInfoError::BadEntry { key });
                        }
                        info.depends.push(normalize_name(dep));
                    }
                }
                "softdep" => parse_softdep(value, &mut info.softdeps)?,
                _ => {
                    if !is_index_token(value) {
                        return Err(ModInfoError::BadEntry { key });
                    }
                    info.aliases.push(value.to_owned());
                }
            }
        }
        Ok(info)
    }
}

/// `pre: a b post: c` (the syntax of modprobe.d's `softdep`, without the module name).
fn parse_softdep(value: &str, out: &mut Vec<SoftDep>) -> Result<(), ModInfoError> {
    let mut when = None;
    for word in value.split_ascii_whitespace() {
        match word {
            "pre:" => when = Some(SoftDepWhen::Pre),
            "post:" => when = Some(SoftDepWhen::Post),
            target => {
                // A name before any `pre:`/`post:` (cifs has `softdep=gcm`): kmod skips
                // it with a warning, and so do we.
                let Some(when) = when else {
                    continue;
                };
                if !is_index_token(target) {
                    return Err(ModInfoError::BadEntry { key: "softdep" });
                }
                out.push(SoftDep {
                    when,
                    target: normalize_name(target),
                });
            }
        }
    }
    Ok(())
}

/// Fuzz entry point (target `modinfo`): parses arbitrary bytes as a module file and as a
/// bare section, and checks the invariants every accepted result must hold. Panics only
/// on a broken invariant, which is a bug.
pub fn fuzz_check(bytes: &[u8]) {
    for info in [ModInfo::from_elf(bytes), ModInfo::parse(bytes)]
        .into_iter()
        .flatten()
    {
        let names = info
            .name
            .iter()
            .chain(&info.depends)
            .chain(info.softdeps.iter().map(|s| &s.target));
        for name in names {
            assert!(is_index_token(name), "bad name {name:?}");
            assert!(!name.contains('-'), "name not normalised: {name:?}");
        }
        for alias in &info.aliases {
            assert!(is_index_token(alias), "bad alias {alias:?}");
        }
        let total: usize = info.aliases.iter().map(String::len).sum::<usize>()
            + info.depends.iter().map(String::len).sum::<usize>();
        assert!(total <= bytes.len(), "more output than input");
    }
    if let Ok(elf) = Elf::parse(bytes) {
        for i in 0..elf.section_count() {
            if let Some(h) = elf.section_header(i) {
                let _ = elf.section_name(&h);
            }
        }
        let _ = elf.needs_interpreter();
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::elf::tests::object;

    const KVM_AMD: &[u8] =
        b"license=GPL\0author=Qumranet\0\0\0alias=cpu:type:x86,ven*fam*mod*:feature:*0061*\0\
depends=kvm,ccp\0retpoline=Y\0intree=Y\0name=kvm_amd\0vermagic=6.1.0 SMP mod_unload\0";

    #[test]
    fn parses_a_realistic_section() {
        let info = ModInfo::parse(KVM_AMD).unwrap();
        assert_eq!(info.name.as_deref(), Some("kvm_amd"));
        assert_eq!(info.depends, ["kvm", "ccp"]);
        assert_eq!(info.aliases, ["cpu:type:x86,ven*fam*mod*:feature:*0061*"]);
        assert!(info.softdeps.is_empty());
    }

    #[test]
    fn parses_softdeps_and_normalises_names() {
        let s = b"softdep=pre: crc32c\0softdep=pre: a-b post: c d\0depends=\0name=crc32c-intel\0";
        let info = ModInfo::parse(s).unwrap();
        let pre = |t: &str| SoftDep {
            when: SoftDepWhen::Pre,
            target: t.into(),
        };
        let post = |t: &str| SoftDep {
            when: SoftDepWhen::Post,
            target: t.into(),
        };
        assert_eq!(
            info.softdeps,
            [pre("crc32c"), pre("a_b"), post("c"), post("d")]
        );
        assert!(info.depends.is_empty());
        assert_eq!(info.name.as_deref(), Some("crc32c_intel"));
    }

    #[test]
    fn rejects_what_the_index_cannot_carry() {
        assert_eq!(
            ModInfo::parse(b"alias=pci:v a\0"),
            Err(ModInfoError::BadEntry { key: "alias" })
        );
        assert_eq!(
            ModInfo::parse(b"depends=a,b\nc\0"),
            Err(ModInfoError::BadEntry { key: "depends" })
        );
        assert_eq!(
            ModInfo::parse(b"name=\xff\0"),
            Err(ModInfoError::BadEntry { key: "name" })
        );
        // As kmod: a softdep word before any pre:/post: is skipped.
        assert_eq!(ModInfo::parse(b"softdep=gcm\0").unwrap().softdeps, []);
        // Keys we do not use may hold anything.
        assert!(ModInfo::parse(b"description=\xff\xfe with spaces\0junk\0").is_ok());
    }

    #[test]
    fn reads_the_section_from_a_module_file() {
        let ko = object(&[(".text", b"\xc3"), (".modinfo", KVM_AMD)]);
        let info = ModInfo::from_elf(&ko).unwrap();
        assert_eq!(info.depends, ["kvm", "ccp"]);
        let not_ko = object(&[(".text", b"\xc3")]);
        assert_eq!(ModInfo::from_elf(&not_ko), Err(ModInfoError::NoModinfo));
        for len in 0..ko.len() {
            fuzz_check(&ko[..len]);
        }
    }
}
