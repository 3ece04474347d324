//! Fuzz target: an hvt executable, from ELF header to the guest's manifest copy.
//!
//! Everything lives in `hvt_abi::fuzz_check` so that the stable test suite replays the
//! corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hvt_abi::fuzz_check(data);
});
