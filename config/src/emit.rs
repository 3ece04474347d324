//! [`Config`] → TOML text in schema order, every key written out.

use std::fmt::Write as _;

use crate::{Config, Ipv4Mode};

/// A TOML basic string, escaped by the toml crate.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings on one line.
fn strings<T: ToString>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| string(&i.to_string())).collect();
    format!("[{}]", quoted.join(", "))
}

pub(crate) fn to_toml(c: &Config) -> String {
    let mut out = String::new();
    // `writeln!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "version = {}", c.version);
    let _ = writeln!(out, "hostname = {}", string(&c.hostname));
    let _ = writeln!(out, "\n[network]\ndns = {}", strings(&c.network.dns));
    if c.network.bridges.is_empty() {
        out.push_str("bridges = []\n");
    }
    for b in &c.network.bridges {
        let _ = writeln!(out, "\n[[network.bridges]]");
        let _ = writeln!(out, "name = {}", string(&b.name));
        let _ = writeln!(out, "uplink = {}", string(&b.uplink.to_string()));
        let _ = writeln!(out, "ipv4 = {}", string(&b.ipv4.to_string()));
        let gateway = match b.ipv4 {
            Ipv4Mode::Static {
                gateway: Some(g), ..
            } => g.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(out, "gateway = {}", string(&gateway));
        let _ = writeln!(out, "ipv6 = {}", string(&b.ipv6.to_string()));
        let _ = writeln!(out, "mtu = {}", b.mtu);
    }
    let _ = writeln!(out, "\n[time]\nntp = {}", strings(&c.time.ntp));
    let _ = writeln!(
        out,
        "\n[boot]\ntrial_deadline_secs = {}\nwatchdog = {}",
        c.boot.trial_deadline_secs, c.boot.watchdog
    );
    for s in &c.services {
        let _ = writeln!(out, "\n[[services]]");
        let _ = writeln!(out, "name = {}", string(&s.name));
        let _ = writeln!(out, "command = {}", strings(&s.command));
        let _ = writeln!(out, "restart = {}", string(&s.restart.to_string()));
    }
    let m = &c.management;
    out.push_str("\n[management]\n");
    if let Some(admin) = &m.admin {
        let _ = writeln!(out, "admin = {}", string(admin));
    }
    let _ = writeln!(out, "listen = {}", string(&m.listen.to_string()));
    if let Some(metrics) = &m.metrics {
        let _ = writeln!(out, "metrics = {}", string(&metrics.to_string()));
    }
    for u in &c.unikernels {
        let _ = writeln!(out, "\n[[unikernels]]");
        let _ = writeln!(out, "name = {}", string(&u.name));
        let _ = writeln!(out, "image = {}", string(&u.image));
        let _ = writeln!(out, "memory_mib = {}", u.memory_mib);
        let _ = writeln!(out, "args = {}", strings(&u.args));
        let _ = writeln!(out, "net = {}", strings(&u.net));
        let _ = writeln!(out, "restart = {}", string(&u.restart.to_string()));
        let _ = writeln!(out, "priority = {}", u.priority);
    }
    out
}
