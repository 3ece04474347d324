//! The clock floor (DESIGN §2): the wall clock never goes below the latest time this
//! device has seen. Decisions are pure; `boot` does the reading and setting.

/// Where the floor is kept (seconds since the epoch, text).
pub const CLOCK_FLOOR_PATH: &str = "/var/lib/petrel/clock-floor";

/// The lowest floor compiled in: the build's `SOURCE_DATE_EPOCH`, if it was set.
pub fn build_floor() -> u64 {
    option_env!("SOURCE_DATE_EPOCH")
        .and_then(parse_floor)
        .unwrap_or(0)
}

/// Parses a floor file (`1700000000\n`); anything else is no floor.
pub fn parse_floor(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The time to set the clock to, when `now` (seconds) is below the best floor.
pub fn clock_fix(now_secs: u64, persisted: Option<u64>, compiled: u64) -> Option<u64> {
    let floor = persisted.unwrap_or(0).max(compiled);
    (now_secs < floor).then_some(floor)
}

/// Whether the persisted floor should be rewritten with `now` (only ever upwards).
pub fn should_save(now_secs: u64, persisted: Option<u64>) -> bool {
    persisted.is_none_or(|f| now_secs > f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors() {
        assert_eq!(parse_floor("1700000000\n"), Some(1_700_000_000));
        assert_eq!(parse_floor(" 42 "), Some(42));
        assert_eq!(parse_floor(""), None);
        assert_eq!(parse_floor("-1"), None);
        assert_eq!(parse_floor("12x"), None);
        assert_eq!(parse_floor("99999999999999999999999"), None);
        assert_eq!(clock_fix(100, Some(200), 50), Some(200));
        assert_eq!(clock_fix(100, None, 150), Some(150));
        assert_eq!(clock_fix(100, Some(20), 150), Some(150));
        assert_eq!(clock_fix(300, Some(200), 150), None);
        assert_eq!(clock_fix(200, Some(200), 0), None);
        assert_eq!(clock_fix(0, None, 0), None);
        assert!(should_save(10, None));
        assert!(should_save(10, Some(9)));
        assert!(!should_save(10, Some(10)));
        assert!(!should_save(5, Some(10)));
    }
}
