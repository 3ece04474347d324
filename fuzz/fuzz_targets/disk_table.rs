//! Fuzz target: a disk handed to `petrel-image provision` — its GPT, and the FAT32
//! directory tree the `.`/`..` repair walks.
//!
//! Everything lives in `petrel_image::disk::fuzz::fuzz_check` so that the stable test
//! suite replays the corpus through exactly the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_image::disk::fuzz::fuzz_check(data);
});
