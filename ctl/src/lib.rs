//! The operator's command line for Petrel appliances, and its certificate tooling
#![forbid(unsafe_code)]
