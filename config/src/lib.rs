//! The device configuration: one schema and parser for petrel/config.toml, shared by init, petreld, petrel-image and petrelctl
#![forbid(unsafe_code)]
