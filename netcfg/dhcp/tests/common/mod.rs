//! Network namespaces and veth pairs for the real-kernel tests, removed by Drop guards.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Child;

pub use petrel_test_support::{Netns, Scratch};

/// A network namespace (`pdhcp-…`) for `role`, loopback up, deleted on drop.
pub fn netns(role: &str) -> Netns {
    let ns = Netns::new("pdhcp-", role);
    ns.loopback_up();
    ns
}

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory (`petrel-dhcp-NAME-…`), removed on drop.
pub fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("petrel-dhcp-{name}"))
}

/// Two namespaces joined by a veth pair: `server` side `vs`, `client` side `vc`, both up.
/// The server side has `server_cidr`.
pub struct Link {
    pub server: Netns,
    pub client: Netns,
}

impl Link {
    pub fn new(server_cidr: &str) -> Self {
        let server = netns("s");
        let client = netns("c");
        let c = client.name();
        server.ip(&[
            "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", c,
        ]);
        server.ip(&["addr", "add", server_cidr, "dev", "vs"]);
        server.ip(&["link", "set", "vs", "up"]);
        client.ip(&["link", "set", "vc", "up"]);
        Link { server, client }
    }
}

/// Waits until something in `ns` listens on UDP `port` (from /proc/net/udp).
pub fn wait_for_udp_listener(ns: &Netns, port: u16) {
    let needle = format!(":{port:04X} ");
    for _ in 0..100 {
        let out = ns.exec("cat", &["/proc/net/udp"]);
        if String::from_utf8_lossy(&out.stdout).contains(&needle) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on UDP port {port} in {}", ns.name());
}
