//! Kernel uevent messages (`NETLINK_KOBJECT_UEVENT`, multicast group 1), parsed without
//! I/O or allocation.
//!
//! A message is `ACTION@DEVPATH\0` followed by `KEY=VALUE\0` pairs (the kernel's
//! `kobject_uevent_env`). Messages from udev (`libudev\0` + a binary header) are not
//! kernel messages and are refused. Contract: [`Uevent::parse`] never panics, and every
//! accessor returns borrowed text from the message.

/// Largest message we accept (the kernel's `UEVENT_BUFFER_SIZE` is 2048).
pub const UEVENT_MAX_BYTES: usize = 8192;

/// A parsed kernel uevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uevent<'a> {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: &'a str,
    /// The sysfs path below `/sys`, e.g. `/devices/pci0000:00/0000:00:03.0`.
    pub devpath: &'a str,
    /// The `KEY=VALUE` area, NUL-separated.
    vars: &'a [u8],
}

/// Why bytes are not a kernel uevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UeventError {
    /// Larger than [`UEVENT_MAX_BYTES`].
    #[error("uevent of {0} bytes is too large")]
    TooLarge(usize),
    /// No `ACTION@DEVPATH` header.
    #[error("uevent without an ACTION@DEVPATH header")]
    NoHeader,
    /// Text that is not UTF-8.
    #[error("uevent is not UTF-8")]
    NotUtf8,
}

impl<'a> Uevent<'a> {
    /// Parses one message as received from the socket.
    pub fn parse(bytes: &'a [u8]) -> Result<Uevent<'a>, UeventError> {
        if bytes.len() > UEVENT_MAX_BYTES {
            return Err(UeventError::TooLarge(bytes.len()));
        }
        let (head, vars) = match bytes.iter().position(|&b| b == 0) {
            Some(n) => (
                bytes.get(..n).unwrap_or_default(),
                bytes.get(n + 1..).unwrap_or_default(),
            ),
            None => (bytes, &[][..]),
        };
        let head = std::str::from_utf8(head).map_err(|_| UeventError::NotUtf8)?;
        let (action, devpath) = head.split_once('@').ok_or(UeventError::NoHeader)?;
        if action.is_empty() || !devpath.starts_with('/') {
            return Err(UeventError::NoHeader);
        }
        Ok(Uevent {
            action,
            devpath,
            vars,
        })
    }

    /// The `KEY=VALUE` pairs, in order; entries that are not UTF-8 or have no `=` are
    /// skipped.
    pub fn vars(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.vars().find_map(|(k, v)| (k == key).then_some(v))
    }

    /// The device's `MODALIAS`, if it has one.
    pub fn modalias(&self) -> Option<&'a str> {
        self.get("MODALIAS").filter(|m| !m.is_empty())
    }

    /// The device's `SUBSYSTEM`.
    pub fn subsystem(&self) -> Option<&'a str> {
        self.get("SUBSYSTEM")
    }

    /// The device node below `/dev` (`DEVNAME`), if any.
    pub fn devname(&self) -> Option<&'a str> {
        self.get("DEVNAME")
    }
}

/// The fuzz target's entry point: parses `bytes` and touches every accessor.
pub fn fuzz_check(bytes: &[u8]) {
    if let Ok(ev) = Uevent::parse(bytes) {
        assert!(!ev.action.is_empty() && ev.devpath.starts_with('/'));
        let n = ev.vars().count();
        assert!(n <= bytes.len());
        let _ = (ev.modalias(), ev.subsystem(), ev.devname(), ev.get(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_message() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0\0ACTION=add\0\
                    DEVPATH=/devices/pci0000:00/0000:00:04.0\0SUBSYSTEM=pci\0\
                    MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\0SEQNUM=812\0";
        let ev = Uevent::parse(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.devpath, "/devices/pci0000:00/0000:00:04.0");
        assert_eq!(ev.subsystem(), Some("pci"));
        assert_eq!(
            ev.modalias(),
            Some("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
        );
        assert_eq!(ev.get("SEQNUM"), Some("812"));
        assert_eq!(ev.devname(), None);
        assert_eq!(ev.vars().count(), 5);
    }

    #[test]
    fn input_device() {
        let msg = b"add@/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/event0\0ACTION=add\0\
                    SUBSYSTEM=input\0MAJOR=13\0MINOR=64\0DEVNAME=input/event0\0";
        let ev = Uevent::parse(msg).unwrap();
        assert_eq!(ev.devname(), Some("input/event0"));
        assert_eq!(ev.modalias(), None);
    }

    #[test]
    fn refuses_non_kernel_messages() {
        assert_eq!(Uevent::parse(b""), Err(UeventError::NoHeader));
        assert_eq!(
            Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"),
            Err(UeventError::NoHeader)
        );
        assert_eq!(Uevent::parse(b"add@devices\0"), Err(UeventError::NoHeader));
        assert_eq!(Uevent::parse(b"@/x\0"), Err(UeventError::NoHeader));
        assert_eq!(Uevent::parse(b"a\xffd@/x\0"), Err(UeventError::NotUtf8));
        assert_eq!(
            Uevent::parse(&[b'a'; UEVENT_MAX_BYTES + 1]),
            Err(UeventError::TooLarge(8193))
        );
        // Header only, odd vars.
        let ev = Uevent::parse(b"remove@/x").unwrap();
        assert_eq!(ev.vars().count(), 0);
        let ev = Uevent::parse(b"add@/x\0novalue\0\xff=1\0K=\0MODALIAS=\0").unwrap();
        assert_eq!(ev.vars().collect::<Vec<_>>(), [("K", ""), ("MODALIAS", "")]);
        assert_eq!(ev.modalias(), None);
    }

    #[test]
    fn fuzz_check_survives_truncations() {
        let msg = b"add@/devices/x\0SUBSYSTEM=usb\0MODALIAS=usb:v1d2\0";
        for n in 0..=msg.len() {
            fuzz_check(&msg[..n]);
        }
    }
}
