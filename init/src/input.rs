//! Linux input events, for the ACPI power button (`button` + `evdev`): the event layout
//! and the capability bitmap in sysfs, parsed without I/O.

/// `EV_KEY`.
pub const EV_KEY: u16 = 0x01;
/// `KEY_POWER`.
pub const KEY_POWER: u16 = 116;
/// `sizeof(struct input_event)` on x86_64: a 16-byte timeval, type, code, value.
pub const INPUT_EVENT_BYTES: usize = 24;

/// Whether a buffer of `struct input_event`s holds a press of the power key.
pub fn has_power_press(buf: &[u8]) -> bool {
    buf.chunks_exact(INPUT_EVENT_BYTES).any(|e| {
        let ty = u16::from_le_bytes([e[16], e[17]]);
        let code = u16::from_le_bytes([e[18], e[19]]);
        let value = i32::from_le_bytes([e[20], e[21], e[22], e[23]]);
        ty == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// Whether a `capabilities/key` bitmap (hex words of 64 bits, most significant first,
/// separated by spaces) has the bit for key `code`.
pub fn caps_have_key(caps: &str, code: u16) -> bool {
    let words: Vec<&str> = caps.split_ascii_whitespace().collect();
    let index = usize::from(code / 64);
    let Some(word) = words
        .len()
        .checked_sub(index + 1)
        .and_then(|i| words.get(i))
    else {
        return false;
    };
    u64::from_str_radix(word, 16).is_ok_and(|w| w & (1u64 << (code % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&ty.to_le_bytes());
        e.extend_from_slice(&code.to_le_bytes());
        e.extend_from_slice(&value.to_le_bytes());
        e
    }

    #[test]
    fn power_press() {
        let mut buf = event(EV_KEY, KEY_POWER, 1);
        buf.extend(event(0, 0, 0));
        assert!(has_power_press(&buf));
        assert!(!has_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!has_power_press(&event(EV_KEY, 115, 1)));
        assert!(!has_power_press(&event(EV_KEY, KEY_POWER, 1)[..23]));
    }

    #[test]
    fn capabilities() {
        // The ACPI power button: only KEY_POWER (bit 116 = word 1, bit 52).
        assert!(caps_have_key("10000000000000 0", KEY_POWER));
        assert!(!caps_have_key("0", KEY_POWER));
        assert!(!caps_have_key("", KEY_POWER));
        assert!(!caps_have_key("zz 0", KEY_POWER));
        // A keyboard-like bitmap with many words.
        assert!(caps_have_key("1 0 0 0 10000000000000 0", KEY_POWER));
        assert!(caps_have_key("1", 0));
    }
}
