//! Network configuration through netlink and /dev/net/tun: bridges, taps, addresses, routes, MTU, link state
#![forbid(unsafe_code)]
