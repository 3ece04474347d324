//! Fuzz target: bytes as a DHCP message, as an Ethernet/IPv4/UDP frame and as a lease
//! file, with round-trip invariants.
//!
//! Everything lives in `petrel_dhcp::fuzz_dhcp` so that the stable test suite
//! (`cargo test -p petrel-dhcp --test robust`) replays the corpus through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_dhcp::fuzz_dhcp(data);
});
