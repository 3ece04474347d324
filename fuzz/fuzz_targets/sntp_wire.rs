//! Fuzz target: bytes as an SNTP reply, through parse, emit, the reply checks and the
//! clock decision.
//!
//! Everything lives in `petrel_dhcp::fuzz_sntp` so that the stable test suite
//! (`cargo test -p petrel-dhcp --test robust`) replays the corpus through the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_dhcp::fuzz_sntp(data);
});
