//! `petrel-init`: the image's `/init`.
fn main() {}
