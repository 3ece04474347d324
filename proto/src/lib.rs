//! The management protocol: messages, framing, versioning, postcard encoding; shared by petreld and petrelctl
#![forbid(unsafe_code)]
