//! Fuzz target: petreld's state file (`state/state.json`), from the JSON envelope and its
//! checksum to the body, and back through the encoder for every state that decodes.
//!
//! Everything lives in `petreld::persist::fuzz_check` so that the stable test suite
//! (`supervisor/tests/robust.rs`) replays the corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petreld::persist::fuzz_check(data);
});
