//! PID 1 of the Petrel image.
