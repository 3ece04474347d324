//! Stable bridge MAC addresses derived from a per-device secret (DESIGN §4): two boxes on
//! one LAN never collide, and a bridge keeps its address across boots and port changes.

use sha2::{Digest, Sha256};

/// Length of the secret in `/var/lib/petrel/keys/mac-secret`.
pub const MAC_SECRET_BYTES: usize = 32;

/// `sha256(secret ‖ name)`, first six bytes, made locally administered unicast.
pub fn derive_mac(secret: &[u8], name: &str) -> [u8; 6] {
    let digest = Sha256::new()
        .chain_update(secret)
        .chain_update(name.as_bytes())
        .finalize();
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(digest.iter()) {
        *m = *d;
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_local_unicast() {
        let secret = [7u8; MAC_SECRET_BYTES];
        let a = derive_mac(&secret, "service");
        assert_eq!(a, derive_mac(&secret, "service"));
        assert_ne!(a, derive_mac(&secret, "other"));
        assert_ne!(a, derive_mac(&[8u8; MAC_SECRET_BYTES], "service"));
        for name in ["service", "a", "b", "", "x".repeat(100).as_str()] {
            let m = derive_mac(&secret, name);
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        }
        // With an empty secret: sha256(name), byte 0 made locally administered unicast.
        let digest = Sha256::digest(b"service");
        let m = derive_mac(b"", "service");
        assert_eq!(m[1..], digest[1..6]);
        assert_eq!(m[0], (digest[0] & 0xfe) | 0x02);
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 1, 2, 0xff]),
            "02:00:ab:01:02:ff"
        );
    }
}
