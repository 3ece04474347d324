//! `petrel-init`: the image's `/init`. Everything is in the library; see its docs.

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "petrel-init: PID 1 of the Petrel image; it only runs as /init (pid {})",
            std::process::id()
        );
        eprintln!(
            "usage: boot a Petrel image; kernel option petrel.test=poweroff-when-ready ends the boot once ready"
        );
        std::process::exit(2);
    }
    petrel_init::pid1::run()
}
