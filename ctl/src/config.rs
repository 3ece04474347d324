//! The configuration file: connection defaults, so a command line stays short.
//!
//! TOML, every key optional; flags override it:
//!
//! ```toml
//! host = "box1.example.net"   # or "192.0.2.10:1025"
//! identity = "~/.config/petrel/ops"   # relative paths are relative to this file
//! name = "box1.example.net"   # the device name its certificate carries
//! # pin = "<sha256 of an unprovisioned box's certificate>"
//! # socket = "/run/petrel/petreld.sock"
//! owner = "ops"
//! timeout_s = 10
//! ```
//!
//! The file is `$PETRELCTL_CONFIG`, else `~/.config/petrel/petrelctl.toml`; a missing
//! default file is the same as an empty one.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CtlError;

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The local daemon's socket.
    pub socket: Option<PathBuf>,
    /// The appliance, `ADDR[:PORT]`.
    pub host: Option<String>,
    /// The identity directory.
    pub identity: Option<PathBuf>,
    /// The device name to verify.
    pub name: Option<String>,
    /// The device certificate's fingerprint to pin.
    pub pin: Option<String>,
    /// The namespace for bare names.
    pub owner: Option<String>,
    /// Connect and request timeout.
    pub timeout_s: Option<u64>,
}

/// The user's home directory, from `$HOME`.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Expands a leading `~/`.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), home()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_owned(),
    }
}

impl Config {
    /// Parses the text of a configuration file found at `path` (for relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, CtlError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            CtlError::Usage(format!(
                "{}: {}",
                path.display(),
                e.to_string().lines().next().unwrap_or("invalid TOML")
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.identity, &mut config.socket]
            .into_iter()
            .flatten()
        {
            let expanded = expand_home(p);
            *p = if expanded.is_relative() {
                base.join(expanded)
            } else {
                expanded
            };
        }
        Ok(config)
    }

    /// Loads `explicit`, else `$PETRELCTL_CONFIG`, else the default file if it exists.
    pub fn load(explicit: Option<&Path>) -> Result<Self, CtlError> {
        let env = std::env::var_os("PETRELCTL_CONFIG").filter(|v| !v.is_empty());
        let (path, required) = match (explicit, env) {
            (Some(p), _) => (expand_home(p), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => match home() {
                Some(h) => (h.join(".config/petrel/petrelctl.toml"), false),
                None => return Ok(Self::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(CtlError::file(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(
            "host = \"box1:1025\"\nidentity = \"ops\"\nowner = \"ops\"\ntimeout_s = 3\n",
            Path::new("/etc/petrel/petrelctl.toml"),
        )
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("box1:1025"));
        assert_eq!(c.identity, Some(PathBuf::from("/etc/petrel/ops")));
        assert_eq!(c.timeout_s, Some(3));
        assert!(Config::parse("bogus = 1", Path::new("x.toml")).is_err());
        assert!(Config::parse("host = 1", Path::new("x.toml")).is_err());
        assert_eq!(
            Config::parse("", Path::new("x")).unwrap(),
            Config::default()
        );
    }
}
