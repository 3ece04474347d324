//! The device configuration: one schema and parser for `petrel/config.toml` on the ESP,
//! shared by `petrel-init`, `petrel-image provision` and `petreld` (`[management]`,
//! `[[unikernels]]`).
//!
//! The schema is the one in `docs/formats.md`. [`Config::parse`] turns TOML text into
//! typed values ([`Ipv4Mode::Static`] carries an [`Ipv4Addr`] and a prefix, not a
//! string), so no consumer re-parses anything. Every key is optional and defaults as
//! [`Config::default`] says. Unknown keys are warnings, never errors: an older firmware
//! (a fallback boot) must read a newer config. Every value is validated; a
//! [`ConfigError`] names the line and column of the offending value.
//! [`Config::to_toml`] writes a config back (`petrel-image provision`), and
//! `Config::parse(&c.to_toml())` gives `c` again.
//!
//! ```
//! use petrel_config::{Config, Ipv4Mode};
//!
//! let parsed = Config::parse(
//!     "hostname = \"box1\"\n[[network.bridges]]\nipv4 = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\n",
//! )?;
//! let bridge = &parsed.config.network.bridges[0];
//! assert_eq!(bridge.name, "service");
//! assert!(matches!(bridge.ipv4, Ipv4Mode::Static { prefix: 24, gateway: Some(_), .. }));
//! assert_eq!(Config::parse(&parsed.config.to_toml())?.config, parsed.config);
//! # Ok::<(), petrel_config::ConfigError>(())
//! ```
//!
//! Parsing never panics, whatever the input (fuzz target `config_parse`).
#![forbid(unsafe_code)]

mod emit;
mod parse;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The schema version this firmware writes and fully understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Where the config lives, relative to the ESP's root.
pub const CONFIG_PATH: &str = "petrel/config.toml";

/// The default hostname.
pub const DEFAULT_HOSTNAME: &str = "petrel";

/// The name of the default (main) bridge, as in albatross.
pub const DEFAULT_BRIDGE: &str = "service";

/// The default MTU of a bridge, in bytes.
pub const DEFAULT_MTU: u16 = 1500;

/// The smallest MTU accepted (IPv4's minimum), in bytes.
pub const MIN_MTU: u16 = 68;

/// The default trial-boot deadline, in seconds.
pub const DEFAULT_TRIAL_DEADLINE_SECS: u32 = 300;

/// The accepted range of `boot.trial_deadline_secs`: long enough to boot, at most a day.
pub const TRIAL_DEADLINE_SECS_RANGE: std::ops::RangeInclusive<u32> = 30..=86_400;

/// Linux's limit on an interface name (`IFNAMSIZ` - 1), in bytes.
pub const IFNAME_MAX_BYTES: usize = 15;

/// The management listener's default address: every interface, TCP port 1025.
pub const DEFAULT_MANAGEMENT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1025);

/// Where autostart images live, relative to the ESP's root.
pub const IMAGES_DIR: &str = "petrel/images";

/// The default guest memory of an autostart unikernel, in MiB.
pub const DEFAULT_UNIKERNEL_MEMORY_MIB: u32 = 32;

/// The accepted range of `unikernels.memory_mib`: 1 MiB to 64 GiB.
pub const UNIKERNEL_MEMORY_MIB_RANGE: std::ops::RangeInclusive<u32> = 1..=65_536;

/// The longest unikernel name or identity component, in bytes (as `petrel-proto`).
pub const NAME_MAX_BYTES: usize = 64;

/// The most components an identity path may have (as `petrel-proto`).
pub const IDENTITY_MAX_DEPTH: usize = 16;

/// The longest device name of a Solo5 manifest (`MFT_NAME_MAX`), in bytes.
pub const DEVICE_NAME_MAX_BYTES: usize = 67;

/// The whole device configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `version` key: the schema version the file was written for. A version newer
    /// than [`SCHEMA_VERSION`] is read as far as it is understood, with a warning.
    pub version: u32,
    /// The hostname, an RFC 1123 label.
    pub hostname: String,
    /// `[network]`.
    pub network: Network,
    /// `[time]`.
    pub time: Time,
    /// `[boot]`.
    pub boot: Boot,
    /// `[[services]]`: programs PID 1 starts and restarts, names unique.
    pub services: Vec<Service>,
    /// `[management]`: how `petreld` is reached and who administers it.
    pub management: Management,
    /// `[[unikernels]]`: unikernels `petreld` imports and starts at boot, names unique.
    pub unikernels: Vec<Autostart>,
}

/// `[management]`: the settings of `petreld`'s management interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Management {
    /// The operator's top identity (a path like `ops`, see DESIGN §5), given every
    /// right; `None`: only the identities with a policy have any.
    pub admin: Option<String>,
    /// The mutual-TLS listener ([`DEFAULT_MANAGEMENT_LISTEN`]).
    pub listen: SocketAddr,
    /// The OpenMetrics listener (plain HTTP); `None`: off.
    pub metrics: Option<SocketAddr>,
}

/// One `[[unikernels]]` entry: a unikernel `petreld` starts at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autostart {
    /// Its name: 1 to [`NAME_MAX_BYTES`] bytes of `[A-Za-z0-9_-]`, unique.
    pub name: String,
    /// The image: a file name in [`IMAGES_DIR`] on the ESP (no `/`, not starting
    /// with `.`, 1 to 255 bytes of `[A-Za-z0-9_.-]`).
    pub image: String,
    /// Guest memory in MiB ([`UNIKERNEL_MEMORY_MIB_RANGE`], default
    /// [`DEFAULT_UNIKERNEL_MEMORY_MIB`]).
    pub memory_mib: u32,
    /// The unikernel's command line; no NUL bytes.
    pub args: Vec<String>,
    /// Its network devices, device names unique; each bridge is a configured bridge.
    pub net: Vec<NetAttach>,
    /// When it is restarted after it exits (default [`Restart::Always`]).
    pub restart: Restart,
    /// Start order at boot: higher first (default 0).
    pub priority: i32,
}

/// A network device of an autostart unikernel: `"DEV=BRIDGE"`, or `"DEV"` for the
/// bridge of the same name (as albatross and `petrelctl create --net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAttach {
    /// The manifest's device name: 1 to [`DEVICE_NAME_MAX_BYTES`] bytes of `[A-Za-z0-9_-]`.
    pub device: String,
    /// The bridge its tap joins.
    pub bridge: String,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Resolvers for the updater (a DHCP lease may add its own).
    pub dns: Vec<IpAddr>,
    /// The bridges, names unique, no uplink shared. Default: one bridge
    /// [`DEFAULT_BRIDGE`] with uplink auto, DHCPv4, SLAAC, MTU 1500.
    pub bridges: Vec<Bridge>,
}

/// One `[[network.bridges]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// The interface name: 1 to 15 bytes of `[a-zA-Z0-9_-]`.
    pub name: String,
    /// Which NIC to enslave.
    pub uplink: Uplink,
    /// IPv4 on the bridge.
    pub ipv4: Ipv4Mode,
    /// IPv6 on the bridge.
    pub ipv6: Ipv6Mode,
    /// MTU in bytes, set on the bridge and its uplink: [`MIN_MTU`]..=65535.
    pub mtu: u16,
}

/// A bridge's uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// `"auto"`: the first physical NIC with carrier, else the first physical NIC.
    Auto,
    /// `"none"`: no uplink (a host-internal bridge).
    None,
    /// A NIC by name (a valid Linux interface name, not "auto" or "none").
    Nic(String),
}

/// A bridge's IPv4 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Mode {
    /// `"dhcp"`: `petrel-dhcp` runs on the bridge.
    Dhcp,
    /// `"none"`: no IPv4 address.
    None,
    /// `"A.B.C.D/N"`, with the `gateway` key when set.
    Static {
        /// The bridge's address: unicast, not the subnet's network or broadcast address.
        addr: Ipv4Addr,
        /// The prefix length, 1..=32.
        prefix: u8,
        /// The default route's gateway, inside `addr/prefix` and not `addr` itself.
        gateway: Option<Ipv4Addr>,
    },
}

/// A bridge's IPv6 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// `"auto"`: the kernel's SLAAC (router advertisements accepted).
    Auto,
    /// `"none"`: IPv6 disabled on the bridge.
    None,
    /// `"ADDR/N"`: a static address.
    Static {
        /// The address: unicast, not loopback or unspecified.
        addr: Ipv6Addr,
        /// The prefix length, 1..=128.
        prefix: u8,
    },
}

/// `[time]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Time {
    /// SNTP servers; empty: RTC only.
    pub ntp: Vec<NtpServer>,
}

/// An SNTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtpServer {
    /// An IPv4 address.
    Addr(Ipv4Addr),
    /// A DNS name (letters, digits, '-' and '.'; labels of at most 63 bytes).
    Name(String),
}

/// `[boot]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// A trial boot not blessed within this many seconds reboots
    /// ([`TRIAL_DEADLINE_SECS_RANGE`]).
    pub trial_deadline_secs: u32,
    /// Arm a hardware watchdog when one exists.
    pub watchdog: bool,
}

/// One `[[services]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// A unique name, 1 to 64 bytes of `[a-zA-Z0-9_.-]`.
    pub name: String,
    /// The program (an absolute path: PID 1 has no `PATH`) and its arguments; no NUL
    /// bytes anywhere.
    pub command: Vec<String>,
    /// When PID 1 restarts it.
    pub restart: Restart,
}

/// A service's or autostart unikernel's restart policy (default [`Restart::Always`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// `"always"`.
    #[default]
    Always,
    /// `"on-failure"`: after a non-zero exit or a signal (a unikernel: a non-zero exit
    /// code, or its tender killed).
    OnFailure,
    /// `"never"`.
    Never,
}

/// A successfully parsed config and what was ignored on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The config, validated.
    pub config: Config,
    /// Human-readable warnings: unknown keys (by key path, e.g.
    /// `network.bridges[0].vlan`), a newer schema version, no bridges at all.
    pub warnings: Vec<String>,
}

/// A line and column (both 1-based; the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// Why a config was rejected: TOML syntax, a wrong type, or a value that fails
/// validation. `Display` gives `line L, column C: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the offending value starts, when known.
    pub position: Option<Position>,
    /// What is wrong, without the position.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            version: SCHEMA_VERSION,
            hostname: DEFAULT_HOSTNAME.to_string(),
            network: Network::default(),
            time: Time::default(),
            boot: Boot::default(),
            services: Vec::new(),
            management: Management::default(),
            unikernels: Vec::new(),
        }
    }
}

impl Default for Management {
    fn default() -> Management {
        Management {
            admin: None,
            listen: DEFAULT_MANAGEMENT_LISTEN,
            metrics: None,
        }
    }
}

impl fmt::Display for NetAttach {
    /// The config syntax: `DEV=BRIDGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.device, self.bridge)
    }
}

impl Default for Network {
    fn default() -> Network {
        Network {
            dns: Vec::new(),
            bridges: vec![Bridge::default()],
        }
    }
}

impl Default for Bridge {
    fn default() -> Bridge {
        Bridge {
            name: DEFAULT_BRIDGE.to_string(),
            uplink: Uplink::Auto,
            ipv4: Ipv4Mode::Dhcp,
            ipv6: Ipv6Mode::Auto,
            mtu: DEFAULT_MTU,
        }
    }
}

impl Default for Boot {
    fn default() -> Boot {
        Boot {
            trial_deadline_secs: DEFAULT_TRIAL_DEADLINE_SECS,
            watchdog: true,
        }
    }
}

impl Config {
    /// Parses and validates a config file's text. Keys absent from the text take their
    /// defaults; unknown keys become [`Parsed::warnings`].
    pub fn parse(text: &str) -> Result<Parsed, ConfigError> {
        parse::parse(text)
    }

    /// The config as TOML text, every key written out, in schema order;
    /// `Config::parse(&c.to_toml())` gives `c` back.
    pub fn to_toml(&self) -> String {
        emit::to_toml(self)
    }

    /// The autostart unikernel named `name`, if configured.
    pub fn unikernel(&self, name: &str) -> Option<&Autostart> {
        self.unikernels.iter().find(|u| u.name == name)
    }

    /// The bridge named `name`, if configured.
    pub fn bridge(&self, name: &str) -> Option<&Bridge> {
        self.network.bridges.iter().find(|b| b.name == name)
    }
}

impl fmt::Display for Uplink {
    /// The config syntax: `auto`, `none` or the NIC's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uplink::Auto => f.write_str("auto"),
            Uplink::None => f.write_str("none"),
            Uplink::Nic(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Ipv4Mode {
    /// The config syntax of the `ipv4` key (the gateway is a key of its own).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv4Mode::Dhcp => f.write_str("dhcp"),
            Ipv4Mode::None => f.write_str("none"),
            Ipv4Mode::Static { addr, prefix, .. } => write!(f, "{addr}/{prefix}"),
        }
    }
}

impl fmt::Display for Ipv6Mode {
    /// The config syntax: `auto`, `none` or `ADDR/N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv6Mode::Auto => f.write_str("auto"),
            Ipv6Mode::None => f.write_str("none"),
            Ipv6Mode::Static { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

impl fmt::Display for NtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtpServer::Addr(a) => write!(f, "{a}"),
            NtpServer::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for Restart {
    /// The config syntax: `always`, `on-failure` or `never`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        })
    }
}

/// Runs the parser on arbitrary bytes and checks its contract: no panic, and a config
/// that parses writes out to text that parses back to the same config. The fuzz
/// target `config_parse` and the corpus replay test call this.
pub fn fuzz_check(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(parsed) = Config::parse(text) {
        let again = Config::parse(&parsed.config.to_toml());
        assert_eq!(again.map(|p| p.config).as_ref(), Ok(&parsed.config));
    }
}
