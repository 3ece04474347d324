//! Parsing and printing of the values people type and read: sizes, CPU lists, restart
//! policies, times and durations, MAC addresses. Pure functions, no I/O.

use petrel_proto::msg::RestartPolicy;

const KIB: u64 = 1024;

/// Parses a size in bytes: `4096`, `512K`, `64M`, `2G`, `1T` (binary units; `KiB`,
/// `MiB`, `GiB`, `TiB` and a trailing `B` are accepted too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("size {text:?}: expected a number with an optional K, M, G or T"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 1,
        "M" | "MB" | "MIB" => 2,
        "G" | "GB" | "GIB" => 3,
        "T" | "TB" | "TIB" => 4,
        _ => {
            return Err(format!(
                "size {text:?}: unknown unit {unit:?} (use K, M, G or T)"
            ));
        }
    };
    (0..shift)
        .try_fold(number, |n, _| n.checked_mul(KIB))
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// `12.3 MiB`-style text.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes;
    while scaled >= KIB && unit + 1 < UNITS.len() {
        scaled /= KIB;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let divisor = KIB.pow(u32::try_from(unit).unwrap_or(0));
    let whole = bytes / divisor;
    let tenths = (bytes % divisor) * 10 / divisor;
    if whole >= 100 || tenths == 0 {
        format!("{whole} {}", UNITS[unit])
    } else {
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

/// Parses a CPU list: `0`, `0,2`, `0-3,6`.
pub fn parse_cpus(text: &str) -> Result<Vec<u16>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("CPU list {text:?}: expected numbers and ranges like 0,2-3");
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
            None => (part.parse::<u16>(), part.parse::<u16>()),
        };
        let (first, last) = (first.map_err(|_| bad())?, last.map_err(|_| bad())?);
        if first > last {
            return Err(bad());
        }
        if usize::from(last - first) >= 1024 {
            return Err(format!("CPU list {text:?}: range too long"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// `0-3,6`-style text; `any` for an empty list.
pub fn format_cpus(cpus: &[u16]) -> String {
    if cpus.is_empty() {
        return "any".to_owned();
    }
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.saturating_add(1) {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Parses a restart policy: `never`, `always`, `on-exit:1,2`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    match text {
        "never" => Ok(RestartPolicy::Never),
        "always" => Ok(RestartPolicy::Always),
        _ => {
            let codes = text.strip_prefix("on-exit:").ok_or_else(|| {
                format!("restart policy {text:?}: expected never, always or on-exit:CODE,CODE")
            })?;
            let codes = codes
                .split(',')
                .map(|c| c.trim().parse::<i32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("restart policy {text:?}: exit codes are integers"))?;
            Ok(RestartPolicy::OnExit(codes))
        }
    }
}

/// The text [`parse_restart`] reads.
pub fn format_restart(policy: &RestartPolicy) -> String {
    match policy {
        RestartPolicy::Never => "never".to_owned(),
        RestartPolicy::Always => "always".to_owned(),
        RestartPolicy::OnExit(codes) => {
            let codes: Vec<String> = codes.iter().map(i32::to_string).collect();
            format!("on-exit:{}", codes.join(","))
        }
    }
}

/// `52:54:00:12:34:56`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Parses 64 hex digits (a SHA-256 fingerprint); `:` separators and a `sha256:` prefix
/// are allowed.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|&c| c != ':')
        .collect();
    let bad = || format!("fingerprint {text:?}: expected 64 hex digits");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

const MS_PER_S: u64 = 1000;
const S_PER_DAY: i64 = 86_400;

/// `3d4h`, `5m12s`, `850ms`: a duration for people, two units at most.
pub fn format_duration_ms(ms: u64) -> String {
    if ms < MS_PER_S {
        return format!("{ms}ms");
    }
    let s = ms / MS_PER_S;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-26T17:21:11Z` for seconds since the Unix epoch.
pub fn format_unix_s(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(S_PER_DAY), secs.rem_euclid(S_PER_DAY));
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// [`format_unix_s`] for milliseconds.
pub fn format_unix_ms(ms: u64) -> String {
    format_unix_s(i64::try_from(ms / MS_PER_S).unwrap_or(i64::MAX))
}

/// Parses a point in time for `console --since`, returning milliseconds since the
/// epoch: a duration ago (`90s`, `10m`, `2h`, `1d`), `@SECONDS` since the epoch, or
/// `YYYY-MM-DDTHH:MM:SSZ` (UTC; `T` may be a space, seconds and `Z` optional).
pub fn parse_since(text: &str, now_unix_ms: u64) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!("time {text:?}: expected 10m / 2h / 1d ago, @UNIX_SECONDS or 2026-01-31T12:00:00Z")
    };
    if let Some(secs) = t.strip_prefix('@') {
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        return secs.checked_mul(MS_PER_S).ok_or_else(bad);
    }
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<u64>() {
            let unit_ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            let ago = n.checked_mul(unit_ms).ok_or_else(bad)?;
            return Ok(now_unix_ms.saturating_sub(ago));
        }
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00:00"));
    let date: Vec<&str> = date.split('-').collect();
    let time: Vec<&str> = time.split(':').collect();
    let num = |s: Option<&&str>, max: i64| -> Result<i64, String> {
        let v: i64 = s.ok_or_else(bad)?.parse().map_err(|_| bad())?;
        if (0..=max).contains(&v) {
            Ok(v)
        } else {
            Err(bad())
        }
    };
    if date.len() != 3 || time.len() < 2 || time.len() > 3 {
        return Err(bad());
    }
    let (y, mo, d) = (
        num(date.first(), 9999)?,
        num(date.get(1), 12)?,
        num(date.get(2), 31)?,
    );
    let (h, mi) = (num(time.first(), 23)?, num(time.get(1), 59)?);
    let s = if time.len() == 3 {
        num(time.get(2), 60)?
    } else {
        0
    };
    if mo == 0 || d == 0 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, d) * S_PER_DAY + h * 3600 + mi * 60 + s;
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(MS_PER_S))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_bytes(17), "17 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(u64::MAX), "16777215 TiB");
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0-3,6,2").unwrap(), [0, 1, 2, 3, 6]);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("a").is_err());
        assert!(parse_cpus("0-65535").is_err());
        assert_eq!(format_cpus(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(format_cpus(&[]), "any");
    }

    #[test]
    fn restart_policies() {
        for text in ["never", "always", "on-exit:1,2", "on-exit:-1"] {
            assert_eq!(format_restart(&parse_restart(text).unwrap()), text);
        }
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-exit:x").is_err());
    }

    #[test]
    fn fingerprints() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_sha256(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_sha256(&format!("sha256:{hex}")).unwrap(), [0xab; 32]);
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
        assert!(parse_sha256(&"é".repeat(32)).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_unix_s(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_s(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_unix_ms(1_795_713_671_000), "2026-11-26T17:21:11Z");
        assert_eq!(
            parse_since("2026-11-26T17:21:11Z", 0),
            Ok(1_795_713_671_000)
        );
        assert_eq!(parse_since("2026-11-26 17:21", 0), Ok(1_795_713_660_000));
        assert_eq!(parse_since("@10", 0), Ok(10_000));
        assert_eq!(parse_since("10m", 1_000_000), Ok(400_000));
        assert_eq!(parse_since("2d", 1), Ok(0));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("2026-13-01T00:00:00Z", 0).is_err());
        assert_eq!(format_duration_ms(850), "850ms");
        assert_eq!(format_duration_ms(312_000), "5m12s");
        assert_eq!(format_duration_ms(90_000_000), "1d1h");
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "52:54:00:12:34:56"
        );
    }
}
