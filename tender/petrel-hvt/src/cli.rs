//! The `petrel-hvt` command line, as `solo5-hvt` v0.12.1 reads it.
//!
//! ```text
//! petrel-hvt [ --mem=MiB ] [ --block:NAME=PATH ] [ --block-sector-size:NAME=N ]
//!            [ --net:NAME=IFACE | --net:NAME=@FD ] [ --net-mac:NAME=HWADDR ]
//!            [ --dumpcore=DIR ] [ --help ] [ --version ] [ -- ] KERNEL [ ARGS... ]
//! ```
//!
//! A small hand parser (the `--net:NAME=IFACE` form fits no argument-parsing crate) that
//! follows upstream's two passes:
//!
//! 1. Find KERNEL: the first argument that does not start with `-`, or the argument after
//!    `--`. `--help` and `--version` are honoured only before KERNEL, and whichever comes
//!    first wins. No KERNEL gives [`CliError::MissingKernel`].
//! 2. Parse every option before KERNEL, in order; the first bad one is the error.
//!    Everything after KERNEL belongs to the guest, even if it looks like an option.
//!
//! This module checks syntax only. Whether a device NAME is in the manifest, whether a
//! file opens, whether a tap interface exists: that is for the device modules, which print
//! their own warning and then report the option through [`DeviceOpt::arg`] as
//! `Invalid option: `...'`. The sector size *is* checked here (power of two, 512 to 32768,
//! since the manifest field is a `u16`), with upstream's warning.
//!
//! Deliberate differences from upstream's `sscanf` parsing, all stricter or saner:
//! `--mem` takes decimal digits only (upstream reads `--mem=64M` as 64); a block PATH is
//! taken verbatim up to the end of the argument (upstream stops at whitespace); a MAC must
//! be exactly six two-digit hex pairs; an IFACE longer than `IFNAMSIZ - 1` or an `@FD` that
//! is not a non-negative `int` is refused here with the warning `tap_attach` would give;
//! an empty `--dumpcore=` DIR is an invalid option.
//!
//! Panic contract: no function here panics on any argument bytes.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use hvt_abi::abi::{HVT_ABI_VERSION, HVT_CMDLINE_SIZE, MFT_NAME_MAX};

/// `IFNAMSIZ` from `<net/if.h>`: an interface name is at most `IFNAMSIZ - 1` bytes.
pub const IFNAMSIZ: usize = 16;
/// Smallest block sector size upstream accepts.
pub const BLOCK_SECTOR_SIZE_MIN: u16 = 512;

const OPT_MEM: &[u8] = b"--mem=";
const OPT_BLOCK: &[u8] = b"--block:";
const OPT_BLOCK_SECTOR_SIZE: &[u8] = b"--block-sector-size:";
const OPT_NET: &[u8] = b"--net:";
const OPT_NET_MAC: &[u8] = b"--net-mac:";
const OPT_DUMPCORE: &[u8] = b"--dumpcore=";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `--help` came before KERNEL: print [`usage`] to stderr, exit 1 (as upstream).
    Help,
    /// `--version` came before KERNEL: print [`version_text`] to stderr, exit 0.
    Version,
    /// Run KERNEL with these options.
    Run(Options),
}

/// A parsed command line for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Guest memory in MiB from `--mem` (the last one wins); `None` means the default.
    /// Never 0, and `mem_mib << 20` never overflows; the upper limit is checked later.
    pub mem_mib: Option<u64>,
    /// Device options in command-line order.
    pub devices: Vec<DeviceOpt>,
    /// Directory for a core file when the guest aborts (`--dumpcore`, the last one wins).
    pub dumpcore: Option<PathBuf>,
    /// The unikernel to run.
    pub kernel: PathBuf,
    /// Arguments after KERNEL, for the guest command line (see [`guest_cmdline`]).
    pub guest_args: Vec<OsString>,
}

/// One device option (`--block:`, `--block-sector-size:`, `--net:`, `--net-mac:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOpt {
    /// The option as written (lossily decoded), for `Invalid option: `...'`.
    pub arg: String,
    /// The manifest device name: 1 to 67 ASCII letters and digits.
    pub name: String,
    /// What the option sets.
    pub kind: DeviceOptKind,
}

/// The value of a [`DeviceOpt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOptKind {
    /// `--block:NAME=PATH`: back block device NAME with the file at PATH (non-empty).
    Block(PathBuf),
    /// `--block-sector-size:NAME=N`: already checked to be a power of two in 512..=32768.
    BlockSectorSize(u16),
    /// `--net:NAME=IFACE` or `--net:NAME=@FD`.
    Net(NetSource),
    /// `--net-mac:NAME=xx:xx:xx:xx:xx:xx`.
    NetMac([u8; 6]),
}

/// Where a network device's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetSource {
    /// A tap interface by name: 1 to `IFNAMSIZ - 1` bytes, no whitespace.
    Iface(String),
    /// An already open file descriptor (`@FD`), non-negative.
    Fd(i32),
}

/// A command line the tender refuses. Every one means exit status 1.
///
/// The caller prints [`CliError::warning`] (if any) and then the error itself, each as one
/// `petrel-hvt: ...` line, and then the usage if [`CliError::wants_usage`] says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// No KERNEL operand.
    #[error("Missing KERNEL operand")]
    MissingKernel,
    /// `--mem=` with zero, non-digits, or a size that overflows.
    #[error("Malformed argument to --mem")]
    MalformedMem,
    /// An option no module accepts, or one whose value is malformed.
    #[error("Invalid option: `{arg}'")]
    InvalidOption {
        /// The option as written (lossily decoded).
        arg: String,
        /// Upstream's warning line printed before this error, if it prints one.
        warning: Option<String>,
    },
    /// The guest arguments do not fit in `HVT_CMDLINE_SIZE` bytes with the NUL.
    #[error("Guest command line too long (max={} characters)", HVT_CMDLINE_SIZE - 1)]
    CmdlineTooLong,
}

impl CliError {
    /// The line upstream prints before this error (for example
    /// `Block size must be a multiple of 2 greater than or equal 512`).
    pub fn warning(&self) -> Option<&str> {
        match self {
            Self::InvalidOption { warning, .. } => warning.as_deref(),
            _ => None,
        }
    }

    /// Whether upstream prints the usage after this error.
    pub fn wants_usage(&self) -> bool {
        matches!(self, Self::MissingKernel | Self::InvalidOption { .. })
    }

    fn invalid(arg: &OsStr) -> Self {
        Self::InvalidOption {
            arg: arg.to_string_lossy().into_owned(),
            warning: None,
        }
    }

    fn invalid_with(arg: &OsStr, warning: String) -> Self {
        Self::InvalidOption {
            arg: arg.to_string_lossy().into_owned(),
            warning: Some(warning),
        }
    }
}

/// Pass 1 of the command line: where the options end and where KERNEL is, or
/// `--help`/`--version` if one of them comes before KERNEL.
enum Pass1 {
    Early(Parsed),
    Run {
        options_end: usize,
        kernel_index: Option<usize>,
    },
}

fn pass1(args: &[OsString]) -> Pass1 {
    for (i, arg) in args.iter().enumerate() {
        let bytes = arg.as_bytes();
        if !bytes.starts_with(b"-") {
            return Pass1::Run {
                options_end: i,
                kernel_index: Some(i),
            };
        }
        match bytes {
            b"--" => {
                let kernel_index = (i + 1 < args.len()).then_some(i + 1);
                return Pass1::Run {
                    options_end: i,
                    kernel_index,
                };
            }
            b"--help" => return Pass1::Early(Parsed::Help),
            b"--version" => return Pass1::Early(Parsed::Version),
            _ => {}
        }
    }
    Pass1::Run {
        options_end: args.len(),
        kernel_index: None,
    }
}

/// The KERNEL operand, found as pass 1 finds it, even when an option is malformed.
/// Upstream loads the unikernel's notes between its two passes, so a broken unikernel
/// is reported before a broken option; the tender uses this to do the same.
pub fn find_kernel(args: &[OsString]) -> Option<PathBuf> {
    match pass1(args) {
        Pass1::Run {
            kernel_index: Some(i),
            ..
        } => args.get(i).map(PathBuf::from),
        _ => None,
    }
}

/// Parses the arguments that follow `argv[0]`.
pub fn parse<I: IntoIterator<Item = OsString>>(args_without_argv0: I) -> Result<Parsed, CliError> {
    let args: Vec<OsString> = args_without_argv0.into_iter().collect();

    let (options_end, kernel_index) = match pass1(&args) {
        Pass1::Early(p) => return Ok(p),
        Pass1::Run {
            options_end,
            kernel_index,
        } => (options_end, kernel_index),
    };
    let kernel_index = kernel_index.ok_or(CliError::MissingKernel)?;

    // Pass 2: the options, in order.
    let mut mem_mib = None;
    let mut devices = Vec::new();
    let mut dumpcore = None;
    for arg in args.get(..options_end).unwrap_or_default() {
        match parse_option(arg)? {
            Opt::Mem(mib) => mem_mib = Some(mib),
            Opt::Device(device) => devices.push(device),
            Opt::Dumpcore(dir) => dumpcore = Some(dir),
        }
    }

    let mut rest = args.into_iter().skip(kernel_index);
    let kernel = rest
        .next()
        .map(PathBuf::from)
        .ok_or(CliError::MissingKernel)?;
    Ok(Parsed::Run(Options {
        mem_mib,
        devices,
        dumpcore,
        kernel,
        guest_args: rest.collect(),
    }))
}

enum Opt {
    Mem(u64),
    Device(DeviceOpt),
    Dumpcore(PathBuf),
}

fn parse_option(arg: &OsStr) -> Result<Opt, CliError> {
    let bytes = arg.as_bytes();
    let device = |name: String, kind| {
        Ok(Opt::Device(DeviceOpt {
            arg: arg.to_string_lossy().into_owned(),
            name,
            kind,
        }))
    };

    if let Some(value) = bytes.strip_prefix(OPT_MEM) {
        return parse_decimal(value)
            .filter(|&mib| mib != 0 && mib <= u64::MAX >> 20)
            .map(Opt::Mem)
            .ok_or(CliError::MalformedMem);
    }
    if let Some(rest) = bytes.strip_prefix(OPT_BLOCK) {
        let (name, path) = split_name_value(rest).ok_or_else(|| CliError::invalid(arg))?;
        return device(
            name,
            DeviceOptKind::Block(PathBuf::from(OsStr::from_bytes(path))),
        );
    }
    if let Some(rest) = bytes.strip_prefix(OPT_BLOCK_SECTOR_SIZE) {
        let (name, value) = split_name_value(rest).ok_or_else(|| CliError::invalid(arg))?;
        let size = parse_decimal(value).ok_or_else(|| CliError::invalid(arg))?;
        let size = u16::try_from(size)
            .ok()
            .filter(|&s| s >= BLOCK_SECTOR_SIZE_MIN && s.is_power_of_two())
            .ok_or_else(|| {
                CliError::invalid_with(
                    arg,
                    "Block size must be a multiple of 2 greater than or equal 512".to_owned(),
                )
            })?;
        return device(name, DeviceOptKind::BlockSectorSize(size));
    }
    if let Some(rest) = bytes.strip_prefix(OPT_NET) {
        let (name, value) = split_name_value(rest).ok_or_else(|| CliError::invalid(arg))?;
        return device(name, DeviceOptKind::Net(parse_net_source(arg, value)?));
    }
    if let Some(rest) = bytes.strip_prefix(OPT_NET_MAC) {
        let (name, value) = split_name_value(rest).ok_or_else(|| CliError::invalid(arg))?;
        let mac = std::str::from_utf8(value)
            .ok()
            .and_then(parse_mac)
            .ok_or_else(|| CliError::invalid(arg))?;
        return device(name, DeviceOptKind::NetMac(mac));
    }
    if let Some(dir) = bytes.strip_prefix(OPT_DUMPCORE) {
        if dir.is_empty() {
            return Err(CliError::invalid(arg));
        }
        return Ok(Opt::Dumpcore(PathBuf::from(OsStr::from_bytes(dir))));
    }
    Err(CliError::invalid(arg))
}

/// Splits `NAME=VALUE` as upstream's `%67[A-Za-z0-9]=` does; VALUE must be non-empty.
fn split_name_value(rest: &[u8]) -> Option<(String, &[u8])> {
    let name_len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || name_len > MFT_NAME_MAX {
        return None;
    }
    let (name, tail) = rest.split_at(name_len);
    let value = tail.strip_prefix(b"=")?;
    if value.is_empty() {
        return None;
    }
    // The name is ASCII, so this conversion cannot fail.
    let name = std::str::from_utf8(name).ok()?.to_owned();
    Some((name, value))
}

/// `IFACE` or `@FD`, refused with the warning upstream's `tap_attach` would cause.
fn parse_net_source(arg: &OsStr, value: &[u8]) -> Result<NetSource, CliError> {
    let shown = String::from_utf8_lossy(value);
    let attach_failed = |why: &str| {
        CliError::invalid_with(arg, format!("Could not attach interface: {shown}: {why}"))
    };
    if let Some(number) = value.strip_prefix(b"@") {
        // strtol would read a negative number, which tap_attach then finds out of range.
        let (negative, digits) = match number.strip_prefix(b"-") {
            Some(digits) => (true, digits),
            None => (false, number),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(attach_failed("Invalid argument"));
        }
        return parse_decimal(digits)
            .filter(|_| !negative)
            .and_then(|fd| i32::try_from(fd).ok())
            .map(NetSource::Fd)
            .ok_or_else(|| attach_failed("Numerical result out of range"));
    }
    let iface = std::str::from_utf8(value).map_err(|_| CliError::invalid(arg))?;
    if iface
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(CliError::invalid(arg));
    }
    if iface.len() >= IFNAMSIZ {
        return Err(attach_failed("File name too long"));
    }
    Ok(NetSource::Iface(iface.to_owned()))
}

/// A non-empty run of ASCII decimal digits that fits a `u64`.
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses `xx:xx:xx:xx:xx:xx`: exactly six pairs of hex digits (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes = s.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, octet) in mac.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && bytes.get(at - 1) != Some(&b':') {
            return None;
        }
        let hi = hex_digit(*bytes.get(at)?)?;
        let lo = hex_digit(*bytes.get(at + 1)?)?;
        *octet = hi << 4 | lo;
    }
    Some(mac)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The usage text (several lines, ending in a newline), for stderr.
pub fn usage(progname: &str) -> String {
    format!(
        "usage: {progname} [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]\n\
         KERNEL is the filename of the unikernel to run.\n\
         ARGS are optional arguments passed to the unikernel.\n\
         Core options:\n\
         \x20 [ --mem=512 ] (guest memory in MB)\n\
         \x20   --help (display this help)\n\
         \x20   --version (display version information)\n\
         Compiled-in modules: core block net dumpcore\n\
         Compiled-in module options:\n\
         \x20   --block:NAME=PATH (attach block device/file at PATH as block storage NAME)\n\
         \x20 [ --block-sector-size:NAME=SECTORSIZE ] (set sector size for block device \
         NAME; must be a power of two greater than or equal 512)\n\
         \x20   --net:NAME=IFACE | @NN (attach tap at IFACE, or the already open tap at \
         fd NN, as network NAME)\n\
         \x20 [ --net-mac:NAME=HWADDR ] (set HWADDR xx:xx:xx:xx:xx:xx for network NAME)\n\
         \x20 [ --dumpcore=DIR ] (write a guest core file to DIR on abort/trap)\n"
    )
}

/// The `--version` text (two lines, ending in a newline), for stderr, in upstream's
/// format: `petrel-hvt tender, version v0.1.0` / `ABI version 2`.
pub fn version_text() -> String {
    format!(
        "petrel-hvt tender, version v{}\nABI version {HVT_ABI_VERSION}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The guest command line: `args` joined with single spaces, NUL-terminated, at most
/// `HVT_CMDLINE_SIZE` (8192) bytes including the NUL. Bytes pass through unchanged.
pub fn guest_cmdline(args: &[OsString]) -> Result<Vec<u8>, CliError> {
    let max_len = HVT_CMDLINE_SIZE - 1;
    let mut cmdline = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let separator = usize::from(i > 0);
        let new_len = cmdline
            .len()
            .checked_add(separator)
            .and_then(|n| n.checked_add(arg.len()))
            .filter(|&n| n <= max_len)
            .ok_or(CliError::CmdlineTooLong)?;
        cmdline.reserve_exact(new_len - cmdline.len());
        if separator == 1 {
            cmdline.push(b' ');
        }
        cmdline.extend_from_slice(arg.as_bytes());
    }
    cmdline.push(0);
    Ok(cmdline)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn run(args: &[&str]) -> Options {
        match parse(os(args)) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{args:?}: expected Run, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> CliError {
        match parse(os(args)) {
            Err(e) => e,
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    fn device(args: &[&str]) -> DeviceOptKind {
        let mut options = run(args);
        assert_eq!(options.devices.len(), 1);
        options.devices.remove(0).kind
    }

    fn invalid(arg: &str) -> CliError {
        CliError::InvalidOption {
            arg: arg.to_owned(),
            warning: None,
        }
    }

    #[test]
    fn kernel_only() {
        let options = run(&["kernel.hvt"]);
        assert_eq!(
            options,
            Options {
                mem_mib: None,
                devices: vec![],
                dumpcore: None,
                kernel: PathBuf::from("kernel.hvt"),
                guest_args: vec![],
            }
        );
    }

    #[test]
    fn missing_kernel() {
        assert_eq!(err(&[]), CliError::MissingKernel);
        assert_eq!(err(&["--mem=64"]), CliError::MissingKernel);
        assert_eq!(err(&["--mem=64", "--"]), CliError::MissingKernel);
        // Pass 1 runs first: a missing KERNEL beats a bad option.
        assert_eq!(err(&["--bogus"]), CliError::MissingKernel);
        let e = CliError::MissingKernel;
        assert_eq!(e.to_string(), "Missing KERNEL operand");
        assert!(e.wants_usage());
        assert_eq!(e.warning(), None);
    }

    #[test]
    fn help_and_version_before_kernel() {
        assert_eq!(parse(os(&["--help"])), Ok(Parsed::Help));
        assert_eq!(parse(os(&["--version"])), Ok(Parsed::Version));
        assert_eq!(parse(os(&["--help", "--version"])), Ok(Parsed::Help));
        assert_eq!(parse(os(&["--version", "--help"])), Ok(Parsed::Version));
        // Honoured even after a bad option or without KERNEL, as pass 1 stops there.
        assert_eq!(parse(os(&["--bogus", "--help", "k"])), Ok(Parsed::Help));
        assert_eq!(parse(os(&["--mem=0", "--version"])), Ok(Parsed::Version));
        // Exact match only.
        assert_eq!(err(&["--help=1", "k"]), invalid("--help=1"));
        assert_eq!(err(&["-h", "k"]), invalid("-h"));
    }

    #[test]
    fn help_and_version_after_kernel_go_to_guest() {
        let options = run(&["k", "--help", "--version"]);
        assert_eq!(options.kernel, PathBuf::from("k"));
        assert_eq!(options.guest_args, os(&["--help", "--version"]));
        let options = run(&["--", "k", "--help"]);
        assert_eq!(options.guest_args, os(&["--help"]));
        assert_eq!(run(&["--", "--help"]).kernel, PathBuf::from("--help"));
    }

    #[test]
    fn double_dash() {
        let options = run(&["--mem=8", "--", "-kernel", "a", "--", "b"]);
        assert_eq!(options.mem_mib, Some(8));
        assert_eq!(options.kernel, PathBuf::from("-kernel"));
        assert_eq!(options.guest_args, os(&["a", "--", "b"]));
        assert_eq!(run(&["--", "k"]).kernel, PathBuf::from("k"));
    }

    #[test]
    fn options_after_kernel_go_to_guest() {
        let options = run(&["--mem=2", "k", "--mem=4", "--block:x=y", "--bogus", "arg"]);
        assert_eq!(options.mem_mib, Some(2));
        assert!(options.devices.is_empty());
        assert_eq!(
            options.guest_args,
            os(&["--mem=4", "--block:x=y", "--bogus", "arg"])
        );
    }

    #[test]
    fn mem() {
        assert_eq!(run(&["--mem=64", "k"]).mem_mib, Some(64));
        assert_eq!(run(&["--mem=64", "--mem=128", "k"]).mem_mib, Some(128));
        assert_eq!(run(&["--mem=4096", "--mem=2", "k"]).mem_mib, Some(2));
        let max = (u64::MAX >> 20).to_string();
        assert_eq!(
            run(&[&format!("--mem={max}"), "k"]).mem_mib,
            Some(u64::MAX >> 20)
        );
        for bad in [
            "--mem=0",
            "--mem=",
            "--mem=abc",
            "--mem=64M",
            "--mem=-1",
            "--mem=+64",
            "--mem= 64",
            "--mem=17592186044416",
            "--mem=99999999999999999999999",
        ] {
            let e = err(&[bad, "k"]);
            assert_eq!(e, CliError::MalformedMem, "{bad}");
            assert_eq!(e.to_string(), "Malformed argument to --mem");
            assert!(!e.wants_usage());
        }
        // Without '=' it is not the --mem option at all.
        assert_eq!(err(&["--mem", "k"]), invalid("--mem"));
        assert_eq!(err(&["--mem64", "k"]), invalid("--mem64"));
    }

    #[test]
    fn block() {
        let options = run(&["--block:storage=/tmp/disk img", "k"]);
        assert_eq!(
            options.devices,
            vec![DeviceOpt {
                arg: "--block:storage=/tmp/disk img".to_owned(),
                name: "storage".to_owned(),
                kind: DeviceOptKind::Block(PathBuf::from("/tmp/disk img")),
            }]
        );
        assert_eq!(
            device(&["--block:b0=a=b", "k"]),
            DeviceOptKind::Block(PathBuf::from("a=b"))
        );
        for bad in [
            "--block:",
            "--block:=x",
            "--block:name",
            "--block:name=",
            "--block:na-me=x",
        ] {
            assert_eq!(err(&[bad, "k"]), invalid(bad), "{bad}");
        }
    }

    #[test]
    fn block_path_non_utf8() {
        let arg = OsStr::from_bytes(b"--block:d=/tmp/\xff").to_owned();
        let options = match parse(vec![arg, OsString::from("k")]) {
            Ok(Parsed::Run(options)) => options,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            options.devices[0].kind,
            DeviceOptKind::Block(PathBuf::from(OsStr::from_bytes(b"/tmp/\xff")))
        );
        assert_eq!(options.devices[0].arg, "--block:d=/tmp/\u{fffd}");
    }

    #[test]
    fn name_length() {
        let name67 = "a".repeat(67);
        let arg = format!("--block:{name67}=p");
        let options = run(&[&arg, "k"]);
        assert_eq!(options.devices[0].name, name67);
        let arg68 = format!("--block:{}=p", "Z9".repeat(34));
        assert_eq!(err(&[&arg68, "k"]), invalid(&arg68));
    }

    #[test]
    fn block_sector_size() {
        for (value, size) in [
            ("512", 512),
            ("4096", 4096),
            ("32768", 32768),
            ("0001024", 1024),
        ] {
            let arg = format!("--block-sector-size:disk={value}");
            assert_eq!(
                device(&[&arg, "k"]),
                DeviceOptKind::BlockSectorSize(size),
                "{value}"
            );
        }
        for bad in [
            "0",
            "256",
            "511",
            "513",
            "1000",
            "65536",
            "131072",
            "99999999999",
        ] {
            let arg = format!("--block-sector-size:disk={bad}");
            let e = err(&[&arg, "k"]);
            assert_eq!(e.to_string(), format!("Invalid option: `{arg}'"));
            assert_eq!(
                e.warning(),
                Some("Block size must be a multiple of 2 greater than or equal 512"),
                "{bad}"
            );
            assert!(e.wants_usage());
        }
        for bad in ["", "x", "512x", "-512", "+512", "99999999999999999999999"] {
            let arg = format!("--block-sector-size:disk={bad}");
            assert_eq!(err(&[&arg, "k"]), invalid(&arg), "{bad:?}");
        }
        assert_eq!(
            err(&["--block-sector-size:=512", "k"]),
            invalid("--block-sector-size:=512")
        );
    }

    #[test]
    fn net_iface() {
        assert_eq!(
            device(&["--net:service0=tap0", "k"]),
            DeviceOptKind::Net(NetSource::Iface("tap0".to_owned()))
        );
        let iface15 = "t".repeat(15);
        assert_eq!(
            device(&[&format!("--net:n={iface15}"), "k"]),
            DeviceOptKind::Net(NetSource::Iface(iface15))
        );
        let arg = format!("--net:n={}", "t".repeat(16));
        let e = err(&[&arg, "k"]);
        assert_eq!(e.to_string(), format!("Invalid option: `{arg}'"));
        assert_eq!(
            e.warning(),
            Some(
                format!(
                    "Could not attach interface: {}: File name too long",
                    "t".repeat(16)
                )
                .as_str()
            )
        );
        for bad in [
            "--net:n=",
            "--net:n=tap 0",
            "--net:n=tap\t0",
            "--net:=tap0",
            "--net:n",
        ] {
            assert_eq!(err(&[bad, "k"]), invalid(bad), "{bad:?}");
        }
    }

    #[test]
    fn net_fd() {
        assert_eq!(
            device(&["--net:n=@0", "k"]),
            DeviceOptKind::Net(NetSource::Fd(0))
        );
        assert_eq!(
            device(&["--net:n=@2147483647", "k"]),
            DeviceOptKind::Net(NetSource::Fd(i32::MAX))
        );
        let e = err(&["--net:n=@2147483648", "k"]);
        assert_eq!(
            e.warning(),
            Some("Could not attach interface: @2147483648: Numerical result out of range")
        );
        let e = err(&["--net:n=@-1", "k"]);
        assert_eq!(
            e.warning(),
            Some("Could not attach interface: @-1: Numerical result out of range")
        );
        for bad in ["@", "@-", "@+1", "@1x", "@ 1", "@--1"] {
            let arg = format!("--net:n={bad}");
            let e = err(&[&arg, "k"]);
            assert_eq!(e.to_string(), format!("Invalid option: `{arg}'"));
            assert_eq!(
                e.warning(),
                Some(format!("Could not attach interface: {bad}: Invalid argument").as_str())
            );
        }
    }

    #[test]
    fn net_mac() {
        assert_eq!(
            device(&["--net-mac:service0=02:00:0a:Bb:cC:ff", "k"]),
            DeviceOptKind::NetMac([0x02, 0x00, 0x0a, 0xbb, 0xcc, 0xff])
        );
        for bad in [
            "--net-mac:n=",
            "--net-mac:n=02:00:00:00:00",
            "--net-mac:n=02:00:00:00:00:00:00",
            "--net-mac:n=2:0:0:0:0:1",
            "--net-mac:n=02-00-00-00-00-01",
            "--net-mac:n=02:00:00:00:00:0g",
            "--net-mac:n=+2:00:00:00:00:01",
            "--net-mac:=02:00:00:00:00:01",
        ] {
            assert_eq!(err(&[bad, "k"]), invalid(bad), "{bad}");
        }
    }

    #[test]
    fn parse_mac_edges() {
        assert_eq!(parse_mac("ff:ff:ff:ff:ff:ff"), Some([0xff; 6]));
        assert_eq!(parse_mac("00:00:00:00:00:00"), Some([0; 6]));
        assert_eq!(parse_mac("00:00:00:00:00:00 "), None);
        assert_eq!(parse_mac("00:00:00:00:00:0é"), None);
        assert_eq!(parse_mac("0000:00:00:00:00:"), None);
        assert_eq!(parse_mac(""), None);
    }

    #[test]
    fn dumpcore() {
        assert_eq!(
            run(&["--dumpcore=/var/crash", "k"]).dumpcore,
            Some(PathBuf::from("/var/crash"))
        );
        assert_eq!(
            run(&["--dumpcore=/a", "--dumpcore=/b", "k"]).dumpcore,
            Some(PathBuf::from("/b"))
        );
        assert_eq!(err(&["--dumpcore=", "k"]), invalid("--dumpcore="));
        assert_eq!(err(&["--dumpcore", "k"]), invalid("--dumpcore"));
    }

    #[test]
    fn devices_keep_order() {
        let options = run(&[
            "--net:b=tap1",
            "--block:a=f",
            "--mem=16",
            "--net-mac:b=02:00:00:00:00:01",
            "--block-sector-size:a=4096",
            "k",
            "x",
        ]);
        let names: Vec<(&str, &str)> = options
            .devices
            .iter()
            .map(|d| (d.name.as_str(), d.arg.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("b", "--net:b=tap1"),
                ("a", "--block:a=f"),
                ("b", "--net-mac:b=02:00:00:00:00:01"),
                ("a", "--block-sector-size:a=4096"),
            ]
        );
        assert_eq!(options.mem_mib, Some(16));
        assert_eq!(options.guest_args, os(&["x"]));
    }

    #[test]
    fn unknown_options() {
        for bad in [
            "--foo",
            "-",
            "-x",
            "--gdb",
            "--block-size:a=512",
            "--net-mac",
            "---",
        ] {
            let e = err(&[bad, "k"]);
            assert_eq!(e.to_string(), format!("Invalid option: `{bad}'"));
            assert_eq!(e.warning(), None);
            assert!(e.wants_usage());
        }
        // The first bad option is the one reported.
        assert_eq!(err(&["--mem=1", "--a", "--b", "k"]), invalid("--a"));
        assert_eq!(err(&["--a", "--mem=0", "k"]), invalid("--a"));
        assert_eq!(err(&["--mem=0", "--a", "k"]), CliError::MalformedMem);
    }

    #[test]
    fn empty_argument_is_the_kernel() {
        let options = run(&["", "x"]);
        assert_eq!(options.kernel, PathBuf::new());
        assert_eq!(options.guest_args, os(&["x"]));
    }

    #[test]
    fn cmdline_join() {
        assert_eq!(guest_cmdline(&[]), Ok(vec![0]));
        assert_eq!(guest_cmdline(&os(&["a"])), Ok(b"a\0".to_vec()));
        assert_eq!(
            guest_cmdline(&os(&["a", "", "bc"])),
            Ok(b"a  bc\0".to_vec())
        );
        let raw = [
            OsStr::from_bytes(b"\xff\xfe").to_owned(),
            OsString::from("z"),
        ];
        assert_eq!(guest_cmdline(&raw), Ok(b"\xff\xfe z\0".to_vec()));
    }

    #[test]
    fn cmdline_limit() {
        // 8191 characters plus the NUL fill the area exactly.
        let fits = guest_cmdline(&[OsString::from("x".repeat(8191))]);
        assert_eq!(fits.as_ref().map(Vec::len), Ok(8192));
        let split = [
            OsString::from("x".repeat(4095)),
            OsString::from("y".repeat(4095)),
        ];
        let fits = guest_cmdline(&split);
        assert_eq!(fits.as_ref().map(Vec::len), Ok(8192));
        assert_eq!(fits.as_ref().map(|c| c[4095]), Ok(b' '));

        let e = guest_cmdline(&[OsString::from("x".repeat(8192))]);
        assert_eq!(e, Err(CliError::CmdlineTooLong));
        let split = [
            OsString::from("x".repeat(4096)),
            OsString::from("y".repeat(4095)),
        ];
        assert_eq!(guest_cmdline(&split), Err(CliError::CmdlineTooLong));
        let many: Vec<OsString> = (0..4097).map(|_| OsString::from("a")).collect();
        assert_eq!(guest_cmdline(&many), Err(CliError::CmdlineTooLong));
        assert_eq!(
            CliError::CmdlineTooLong.to_string(),
            "Guest command line too long (max=8191 characters)"
        );
        assert!(!CliError::CmdlineTooLong.wants_usage());
    }

    #[test]
    fn usage_and_version() {
        let text = usage("petrel-hvt");
        assert!(text.starts_with(
            "usage: petrel-hvt [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]\n"
        ));
        for option in [
            "--mem=",
            "--help",
            "--version",
            "--block:NAME=PATH",
            "--block-sector-size:NAME=",
            "--net:NAME=IFACE | @NN",
            "--net-mac:NAME=HWADDR",
            "--dumpcore=DIR",
        ] {
            assert!(text.contains(option), "{option}");
        }
        assert!(text.ends_with('\n'));
        assert_eq!(
            version_text(),
            format!(
                "petrel-hvt tender, version v{}\nABI version 2\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
