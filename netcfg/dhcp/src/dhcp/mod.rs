//! DHCPv4: wire format, client state machine, lease file.

pub mod client;
pub mod lease_file;
pub mod wire;
