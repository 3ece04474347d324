//! Carrying out a parsed command line: resolve names and the connection, call the
//! daemon through [`crate::client`], print the answer.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use petrel_proto::msg::{
    BlockAttach, BlockCommand, Command, ConsoleHistory, CreateSpec, ImageSource, LogBoot,
    NetDevice, Policy, PolicyCommand, ReplyBody, Sha256Digest,
};
use petrel_proto::name::{FullName, Identity, UnikernelName};
use petrel_proto::tls;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ca::{self, IssueKind};
use crate::cli::{self, Cli};
use crate::client::{Client, ClientError};
use crate::config::{Config, expand_home};
use crate::connect::{self, IdentityDir, Settings, Target, error_chain};
use crate::error::{CtlError, Exit};
use crate::output;
use crate::progress::Progress;
use crate::units::{parse_cpus, parse_restart, parse_since, parse_size};

/// Runs `petrelctl` with `args` (the program name first) and returns the exit code.
pub fn main(args: &[String]) -> u8 {
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match Cli::from_args(&[cli::PROGRAM], &words) {
        Ok(cli) => match run(&cli) {
            Ok(()) => Exit::Ok.code(),
            Err(e) => {
                eprintln!("{}: {}", cli::PROGRAM, e.line());
                e.exit().code()
            }
        },
        Err(early) => match early.status {
            Ok(()) => {
                print!("{}", early.output);
                Exit::Ok.code()
            }
            Err(()) => {
                let text: Vec<&str> = early
                    .output
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                eprintln!(
                    "{}: {} (see {} --help)",
                    cli::PROGRAM,
                    text.join(" "),
                    cli::PROGRAM
                );
                Exit::Usage.code()
            }
        },
    }
}

/// Carries out `cli`.
pub fn run(cli: &Cli) -> Result<(), CtlError> {
    if let cli::Command::Ca(c) = &cli.command {
        return run_ca(&c.command, cli.json);
    }
    let config = Config::load(cli.config.as_deref().map(Path::new))?;
    let ctx = Ctx {
        settings: connect::resolve(cli, &config)?,
        json: cli.json,
    };
    ctx.command(&cli.command)
}

/// Prints `text` to stdout. A closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<(), CtlError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(CtlError::Failure(format!("standard output: {e}")))
        }
        _ => Ok(()),
    }
}

fn print_json(value: &Value) -> Result<(), CtlError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CtlError::Failure(format!("JSON: {e}")))?;
    print(&format!("{text}\n"))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn run_ca(command: &cli::CaCommand, json: bool) -> Result<(), CtlError> {
    let path = |s: &str| expand_home(Path::new(s));
    let summary = match command {
        cli::CaCommand::Init(c) => {
            let dir = path(&c.dir);
            ca::init(&dir, &c.name)?;
            ca::show(&dir)?
        }
        cli::CaCommand::Issue(c) => {
            let kind = match (&c.device, c.sub_ca) {
                (Some(_), true) => {
                    return Err(CtlError::usage("give --sub-ca or --device, not both"));
                }
                (Some(host), false) => IssueKind::Device(host.clone()),
                (None, true) => IssueKind::SubCa,
                (None, false) => IssueKind::Client,
            };
            ca::issue(&c.name, &path(&c.ca), &path(&c.out), kind)?
        }
        cli::CaCommand::Show(c) => ca::show(&path(&c.dir))?,
    };
    if json {
        print_json(&summary.json())
    } else {
        print(&summary.render())
    }
}

/// A connection to the daemon, for one command.
struct Session {
    client: Client,
}

fn client_error(e: ClientError) -> CtlError {
    match e {
        ClientError::Remote(err) => CtlError::Remote(err),
        e @ ClientError::Version(_) => CtlError::Connect(error_chain(&e)),
        e if e.is_connect() => CtlError::Connect(error_chain(&e)),
        other => CtlError::Failure(error_chain(&other)),
    }
}

fn unexpected(body: &ReplyBody) -> CtlError {
    let what = format!("{body:?}");
    let what: String = what.chars().take(80).collect();
    CtlError::Failure(format!("unexpected reply from the daemon: {what}"))
}

impl Session {
    fn call(&mut self, command: Command) -> Result<ReplyBody, CtlError> {
        self.client.call(command).map_err(client_error)
    }

    fn call_ok(&mut self, command: Command) -> Result<(), CtlError> {
        match self.call(command)? {
            ReplyBody::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Streams the daemon's data for `command` into `out`.
    fn download(
        &mut self,
        command: Command,
        out: &mut dyn Write,
        progress: Option<&mut Progress>,
    ) -> Result<u64, CtlError> {
        let result = match progress {
            Some(p) => {
                let r = self.client.download(command, out, &mut |n| p.update(n));
                p.finish();
                r
            }
            None => self.client.download(command, out, &mut |_| {}),
        };
        match result {
            // The reader went away (`| head`): not a failure.
            Err(ClientError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
            other => other.map_err(client_error),
        }
    }

    /// Sends `file` as the data of `command`.
    fn upload(
        &mut self,
        command: Command,
        file: &mut File,
        progress: &mut Progress,
    ) -> Result<ReplyBody, CtlError> {
        let result = self
            .client
            .upload(command, file, &mut |n| progress.update(n));
        progress.finish();
        result.map_err(client_error)
    }
}

/// A local file's size and SHA-256, and the file rewound for sending.
fn open_and_hash(path: &Path) -> Result<(File, u64, Sha256Digest), CtlError> {
    use std::io::Seek;
    let mut file = File::open(path).map_err(|e| CtlError::file(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size_bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| CtlError::file(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size_bytes = size_bytes.saturating_add(n as u64);
    }
    file.rewind().map_err(|e| CtlError::file(path, e))?;
    Ok((file, size_bytes, Sha256Digest(hasher.finalize().into())))
}

struct Ctx {
    settings: Settings,
    json: bool,
}

impl Ctx {
    /// The namespace of bare names: `--owner`, the configuration's `owner`, or the
    /// identity of the TLS client certificate.
    fn owner(&self) -> Result<Identity, CtlError> {
        if let Some(owner) = &self.settings.owner {
            return Ok(owner.clone());
        }
        match &self.settings.target {
            Target::Tls { identity, .. } => IdentityDir::load(identity)?.identity().map_err(|e| {
                CtlError::Connect(format!(
                    "identity {}: {}",
                    identity.display(),
                    error_chain(&e)
                ))
            }),
            Target::Unix(_) => Err(CtlError::usage(
                "a bare NAME needs an owner over the local socket: write OWNER:NAME or give --owner",
            )),
        }
    }

    /// `OWNER:NAME`, or `NAME` in [`Self::owner`]'s namespace.
    fn full_name(&self, text: &str) -> Result<FullName, CtlError> {
        if text.contains(':') {
            return text
                .parse()
                .map_err(|e| CtlError::usage(format!("name {text:?}: {e}")));
        }
        let name =
            UnikernelName::new(text).map_err(|e| CtlError::usage(format!("name {text:?}: {e}")))?;
        Ok(FullName::new(self.owner()?, name))
    }

    fn opt_name(&self, text: Option<&String>) -> Result<Option<FullName>, CtlError> {
        text.map(|t| self.full_name(t)).transpose()
    }

    fn identity(text: &str) -> Result<Identity, CtlError> {
        Identity::new(text).map_err(|e| CtlError::usage(format!("identity {text:?}: {e}")))
    }

    fn connect(&self) -> Result<Session, CtlError> {
        let (endpoint, _who) = connect::endpoint(&self.settings.target)?;
        let client = Client::connect(&endpoint, self.settings.timeout).map_err(|e| {
            let place = match &self.settings.target {
                Target::Unix(path) => path.display().to_string(),
                Target::Tls { addr, .. } => addr.clone(),
            };
            CtlError::Connect(match e {
                ClientError::Connect { .. } => error_chain(&e),
                _ => format!("{place}: {}", error_chain(&e)),
            })
        })?;
        Ok(Session { client })
    }

    fn done(&self, words: &str, name: Option<&FullName>) -> Result<(), CtlError> {
        if self.json {
            print_json(&json!({ "ok": true, "name": name.map(ToString::to_string) }))
        } else {
            print(&format!("{words}\n"))
        }
    }

    fn command(&self, command: &cli::Command) -> Result<(), CtlError> {
        use cli::Command as C;
        match command {
            C::Info(c) => self.info(c),
            C::Create(c) => self.create(c),
            C::Destroy(c) => {
                let name = self.full_name(&c.name)?;
                self.connect()?
                    .call_ok(Command::Destroy { name: name.clone() })?;
                self.done(&format!("destroyed {name}"), Some(&name))
            }
            C::Restart(c) => self.restart(c),
            C::Console(c) => self.console(c),
            C::Stats(c) => self.stats(c),
            C::Block(c) => self.block(&c.command),
            C::Policy(c) => self.policy(&c.command),
            C::Ca(c) => run_ca(&c.command, self.json),
            C::Reboot(_) => {
                self.connect()?.call_ok(Command::Reboot)?;
                self.done("rebooting", None)
            }
            C::Poweroff(_) => {
                self.connect()?.call_ok(Command::Poweroff)?;
                self.done("powering off", None)
            }
            C::Logs(c) => {
                let boot = match (c.previous, c.failed_trial) {
                    (true, true) => {
                        return Err(CtlError::usage(
                            "give --previous or --failed-trial, not both",
                        ));
                    }
                    (true, false) => LogBoot::Previous,
                    (false, true) => LogBoot::FailedTrial,
                    (false, false) => LogBoot::Current,
                };
                let command = Command::Logs {
                    boot,
                    lines: c.lines,
                };
                self.connect()?
                    .download(command, &mut io::stdout().lock(), None)
                    .map(drop)
            }
            C::FactoryReset(c) => {
                if !c.yes {
                    return Err(CtlError::usage(
                        "factory-reset erases every unikernel, image, block device, policy and log on the box: add --yes",
                    ));
                }
                self.connect()?.call_ok(Command::FactoryReset)?;
                self.done(
                    "factory reset: the appliance erases its data and reboots",
                    None,
                )
            }
            C::Trust(c) => match &c.command {
                cli::TrustCommand::Rotate(r) => self.trust_rotate(r),
            },
        }
    }

    fn info(&self, c: &cli::Info) -> Result<(), CtlError> {
        let name = self.opt_name(c.name.as_ref())?;
        let infos = match self.connect()?.call(Command::Info { name: name.clone() })? {
            ReplyBody::Info(v) => v,
            ReplyBody::Unikernel(one) => vec![*one],
            other => return Err(unexpected(&other)),
        };
        match (name, infos.as_slice()) {
            (Some(name), []) => Err(CtlError::Remote(petrel_proto::msg::Error::new(
                petrel_proto::msg::ErrorKind::NotFound,
                format!("no unikernel {name}"),
            ))),
            (Some(_), [one, ..]) if self.json => print_json(&output::info_json(one)),
            (Some(_), [one, ..]) => print(&output::info_detail(one)),
            (None, all) if self.json => {
                print_json(&Value::Array(all.iter().map(output::info_json).collect()))
            }
            (None, all) => print(&output::info_table(all)),
        }
    }

    fn create(&self, c: &cli::Create) -> Result<(), CtlError> {
        let name = self.full_name(&c.name)?;
        let devices = c
            .net
            .iter()
            .map(|n| {
                let (dev, bridge) = n.split_once('=').unwrap_or((n, n));
                if dev.is_empty() || bridge.is_empty() {
                    return Err(CtlError::usage(format!(
                        "--net {n:?}: expected DEV or DEV=BRIDGE"
                    )));
                }
                Ok(NetDevice {
                    name: dev.to_owned(),
                    bridge: bridge.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let blocks = c
            .block
            .iter()
            .map(|b| {
                let bad = || CtlError::usage(format!("--block {b:?}: expected DEV=VOLUME"));
                let (dev, volume) = b.split_once('=').ok_or_else(bad)?;
                if dev.is_empty() {
                    return Err(bad());
                }
                Ok(BlockAttach {
                    name: dev.to_owned(),
                    device: UnikernelName::new(volume)
                        .map_err(|e| CtlError::usage(format!("--block {b:?}: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let restart = parse_restart(&c.restart).map_err(CtlError::Usage)?;
        let cpu_affinity = c
            .cpus
            .as_deref()
            .map(parse_cpus)
            .transpose()
            .map_err(CtlError::Usage)?
            .unwrap_or_default();
        let image_path = expand_home(Path::new(&c.image));
        let (mut file, size_bytes, sha256) = open_and_hash(&image_path)?;
        let spec = CreateSpec {
            name,
            image: ImageSource::Upload { size_bytes, sha256 },
            args: c.arg.clone(),
            memory_mib: c.mem,
            // An hvt tender runs one vCPU.
            cpus: 1,
            devices,
            blocks,
            restart,
            priority: c.priority,
            cpu_affinity,
        };
        let mut session = self.connect()?;
        let label = format!(
            "upload {}",
            image_path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
        );
        let mut progress = Progress::new(label, Some(size_bytes));
        match session.upload(Command::Create(Box::new(spec)), &mut file, &mut progress)? {
            ReplyBody::Unikernel(info) => self.print_one(&info),
            ReplyBody::Info(v) if v.len() == 1 => self.print_one(&v[0]),
            other => Err(unexpected(&other)),
        }
    }

    fn print_one(&self, info: &petrel_proto::msg::UnikernelInfo) -> Result<(), CtlError> {
        if self.json {
            print_json(&output::info_json(info))
        } else {
            print(&output::info_detail(info))
        }
    }

    fn restart(&self, c: &cli::Restart) -> Result<(), CtlError> {
        let name = self.full_name(&c.name)?;
        let args = match (c.clear_args, c.arg.is_empty()) {
            (true, false) => return Err(CtlError::usage("give --arg or --clear-args, not both")),
            (true, true) => Some(Vec::new()),
            (false, false) => Some(c.arg.clone()),
            (false, true) => None,
        };
        match self.connect()?.call(Command::Restart { name, args })? {
            ReplyBody::Unikernel(info) => self.print_one(&info),
            other => Err(unexpected(&other)),
        }
    }

    fn console(&self, c: &cli::Console) -> Result<(), CtlError> {
        let name = self.full_name(&c.name)?;
        let history = match (c.lines, &c.since) {
            (Some(_), Some(_)) => return Err(CtlError::usage("give --lines or --since, not both")),
            (Some(n), None) => ConsoleHistory::Lines(n),
            (None, Some(t)) => {
                ConsoleHistory::SinceUnixMs(parse_since(t, now_unix_ms()).map_err(CtlError::Usage)?)
            }
            (None, None) if c.follow => ConsoleHistory::Lines(10),
            (None, None) => ConsoleHistory::All,
        };
        let command = Command::Console {
            name,
            history,
            follow: c.follow,
        };
        self.connect()?
            .download(command, &mut io::stdout().lock(), None)
            .map(drop)
    }

    fn stats(&self, c: &cli::Stats) -> Result<(), CtlError> {
        let name = self.opt_name(c.name.as_ref())?;
        match self.connect()?.call(Command::Stats { name })? {
            ReplyBody::Stats(all) if self.json => {
                print_json(&Value::Array(all.iter().map(output::stats_json).collect()))
            }
            ReplyBody::Stats(all) => print(&output::stats_table(&all)),
            other => Err(unexpected(&other)),
        }
    }

    fn block(&self, command: &cli::BlockCommand) -> Result<(), CtlError> {
        use cli::BlockCommand as B;
        match command {
            B::Create(c) => {
                let name = self.full_name(&c.name)?;
                let size_bytes = parse_size(&c.size).map_err(CtlError::Usage)?;
                if c.sector_size == 0 || size_bytes % u64::from(c.sector_size) != 0 {
                    return Err(CtlError::usage(format!(
                        "size {size_bytes} is not a multiple of the sector size {}",
                        c.sector_size
                    )));
                }
                let command = Command::Block(BlockCommand::Create {
                    name,
                    size_bytes,
                    sector_size: c.sector_size,
                });
                match self.connect()?.call(command)? {
                    ReplyBody::Block(b) if self.json => print_json(&output::block_json(&b)),
                    ReplyBody::Block(b) => print(&output::blocks_table(&[b])),
                    ReplyBody::Ok => self.done("created", None),
                    other => Err(unexpected(&other)),
                }
            }
            B::Destroy(c) => {
                let name = self.full_name(&c.name)?;
                self.connect()?
                    .call_ok(Command::Block(BlockCommand::Destroy { name: name.clone() }))?;
                self.done(&format!("destroyed block device {name}"), Some(&name))
            }
            B::List(c) => {
                let owner = c.owner.as_deref().map(Self::identity).transpose()?;
                match self
                    .connect()?
                    .call(Command::Block(BlockCommand::List { owner }))?
                {
                    ReplyBody::Blocks(all) if self.json => {
                        print_json(&Value::Array(all.iter().map(output::block_json).collect()))
                    }
                    ReplyBody::Blocks(all) => print(&output::blocks_table(&all)),
                    other => Err(unexpected(&other)),
                }
            }
            B::Upload(c) => {
                let name = self.full_name(&c.name)?;
                let path = expand_home(Path::new(&c.file));
                let (mut file, size_bytes, sha256) = open_and_hash(&path)?;
                let mut session = self.connect()?;
                let mut progress = Progress::new(format!("upload {name}"), Some(size_bytes));
                let command = Command::Block(BlockCommand::Upload {
                    name: name.clone(),
                    size_bytes,
                    sha256,
                });
                match session.upload(command, &mut file, &mut progress)? {
                    ReplyBody::Ok | ReplyBody::Block(_) => self.done(
                        &format!("uploaded {size_bytes} bytes to {name} (sha256 {sha256})"),
                        Some(&name),
                    ),
                    other => Err(unexpected(&other)),
                }
            }
            B::Download(c) => self.block_download(c),
        }
    }

    fn block_download(&self, c: &cli::BlockDownload) -> Result<(), CtlError> {
        let name = self.full_name(&c.name)?;
        let mut session = self.connect()?;
        let command = Command::Block(BlockCommand::Download { name: name.clone() });
        let Some(file) = c.file.as_deref().filter(|f| *f != "-") else {
            return session
                .download(command, &mut io::stdout().lock(), None)
                .map(drop);
        };
        // The size, for the progress bar only.
        let total = match session.call(Command::Block(BlockCommand::List {
            owner: Some(name.owner.clone()),
        })) {
            Ok(ReplyBody::Blocks(all)) => all.iter().find(|b| b.name == name).map(|b| b.size_bytes),
            _ => None,
        };
        let path = expand_home(Path::new(file));
        let mut part = path.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let mut file = File::create(&part).map_err(|e| CtlError::file(&part, e))?;
        let mut progress = Progress::new(format!("download {name}"), total);
        let result = session
            .download(command, &mut file, Some(&mut progress))
            .and_then(|n| {
                file.sync_all().map_err(|e| CtlError::file(&part, e))?;
                fs::rename(&part, &path).map_err(|e| CtlError::file(&path, e))?;
                Ok(n)
            });
        match result {
            Ok(n) => self.done(
                &format!("downloaded {n} bytes of {name} to {}", path.display()),
                Some(&name),
            ),
            Err(e) => {
                // Best effort: the partial file is useless either way.
                let _ = fs::remove_file(&part);
                Err(e)
            }
        }
    }

    fn policy(&self, command: &cli::PolicyCommand) -> Result<(), CtlError> {
        use cli::PolicyCommand as P;
        match command {
            P::Add(c) => {
                let identity = Self::identity(&c.identity)?;
                let policy = Policy {
                    max_unikernels: c.unikernels,
                    memory_mib: c.memory,
                    block_bytes: parse_size(&c.block_storage).map_err(CtlError::Usage)?,
                    bridges: c.bridge.clone(),
                    cpus: c
                        .cpus
                        .as_deref()
                        .map(parse_cpus)
                        .transpose()
                        .map_err(CtlError::Usage)?
                        .unwrap_or_default(),
                };
                self.connect()?
                    .call_ok(Command::Policy(PolicyCommand::Add {
                        identity: identity.clone(),
                        policy,
                    }))?;
                self.done(&format!("policy of {identity} set"), None)
            }
            P::Remove(c) => {
                let identity = Self::identity(&c.identity)?;
                self.connect()?
                    .call_ok(Command::Policy(PolicyCommand::Remove {
                        identity: identity.clone(),
                    }))?;
                self.done(&format!("policy of {identity} removed"), None)
            }
            P::List(c) => {
                let identity = c.identity.as_deref().map(Self::identity).transpose()?;
                match self
                    .connect()?
                    .call(Command::Policy(PolicyCommand::List { identity }))?
                {
                    ReplyBody::Policies(all) if self.json => {
                        print_json(&Value::Array(all.iter().map(output::policy_json).collect()))
                    }
                    ReplyBody::Policies(all) => print(&output::policies_table(&all)),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    fn trust_rotate(&self, r: &cli::TrustRotate) -> Result<(), CtlError> {
        let path = expand_home(Path::new(&r.anchor));
        let pem = fs::read(&path).map_err(|e| CtlError::file(&path, e))?;
        let certs = tls::certs_from_pem(&pem)
            .map_err(|e| CtlError::usage(format!("{}: {}", path.display(), error_chain(&e))))?;
        let [anchor] = certs.as_slice() else {
            return Err(CtlError::usage(format!(
                "{}: expected exactly one certificate (the new anchor), found {}",
                path.display(),
                certs.len()
            )));
        };
        let summary = tls::ca::summary(anchor)
            .map_err(|e| CtlError::usage(format!("{}: {}", path.display(), error_chain(&e))))?;
        if !summary.is_ca || !summary.self_signed {
            return Err(CtlError::usage(format!(
                "{}: not a self-signed CA certificate",
                path.display()
            )));
        }
        if !r.yes {
            return Err(CtlError::usage(format!(
                "trust rotate replaces the device's trust anchor with {} (sha256 {}); only identities below it will be accepted: add --yes",
                summary.subject, summary.fingerprint
            )));
        }
        self.connect()?.call_ok(Command::TrustRotate {
            anchor_der: anchor.as_ref().to_vec(),
        })?;
        self.done(
            &format!(
                "trust anchor replaced by {} (sha256 {})",
                summary.subject, summary.fingerprint
            ),
            None,
        )
    }
}
