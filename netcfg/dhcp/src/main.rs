//! DHCPv4 and SNTP clients, run by petrel-init as child processes
fn main() {}
