//! The supervisor: owns the unikernels, their devices, consoles, restarts, persistent state and the management server
#![forbid(unsafe_code)]
