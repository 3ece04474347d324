//! Fuzz target: a device config file (`petrel/config.toml`), from TOML syntax through
//! validation, and back through `to_toml` for every config that parses.
//!
//! Everything lives in `petrel_config::fuzz_check` so that the stable test suite
//! (`config/tests/robust.rs`) replays the corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_config::fuzz_check(data);
});
