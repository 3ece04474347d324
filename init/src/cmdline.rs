//! The kernel command line options petrel-init reads (`/proc/cmdline`).

/// What a test asks for through `petrel.test=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// `petrel.test=poweroff-when-ready`: power off cleanly once ready.
    pub poweroff_when_ready: bool,
    /// `petrel.test=reboot-when-ready`: reboot cleanly once ready.
    pub reboot_when_ready: bool,
}

impl Cmdline {
    /// Parses the command line; unknown words are ignored.
    pub fn parse(text: &str) -> Cmdline {
        let mut c = Cmdline::default();
        for word in text.split_ascii_whitespace() {
            if let Some(v) = word.strip_prefix("petrel.test=") {
                for flag in v.split(',') {
                    match flag {
                        "poweroff-when-ready" => c.poweroff_when_ready = true,
                        "reboot-when-ready" => c.reboot_when_ready = true,
                        _ => {}
                    }
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(Cmdline::parse("console=ttyS0 panic=10"), Cmdline::default());
        let c = Cmdline::parse("quiet petrel.test=poweroff-when-ready\n");
        assert!(c.poweroff_when_ready && !c.reboot_when_ready);
        let c = Cmdline::parse("petrel.test=x,reboot-when-ready");
        assert!(c.reboot_when_ready);
    }
}
