//! How PID 1 runs `petreld` (DESIGN §2 step 3): its command line from what the ESP
//! holds, as a service restarted with backoff, and stopped first — before every other
//! process — on poweroff and reboot, so that it stops the unikernels cleanly and saves
//! its state while the data partition is still mounted.
//!
//! Pure: the caller says which files exist and whether the config parsed.

use std::time::Duration;

use crate::supervisor::{Restart, ServiceSpec};

/// The service's name in logs and in the supervisor.
pub const SERVICE_NAME: &str = "petreld";
/// The program.
pub const PETRELD_BIN: &str = "/bin/petreld";
/// The device config on the mounted ESP.
pub const CONFIG_FILE: &str = "/boot/efi/petrel/config.toml";
/// The operator's trust anchor on the mounted ESP (`petrel-image provision --trust`).
pub const TRUST_FILE: &str = "/boot/efi/petrel/trust/ca.pem";
/// The device certificate chain (`petrel-image provision --device-cert`).
pub const DEVICE_CERT_FILE: &str = "/boot/efi/petrel/trust/device.crt.pem";
/// The device key (`petrel-image provision --device-key`).
pub const DEVICE_KEY_FILE: &str = "/boot/efi/petrel/trust/device.key.pem";
/// How long `petreld` gets after SIGTERM to stop every unikernel and save its state.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `petreld`'s command line. `config_ok`: the ESP's config file exists and parses (a
/// broken one is left out, so `petreld` runs on its defaults as PID 1 does and the box
/// stays manageable); `exists` says whether a file is there. The device certificate is
/// passed only with its key.
pub fn command(config_ok: bool, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut cmd = vec![PETRELD_BIN.to_owned(), "--appliance".to_owned()];
    if config_ok {
        cmd.extend(["--config".to_owned(), CONFIG_FILE.to_owned()]);
    }
    if exists(TRUST_FILE) {
        cmd.extend(["--trust".to_owned(), TRUST_FILE.to_owned()]);
    }
    if exists(DEVICE_CERT_FILE) && exists(DEVICE_KEY_FILE) {
        cmd.extend([
            "--cert".to_owned(),
            DEVICE_CERT_FILE.to_owned(),
            "--key".to_owned(),
            DEVICE_KEY_FILE.to_owned(),
        ]);
    }
    cmd
}

/// The service PID 1 supervises: always restarted.
pub fn service(config_ok: bool, exists: impl Fn(&str) -> bool) -> ServiceSpec {
    ServiceSpec {
        name: SERVICE_NAME.to_owned(),
        command: command(config_ok, exists),
        restart: Restart::Always,
    }
}

/// What PID 1 logs about a half-provisioned certificate (one of the pair missing).
pub fn warnings(exists: impl Fn(&str) -> bool) -> Option<String> {
    match (exists(DEVICE_CERT_FILE), exists(DEVICE_KEY_FILE)) {
        (true, false) => Some(format!(
            "petreld: {DEVICE_CERT_FILE} without {DEVICE_KEY_FILE}; using a self-signed certificate"
        )),
        (false, true) => Some(format!(
            "petreld: {DEVICE_KEY_FILE} without {DEVICE_CERT_FILE}; using a self-signed certificate"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(files: &[&str]) -> impl Fn(&str) -> bool {
        let files: Vec<String> = files.iter().map(|f| (*f).to_owned()).collect();
        move |p| files.iter().any(|f| f == p)
    }

    #[test]
    fn unprovisioned_box() {
        assert_eq!(command(false, with(&[])), ["/bin/petreld", "--appliance"]);
        assert_eq!(
            command(true, with(&[])),
            [
                "/bin/petreld",
                "--appliance",
                "--config",
                "/boot/efi/petrel/config.toml"
            ]
        );
    }

    #[test]
    fn provisioned_box() {
        let all = with(&[TRUST_FILE, DEVICE_CERT_FILE, DEVICE_KEY_FILE]);
        let spec = service(true, all);
        assert_eq!(spec.name, "petreld");
        assert_eq!(spec.restart, Restart::Always);
        assert_eq!(
            spec.command.join(" "),
            "/bin/petreld --appliance --config /boot/efi/petrel/config.toml \
             --trust /boot/efi/petrel/trust/ca.pem \
             --cert /boot/efi/petrel/trust/device.crt.pem \
             --key /boot/efi/petrel/trust/device.key.pem"
        );
        assert_eq!(
            warnings(with(&[TRUST_FILE, DEVICE_CERT_FILE, DEVICE_KEY_FILE])),
            None
        );
    }

    #[test]
    fn half_a_certificate_is_left_out() {
        let c = command(false, with(&[TRUST_FILE, DEVICE_CERT_FILE]));
        assert_eq!(
            c,
            [
                "/bin/petreld",
                "--appliance",
                "--trust",
                "/boot/efi/petrel/trust/ca.pem"
            ]
        );
        assert!(warnings(with(&[DEVICE_CERT_FILE])).is_some());
        assert!(warnings(with(&[DEVICE_KEY_FILE])).is_some());
        assert_eq!(warnings(with(&[])), None);
    }
}
