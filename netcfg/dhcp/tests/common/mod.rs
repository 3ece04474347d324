//! Network namespaces and veth pairs for the real-kernel tests, removed by Drop guards.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` not found: run `make deps` (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(role: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pdhcp-{role}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NS PROGRAM` as a Command.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("petrel-dhcp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two namespaces joined by a veth pair: `server` side `vs`, `client` side `vc`, both up.
/// The server side has `server_cidr`.
pub struct Link {
    pub server: Netns,
    pub client: Netns,
}

impl Link {
    pub fn new(server_cidr: &str) -> Self {
        let server = Netns::new("s");
        let client = Netns::new("c");
        ip(&[
            "-n", &server.0, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
            &client.0,
        ]);
        ip(&["-n", &server.0, "addr", "add", server_cidr, "dev", "vs"]);
        ip(&["-n", &server.0, "link", "set", "vs", "up"]);
        ip(&["-n", &client.0, "link", "set", "vc", "up"]);
        Link { server, client }
    }
}

/// Waits until something in `ns` listens on UDP `port` (from /proc/net/udp).
pub fn wait_for_udp_listener(ns: &Netns, port: u16) {
    let needle = format!(":{port:04X} ");
    for _ in 0..100 {
        let out = ns.exec("cat").arg("/proc/net/udp").output().unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&needle) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on UDP port {port} in {}", ns.0);
}
