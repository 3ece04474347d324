//! Mutual TLS over loopback TCP.
