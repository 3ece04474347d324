//! The EFI variables systemd-boot sets for the OS, decoded without I/O, and the boot
//! counter in a UKI's file name (systemd's boot counting, DESIGN §2).
//!
//! An efivarfs file is 4 attribute bytes followed by the value; systemd-boot's string
//! variables are UTF-16LE, usually NUL-terminated.

use crate::gpt::Guid;

/// The vendor GUID of systemd-boot's loader variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Where efivarfs is mounted.
pub const EFIVARS_DIR: &str = "/sys/firmware/efi/efivars";
/// Largest variable we read.
pub const EFIVAR_MAX_BYTES: usize = 4096;

/// The efivarfs path of systemd-boot's variable `name`.
pub fn loader_var_path(name: &str) -> String {
    format!("{EFIVARS_DIR}/{name}-{LOADER_GUID}")
}

/// Decodes a UTF-16LE string variable as read from efivarfs (attributes first).
pub fn decode_string(file: &[u8]) -> Option<String> {
    if file.len() > EFIVAR_MAX_BYTES {
        return None;
    }
    let units: Vec<u16> = file
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// `LoaderDevicePartUUID`: the partition GUID of the ESP the loader was started from.
pub fn decode_part_uuid(file: &[u8]) -> Option<Guid> {
    Guid::parse(&decode_string(file)?)
}

/// `LoaderBootCountPath` (`\EFI\Linux\petrel-1.2+2-1.efi`) as a path relative to the
/// ESP's root (`EFI/Linux/petrel-1.2+2-1.efi`); `None` for anything that would leave it.
pub fn esp_relative_path(loader_path: &str) -> Option<String> {
    let parts: Vec<&str> = loader_path
        .split(['\\', '/'])
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return None;
    }
    Some(parts.join("/"))
}

/// A boot counter: `+LEFT` or `+LEFT-DONE` before the `.efi` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCounter {
    /// Tries left.
    pub left: u32,
    /// Tries done (failed boots so far).
    pub done: u32,
}

/// The boot counter in a UKI's file name, if it has one (`petrel-1.2+2-1.efi` → 2 left,
/// 1 done; `petrel-1.2.efi` → none). Parsed as systemd-boot does: the last `+` of the
/// name without its `.efi` suffix, then digits, optionally `-` and digits, then the end.
pub fn boot_counter(file_name: &str) -> Option<BootCounter> {
    let stem = file_name.get(..file_name.len().checked_sub(4)?)?;
    if !file_name.get(stem.len()..)?.eq_ignore_ascii_case(".efi") {
        return None;
    }
    let (_, counter) = stem.rsplit_once('+')?;
    let digits = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match counter.split_once('-') {
        Some((l, d)) => Some(BootCounter {
            left: digits(l)?,
            done: digits(d)?,
        }),
        None => Some(BootCounter {
            left: digits(counter)?,
            done: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(s: &str, nul: bool) -> Vec<u8> {
        let mut v = vec![6, 0, 0, 0];
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        if nul {
            v.extend_from_slice(&[0, 0]);
        }
        v
    }

    #[test]
    fn decodes_variables() {
        let g = "8F2A5E3C-0A1B-4C2D-9E8F-1A2B3C4D5E6F";
        assert_eq!(
            decode_part_uuid(&var(g, true))
                .map(|g| g.to_string())
                .as_deref(),
            Some(g)
        );
        assert_eq!(
            decode_part_uuid(&var(&g.to_lowercase(), false))
                .map(|g| g.to_string())
                .as_deref(),
            Some(g)
        );
        assert_eq!(decode_part_uuid(&var("nonsense", true)), None);
        assert_eq!(decode_string(&[6, 0, 0]), None);
        assert_eq!(decode_string(&[6, 0, 0, 0]).as_deref(), Some(""));
        // An odd trailing byte is ignored; unpaired surrogates are refused.
        assert_eq!(
            decode_string(&[6, 0, 0, 0, b'a', 0, b'b']).as_deref(),
            Some("a")
        );
        assert_eq!(decode_string(&[6, 0, 0, 0, 0x00, 0xD8]), None);
        assert_eq!(decode_string(&vec![0; EFIVAR_MAX_BYTES + 1]), None);
    }

    #[test]
    fn loader_paths() {
        assert_eq!(
            esp_relative_path("\\EFI\\Linux\\petrel-1.2+2-1.efi").as_deref(),
            Some("EFI/Linux/petrel-1.2+2-1.efi")
        );
        assert_eq!(esp_relative_path("\\EFI\\..\\x"), None);
        assert_eq!(esp_relative_path("\\"), None);
        assert_eq!(
            loader_var_path("LoaderDevicePartUUID"),
            "/sys/firmware/efi/efivars/LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
        );
    }

    #[test]
    fn counters() {
        assert_eq!(
            boot_counter("petrel-1.2+2-1.efi"),
            Some(BootCounter { left: 2, done: 1 })
        );
        assert_eq!(
            boot_counter("petrel-1.2+3.efi"),
            Some(BootCounter { left: 3, done: 0 })
        );
        assert_eq!(
            boot_counter("petrel+0-3.EFI"),
            Some(BootCounter { left: 0, done: 3 })
        );
        assert_eq!(
            boot_counter("a+b+1.efi"),
            Some(BootCounter { left: 1, done: 0 })
        );
        assert_eq!(boot_counter("petrel-1.2.efi"), None);
        assert_eq!(boot_counter("petrel-1.2+.efi"), None);
        assert_eq!(boot_counter("petrel-1.2+1-.efi"), None);
        assert_eq!(boot_counter("petrel+1-2-3.efi"), None);
        assert_eq!(boot_counter("petrel+x.efi"), None);
        assert_eq!(boot_counter("petrel+1.conf"), None);
        assert_eq!(boot_counter("+1"), None);
        assert_eq!(boot_counter(".efi"), None);
        assert_eq!(
            boot_counter("é+1.efi"),
            Some(BootCounter { left: 1, done: 0 })
        );
        assert_eq!(boot_counter("x+99999999999.efi"), None);
    }
}
