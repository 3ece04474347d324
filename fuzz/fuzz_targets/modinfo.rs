//! Fuzz target: a kernel module file from a downloaded package — the ELF section table,
//! the `.modinfo` section and its `key=value` strings.
//!
//! Everything lives in `petrel_image::modinfo::fuzz_check` so that the stable test suite
//! replays the corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_image::modinfo::fuzz_check(data);
});
