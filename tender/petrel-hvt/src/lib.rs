//! `petrel-hvt`: runs one Solo5 hvt unikernel on KVM.
