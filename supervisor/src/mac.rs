//! Stable MAC addresses per (unikernel, device), derived with a per-device secret.
//!
//! `mac = sha256(secret ‖ full_name ‖ 0x00 ‖ device)[0..6]`, then the first octet gets
//! the locally administered bit set and the multicast bit cleared. The secret differs per
//! box, so two boxes on one LAN running the same unikernel names do not collide; the same
//! box always gives a unikernel the same MAC across restarts and reboots.

use sha2::{Digest, Sha256};

/// Length of a MAC address in bytes.
pub const ETH_ALEN: usize = 6;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mac(pub [u8; ETH_ALEN]);

impl Mac {
    /// True when the locally administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// True when the multicast (group) bit is clear.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }
}

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Derives the MAC of network device `device` of unikernel `full_name`
/// (`owner:name`, e.g. `ops/alice:web`) with the box's `secret`.
///
/// The 0 separator keeps `("a", "bc")` and `("ab", "c")` apart (names never contain NUL).
pub fn derive_mac(secret: &[u8], full_name: &str, device: &str) -> Mac {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(full_name.as_bytes());
    h.update([0u8]);
    h.update(device.as_bytes());
    let digest = h.finalize();
    let mut mac = [0u8; ETH_ALEN];
    mac.copy_from_slice(&digest[..ETH_ALEN]);
    mac[0] = (mac[0] | 0x02) & !0x01;
    Mac(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_local_unicast() {
        let a = derive_mac(b"secret", "ops/alice:web", "service");
        assert_eq!(a, derive_mac(b"secret", "ops/alice:web", "service"));
        assert!(a.is_local());
        assert!(a.is_unicast());
    }

    #[test]
    fn differs_by_secret_name_and_device() {
        let a = derive_mac(b"secret", "ops:web", "service");
        assert_ne!(a, derive_mac(b"other", "ops:web", "service"));
        assert_ne!(a, derive_mac(b"secret", "ops:web2", "service"));
        assert_ne!(a, derive_mac(b"secret", "ops:web", "mgmt"));
        // The separator keeps the split between name and device unambiguous.
        assert_ne!(derive_mac(b"s", "ab", "c"), derive_mac(b"s", "a", "bc"));
    }

    #[test]
    fn fixed_vector() {
        // Pinned so the derivation never changes silently (it would renumber every box).
        let m = derive_mac(b"k", "u", "d");
        assert_eq!(m.to_string(), "de:68:8b:97:26:8b");
    }

    #[test]
    fn many_names_all_local_unicast() {
        for i in 0..1000 {
            let m = derive_mac(b"box", &format!("ops:u{i}"), "service");
            assert!(m.is_local() && m.is_unicast(), "{m}");
        }
    }
}
