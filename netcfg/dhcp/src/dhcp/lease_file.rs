//! The lease file `/run/petrel/dhcp/IFACE.json` (`docs/formats.md`).
//!
//! Written by `petrel-dhcp` (atomically: temporary file, fsync, rename) each time it
//! binds or renews, removed when the lease is lost; read by `petrel-init`, `petrel-sntp`
//! (DNS servers) and later the updater. JSON, one object:
//!
//! ```json
//! {
//!   "version": 1,
//!   "interface": "service",
//!   "address": "10.0.2.15",
//!   "prefix_len": 24,
//!   "router": "10.0.2.2",
//!   "dns": ["10.0.2.3"],
//!   "server": "10.0.2.2",
//!   "lease_secs": 86400,
//!   "renew_secs": 43200,
//!   "rebind_secs": 75600,
//!   "obtained_unix": 1732630000,
//!   "expires_unix": 1732716400
//! }
//! ```
//!
//! `router` is null without a default gateway; `lease_secs`, `renew_secs`,
//! `rebind_secs` and `expires_unix` are null for an infinite lease. The `*_unix` times
//! come from the wall clock when the file was written, which may be wrong before SNTP
//! ran: readers that care use `lease_secs` and the file's age instead. Readers ignore
//! unknown fields, and new fields get defaults, so that files stay readable both ways.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{INFINITE_LEASE, Lease};

/// The format version written.
pub const LEASE_FILE_VERSION: u32 = 1;
/// Larger files are refused unread (a lease is a few hundred bytes).
pub const MAX_LEASE_FILE_BYTES: usize = 64 * 1024;

/// The lease file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFile {
    /// [`LEASE_FILE_VERSION`].
    pub version: u32,
    /// The interface the lease is on.
    #[serde(default)]
    pub interface: String,
    /// Our address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Default gateway.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// DNS servers, in preference order.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// The server that granted the lease.
    pub server: Ipv4Addr,
    /// Lease length (null: infinite).
    #[serde(default)]
    pub lease_secs: Option<u32>,
    /// T1 (null: infinite lease).
    #[serde(default)]
    pub renew_secs: Option<u32>,
    /// T2 (null: infinite lease).
    #[serde(default)]
    pub rebind_secs: Option<u32>,
    /// Wall-clock second the lease began.
    #[serde(default)]
    pub obtained_unix: u64,
    /// Wall-clock second it ends (null: never).
    #[serde(default)]
    pub expires_unix: Option<u64>,
}

/// Why a lease file was not read.
#[derive(Debug, thiserror::Error)]
pub enum LeaseFileError {
    /// Over [`MAX_LEASE_FILE_BYTES`].
    #[error("lease file too large: {0} bytes")]
    TooLarge(usize),
    /// Not the JSON above.
    #[error("bad lease file")]
    Json(#[source] serde_json::Error),
}

impl LeaseFile {
    /// The file for `lease` on `interface`. `now` is the client's monotonic time and
    /// `now_unix` the wall clock at the same moment.
    pub fn new(interface: &str, lease: &Lease, now: Duration, now_unix: u64) -> Self {
        let age = now.saturating_sub(lease.obtained_at).as_secs();
        let obtained_unix = now_unix.saturating_sub(age);
        let finite = |s: u32| (lease.lease_secs != INFINITE_LEASE).then_some(s);
        Self {
            version: LEASE_FILE_VERSION,
            interface: interface.to_owned(),
            address: lease.address,
            prefix_len: lease.prefix_len,
            router: lease.router,
            dns: lease.dns_servers.clone(),
            server: lease.server_id,
            lease_secs: finite(lease.lease_secs),
            renew_secs: finite(lease.renew_secs),
            rebind_secs: finite(lease.rebind_secs),
            obtained_unix,
            expires_unix: finite(lease.lease_secs)
                .map(|s| obtained_unix.saturating_add(u64::from(s))),
        }
    }

    /// The JSON text, pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        // Serializing this struct (strings, numbers, addresses) cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a lease file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LeaseFileError> {
        if bytes.len() > MAX_LEASE_FILE_BYTES {
            return Err(LeaseFileError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(LeaseFileError::Json)
    }
}

/// Fuzz entry point: parsing never panics; what parses writes back to the same value.
pub fn fuzz_check(data: &[u8]) {
    if let Ok(f) = LeaseFile::from_json(data) {
        let again = LeaseFile::from_json(f.to_json().as_bytes()).ok();
        assert_eq!(again.as_ref(), Some(&f));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lease(lease_secs: u32) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns_servers: vec![Ipv4Addr::new(10, 0, 2, 3)],
            server_id: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs,
            renew_secs: lease_secs / 2,
            rebind_secs: lease_secs / 8 * 7,
            obtained_at: Duration::from_secs(100),
        }
    }

    #[test]
    fn writes_the_documented_format() {
        let f = LeaseFile::new(
            "service",
            &lease(86400),
            Duration::from_secs(110),
            1_732_630_010,
        );
        let want = r#"{
  "version": 1,
  "interface": "service",
  "address": "10.0.2.15",
  "prefix_len": 24,
  "router": "10.0.2.2",
  "dns": [
    "10.0.2.3"
  ],
  "server": "10.0.2.2",
  "lease_secs": 86400,
  "renew_secs": 43200,
  "rebind_secs": 75600,
  "obtained_unix": 1732630000,
  "expires_unix": 1732716400
}
"#;
        assert_eq!(f.to_json(), want);
        assert_eq!(LeaseFile::from_json(want.as_bytes()).unwrap(), f);
    }

    #[test]
    fn infinite_and_minimal() {
        let f = LeaseFile::new("eth0", &lease(INFINITE_LEASE), Duration::ZERO, 5);
        assert_eq!((f.lease_secs, f.expires_unix), (None, None));
        fuzz_check(f.to_json().as_bytes());
        let min =
            br#"{"version":1,"address":"10.0.0.2","prefix_len":8,"server":"10.0.0.1","new":true}"#;
        let f = LeaseFile::from_json(min).unwrap();
        assert_eq!(f.router, None);
        assert!(LeaseFile::from_json(b"{}").is_err());
        assert!(LeaseFile::from_json(&vec![b' '; MAX_LEASE_FILE_BYTES + 1]).is_err());
    }
}
