//! The command line: one argh struct per command. Parsing only; [`crate::run`] acts.
//!
//! Positional `NAME`s are `OWNER:NAME` (`ops/alice:web`) or a bare `NAME` in the
//! caller's own namespace (see [`crate::run`] for how the owner is found).

use argh::FromArgs;

/// The program name, for `from_args`.
pub const PROGRAM: &str = "petrelctl";

/// Control Petrel appliances: unikernels, block devices, policies, certificates.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    note = "Connection: --socket PATH talks to the local daemon (default /run/petrel/petreld.sock);
--host ADDR[:1025] talks TLS 1.3 with the identity in --identity DIR (cert.pem: leaf
and chain, key.pem, ca.pem: the operator trust anchor), checking the device against
ca.pem and --name DEVICE (default: the host name), or only its --pin SHA256 when the
box is not provisioned yet. Defaults come from $PETRELCTL_CONFIG or
~/.config/petrel/petrelctl.toml (keys: socket, host, identity, name, pin, owner,
timeout_s); flags win.

Names: OWNER:NAME (ops/alice:web), or NAME in your own namespace (the identity of
your certificate, or --owner).

Output: tables for people, --json for scripts. Errors: one line on stderr.",
    example = "petrelctl --host box1 --identity ~/.petrel/ops info
petrelctl --socket /run/petrel/petreld.sock create ops:web web.hvt --net service --mem 64
petrelctl --json stats web
petrelctl ca init ./ca --name ops",
    error_code(0, "success"),
    error_code(1, "failure (a local file, the daemon failed, a corrupt transfer)"),
    error_code(2, "usage: bad command line or value, or a missing --yes"),
    error_code(
        3,
        "cannot connect: socket/host unreachable, TLS refused, protocol mismatch"
    ),
    error_code(4, "not found (unikernel, block device, policy)"),
    error_code(5, "permission denied or quota exceeded"),
    error_code(6, "already exists (on the daemon, or a file ca would overwrite)"),
    error_code(7, "busy (block device attached or in transfer)"),
    error_code(8, "refused as invalid (bad arguments, image manifest mismatch)"),
    error_code(9, "unsupported by this daemon")
)]
pub struct Cli {
    /// the local daemon's Unix socket (default /run/petrel/petreld.sock)
    #[argh(option)]
    pub socket: Option<String>,
    /// the appliance, ADDR[:PORT] (port 1025 by default): connect over TLS
    #[argh(option)]
    pub host: Option<String>,
    /// directory with cert.pem, key.pem and ca.pem (default
    /// ~/.config/petrel/identity)
    #[argh(option)]
    pub identity: Option<String>,
    /// the device name its certificate must carry (default: the host)
    #[argh(option)]
    pub name: Option<String>,
    /// accept exactly the device certificate with this SHA-256 (unprovisioned box)
    #[argh(option)]
    pub pin: Option<String>,
    /// the namespace for bare NAMEs (default: your certificate's identity)
    #[argh(option)]
    pub owner: Option<String>,
    /// connect and request timeout in seconds (default 10)
    #[argh(option)]
    pub timeout: Option<u64>,
    /// the configuration file (default $PETRELCTL_CONFIG or
    /// ~/.config/petrel/petrelctl.toml)
    #[argh(option)]
    pub config: Option<String>,
    /// print JSON for scripts instead of tables
    #[argh(switch)]
    pub json: bool,
    #[argh(subcommand)]
    /// the command
    pub command: Command,
}

/// The commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    /// `info`
    Info(Info),
    /// `create`
    Create(Create),
    /// `destroy`
    Destroy(Destroy),
    /// `restart`
    Restart(Restart),
    /// `console`
    Console(Console),
    /// `stats`
    Stats(Stats),
    /// `block …`
    Block(Block),
    /// `policy …`
    Policy(Policy),
    /// `ca …`
    Ca(Ca),
    /// `reboot`
    Reboot(Reboot),
    /// `poweroff`
    Poweroff(Poweroff),
    /// `logs`
    Logs(Logs),
    /// `factory-reset`
    FactoryReset(FactoryReset),
    /// `trust …`
    Trust(Trust),
}

/// Show unikernels: state, pid, uptime, memory, devices, image, restarts, last exit.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "info",
    note = "Without NAME: a table of every unikernel you may see. With NAME: all details."
)]
pub struct Info {
    /// the unikernel (OWNER:NAME or NAME); all when omitted
    #[argh(positional)]
    pub name: Option<String>,
}

/// Upload an image and start a unikernel from it.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "create",
    note = "The devices must match the image's manifest exactly; the daemon names what is
missing or extra. Unikernel arguments: repeat --arg (values may start with -).",
    example = "petrelctl create web web.hvt --mem 64 --net service --arg --ipv4=10.0.2.100/24
petrelctl create ops:db db.hvt --block storage=db-data --restart on-exit:1,2 --cpus 2"
)]
pub struct Create {
    /// the new unikernel (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// the unikernel executable (an .hvt file)
    #[argh(positional)]
    pub image: String,
    /// guest memory in MiB (default 32)
    #[argh(option, default = "32")]
    pub mem: u32,
    /// a network device DEV, or DEV=BRIDGE (the bridge defaults to DEV); repeatable
    #[argh(option)]
    pub net: Vec<String>,
    /// a block device DEV=VOLUME (a block device of the same owner); repeatable
    #[argh(option)]
    pub block: Vec<String>,
    /// never, always (default) or on-exit:CODE,CODE
    #[argh(option, default = "String::from(\"always\")")]
    pub restart: String,
    /// start order after boot, higher first (default 0)
    #[argh(option, default = "0")]
    pub priority: i32,
    /// host CPUs to pin the tender to, e.g. 0,2-3 (default: any)
    #[argh(option)]
    pub cpus: Option<String>,
    /// an argument for the unikernel; repeatable, in order
    #[argh(option)]
    pub arg: Vec<String>,
}

/// Stop a unikernel and forget it.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "destroy")]
pub struct Destroy {
    /// the unikernel (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
}

/// Restart a unikernel, optionally with new arguments.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "restart",
    note = "Without --arg or --clear-args the arguments stay as they are."
)]
pub struct Restart {
    /// the unikernel (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// a new argument; repeatable, replaces all arguments
    #[argh(option)]
    pub arg: Vec<String>,
    /// restart with no arguments at all
    #[argh(switch)]
    pub clear_args: bool,
}

/// Print a unikernel's console output (and the tender's error lines).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "console",
    note = "--since takes 10m / 2h / 1d (ago), @UNIX_SECONDS or 2026-01-31T12:00:00Z.
Without --lines or --since: everything kept (with -f: the last 10 lines).",
    example = "petrelctl console web -f --lines 20"
)]
pub struct Console {
    /// the unikernel (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// keep printing new output until interrupted
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// only the last N lines of history
    #[argh(option)]
    pub lines: Option<u32>,
    /// only history since this time
    #[argh(option)]
    pub since: Option<String>,
}

/// Show CPU time, memory and network counters.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "stats")]
pub struct Stats {
    /// the unikernel (OWNER:NAME or NAME); all when omitted
    #[argh(positional)]
    pub name: Option<String>,
}

/// Manage block devices: create, destroy, list, upload, download.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "block")]
pub struct Block {
    #[argh(subcommand)]
    /// the block command
    pub command: BlockCommand,
}

/// Block device commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum BlockCommand {
    /// `block create`
    Create(BlockCreate),
    /// `block destroy`
    Destroy(BlockDestroy),
    /// `block list`
    List(BlockList),
    /// `block upload`
    Upload(BlockUpload),
    /// `block download`
    Download(BlockDownload),
}

/// Create an empty block device (counted against your storage quota).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "create",
    example = "petrelctl block create db-data 1G"
)]
pub struct BlockCreate {
    /// the block device (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// its size: bytes or with K, M, G, T (binary units), a multiple of the sector size
    #[argh(positional)]
    pub size: String,
    /// sector size in bytes (default 512)
    #[argh(option, default = "512")]
    pub sector_size: u32,
}

/// Destroy a block device and its contents.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "destroy")]
pub struct BlockDestroy {
    /// the block device (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
}

/// List block devices.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "list")]
pub struct BlockList {
    /// only this identity's devices (default: every one you may see)
    #[argh(positional)]
    pub owner: Option<String>,
}

/// Overwrite a block device's contents with a file.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "upload")]
pub struct BlockUpload {
    /// the block device (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// the file to send
    #[argh(positional)]
    pub file: String,
}

/// Save a block device's contents to a file.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "download",
    note = "Without FILE the contents go to standard output. A file is written as FILE.part
and renamed once the size and digest check out."
)]
pub struct BlockDownload {
    /// the block device (OWNER:NAME or NAME)
    #[argh(positional)]
    pub name: String,
    /// where to write (default: standard output)
    #[argh(positional)]
    pub file: Option<String>,
}

/// Manage the policies (quotas) of identities below yours.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "policy")]
pub struct Policy {
    #[argh(subcommand)]
    /// the policy command
    pub command: PolicyCommand,
}

/// Policy commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum PolicyCommand {
    /// `policy add`
    Add(PolicyAdd),
    /// `policy remove`
    Remove(PolicyRemove),
    /// `policy list`
    List(PolicyList),
}

/// Set (or replace) the policy of an identity strictly below yours.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "add",
    note = "A request is allowed only if the policy of every prefix of the caller's identity
allows it, summed over the subtree; no policy, no access.",
    example = "petrelctl policy add ops/alice --unikernels 4 --memory 256 --block-storage 1G --bridge service"
)]
pub struct PolicyAdd {
    /// the identity, e.g. ops/alice
    #[argh(positional)]
    pub identity: String,
    /// the most unikernels
    #[argh(option)]
    pub unikernels: u32,
    /// total guest memory in MiB
    #[argh(option)]
    pub memory: u64,
    /// total block storage: bytes or with K, M, G, T (default 0)
    #[argh(option, default = "String::from(\"0\")")]
    pub block_storage: String,
    /// a bridge devices may join; repeatable
    #[argh(option)]
    pub bridge: Vec<String>,
    /// host CPUs tenders may be pinned to, e.g. 0-3 (default none)
    #[argh(option)]
    pub cpus: Option<String>,
}

/// Remove the policy of an identity below yours.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "remove")]
pub struct PolicyRemove {
    /// the identity
    #[argh(positional)]
    pub identity: String,
}

/// List policies.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "list")]
pub struct PolicyList {
    /// this identity's subtree (default: yours)
    #[argh(positional)]
    pub identity: Option<String>,
}

/// Certificates: the operator CA, client identities and device certificates.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "ca",
    note = "A directory holds cert.pem (the certificate, then its chain without the anchor),
key.pem (mode 0600) and ca.pem (the trust anchor): the layout --identity reads.
Certificates are valid from a day before issue until 9999, so a box with a wrong clock
still accepts them.",
    example = "petrelctl ca init ./ca --name ops
petrelctl ca issue alice --ca ./ca --out ./alice
petrelctl ca issue teams --ca ./ca --out ./teams --sub-ca
petrelctl ca issue box1 --ca ./ca --out ./box1 --device box1.example.net"
)]
pub struct Ca {
    #[argh(subcommand)]
    /// the ca command
    pub command: CaCommand,
}

/// Certificate commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum CaCommand {
    /// `ca init`
    Init(CaInit),
    /// `ca issue`
    Issue(CaIssue),
    /// `ca show`
    Show(CaShow),
}

/// Create the operator CA (the trust anchor) in a new directory.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "init",
    note = "Its certificates' identities start below the anchor: a client issued directly by
it is identity NAME. Provision ca.pem on the device as its trust anchor."
)]
pub struct CaInit {
    /// the directory to create (refuses to overwrite)
    #[argh(positional)]
    pub dir: String,
    /// the CA's common name
    #[argh(option)]
    pub name: String,
}

/// Issue a client identity, a sub-CA or a device certificate.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "issue",
    note = "The identity of a client is the issuer's identity (if a sub-CA) joined with NAME:
a client 'alice' issued by sub-CA 'ops' is ops/alice."
)]
pub struct CaIssue {
    /// the new certificate's common name
    #[argh(positional)]
    pub name: String,
    /// the issuing CA's directory (from ca init, or a --sub-ca)
    #[argh(option)]
    pub ca: String,
    /// the directory to write (refuses to overwrite)
    #[argh(option)]
    pub out: String,
    /// issue an intermediate CA that can issue below itself
    #[argh(switch)]
    pub sub_ca: bool,
    /// issue a device (server) certificate for this host name
    #[argh(option)]
    pub device: Option<String>,
}

/// Describe a certificate directory: subject, identity, validity, fingerprint.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "show")]
pub struct CaShow {
    /// the directory (or a PEM file)
    #[argh(positional)]
    pub dir: String,
}

/// Reboot the appliance (unikernels stop cleanly and come back after boot).
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "reboot")]
pub struct Reboot {}

/// Power the appliance off.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "poweroff")]
pub struct Poweroff {}

/// Print the appliance's system log.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "logs")]
pub struct Logs {
    /// the previous boot's log
    #[argh(switch)]
    pub previous: bool,
    /// the last failed trial boot's log
    #[argh(switch)]
    pub failed_trial: bool,
    /// only the last N lines (default: all kept)
    #[argh(option, default = "0")]
    pub lines: u32,
}

/// Erase the data partition (unikernels, images, block devices, policies, logs), then reboot.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "factory-reset",
    note = "Irreversible: asks for --yes. The box keeps its configuration on the ESP and its identity (MAC secret, device key, trust anchor), so it comes back at the same address, trusting the same operators."
)]
pub struct FactoryReset {
    /// yes, erase everything
    #[argh(switch)]
    pub yes: bool,
}

/// Manage the device's trust anchor.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "trust")]
pub struct Trust {
    #[argh(subcommand)]
    /// the trust command
    pub command: TrustCommand,
}

/// Trust commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum TrustCommand {
    /// `trust rotate`
    Rotate(TrustRotate),
}

/// Replace the device's trust anchor with a new CA certificate.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "rotate",
    note = "Afterwards only identities issued below the new anchor are accepted: issue yours
first (petrelctl ca init / ca issue) and keep this connection's identity at hand.
Irreversible from a client of the old anchor: asks for --yes."
)]
pub struct TrustRotate {
    /// the new anchor: a PEM file (e.g. the new CA's ca.pem)
    #[argh(positional)]
    pub anchor: String,
    /// yes, replace the anchor
    #[argh(switch)]
    pub yes: bool,
}
