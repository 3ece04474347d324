//! The boot sequence (DESIGN §2 step 2), one function per step. Each step logs what it
//! did; a step that fails logs why and the boot goes on, degraded but reachable.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use petrel_config::Config;
use rustix::mount::MountFlags;

use crate::disk::{self, BootDisk};
use crate::efi;
use crate::gpt::Guid;
use crate::log::{self, Level, since_boot};
use crate::mac::{self, MAC_SECRET_BYTES};
use crate::modules::{self, Loader};
use crate::supervisor::{Restart, ServiceSpec};
use crate::{clock, files, input, uevent};
use crate::{debug, error, info, warn};

/// How long to wait for the boot disk to appear (USB sticks enumerate late).
pub const BOOT_DISK_WAIT: Duration = Duration::from_secs(15);
/// The per-device secret bridge MACs are derived from.
pub const MAC_SECRET_PATH: &str = "/var/lib/petrel/keys/mac-secret";
/// The DHCP client helper.
pub const DHCP_BIN: &str = "/bin/petrel-dhcp";
/// The SNTP client helper.
pub const SNTP_BIN: &str = "/bin/petrel-sntp";

fn mkdir(path: &str) {
    if let Err(e) = std::fs::create_dir_all(path) {
        warn!("mkdir {path}: {e}");
    }
}

/// Mounts `fstype` at `target`; an already-mounted target (EBUSY) is fine.
pub fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
) -> bool {
    mkdir(target);
    match rustix::mount::mount(src, target, fstype, flags, data) {
        Ok(()) => true,
        Err(rustix::io::Errno::BUSY) => true,
        Err(e) => {
            error!("mount {fstype} on {target}: {e}");
            false
        }
    }
}

/// The pseudo file systems, before anything else (logging to `/dev/kmsg` needs `/dev`).
pub fn mount_pseudo() {
    let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;
    mount(
        "proc",
        "/proc",
        "proc",
        nosuid_nodev | MountFlags::NOEXEC,
        None,
    );
    mount(
        "sysfs",
        "/sys",
        "sysfs",
        nosuid_nodev | MountFlags::NOEXEC,
        None,
    );
    mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        Some(c"mode=0755"),
    );
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=0620,ptmxmode=0666"),
    );
    mount("tmpfs", "/run", "tmpfs", nosuid_nodev, Some(c"mode=0755"));
    mount("tmpfs", "/tmp", "tmpfs", nosuid_nodev, Some(c"mode=1777"));
    // Lines written to /dev/kmsg are rate-limited unless this is on (the command line's
    // printk.devkmsg=on does the same, and locks it).
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    let console_level = std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()));
    log::open_kmsg(console_level);
    mkdir("/run/petrel");
    log::open_run_log();
}

/// `efivarfs`, once its module is loaded, on a UEFI boot.
pub fn mount_efivars() -> bool {
    if !Path::new("/sys/firmware/efi").exists() {
        info!("efi: not a UEFI boot");
        return false;
    }
    mount(
        "efivarfs",
        efi::EFIVARS_DIR,
        "efivarfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
}

/// Reads one of systemd-boot's string variables.
pub fn loader_var(name: &str) -> Option<String> {
    let bytes = files::read_bounded(
        Path::new(&efi::loader_var_path(name)),
        efi::EFIVAR_MAX_BYTES as u64,
    )
    .ok()?;
    efi::decode_string(&bytes)
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Loads the modules: one coldplug pass over `/sys/bus`, then the devices those
/// drivers create (announced on `uevents`, opened before), then the always-needed set
/// and what it creates. `None` without an index.
pub fn load_modules(uevents: Option<&OwnedFd>) -> Option<Loader> {
    let start = std::time::Instant::now();
    let vendor = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| modules::plan::cpu_vendor(&c).map(str::to_owned))
        .unwrap_or_default();
    let release = kernel_release();
    let mut loader = match Loader::open(&release, &vendor) {
        Ok(l) => l,
        Err(e) => {
            error!("modules: {e}; no modules loaded");
            return None;
        }
    };
    let sys_bus = Path::new("/sys/bus");
    let mut n = loader.coldplug(sys_bus);
    n += settle(&mut loader, uevents);
    n += loader.load_always();
    n += settle(&mut loader, uevents);
    let s = &loader.stats;
    info!(
        "modules: {n} loaded, {} not applicable, {} failed, in {} ms",
        s.not_applicable,
        s.failed,
        start.elapsed().as_millis()
    );
    let names: Vec<&str> = loader.loaded_names().collect();
    info!("modules: loaded {}", names.join(" "));
    Some(loader)
}

/// Loads drivers for the devices that the last loads created, until none is new.
fn settle(loader: &mut Loader, uevents: Option<&OwnedFd>) -> usize {
    let sys_bus = Path::new("/sys/bus");
    let mut total = 0;
    for _ in 0..modules::COLDPLUG_MAX_ROUNDS {
        let n = match uevents {
            Some(sock) => {
                let d = drain_uevents(sock, Some(loader));
                if d.lost {
                    d.loaded + loader.coldplug(sys_bus)
                } else {
                    d.loaded
                }
            }
            None => loader.coldplug(sys_bus),
        };
        total += n;
        if n == 0 {
            break;
        }
    }
    total
}

/// The kernel's uevent socket (multicast group 1), non-blocking.
pub fn uevent_socket() -> Option<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, netlink};
    let open = || -> rustix::io::Result<OwnedFd> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Coldplug loads many modules at once; don't lose their events.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 4 << 20);
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
        Ok(fd)
    };
    match open() {
        Ok(fd) => Some(fd),
        Err(e) => {
            error!("uevent socket: {e}; devices that appear later get no driver");
            None
        }
    }
}

/// What [`drain_uevents`] saw.
#[derive(Debug, Default)]
pub struct Drained {
    /// Input devices (`input/eventN`) that appeared.
    pub inputs: Vec<String>,
    /// Modules loaded for new devices.
    pub loaded: usize,
    /// The socket overflowed (ENOBUFS): events were lost, rescan.
    pub lost: bool,
}

/// Reads every pending uevent; loads modules for `add` events with a modalias.
pub fn drain_uevents(sock: &OwnedFd, mut loader: Option<&mut Loader>) -> Drained {
    let mut out = Drained::default();
    let mut buf = vec![0u8; uevent::UEVENT_MAX_BYTES];
    loop {
        let (n, from) =
            match rustix::net::recvfrom(sock, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _, from)) => (n, from),
                Err(rustix::io::Errno::NOBUFS) => {
                    out.lost = true;
                    continue;
                }
                Err(_) => break,
            };
        // Only the kernel (port 0) sends on this group.
        let from_kernel = from
            .and_then(|a| rustix::net::netlink::SocketAddrNetlink::try_from(a).ok())
            .is_some_and(|a| a.pid() == 0);
        if !from_kernel {
            continue;
        }
        let Ok(ev) = uevent::Uevent::parse(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        if ev.action != "add" {
            continue;
        }
        if let (Some(alias), Some(l)) = (ev.modalias(), loader.as_deref_mut()) {
            out.loaded += l.hotplug(alias);
        }
        if let Some(dev) = ev.devname().filter(|d| d.starts_with("input/event")) {
            out.inputs.push(dev.to_owned());
        }
    }
    out
}

/// Opens `/dev/input/eventN` if it can send `KEY_POWER`.
pub fn open_power_button(devname: &str) -> Option<File> {
    let name = devname.strip_prefix("input/").unwrap_or(devname);
    let caps =
        std::fs::read_to_string(format!("/sys/class/input/{name}/device/capabilities/key")).ok()?;
    if !input::caps_have_key(&caps, input::KEY_POWER) {
        return None;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/dev/input/{name}");
    // devtmpfs creates the node asynchronously; a few short tries.
    for _ in 0..20 {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => {
                info!("power: listening on {path}");
                return Some(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                warn!("power: {path}: {e}");
                return None;
            }
        }
    }
    None
}

/// Every input device present now (`eventN` names).
pub fn input_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/input")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("event"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits up to [`BOOT_DISK_WAIT`] for the boot disk, loading drivers for devices that
/// appear meanwhile.
pub fn wait_for_boot_disk(
    uevents: Option<&OwnedFd>,
    mut loader: Option<&mut Loader>,
) -> Option<BootDisk> {
    let uuid_text = loader_var("LoaderDevicePartUUID");
    let uuid = uuid_text.as_deref().and_then(Guid::parse);
    match (&uuid_text, uuid) {
        (Some(_), Some(u)) => info!("esp: loader booted from partition {u}"),
        (Some(t), None) => {
            warn!("esp: LoaderDevicePartUUID {t:?} is not a GUID; taking the first ESP")
        }
        (None, _) => info!("esp: no LoaderDevicePartUUID; taking the first ESP"),
    }
    let deadline = since_boot() + BOOT_DISK_WAIT;
    loop {
        if let Some(found) = disk::find_boot_disk(uuid) {
            return Some(found);
        }
        if since_boot() >= deadline {
            let disks: Vec<String> = disk::list_disks().into_iter().map(|d| d.name).collect();
            error!(
                "esp: not found after {} s (disks: {})",
                BOOT_DISK_WAIT.as_secs(),
                disks.join(" ")
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
        if let Some(sock) = uevents {
            drain_uevents(sock, loader.as_deref_mut());
        }
    }
}

/// Mounts the ESP read-only at `/boot/efi`.
pub fn mount_esp(boot: &BootDisk) -> bool {
    let Some(dev) = boot.disk.partition_dev(boot.esp.number) else {
        error!(
            "esp: partition {} of {} has no device",
            boot.esp.number, boot.disk.name
        );
        return false;
    };
    let dev = dev.to_string_lossy().into_owned();
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let ok = mount(
        &dev,
        disk::ESP_MOUNT,
        "vfat",
        flags,
        Some(c"fmask=0177,dmask=0077"),
    );
    if ok {
        info!(
            "esp: {dev} (partition {}) mounted read-only on {}",
            boot.esp.guid,
            disk::ESP_MOUNT
        );
    }
    ok
}

/// Mounts the data partition and grows it on first boot.
pub fn mount_data(boot: &BootDisk) -> bool {
    let Some(part) = &boot.data else {
        error!(
            "data: no {} partition on {}; state stays in RAM",
            disk::DATA_PARTITION_NAME,
            boot.disk.name
        );
        return false;
    };
    let Some(dev) = boot.disk.partition_dev(part.number) else {
        error!(
            "data: partition {} of {} has no device",
            part.number, boot.disk.name
        );
        return false;
    };
    let dev = dev.to_string_lossy().into_owned();
    if !mount(
        &dev,
        disk::DATA_MOUNT,
        "ext4",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME,
        None,
    ) {
        error!("data: {dev} not mounted; state stays in RAM");
        return false;
    }
    match disk::grow_data(boot) {
        Ok(Some(what)) => info!("data: {what}"),
        Ok(None) => {}
        Err(e) => error!("data: growing {dev}: {e}"),
    }
    info!("data: {dev} mounted on {}", disk::DATA_MOUNT);
    true
}

/// Keeps the wall clock at or above the persisted floor.
pub fn apply_clock_floor() {
    let persisted = std::fs::read_to_string(clock::CLOCK_FLOOR_PATH)
        .ok()
        .and_then(|t| clock::parse_floor(&t));
    let now = wall_secs();
    if let Some(target) = clock::clock_fix(now, persisted, clock::build_floor()) {
        let ts = rustix::time::Timespec {
            tv_sec: i64::try_from(target).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        match rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts) {
            Ok(()) => warn!("clock: {now} is below the floor; set to {target}"),
            Err(e) => error!("clock: setting it to {target}: {e}"),
        }
    } else {
        info!(
            "clock: {now} (floor {})",
            persisted.unwrap_or(0).max(clock::build_floor())
        );
    }
}

/// Seconds since the epoch now.
pub fn wall_secs() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

/// Writes the clock floor if the clock moved past it (hourly and at shutdown).
pub fn save_clock_floor(data_mounted: bool) {
    if !data_mounted {
        return;
    }
    let persisted = std::fs::read_to_string(clock::CLOCK_FLOOR_PATH)
        .ok()
        .and_then(|t| clock::parse_floor(&t));
    let now = wall_secs();
    if clock::should_save(now, persisted) {
        if let Err(e) = files::write_atomic(
            Path::new(clock::CLOCK_FLOOR_PATH),
            format!("{now}\n").as_bytes(),
            0o644,
        ) {
            warn!("clock: saving the floor: {e}");
        }
    }
}

/// The per-device MAC secret: read, or generated once (0600, atomically).
pub fn mac_secret() -> Vec<u8> {
    let path = Path::new(MAC_SECRET_PATH);
    if let Ok(bytes) = files::read_bounded(path, 64) {
        if bytes.len() == MAC_SECRET_BYTES {
            return bytes;
        }
        warn!(
            "net: {MAC_SECRET_PATH} has {} bytes, not {MAC_SECRET_BYTES}; making a new one",
            bytes.len()
        );
    }
    let mut secret = vec![0u8; MAC_SECRET_BYTES];
    if let Err(e) = rustix::rand::getrandom(&mut secret, rustix::rand::GetRandomFlags::empty()) {
        error!("net: getrandom: {e}");
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let made = std::fs::create_dir_all(dir).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        files::write_atomic(path, &secret, 0o600)
    });
    match made {
        Ok(()) => info!("net: new MAC secret in {MAC_SECRET_PATH}"),
        Err(e) => error!("net: saving {MAC_SECRET_PATH}: {e}; bridge MACs change with every boot"),
    }
    secret
}

/// Configures the network; returns the helper services to run (DHCP per bridge, SNTP).
pub fn configure_network(config: &Config, secret: &[u8], data_mounted: bool) -> Vec<ServiceSpec> {
    let mut helpers = Vec::new();
    let mac_for = |name: &str| mac::derive_mac(secret, name);
    let applied = petrel_netcfg::Netlink::new().and_then(|mut nl| {
        let opts = petrel_netcfg::ApplyOptions::new(&mac_for);
        petrel_netcfg::apply(&config.network, &mut nl, &opts)
    });
    match applied {
        Ok(applied) => {
            for w in &applied.warnings {
                warn!("net: {w}");
            }
            for b in &applied.bridges {
                let uplink = b.uplink.as_deref().unwrap_or("no uplink");
                info!(
                    "net: bridge {} ({}), {uplink}{}",
                    b.name,
                    mac::format_mac(&b.mac),
                    if b.dhcp { ", DHCP" } else { "" }
                );
            }
            for b in applied.dhcp_bridges() {
                helpers.push(ServiceSpec {
                    name: format!("dhcp@{b}"),
                    command: vec![DHCP_BIN.into(), b.into()],
                    restart: Restart::Always,
                });
            }
        }
        Err(e) => {
            error!("net: {}", chain(&e));
            if let Err(e) = crate::sys::link_up("lo") {
                error!("net: lo up: {e}");
            }
        }
    }
    if !config.time.ntp.is_empty() {
        let mut command = vec![SNTP_BIN.to_owned()];
        command.extend(config.time.ntp.iter().map(ToString::to_string));
        if data_mounted {
            command.extend(["--floor".to_owned(), clock::CLOCK_FLOOR_PATH.to_owned()]);
        }
        helpers.push(ServiceSpec {
            name: "sntp".into(),
            command,
            restart: Restart::Always,
        });
    }
    helpers.retain(|h| {
        let exists = h.command.first().is_some_and(|p| Path::new(p).exists());
        if !exists {
            error!(
                "{}: {} is not in the image; not started",
                h.name,
                h.command.first().map_or("", String::as_str)
            );
        }
        exists
    });
    helpers
}

/// An error and its sources, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `petreld` as a service (DESIGN §2 step 3), if the image carries it. `config_ok`: the
/// ESP's config file exists and parses.
pub fn petreld_service(config_ok: bool) -> Option<ServiceSpec> {
    let exists = |p: &str| Path::new(p).is_file();
    if !exists(crate::petreld::PETRELD_BIN) {
        error!(
            "petreld: {} is not in the image; not started",
            crate::petreld::PETRELD_BIN
        );
        return None;
    }
    if let Some(w) = crate::petreld::warnings(exists) {
        warn!("{w}");
    }
    Some(crate::petreld::service(config_ok, exists))
}

/// The services from the config.
pub fn config_services(config: &Config) -> Vec<ServiceSpec> {
    config
        .services
        .iter()
        .map(|s| ServiceSpec {
            name: s.name.clone(),
            command: s.command.clone(),
            restart: match s.restart {
                petrel_config::Restart::Always => Restart::Always,
                petrel_config::Restart::OnFailure => Restart::OnFailure,
                petrel_config::Restart::Never => Restart::Never,
            },
        })
        .collect()
}

/// A trial boot: the booted UKI's file still has a boot counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The UKI's path under the ESP mount.
    pub path: PathBuf,
    /// When it must have been blessed (time since boot).
    pub deadline: Duration,
}

/// Whether this is a trial boot, from `LoaderBootCountPath`.
pub fn trial_boot(config: &Config) -> Option<Trial> {
    let var = loader_var("LoaderBootCountPath")?;
    let rel = efi::esp_relative_path(&var)?;
    let name = rel.rsplit('/').next().unwrap_or(&rel);
    let Some(counter) = efi::boot_counter(name) else {
        debug!("boot: {rel} has no boot counter");
        return None;
    };
    let secs = config.boot.trial_deadline_secs;
    info!(
        "boot: trial boot of {rel} ({} tries left, {} done); reboot unless blessed within {secs} s",
        counter.left, counter.done
    );
    Some(Trial {
        path: Path::new(disk::ESP_MOUNT).join(rel),
        deadline: since_boot() + Duration::from_secs(secs.into()),
    })
}

/// Sets the hostname.
pub fn set_hostname(name: &str) {
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => info!("hostname: {name}"),
        Err(e) => error!("hostname {name:?}: {e}"),
    }
}

/// Logs a list of `(level, line)` pairs.
pub fn log_all(lines: Vec<(Level, String)>) {
    for (level, line) in lines {
        log::log(level, &line);
    }
}
