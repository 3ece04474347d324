//! Fuzz target: a GPT header sector and entry array as PID 1 reads them from every disk
//! (a USB stick is untrusted), and the growth of each partition.
//!
//! Everything lives in `petrel_init::gpt::fuzz_check`, which the stable test suite
//! (`cargo test -p petrel-init --test robust`) also runs over the corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_init::gpt::fuzz_check(data);
});
