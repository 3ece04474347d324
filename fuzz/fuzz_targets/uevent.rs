//! Fuzz target: a kernel uevent message as PID 1 receives it from NETLINK_KOBJECT_UEVENT.
//!
//! Everything lives in `petrel_init::uevent::fuzz_check`, which the stable test suite
//! (`cargo test -p petrel-init --test robust`) also runs over the corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    petrel_init::uevent::fuzz_check(data);
});
