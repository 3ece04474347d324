//! The device config as PID 1 takes it: whatever happens, a config comes out. Absent →
//! defaults; broken → the error (with its line) is logged and the defaults are used, so
//! the box stays reachable (docs/formats.md).

use petrel_config::Config;

use crate::log::Level;

/// What reading `petrel/config.toml` from the ESP gave.
#[derive(Debug)]
pub enum Source {
    /// No ESP is mounted.
    NoEsp,
    /// The file does not exist.
    Missing,
    /// It could not be read.
    Unreadable(String),
    /// Its text.
    Text(String),
}

/// Largest config file read.
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// Reads the config file under the ESP mount point.
pub fn read(esp_mounted: bool, path: &std::path::Path) -> Source {
    if !esp_mounted {
        return Source::NoEsp;
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Source::Missing,
        Err(e) => return Source::Unreadable(e.to_string()),
        Ok(m) if m.len() > CONFIG_MAX_BYTES => {
            return Source::Unreadable(format!("{} bytes is too large", m.len()));
        }
        Ok(_) => {}
    }
    match std::fs::read_to_string(path) {
        Ok(t) => Source::Text(t),
        Err(e) => Source::Unreadable(e.to_string()),
    }
}

/// The config to use and the lines to log about it.
pub fn choose(source: Source) -> (Config, Vec<(Level, String)>) {
    let name = petrel_config::CONFIG_PATH;
    let defaults = |level, msg: String| (Config::default(), vec![(level, msg)]);
    match source {
        Source::NoEsp => defaults(Level::Warn, "config: no ESP, using the defaults".into()),
        Source::Missing => defaults(
            Level::Info,
            format!("config: no {name} on the ESP, using the defaults"),
        ),
        Source::Unreadable(e) => defaults(
            Level::Error,
            format!("config: {name}: {e}; using the defaults"),
        ),
        Source::Text(text) => match Config::parse(&text) {
            Ok(parsed) => {
                let mut log: Vec<(Level, String)> = parsed
                    .warnings
                    .into_iter()
                    .map(|w| (Level::Warn, format!("config: {name}: {w}")))
                    .collect();
                log.push((Level::Info, format!("config: {name} read")));
                (parsed.config, log)
            }
            Err(e) => defaults(
                Level::Error,
                format!("config: {name}: {e}; using the defaults"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks() {
        let (c, log) = choose(Source::Missing);
        assert_eq!(c, Config::default());
        assert_eq!(log[0].0, Level::Info);
        let (c, log) = choose(Source::NoEsp);
        assert_eq!(c, Config::default());
        assert_eq!(log[0].0, Level::Warn);
        let (c, log) = choose(Source::Unreadable("I/O error".into()));
        assert_eq!(c, Config::default());
        assert_eq!(log[0].0, Level::Error);
    }

    #[test]
    fn broken_config_names_its_line_and_uses_defaults() {
        let (c, log) = choose(Source::Text(
            "hostname = \"box\"\n[boot]\nwatchdog = \"maybe\"\n".into(),
        ));
        assert_eq!(c, Config::default());
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, Level::Error);
        assert!(log[0].1.contains("line 3"), "{}", log[0].1);
        assert!(log[0].1.ends_with("using the defaults"), "{}", log[0].1);
        let (_, log) = choose(Source::Text("hostname = [\n".into()));
        assert_eq!(log[0].0, Level::Error);
    }

    #[test]
    fn good_config_with_warnings() {
        let (c, log) = choose(Source::Text("hostname = \"box1\"\nfrobnicate = 1\n".into()));
        assert_eq!(c.hostname, "box1");
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].0, Level::Warn);
        assert!(log[0].1.contains("frobnicate"), "{}", log[0].1);
    }
}
