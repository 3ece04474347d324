//! DHCPv4 and SNTP clients, run by `petrel-init` as child processes.
//!
//! PID 1 never parses network input itself: it starts `petrel-dhcp IFACE` for each bridge
//! the config puts on DHCP and `petrel-sntp SERVER...` when NTP servers are configured.
//! This library holds everything those two programs decide; the binaries only move bytes
//! and apply the results. The layers, smoltcp-style:
//!
//! - [`frame`]: Ethernet II / IPv4 / UDP headers with checksums, over byte slices
//!   (the DHCP client talks through an `AF_PACKET` socket before it has an address).
//! - [`dhcp::wire`]: DHCPv4 messages (RFC 2131/2132), parse and emit.
//! - [`dhcp::client`]: the client state machine; time is an argument
//!   (`handle(now, event) -> actions`, `poll_at()`), randomness a seeded [`rng::Rng`].
//! - [`dhcp::lease_file`]: the lease as JSON, as `/run/petrel/dhcp/IFACE.json` holds it.
//! - [`sntp::wire`]: SNTPv4 packets (RFC 4330); [`sntp::decide`]: reply validation,
//!   offset and the decision to set the clock (never below the persisted floor).
//!
//! Contract of the wire modules: every parser takes `&[u8]` from the network, checks each
//! length before use, never panics and never allocates on behalf of the input.
#![forbid(unsafe_code)]

pub mod dhcp;
pub mod frame;
pub mod rng;
pub mod sntp;

/// The fuzz target `dhcp_wire`: one input through the frame and DHCP parsers, with the
/// round-trip invariants asserted (an emitted message parses back to the same value).
pub fn fuzz_dhcp(data: &[u8]) {
    dhcp::wire::fuzz_check(data);
    frame::fuzz_check(data);
    dhcp::lease_file::fuzz_check(data);
}

/// The fuzz target `sntp_wire`: one input through the SNTP parser and reply checks.
pub fn fuzz_sntp(data: &[u8]) {
    sntp::fuzz_check(data);
}
