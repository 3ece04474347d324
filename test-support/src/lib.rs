//! Test guards shared by Petrel's suites (a dev-dependency only, never shipped).
//!
//! - [`Netns`]: a network namespace made with `ip netns add`, deleted on drop; the
//!   namespaces a killed run left behind are swept by the next run
//!   ([`Netns::sweep_stale`]), commands run inside with `ip netns exec`
//!   ([`Netns::exec`]), closures on a thread that entered it ([`Netns::run`]).
//! - [`Scratch`]: a fresh directory under the temporary directory, removed on drop.
//! - [`read_corpus`], [`write_seeds`], [`corpus_dir`] (module [`corpus`]): a fuzz
//!   target's corpus in `fuzz/corpus/<target>/`, read sorted for replay suites and
//!   regenerated from a suite's seeds when `PETREL_WRITE_CORPUS` is set.
//! - [`require_root`], [`require_kvm`], [`require_tun`], [`require_ip`],
//!   [`require_program`]: each fails the test loudly with the fix. Nothing here skips a
//!   test: a machine that cannot run it is a failed test that says why.
//!
//! Namespace names are `<prefix><pid>-<tag>-<n>`: the prefix is a suite's own (so that its
//! sweep removes only its own leftovers), the pid tells a live run from a dead one, and
//! `n` (a per-process counter) keeps two guards of one process apart.
#![forbid(unsafe_code)]

pub mod corpus;

pub use corpus::{corpus_dir, read_corpus, write_seeds};

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

// ---------------------------------------------------------------------------------------
// Requirements.

/// Runs `cmd` (stdin from `/dev/null`) and returns its output whatever its status; fails
/// the test with `what` and the fix when the program cannot be run at all.
#[track_caller]
pub fn output_of(cmd: &mut Command, what: &str) -> Output {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {what}: {e}: install it (`make deps`)"),
    }
}

/// Fails the test unless it runs as root; `why` says what needs it, e.g. "these tests
/// create network namespaces and taps".
#[track_caller]
pub fn require_root(why: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{why}: run them as root (CI does)"
    );
}

/// Fails the test unless `/dev/kvm` opens read-write.
#[track_caller]
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!(
            "/dev/kvm cannot be opened read-write ({e}): these tests run real unikernels \
             and need KVM (and root)"
        );
    }
}

/// Fails the test unless `/dev/net/tun` exists.
#[track_caller]
pub fn require_tun() {
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing (module tun)"
    );
}

/// Fails the test unless `program version_arg` runs and succeeds; `package` is the
/// Debian package that has it.
#[track_caller]
pub fn require_program(program: &str, version_arg: &str, package: &str) {
    let o = output_of(
        Command::new(program).arg(version_arg),
        &format!("`{program}` ({package})"),
    );
    assert!(
        o.status.success(),
        "`{program} {version_arg}` failed ({}): is {package} installed? (`make deps`)\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Fails the test unless `ip` (iproute2) runs.
#[track_caller]
pub fn require_ip() {
    require_program("ip", "-V", "iproute2");
}

/// Runs `ip ARGS` and returns its standard output; fails the test (with `ip`'s stderr)
/// on an error.
#[track_caller]
pub fn ip(args: &[&str]) -> String {
    let o = output_of(Command::new("ip").args(args), "`ip` (iproute2)");
    assert!(
        o.status.success(),
        "ip {}: {}\n{}",
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `ip ARGS`, fallible: an error says which command failed and what `ip` said.
fn try_ip(args: &[&str]) -> io::Result<()> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip` (iproute2): {e}")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

/// `ip netns del NAME`, quietly: for leftovers that may not exist.
fn delete_quietly(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The next value of this process's guard counter (names stay unique within a run).
fn next_serial() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Network namespaces.

/// A network namespace (`ip netns add`), deleted on drop together with everything in it
/// (once no process uses it).
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Whether dropping this guard deletes the namespace ([`Netns::borrowed`] does not).
    owned: bool,
}

impl Netns {
    /// Makes namespace `<prefix><pid>-<tag>-<n>` for one test, after sweeping the
    /// namespaces of `prefix` that killed runs left behind. Requires root and `ip`;
    /// everything else about the namespace (loopback, bridges, taps) is the caller's.
    #[track_caller]
    pub fn new(prefix: &str, tag: &str) -> Netns {
        require_root("these tests create network namespaces");
        require_ip();
        Netns::try_new(prefix, tag).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Netns::new`] for a program that reports errors instead of failing a test (a
    /// bench): no requirement is checked first, a failure is returned.
    pub fn try_new(prefix: &str, tag: &str) -> io::Result<Netns> {
        Netns::sweep_stale(prefix);
        let name = format!("{prefix}{}-{tag}-{}", std::process::id(), next_serial());
        // A leftover of a dead run whose pid this run has again.
        delete_quietly(&name);
        try_ip(&["netns", "add", &name])?;
        Ok(Netns { name, owned: true })
    }

    /// A handle on namespace `name` that another guard owns (for a thread or a helper
    /// process that needs the methods): dropping it deletes nothing.
    pub fn borrowed(name: &str) -> Netns {
        Netns {
            name: name.to_owned(),
            owned: false,
        }
    }

    /// Deletes the namespaces named `<prefix><pid>-…` whose process no longer exists
    /// (runs killed before their guards ran) and returns their names, so that a suite can
    /// remove what else it keyed on them. Namespaces of live processes are left alone.
    pub fn sweep_stale(prefix: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !pid.is_empty()
                && pid.bytes().all(|c| c.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
            {
                delete_quietly(&name);
                removed.push(name);
            }
        }
        removed
    }

    /// The namespace's name (for `ip -n`, `ip netns exec`, `/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS` and returns its standard output; fails the test on an
    /// error.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets the namespace's loopback up.
    #[track_caller]
    pub fn loopback_up(&self) {
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME
    /// program`); add its arguments and run it.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program ARGS` inside the namespace and returns its output whatever its
    /// status; fails the test when the program cannot be run.
    #[track_caller]
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        output_of(self.command(program).args(args), &format!("`{program}`"))
    }

    /// Moves the calling thread (only it: `setns`) into the namespace; sockets and taps
    /// it makes afterwards belong there.
    pub fn enter(&self) -> io::Result<()> {
        let path = format!("/run/netns/{}", self.name);
        let ns = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("setns {path}: {e}")))
    }

    /// Runs `f` on a new thread that has entered the namespace and returns its result; a
    /// panic there fails the test here.
    #[track_caller]
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = Netns::borrowed(&self.name);
        let handle = std::thread::spawn(move || {
            ns.enter().unwrap_or_else(|e| panic!("{e}"));
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stdin(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scratch directories.

/// A fresh, empty directory `<temp>/<tag>-<pid>-<n>`, removed (with its contents) on
/// drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Makes the directory; `tag` names the suite and the test, e.g. `petrel-hvt-blk`.
    #[track_caller]
    pub fn new(tag: &str) -> Scratch {
        Scratch::try_new(tag).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Scratch::new`], returning the error instead of failing a test.
    pub fn try_new(tag: &str) -> io::Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("{tag}-{}-{}", std::process::id(), next_serial()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating scratch dir {}: {e}", dir.display()),
            )
        })?;
        Ok(Scratch { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_unique_and_removed() {
        let a = Scratch::new("petrel-ts-unit");
        let b = Scratch::new("petrel-ts-unit");
        assert_ne!(a.dir(), b.dir());
        assert!(a.dir().is_dir() && b.dir().is_dir());
        std::fs::write(a.path("f"), b"x").expect("write");
        let kept = a.dir().to_path_buf();
        drop(a);
        assert!(!kept.exists());
    }

    #[test]
    fn a_borrowed_namespace_handle_deletes_nothing() {
        let h = Netns::borrowed("petrel-ts-none");
        assert_eq!(h.name(), "petrel-ts-none");
        assert!(!h.owned);
    }
}
