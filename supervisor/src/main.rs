//! `petreld`: the Petrel supervisor daemon. See `petreld --help` and the library's
//! [`petreld::daemon`] documentation.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use petreld::daemon::{self, DEFAULT_DATA_DIR, DEFAULT_SOCKET, DEFAULT_TENDER, Options};

/// `--upload-budget-mib` by default.
const DEFAULT_UPLOAD_BUDGET_MIB: u64 = petreld::budget::DEFAULT_UPLOAD_BUDGET_BYTES >> 20;

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

fn default_tender() -> PathBuf {
    PathBuf::from(DEFAULT_TENDER)
}

/// The Petrel supervisor: runs MirageOS/Solo5 unikernels under petrel-hvt, restarts
/// them by policy, keeps their consoles, persists its state, and serves the management
/// protocol on a local Unix socket (no TLS, root only) and, given a trust anchor, on
/// mutual TLS.
#[derive(FromArgs)]
#[argh(
    note = "Flags override the device config (--config). Without --cert/--key, a \
self-signed device certificate is generated once into DATA/keys/ and its sha256 is \
printed for pinning (petrelctl --pin). TLS listens only with a trust anchor (--trust, \
or one installed by `petrelctl trust rotate`), on 0.0.0.0:1025 unless --listen or the \
config's management.listen says otherwise. SIGTERM stops every unikernel cleanly, \
saves the state and exits 0; tenders die with petreld and are restarted from the \
saved state when it comes back. Exit status: 0 after a clean stop, 1 when petreld \
cannot start (the message says why).",
    example = "Development on a host:\n  {command_name} --data-dir /tmp/petrel --socket /tmp/petrel.sock --tender target/x86_64-unknown-linux-musl/release/petrel-hvt",
    example = "With remote management:\n  {command_name} --trust ca.pem --listen 127.0.0.1:1025 --metrics 127.0.0.1:9100",
    example = "On the appliance (started by petrel-init):\n  {command_name} --appliance --config /boot/efi/petrel/config.toml --trust /boot/efi/petrel/trust/ca.pem"
)]
struct Args {
    /// the data directory: state/, images/, block/, keys/, log/ (default /var/lib/petrel)
    #[argh(option, default = "default_data_dir()")]
    data_dir: PathBuf,

    /// the local management socket, created mode 0600 (default /run/petrel/petreld.sock)
    #[argh(option, default = "default_socket()")]
    socket: PathBuf,

    /// the TLS management address ADDR:PORT (needs a trust anchor; default from the
    /// config, else 0.0.0.0:1025)
    #[argh(option)]
    listen: Option<SocketAddr>,

    /// the operator's trust anchor (PEM): client certificates must chain to it
    #[argh(option)]
    trust: Option<PathBuf>,

    /// the device certificate chain (PEM, leaf first), signed by the operator CA
    #[argh(option)]
    cert: Option<PathBuf>,

    /// the device certificate's private key (PEM)
    #[argh(option)]
    key: Option<PathBuf>,

    /// the tender binary (default /bin/petrel-hvt)
    #[argh(option, default = "default_tender()")]
    tender: PathBuf,

    /// the device config (TOML): [management] and [[unikernels]] to autostart, with
    /// their images in the images/ directory beside it
    #[argh(option)]
    config: Option<PathBuf>,

    /// serve OpenMetrics text on http://ADDR:PORT/metrics (off by default)
    #[argh(option)]
    metrics: Option<SocketAddr>,

    /// the most disk space the uploads in flight (images, block contents) may take
    /// together, by the sizes they announce, in MiB (default 1024); an upload is also
    /// refused when it would leave less than 64 MiB free on the data partition
    #[argh(option, default = "DEFAULT_UPLOAD_BUDGET_MIB")]
    upload_budget_mib: u64,

    /// run as the appliance's supervisor: reboot, poweroff and factory-reset signal
    /// PID 1, and a broken config or state file falls back to defaults
    #[argh(switch)]
    appliance: bool,

    /// log more (debug)
    #[argh(switch, short = 'v')]
    verbose: bool,

    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.version {
        println!("petreld {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    daemon::init_logger(if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    let opts = Options {
        socket: Some(args.socket),
        listen: args.listen,
        trust: args.trust,
        cert: args.cert,
        key: args.key,
        tender: args.tender,
        config: args.config,
        metrics: args.metrics,
        appliance: args.appliance,
        upload_budget_bytes: args.upload_budget_mib.saturating_mul(1 << 20),
        ..Options::new(args.data_dir)
    };
    match daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petreld: {e}");
            ExitCode::FAILURE
        }
    }
}
