//! Builds the Petrel firmware reproducibly: initramfs, UKI, GPT disk image; provisions devices
fn main() {}
