//! Fuzz target: management protocol frames, from the length prefix to the messages.
//!
//! Everything lives in `petrel_proto::fuzz_check` so that the stable test suite replays
//! the corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_proto::fuzz_check(data);
});
