//! A harness that boots the real `petrel.img` in QEMU through OVMF and systemd-boot —
//! the real boot path — and lets tests wait for console milestones, press the power
//! button, and reach forwarded ports.
//!
//! One [`Qemu`] is one virtual machine with its own scratch directory: a sparse copy of
//! the image (grown to the requested disk size, so first-boot growth is exercised), a
//! private copy of the OVMF variable store, the serial log, and the QMP socket. The VM
//! is killed when the value is dropped.
//!
//! Acceleration: KVM with `-cpu host` only when `/proc/cpuinfo` shows `vmx` or `svm`;
//! otherwise TCG (these build machines run KVM in software, under which QEMU cannot boot
//! Linux; under TCG the default CPU model offers SVM, so KVM works inside the guest).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// OVMF firmware code (read-only pflash).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template (copied per VM).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Errors of the harness, each with what to do about it.
#[derive(Debug)]
pub enum Error {
    /// A file or tool the harness needs is missing.
    Missing(String),
    /// An I/O error, with what was being done.
    Io(String, std::io::Error),
    /// A milestone did not appear in time.
    Timeout {
        /// What was awaited.
        what: String,
        /// The last lines of the serial console.
        tail: String,
    },
    /// QEMU or QMP said something unexpected.
    Qemu(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Missing(s) => write!(f, "missing: {s}"),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Timeout { what, tail } => {
                write!(
                    f,
                    "timed out waiting for {what}; serial console ends with:\n{tail}"
                )
            }
            Error::Qemu(s) => write!(f, "qemu: {s}"),
        }
    }
}

impl std::error::Error for Error {}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io(what, e)
}

/// Result of the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// Whether the host CPU offers hardware virtualisation to QEMU.
pub fn host_has_hw_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

/// The acceleration arguments for this host.
pub fn accel_args() -> Vec<String> {
    if host_has_hw_virt() && Path::new("/dev/kvm").exists() {
        vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]
    } else {
        vec!["-accel".into(), "tcg".into()]
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading a free port"))?.port())
}

/// How to start a VM.
#[derive(Debug, Clone)]
pub struct Config {
    /// The disk image to boot (copied; the original is never written).
    pub image: PathBuf,
    /// Size of the VM's disk; the copy is extended to this (sparse).
    pub disk_bytes: u64,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// TCP forwards from 127.0.0.1:host to the guest's port, over user-mode networking.
    pub forwards: Vec<(u16, u16)>,
    /// Extra QEMU arguments.
    pub extra: Vec<String>,
    /// Replaces the user-mode `-netdev` (then `forwards` is ignored), e.g. a tap.
    pub netdev: Option<String>,
    /// A command QEMU runs under, e.g. `["ip", "netns", "exec", "NS"]`.
    pub wrapper: Vec<String>,
}

impl Config {
    /// Defaults for booting `image`: 2 GiB disk, 1 GiB memory, 2 CPUs, no forwards.
    pub fn new(image: impl Into<PathBuf>) -> Config {
        Config {
            image: image.into(),
            disk_bytes: 2 << 30,
            mem_mib: 1024,
            cpus: 2,
            forwards: Vec::new(),
            extra: Vec::new(),
            netdev: None,
            wrapper: Vec::new(),
        }
    }
}

/// A running VM.
pub struct Qemu {
    child: Option<Child>,
    dir: PathBuf,
    serial: PathBuf,
    qmp: Option<BufReader<UnixStream>>,
    started: Instant,
    /// Where in the serial log [`Qemu::wait_for`] continues from.
    cursor: usize,
    /// Where [`Qemu::wait_seen`] searches from (see [`Qemu::mark`]).
    mark: usize,
}

impl Qemu {
    /// Copies the image and the OVMF variables into a scratch directory and boots.
    pub fn boot(cfg: &Config) -> Result<Qemu> {
        for (p, pkg) in [(OVMF_CODE, "ovmf"), (OVMF_VARS, "ovmf")] {
            if !Path::new(p).exists() {
                return Err(Error::Missing(format!(
                    "{p} (Debian package {pkg}; run `make deps`)"
                )));
            }
        }
        if !cfg.image.is_file() {
            return Err(Error::Missing(format!(
                "{} (run `make image`)",
                cfg.image.display()
            )));
        }
        let dir = std::env::temp_dir().join(format!(
            "petrel-qemu-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io("creating the VM directory"))?;
        let disk = dir.join("disk.img");
        let st = Command::new("cp")
            .args(["--sparse=always"])
            .arg(&cfg.image)
            .arg(&disk)
            .status()
            .map_err(io("running cp"))?;
        if !st.success() {
            return Err(Error::Qemu(format!(
                "copying {} failed",
                cfg.image.display()
            )));
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .map_err(io("opening the disk copy"))?;
        let len = f.metadata().map_err(io("sizing the disk copy"))?.len();
        if cfg.disk_bytes > len {
            f.set_len(cfg.disk_bytes)
                .map_err(io("extending the disk copy"))?;
        }
        drop(f);
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).map_err(io("copying the OVMF variables"))?;
        let serial = dir.join("serial.log");
        let qmp_path = dir.join("qmp.sock");

        let mut netdev = "user,id=net0".to_string();
        for (host, guest) in &cfg.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let netdev = cfg.netdev.clone().unwrap_or(netdev);
        let mut cmd = match cfg.wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg("qemu-system-x86_64");
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(accel_args())
            .args([
                "-machine",
                "q35",
                "-m",
                &cfg.mem_mib.to_string(),
                "-smp",
                &cfg.cpus.to_string(),
            ])
            .args(["-display", "none", "-no-user-config", "-nodefaults"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                disk.display()
            ))
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"])
            .args(["-device", "i6300esb", "-action", "watchdog=reset"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .args(&cfg.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("qemu.stderr"))
                    .map_err(io("creating qemu.stderr"))?,
            ));
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing(
                    "qemu-system-x86_64 (Debian package qemu-system-x86; run `make deps`)".into(),
                )
            } else {
                Error::Io("starting qemu".into(), e)
            }
        })?;
        let mut vm = Qemu {
            child: Some(child),
            dir,
            serial,
            qmp: None,
            started: Instant::now(),
            cursor: 0,
            mark: 0,
        };
        vm.connect_qmp(&qmp_path)?;
        Ok(vm)
    }

    fn connect_qmp(&mut self, path: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    if let Some(st) = self.try_exit_status()? {
                        return Err(Error::Qemu(format!(
                            "exited at start ({st}): {}",
                            self.qemu_stderr()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::Io("connecting to QMP".into(), e)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io("QMP timeout"))?;
        let mut r = BufReader::new(stream);
        let mut greeting = String::new();
        r.read_line(&mut greeting)
            .map_err(io("reading the QMP greeting"))?;
        self.qmp = Some(r);
        self.qmp("qmp_capabilities", serde_json::json!({}))?;
        Ok(())
    }

    /// Sends one QMP command and returns its `return` value.
    pub fn qmp(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let r = self
            .qmp
            .as_mut()
            .ok_or_else(|| Error::Qemu("QMP not connected".into()))?;
        let msg = serde_json::json!({"execute": command, "arguments": arguments});
        let mut line = msg.to_string();
        line.push('\n');
        r.get_mut()
            .write_all(line.as_bytes())
            .map_err(io("writing to QMP"))?;
        loop {
            let mut reply = String::new();
            let n = r.read_line(&mut reply).map_err(io("reading from QMP"))?;
            if n == 0 {
                return Err(Error::Qemu(format!("QMP closed during {command}")));
            }
            let v: serde_json::Value = serde_json::from_str(&reply)
                .map_err(|e| Error::Qemu(format!("bad QMP reply {reply:?}: {e}")))?;
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = v.get("error") {
                return Err(Error::Qemu(format!("{command}: {err}")));
            }
            // An asynchronous event: skip.
        }
    }

    /// Presses ctrl-alt-delete on the guest's keyboard.
    pub fn ctrl_alt_delete(&mut self) -> Result<()> {
        let keys = serde_json::json!({"keys": [
            {"type": "qcode", "data": "ctrl"},
            {"type": "qcode", "data": "alt"},
            {"type": "qcode", "data": "delete"}
        ]});
        self.qmp("send-key", keys).map(|_| ())
    }

    /// Presses the ACPI power button.
    pub fn power_button(&mut self) -> Result<()> {
        self.qmp("system_powerdown", serde_json::json!({}))
            .map(|_| ())
    }

    /// The whole serial console so far.
    pub fn serial(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.serial) {
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    /// Path of the serial log (kept in the VM directory until drop).
    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn tail(&self, lines: usize) -> String {
        let s = self.serial();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    fn qemu_stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default()
    }

    fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(io("polling qemu")),
            None => Ok(None),
        }
    }

    /// Polls the console until `find` (given the whole log) returns a line and the
    /// position to continue from; fails if QEMU exits first or `timeout` passes.
    fn poll_console(
        &mut self,
        needle: &str,
        timeout: Duration,
        find: impl Fn(&str) -> Option<(String, usize)>,
    ) -> Result<(String, usize)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(&self.serial()) {
                return Ok(found);
            }
            let what = if let Some(st) = self.try_exit_status()? {
                format!("{needle:?} (qemu exited: {st})")
            } else if Instant::now() > deadline {
                format!("{needle:?} after {timeout:?}")
            } else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            return Err(Error::Timeout {
                what,
                tail: self.tail(40),
            });
        }
    }

    /// Waits until a console line after the previous match contains `needle`, and
    /// returns that line. Fails if QEMU exits first or `timeout` passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let cursor = self.cursor;
        let (line, end) = self.poll_console(needle, timeout, |s| {
            let rest = s.get(cursor..)?;
            let i = rest.find(needle)?;
            let start = rest[..i].rfind('\n').map_or(0, |j| j + 1);
            let end = rest[i..].find('\n').map_or(rest.len(), |j| i + j);
            Some((rest[start..end].trim_end().to_string(), cursor + end))
        })?;
        self.cursor = end;
        Ok(line)
    }

    /// Remembers the current end of the console: [`Qemu::wait_seen`] looks only at what
    /// comes after (e.g. after a reboot).
    pub fn mark(&mut self) {
        self.mark = self.serial().len();
    }

    /// Waits until the console since the last [`Qemu::mark`] contains `needle`, in any
    /// order relative to other waits (services and DHCP print concurrently).
    pub fn wait_seen(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let mark = self.mark;
        let (line, _) = self.poll_console(needle, timeout, |s| {
            let line = s.get(mark..)?.lines().find(|l| l.contains(needle))?;
            Some((line.trim_end().to_string(), mark))
        })?;
        Ok(line)
    }

    /// Waits for QEMU to exit (e.g. after a poweroff) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit_status()? {
                self.child = None;
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("qemu to exit after {timeout:?}"),
                    tail: self.tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills QEMU (a power cut).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The disk copy this VM boots from (it persists across guest reboots).
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.img")
    }
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("PETREL_KEEP_VM").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("qemu-test: kept {}", self.dir.display());
        }
    }
}

/// The image the tests boot: `$PETREL_IMAGE`, else `build/image/petrel.img` in the
/// repository.
pub fn default_image() -> PathBuf {
    std::env::var_os("PETREL_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/image/petrel.img"))
}

/// Fetches `http://127.0.0.1:port/path` with a plain HTTP/1.0 request (no client
/// library: the test checks the unikernel's own server), returning the whole response.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(io("connecting"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(io("read timeout"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: petrel\r\n\r\n").map_err(io("sending the request"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(io("reading the response"))?;
    Ok(out)
}
