//! TOML text → raw serde structs (every value with its span) → validated [`Config`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::{
    Autostart, Boot, Bridge, Config, ConfigError, DEFAULT_UNIKERNEL_MEMORY_MIB,
    DEVICE_NAME_MAX_BYTES, IDENTITY_MAX_DEPTH, IFNAME_MAX_BYTES, Ipv4Mode, Ipv6Mode, MIN_MTU,
    Management, NAME_MAX_BYTES, NetAttach, Network, NtpServer, Parsed, Position, Restart,
    SCHEMA_VERSION, Service, TRIAL_DEADLINE_SECS_RANGE, Time, UNIKERNEL_MEMORY_MIB_RANGE, Uplink,
};

/// Bytes of an autostart image's file name, at most.
const IMAGE_NAME_MAX_BYTES: usize = 255;

/// Bytes of a service name, at most.
const SERVICE_NAME_MAX_BYTES: usize = 64;

// The raw layer: the file as written. Every key is optional; values keep their spans so
// that validation errors can point at them.

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    version: Option<Spanned<i64>>,
    hostname: Option<Spanned<String>>,
    network: RawNetwork,
    time: RawTime,
    boot: RawBoot,
    services: Vec<Spanned<RawService>>,
    management: RawManagement,
    unikernels: Vec<Spanned<RawUnikernel>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawManagement {
    admin: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUnikernel {
    name: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    memory_mib: Option<Spanned<i64>>,
    args: Vec<Spanned<String>>,
    net: Vec<Spanned<String>>,
    restart: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawNetwork {
    dns: Vec<Spanned<String>>,
    bridges: Option<Spanned<Vec<Spanned<RawBridge>>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBridge {
    name: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    ipv4: Option<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    ipv6: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTime {
    ntp: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBoot {
    trial_deadline_secs: Option<Spanned<i64>>,
    watchdog: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawService {
    name: Option<Spanned<String>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    restart: Option<Spanned<String>>,
}

/// Turns byte offsets into [`ConfigError`]s with line and column.
struct Source<'a> {
    text: &'a str,
}

impl Source<'_> {
    fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            position: Some(self.position(span.start)),
            message: message.into(),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(value.span(), message)
    }
}

pub(crate) fn parse(text: &str) -> Result<Parsed, ConfigError> {
    let src = Source { text };
    let mut warnings = Vec::new();
    let deserializer = toml::Deserializer::parse(text).map_err(|e| toml_error(&src, &e))?;
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |path| {
        warnings.push(format!("unknown key {} ignored", key_path(&path)));
    })
    .map_err(|e| toml_error(&src, &e))?;
    let config = validate(&src, raw, &mut warnings)?;
    Ok(Parsed { config, warnings })
}

fn toml_error(src: &Source<'_>, e: &toml::de::Error) -> ConfigError {
    ConfigError {
        position: e.span().map(|s| src.position(s.start)),
        message: e.message().trim_end().to_string(),
    }
}

/// `network.bridges[0].vlan` for serde_ignored's path (which writes `network.bridges.0.vlan`
/// and shows `Spanned`'s private wrapper key).
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut String) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                if !key.starts_with("$__serde_spanned_private") {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
            }
            Path::Some { parent } | Path::NewtypeStruct { parent } => walk(parent, out),
            Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

fn validate(
    src: &Source<'_>,
    raw: RawConfig,
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    if let Some(v) = raw.version {
        config.version = match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => return Err(src.at(&v, format!("version {} is not 1 or more", v.get_ref()))),
        };
        if config.version > SCHEMA_VERSION {
            warnings.push(format!(
                "config version {} is newer than this firmware's {SCHEMA_VERSION}: what it does not know is ignored",
                config.version
            ));
        }
    }
    if let Some(h) = raw.hostname {
        if !is_label(h.get_ref()) {
            return Err(src.at(
                &h,
                format!(
                    "hostname {:?} is not an RFC 1123 label (1 to 63 letters, digits and '-', not starting or ending with '-')",
                    h.get_ref()
                ),
            ));
        }
        config.hostname = h.into_inner();
    }
    config.network = network(src, raw.network, warnings)?;
    config.time = time(src, raw.time)?;
    config.boot = boot(src, raw.boot)?;
    config.services = services(src, raw.services)?;
    config.management = management(src, raw.management)?;
    config.unikernels = unikernels(src, raw.unikernels, &config.network)?;
    Ok(config)
}

fn network(
    src: &Source<'_>,
    raw: RawNetwork,
    warnings: &mut Vec<String>,
) -> Result<Network, ConfigError> {
    let dns = raw
        .dns
        .iter()
        .map(|d| {
            d.get_ref().parse::<IpAddr>().map_err(|_| {
                src.at(
                    d,
                    format!("dns server {:?} is not an IP address", d.get_ref()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let Some(raw_bridges) = raw.bridges else {
        return Ok(Network {
            dns,
            ..Network::default()
        });
    };
    if raw_bridges.get_ref().is_empty() {
        warnings.push("network.bridges is empty: the device will have no network".to_string());
    }
    let checked = raw_bridges
        .into_inner()
        .into_iter()
        .map(|rb| {
            let span = rb.span();
            bridge(src, rb.into_inner(), span)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let all_names: HashSet<&str> = checked.iter().map(|b| b.bridge.name.as_str()).collect();
    let mut names = HashSet::new();
    // Uplink ("auto" or a NIC) → the bridge that uses it.
    let mut uplinks: HashMap<&str, &str> = HashMap::new();
    // The bridge that has the (one) default route's gateway.
    let mut routed: Option<&str> = None;
    for b in &checked {
        let name = b.bridge.name.as_str();
        if !names.insert(name) {
            return Err(src.error(
                b.span_of_name.clone(),
                format!("bridge name {name:?} is used twice"),
            ));
        }
        if let Ipv4Mode::Static {
            gateway: Some(_), ..
        } = b.bridge.ipv4
        {
            if let Some(other) = routed.replace(name) {
                return Err(src.error(
                    b.span_of_gateway.clone(),
                    format!("bridge {other:?} already has the default route's gateway"),
                ));
            }
        }
        let used = match &b.bridge.uplink {
            Uplink::None => continue,
            Uplink::Auto => "auto",
            Uplink::Nic(n) => n.as_str(),
        };
        if all_names.contains(used) {
            return Err(src.error(
                b.span_of_uplink.clone(),
                format!("uplink {used:?} is a bridge"),
            ));
        }
        if let Some(other) = uplinks.insert(used, name) {
            return Err(src.error(
                b.span_of_uplink.clone(),
                format!("uplink {used:?} is already the uplink of bridge {other:?}"),
            ));
        }
    }
    let bridges = checked.into_iter().map(|b| b.bridge).collect();
    Ok(Network { dns, bridges })
}

/// A validated bridge with the spans the cross-bridge checks point at.
struct CheckedBridge {
    bridge: Bridge,
    span_of_name: Range<usize>,
    span_of_uplink: Range<usize>,
    span_of_gateway: Range<usize>,
}

fn bridge(
    src: &Source<'_>,
    raw: RawBridge,
    span: Range<usize>,
) -> Result<CheckedBridge, ConfigError> {
    let mut b = Bridge::default();
    let mut span_of_name = span.clone();
    let mut span_of_uplink = span.clone();
    let mut span_of_gateway = span;
    if let Some(n) = raw.name {
        check_bridge_name(src, &n)?;
        span_of_name = n.span();
        b.name = n.into_inner();
    }
    if let Some(u) = raw.uplink {
        span_of_uplink = u.span();
        b.uplink = match u.get_ref().as_str() {
            "auto" => Uplink::Auto,
            "none" => Uplink::None,
            name if is_ifname(name) => Uplink::Nic(name.to_string()),
            name => {
                return Err(src.at(
                    &u,
                    format!(
                        "uplink {name:?} is not \"auto\", \"none\" or an interface name (1 to {IFNAME_MAX_BYTES} bytes, no '/', ':', whitespace or control characters)"
                    ),
                ));
            }
        };
    }
    if let Some(v4) = &raw.ipv4 {
        b.ipv4 = ipv4(src, v4)?;
    }
    if let Some(g) = raw.gateway.filter(|g| !g.get_ref().is_empty()) {
        span_of_gateway = g.span();
        let Ipv4Mode::Static {
            addr,
            prefix,
            gateway,
        } = &mut b.ipv4
        else {
            return Err(src.at(
                &g,
                format!(
                    "gateway needs a static ipv4 address (ipv4 is \"{}\")",
                    b.ipv4
                ),
            ));
        };
        let gw: Ipv4Addr = g.get_ref().parse().map_err(|_| {
            src.at(
                &g,
                format!("gateway {:?} is not an IPv4 address", g.get_ref()),
            )
        })?;
        let mask = v4_mask(*prefix);
        if u32::from(gw) & mask != u32::from(*addr) & mask {
            let net = Ipv4Addr::from(u32::from(*addr) & mask);
            return Err(src.at(&g, format!("gateway {gw} is outside {net}/{prefix}")));
        }
        if gw == *addr {
            return Err(src.at(&g, format!("gateway {gw} is the bridge's own address")));
        }
        *gateway = Some(gw);
    }
    if let Some(v6) = &raw.ipv6 {
        b.ipv6 = ipv6(src, v6)?;
    }
    if let Some(m) = raw.mtu {
        b.mtu = match u16::try_from(*m.get_ref()) {
            Ok(mtu) if mtu >= MIN_MTU => mtu,
            _ => {
                return Err(src.at(
                    &m,
                    format!("mtu {} is outside {MIN_MTU}..=65535", m.get_ref()),
                ));
            }
        };
    }
    Ok(CheckedBridge {
        bridge: b,
        span_of_name,
        span_of_uplink,
        span_of_gateway,
    })
}

fn check_bridge_name(src: &Source<'_>, n: &Spanned<String>) -> Result<(), ConfigError> {
    let name = n.get_ref();
    if name.is_empty() || name.len() > IFNAME_MAX_BYTES {
        return Err(src.at(
            n,
            format!("bridge name {name:?} is not 1 to {IFNAME_MAX_BYTES} bytes long"),
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(src.at(
            n,
            format!("bridge name {name:?} has characters other than letters, digits, '_' and '-'"),
        ));
    }
    if name == "auto" || name == "none" {
        return Err(src.at(n, format!("bridge name {name:?} is reserved")));
    }
    Ok(())
}

fn ipv4(src: &Source<'_>, v: &Spanned<String>) -> Result<Ipv4Mode, ConfigError> {
    let bad = |why: &str| src.at(v, format!("ipv4 {:?} {why}", v.get_ref()));
    let s = v.get_ref().as_str();
    match s {
        "dhcp" => return Ok(Ipv4Mode::Dhcp),
        "none" => return Ok(Ipv4Mode::None),
        _ => {}
    }
    let Some((a, p)) = s.split_once('/') else {
        return Err(bad("is not \"dhcp\", \"none\" or A.B.C.D/N"));
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| bad("is not \"dhcp\", \"none\" or A.B.C.D/N"))?;
    let prefix = parse_prefix(p, 32).ok_or_else(|| bad("has a prefix length outside 1..=32"))?;
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || addr.is_broadcast() {
        return Err(bad("is not a unicast address"));
    }
    let host = u32::from(addr) & !v4_mask(prefix);
    if prefix <= 30 && (host == 0 || host == !v4_mask(prefix)) {
        return Err(bad("is its subnet's network or broadcast address"));
    }
    Ok(Ipv4Mode::Static {
        addr,
        prefix,
        gateway: None,
    })
}

fn ipv6(src: &Source<'_>, v: &Spanned<String>) -> Result<Ipv6Mode, ConfigError> {
    let bad = |why: &str| src.at(v, format!("ipv6 {:?} {why}", v.get_ref()));
    let s = v.get_ref().as_str();
    match s {
        "auto" => return Ok(Ipv6Mode::Auto),
        "none" => return Ok(Ipv6Mode::None),
        _ => {}
    }
    let Some((a, p)) = s.split_once('/') else {
        return Err(bad("is not \"auto\", \"none\" or ADDR/N"));
    };
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| bad("is not \"auto\", \"none\" or ADDR/N"))?;
    let prefix = parse_prefix(p, 128).ok_or_else(|| bad("has a prefix length outside 1..=128"))?;
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
        return Err(bad("is not a unicast address"));
    }
    Ok(Ipv6Mode::Static { addr, prefix })
}

/// A decimal prefix length in `1..=max`, digits only (no sign, no spaces).
fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    p.parse::<u8>().ok().filter(|n| (1..=max).contains(n))
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn time(src: &Source<'_>, raw: RawTime) -> Result<Time, ConfigError> {
    let ntp = raw
        .ntp
        .into_iter()
        .map(|n| {
            if let Ok(a) = n.get_ref().parse::<Ipv4Addr>() {
                Ok(NtpServer::Addr(a))
            } else if is_dns_name(n.get_ref()) {
                Ok(NtpServer::Name(n.into_inner()))
            } else {
                Err(src.at(
                    &n,
                    format!(
                        "ntp server {:?} is not an IPv4 address or a host name",
                        n.get_ref()
                    ),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Time { ntp })
}

fn boot(src: &Source<'_>, raw: RawBoot) -> Result<Boot, ConfigError> {
    let mut boot = Boot::default();
    if let Some(d) = raw.trial_deadline_secs {
        boot.trial_deadline_secs = match u32::try_from(*d.get_ref()) {
            Ok(n) if TRIAL_DEADLINE_SECS_RANGE.contains(&n) => n,
            _ => {
                return Err(src.at(
                    &d,
                    format!(
                        "trial_deadline_secs {} is outside {}..={}",
                        d.get_ref(),
                        TRIAL_DEADLINE_SECS_RANGE.start(),
                        TRIAL_DEADLINE_SECS_RANGE.end()
                    ),
                ));
            }
        };
    }
    if let Some(w) = raw.watchdog {
        boot.watchdog = w;
    }
    Ok(boot)
}

fn services(src: &Source<'_>, raw: Vec<Spanned<RawService>>) -> Result<Vec<Service>, ConfigError> {
    let mut out: Vec<Service> = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for rs in raw {
        let span = rs.span();
        let rs = rs.into_inner();
        let Some(n) = rs.name else {
            return Err(src.error(span, "service without a name"));
        };
        let name = n.get_ref();
        if name.is_empty()
            || name.len() > SERVICE_NAME_MAX_BYTES
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        {
            return Err(src.at(
                &n,
                format!(
                    "service name {name:?} is not 1 to {SERVICE_NAME_MAX_BYTES} letters, digits, '_', '-' and '.'"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(src.at(&n, format!("service name {name:?} is used twice")));
        }
        let Some(cmd) = rs.command else {
            return Err(src.at(&n, format!("service {name:?} has no command")));
        };
        let Some(program) = cmd.get_ref().first() else {
            return Err(src.at(&cmd, format!("service {name:?} has an empty command")));
        };
        if !program.get_ref().starts_with('/') {
            return Err(src.at(
                program,
                format!(
                    "service {name:?}: program {:?} is not an absolute path",
                    program.get_ref()
                ),
            ));
        }
        if let Some(arg) = cmd.get_ref().iter().find(|a| a.get_ref().contains('\0')) {
            return Err(src.at(
                arg,
                format!("service {name:?}: command has a NUL character"),
            ));
        }
        let restart = restart(src, rs.restart.as_ref())?;
        out.push(Service {
            name: n.into_inner(),
            command: cmd
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            restart,
        });
    }
    Ok(out)
}

fn restart(src: &Source<'_>, raw: Option<&Spanned<String>>) -> Result<Restart, ConfigError> {
    let Some(r) = raw else {
        return Ok(Restart::default());
    };
    match r.get_ref().as_str() {
        "always" => Ok(Restart::Always),
        "on-failure" => Ok(Restart::OnFailure),
        "never" => Ok(Restart::Never),
        other => Err(src.at(
            r,
            format!("restart {other:?} is not \"always\", \"on-failure\" or \"never\""),
        )),
    }
}

fn management(src: &Source<'_>, raw: RawManagement) -> Result<Management, ConfigError> {
    let mut m = Management::default();
    if let Some(a) = raw.admin {
        if !is_identity(a.get_ref()) {
            return Err(src.at(
                &a,
                format!(
                    "admin {:?} is not an identity path (1 to {IDENTITY_MAX_DEPTH} components of 1 to {NAME_MAX_BYTES} letters, digits, '_', '-' and '.', joined by '/')",
                    a.get_ref()
                ),
            ));
        }
        m.admin = Some(a.into_inner());
    }
    if let Some(l) = raw.listen {
        m.listen = socket_addr(src, "listen", &l)?;
    }
    if let Some(x) = raw.metrics.filter(|x| !x.get_ref().is_empty()) {
        m.metrics = Some(socket_addr(src, "metrics", &x)?);
    }
    Ok(m)
}

/// `ADDR:PORT` (`[V6]:PORT` for IPv6) with a port other than 0.
fn socket_addr(
    src: &Source<'_>,
    key: &str,
    v: &Spanned<String>,
) -> Result<SocketAddr, ConfigError> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        Ok(_) => Err(src.at(v, format!("{key} {:?} has port 0", v.get_ref()))),
        Err(_) => Err(src.at(
            v,
            format!(
                "{key} {:?} is not ADDR:PORT (an IP address, [brackets] around IPv6, and a port)",
                v.get_ref()
            ),
        )),
    }
}

fn unikernels(
    src: &Source<'_>,
    raw: Vec<Spanned<RawUnikernel>>,
    network: &Network,
) -> Result<Vec<Autostart>, ConfigError> {
    let mut out: Vec<Autostart> = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for ru in raw {
        let span = ru.span();
        let ru = ru.into_inner();
        let Some(n) = ru.name else {
            return Err(src.error(span, "unikernel without a name"));
        };
        let name = n.get_ref();
        if !is_name(name, NAME_MAX_BYTES) {
            return Err(src.at(
                &n,
                format!(
                    "unikernel name {name:?} is not 1 to {NAME_MAX_BYTES} letters, digits, '_' and '-'"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(src.at(&n, format!("unikernel name {name:?} is used twice")));
        }
        let Some(image) = ru.image else {
            return Err(src.at(&n, format!("unikernel {name:?} has no image")));
        };
        if !is_image_file(image.get_ref()) {
            return Err(src.at(
                &image,
                format!(
                    "unikernel {name:?}: image {:?} is not a file name in petrel/images/ (1 to {IMAGE_NAME_MAX_BYTES} letters, digits, '_', '-' and '.', not starting with '.')",
                    image.get_ref()
                ),
            ));
        }
        let memory_mib = match ru.memory_mib {
            None => DEFAULT_UNIKERNEL_MEMORY_MIB,
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(v) if UNIKERNEL_MEMORY_MIB_RANGE.contains(&v) => v,
                _ => {
                    return Err(src.at(
                        &m,
                        format!(
                            "unikernel {name:?}: memory_mib {} is outside {}..={}",
                            m.get_ref(),
                            UNIKERNEL_MEMORY_MIB_RANGE.start(),
                            UNIKERNEL_MEMORY_MIB_RANGE.end()
                        ),
                    ));
                }
            },
        };
        if let Some(arg) = ru.args.iter().find(|a| a.get_ref().contains('\0')) {
            return Err(src.at(
                arg,
                format!("unikernel {name:?}: args have a NUL character"),
            ));
        }
        let mut net: Vec<NetAttach> = Vec::with_capacity(ru.net.len());
        for d in &ru.net {
            // "DEV" alone: the bridge of the same name (albatross, petrelctl --net).
            let (device, bridge) = d
                .get_ref()
                .split_once('=')
                .unwrap_or((d.get_ref().as_str(), d.get_ref().as_str()));
            if !is_name(device, DEVICE_NAME_MAX_BYTES) {
                return Err(src.at(
                    d,
                    format!(
                        "unikernel {name:?}: net {:?} is not DEV or DEV=BRIDGE (DEV: 1 to {DEVICE_NAME_MAX_BYTES} letters, digits, '_' and '-')",
                        d.get_ref()
                    ),
                ));
            }
            if network.bridges.iter().all(|b| b.name != bridge) {
                return Err(src.at(
                    d,
                    format!(
                        "unikernel {name:?}: net {:?}: no bridge {bridge:?} in [network]",
                        d.get_ref()
                    ),
                ));
            }
            if net.iter().any(|a| a.device == device) {
                return Err(src.at(
                    d,
                    format!("unikernel {name:?}: device {device:?} is attached twice"),
                ));
            }
            net.push(NetAttach {
                device: device.to_string(),
                bridge: bridge.to_string(),
            });
        }
        let restart = restart(src, ru.restart.as_ref())?;
        let priority = match ru.priority {
            None => 0,
            Some(p) => i32::try_from(*p.get_ref()).map_err(|_| {
                src.at(
                    &p,
                    format!(
                        "unikernel {name:?}: priority {} is outside {}..={}",
                        p.get_ref(),
                        i32::MIN,
                        i32::MAX
                    ),
                )
            })?,
        };
        out.push(Autostart {
            name: n.into_inner(),
            image: image.into_inner(),
            memory_mib,
            args: ru.args.into_iter().map(Spanned::into_inner).collect(),
            net,
            restart,
            priority,
        });
    }
    Ok(out)
}

/// 1 to `max` bytes of `[A-Za-z0-9_-]`.
fn is_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// An identity path: 1 to [`IDENTITY_MAX_DEPTH`] components joined by `/`, each 1 to
/// [`NAME_MAX_BYTES`] bytes of `[A-Za-z0-9_.-]` and not `.` or `..`.
fn is_identity(s: &str) -> bool {
    let mut depth = 0;
    for c in s.split('/') {
        depth += 1;
        let ok = (1..=NAME_MAX_BYTES).contains(&c.len())
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return false;
        }
    }
    depth <= IDENTITY_MAX_DEPTH
}

/// A plain file name: 1 to [`IMAGE_NAME_MAX_BYTES`] bytes of `[A-Za-z0-9_.-]`, not
/// starting with `.` (so never `.`, `..` or hidden).
fn is_image_file(s: &str) -> bool {
    (1..=IMAGE_NAME_MAX_BYTES).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// An RFC 1123 label: 1 to 63 letters, digits and '-', not starting or ending with '-'.
fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS host name: dot-separated labels, at most 253 bytes, an optional final dot.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    (1..=253).contains(&s.len()) && s.split('.').all(is_label)
}

/// A name Linux accepts for an interface (`dev_valid_name`), printable ASCII only.
fn is_ifname(s: &str) -> bool {
    (1..=IFNAME_MAX_BYTES).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'/' && c != b':')
}
