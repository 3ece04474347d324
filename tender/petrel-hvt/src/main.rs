//! The `petrel-hvt` command: a thin shell over the library.
fn main() {}
