//! Console capture: every tender's stdout (the guest's console) and stderr (the tender's
//! own messages) as lines in a bounded ring per unikernel, read by one epoll thread.
//!
//! - Each unikernel has a ring bounded both in lines and in bytes
//!   ([`ConsoleLimits`]); the oldest lines go first. Each line carries its arrival time
//!   (Unix milliseconds) and its [`Origin`].
//! - The ring outlives the tender (a restarted unikernel appends to it) and, after
//!   [`Consoles::forget`], is kept for [`ConsoleLimits::keep_after_forget`] so an
//!   operator can still read why a destroyed unikernel died.
//! - [`Consoles::source`] gives the history (by count or by time) and, with `follow`,
//!   the live lines after it, as an [`api::Source`] of `\n`-terminated text. Followers
//!   are bounded per unikernel; a follower that does not keep up loses lines (and is told
//!   how many) instead of ever blocking the reader thread.
//! - Guest output is untrusted: invalid UTF-8 and control characters (terminal escape
//!   sequences) are replaced, and long lines are split at
//!   [`ConsoleLimits::max_line_bytes`].

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use petrel_proto::msg::{ConsoleHistory, Error, ErrorKind, MAX_CHUNK_BYTES};
use rustix::event::{EventfdFlags, epoll};
use rustix::io::Errno;

use crate::api::{Pull, Source};

/// Bounds of the console buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLimits {
    /// Lines kept per unikernel.
    pub max_lines: usize,
    /// Bytes kept per unikernel (text plus per-line bookkeeping).
    pub max_bytes: usize,
    /// Longer lines are split; at most [`MAX_LINE_BYTES_CAP`].
    pub max_line_bytes: usize,
    /// Live followers per unikernel.
    pub max_followers: usize,
    /// Lines queued for one follower before it starts losing lines.
    pub follower_queue_lines: usize,
    /// How long a forgotten unikernel's console stays readable.
    pub keep_after_forget: Duration,
}

/// The largest [`ConsoleLimits::max_line_bytes`]: a rendered line (time, origin, text)
/// always fits one stream chunk.
pub const MAX_LINE_BYTES_CAP: usize = MAX_CHUNK_BYTES / 2;

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            max_lines: 1000,
            max_bytes: 128 * 1024,
            max_line_bytes: 4096,
            max_followers: 8,
            follower_queue_lines: 1000,
            keep_after_forget: Duration::from_secs(600),
        }
    }
}

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The guest's console (the tender's stdout).
    Guest,
    /// The tender's own messages (its stderr): why a unikernel died.
    Tender,
    /// The supervisor (spawn failures, lost lines).
    Supervisor,
}

impl Origin {
    /// The word used in rendered lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Guest => "guest",
            Origin::Tender => "tender",
            Origin::Supervisor => "petreld",
        }
    }
}

/// One console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// When it arrived, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Who wrote it.
    pub origin: Origin,
    /// The text, without its newline, sanitized.
    pub text: String,
}

/// Bookkeeping bytes charged per line on top of its text.
const LINE_OVERHEAD_BYTES: usize = std::mem::size_of::<Line>();

impl Line {
    /// `2026-11-26T17:21:10.123Z guest Hello, world\n`.
    pub fn render(&self) -> String {
        format!(
            "{} {} {}\n",
            rfc3339_ms(self.unix_ms),
            self.origin.as_str(),
            self.text
        )
    }

    fn cost(&self) -> usize {
        self.text.len().saturating_add(LINE_OVERHEAD_BYTES)
    }
}

/// Why the console reader could not be started or fed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A system call failed.
    #[error("console reader: {op}")]
    Os {
        /// What failed.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn os(op: &'static str) -> impl FnOnce(Errno) -> ConsoleError {
    move |e| ConsoleError::Os {
        op,
        source: e.into(),
    }
}

/// Called once when both pipes of a tender hit end-of-file, with the last line the
/// tender wrote on stderr in that run.
pub type OnClosed = Box<dyn FnOnce(Option<String>) + Send>;

/// Every unikernel's console. Shared (`Arc`), internally locked; one reader thread.
pub struct Consoles {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consoles")
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

struct Shared {
    limits: ConsoleLimits,
    rings: Mutex<HashMap<String, Ring>>,
    pending: Mutex<Vec<Attach>>,
    epoll: OwnedFd,
    wake: OwnedFd,
    stop: AtomicBool,
}

struct Attach {
    name: String,
    stdout: OwnedFd,
    stderr: OwnedFd,
    on_closed: OnClosed,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    followers: Vec<Arc<Follower>>,
    forget_at: Option<Instant>,
    last_tender: Option<String>,
}

#[derive(Default)]
struct Follower {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Line>,
    lost: u64,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Consoles {
    /// Starts the reader thread.
    pub fn new(limits: ConsoleLimits) -> Result<Arc<Consoles>, ConsoleError> {
        let mut limits = limits;
        limits.max_line_bytes = limits.max_line_bytes.clamp(1, MAX_LINE_BYTES_CAP);
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(os("epoll_create"))?;
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(os("eventfd"))?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )
        .map_err(os("epoll_ctl add eventfd"))?;
        let shared = Arc::new(Shared {
            limits,
            rings: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            epoll,
            wake,
            stop: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("petreld-console".into())
            .spawn(move || Reader::new(for_thread).run())
            .map_err(|source| ConsoleError::Os {
                op: "spawn the console thread",
                source,
            })?;
        Ok(Arc::new(Consoles {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConsoleLimits {
        &self.shared.limits
    }

    /// Starts reading a tender's stdout and stderr (the read ends of its pipes) into the
    /// console of `name`. `on_closed` runs on the reader thread once both hit EOF.
    pub fn attach(
        &self,
        name: &str,
        stdout: OwnedFd,
        stderr: OwnedFd,
        on_closed: OnClosed,
    ) -> Result<(), ConsoleError> {
        rustix::io::ioctl_fionbio(&stdout, true).map_err(os("set the stdout pipe non-blocking"))?;
        rustix::io::ioctl_fionbio(&stderr, true).map_err(os("set the stderr pipe non-blocking"))?;
        {
            let mut rings = lock(&self.shared.rings);
            let ring = rings.entry(name.to_string()).or_default();
            if ring.forget_at.take().is_some() {
                // A new unikernel of a forgotten one's name: start afresh.
                ring.lines.clear();
                ring.bytes = 0;
                ring.last_tender = None;
            }
        }
        lock(&self.shared.pending).push(Attach {
            name: name.to_string(),
            stdout,
            stderr,
            on_closed,
        });
        self.shared.wake();
        Ok(())
    }

    /// Adds a line from the supervisor itself (a spawn failure, say) to `name`'s console.
    pub fn note(&self, name: &str, text: &str) {
        let limits = &self.shared.limits;
        let mut rings = lock(&self.shared.rings);
        let ring = rings.entry(name.to_string()).or_default();
        for piece in split_long(text.as_bytes(), limits.max_line_bytes) {
            ring.push(
                Line {
                    unix_ms: now_unix_ms(),
                    origin: Origin::Supervisor,
                    text: sanitize(piece),
                },
                limits,
            );
        }
    }

    /// The lines of `name` selected by `history`; `None` for an unknown name.
    pub fn lines(&self, name: &str, history: ConsoleHistory) -> Option<Vec<Line>> {
        let rings = lock(&self.shared.rings);
        let ring = rings.get(name).filter(|r| !r.expired(Instant::now()))?;
        Some(ring.history(history).cloned().collect())
    }

    /// The console of `name` as a stream of rendered lines: the history, then, with
    /// `follow`, the live lines until the console is dropped. `None` for an unknown name.
    /// When `follow` is asked and the unikernel already has
    /// [`ConsoleLimits::max_followers`] followers, the source fails with `Busy`.
    pub fn source(
        &self,
        name: &str,
        history: ConsoleHistory,
        follow: bool,
    ) -> Option<Box<dyn Source>> {
        let limits = &self.shared.limits;
        let mut rings = lock(&self.shared.rings);
        let ring = rings.get_mut(name).filter(|r| !r.expired(Instant::now()))?;
        let backlog: VecDeque<Line> = ring.history(history).cloned().collect();
        let follower = if follow {
            ring.followers.retain(|f| !lock(&f.queue).closed);
            if ring.followers.len() >= limits.max_followers {
                return Some(Box::new(Refused(Some(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{name} already has {} console followers",
                        limits.max_followers
                    ),
                )))));
            }
            let f = Arc::new(Follower::default());
            ring.followers.push(Arc::clone(&f));
            Some(f)
        } else {
            None
        };
        Some(Box::new(ConsoleSource {
            backlog,
            follower,
            queue_cap: limits.follower_queue_lines.max(1),
        }))
    }

    /// The last line the tender of `name` wrote on stderr, if any.
    pub fn last_tender_line(&self, name: &str) -> Option<String> {
        lock(&self.shared.rings)
            .get(name)
            .and_then(|r| r.last_tender.clone())
    }

    /// The unikernel is gone: keep its console for
    /// [`ConsoleLimits::keep_after_forget`], then drop it (its followers see the end).
    pub fn forget(&self, name: &str) {
        let keep = self.shared.limits.keep_after_forget;
        let mut rings = lock(&self.shared.rings);
        if keep.is_zero() {
            if let Some(ring) = rings.remove(name) {
                ring.close_followers();
            }
            return;
        }
        if let Some(ring) = rings.get_mut(name) {
            ring.forget_at = Some(Instant::now() + keep);
        }
        drop(rings);
        // Let the reader recompute its timeout.
        self.shared.wake();
    }

    /// Names of the consoles currently kept.
    pub fn names(&self) -> Vec<String> {
        let now = Instant::now();
        let mut v: Vec<String> = lock(&self.shared.rings)
            .iter()
            .filter(|(_, r)| !r.expired(now))
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Consoles {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn wake(&self) {
        // A full counter (never in practice) still leaves the fd readable.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

impl Ring {
    fn expired(&self, now: Instant) -> bool {
        self.forget_at.is_some_and(|t| t <= now)
    }

    fn history(&self, history: ConsoleHistory) -> impl Iterator<Item = &Line> {
        let skip = match history {
            ConsoleHistory::None => self.lines.len(),
            ConsoleHistory::All => 0,
            ConsoleHistory::Lines(n) => self
                .lines
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
            ConsoleHistory::SinceUnixMs(t) => self.lines.partition_point(|l| l.unix_ms < t),
        };
        self.lines.iter().skip(skip)
    }

    fn push(&mut self, line: Line, limits: &ConsoleLimits) {
        if line.origin == Origin::Tender {
            self.last_tender = Some(line.text.clone());
        }
        let cap = limits.follower_queue_lines.max(1);
        self.followers.retain(|f| f.offer(&line, cap));
        self.bytes = self.bytes.saturating_add(line.cost());
        self.lines.push_back(line);
        while self.lines.len() > limits.max_lines.max(1)
            || (self.bytes > limits.max_bytes && self.lines.len() > 1)
        {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old.cost());
        }
    }

    fn close_followers(&self) {
        for f in &self.followers {
            lock(&f.queue).closed = true;
            f.ready.notify_all();
        }
    }
}

impl Follower {
    /// Queues `line`; false when the follower has gone (drop it).
    fn offer(&self, line: &Line, cap: usize) -> bool {
        let mut q = lock(&self.queue);
        if q.closed {
            return false;
        }
        if q.lines.len() >= cap {
            q.lost = q.lost.saturating_add(1);
            return true;
        }
        if q.lost > 0 {
            let lost = std::mem::take(&mut q.lost);
            q.lines.push_back(lost_line(lost, line.unix_ms));
        }
        q.lines.push_back(line.clone());
        drop(q);
        self.ready.notify_all();
        true
    }
}

fn lost_line(lost: u64, unix_ms: u64) -> Line {
    Line {
        unix_ms,
        origin: Origin::Supervisor,
        text: format!("{lost} console lines lost: this reader was too slow"),
    }
}

/// A console stream for one client.
struct ConsoleSource {
    backlog: VecDeque<Line>,
    follower: Option<Arc<Follower>>,
    queue_cap: usize,
}

impl ConsoleSource {
    fn fill(chunk: &mut Vec<u8>, lines: &mut VecDeque<Line>) {
        while let Some(line) = lines.front() {
            let text = line.render();
            if !chunk.is_empty() && chunk.len() + text.len() > MAX_CHUNK_BYTES {
                break;
            }
            chunk.extend_from_slice(text.as_bytes());
            lines.pop_front();
        }
    }
}

impl Source for ConsoleSource {
    fn next(&mut self, wait: Duration) -> Pull {
        let mut chunk = Vec::new();
        if !self.backlog.is_empty() {
            Self::fill(&mut chunk, &mut self.backlog);
            return Pull::Data(chunk);
        }
        let Some(f) = &self.follower else {
            return Pull::End;
        };
        let mut q = lock(&f.queue);
        if q.lines.is_empty() && q.lost == 0 && !q.closed {
            q = f
                .ready
                .wait_timeout(q, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // Take at most one queue's worth per call, so the lock is held briefly.
        let n = q.lines.len().min(self.queue_cap);
        let mut taken: VecDeque<Line> = q.lines.drain(..n).collect();
        if q.lines.is_empty() && q.lost > 0 {
            let lost = std::mem::take(&mut q.lost);
            taken.push_back(lost_line(lost, now_unix_ms()));
        }
        let closed = q.closed;
        drop(q);
        Self::fill(&mut chunk, &mut taken);
        if !taken.is_empty() {
            // What did not fit this chunk goes back in front, in order.
            let mut q = lock(&f.queue);
            for line in taken.into_iter().rev() {
                q.lines.push_front(line);
            }
        }
        if !chunk.is_empty() {
            Pull::Data(chunk)
        } else if closed {
            Pull::End
        } else {
            Pull::Idle
        }
    }
}

impl Drop for ConsoleSource {
    fn drop(&mut self) {
        if let Some(f) = &self.follower {
            lock(&f.queue).closed = true;
        }
    }
}

/// A console stream refused up front (too many followers).
struct Refused(Option<Error>);

impl Source for Refused {
    fn next(&mut self, _wait: Duration) -> Pull {
        match self.0.take() {
            Some(e) => Pull::Failed(e),
            None => Pull::End,
        }
    }
}

/// Token of the wake-up eventfd in the reader's epoll set.
const WAKE_TOKEN: u64 = 0;
/// Bytes read from one pipe per readiness event (fairness between chatty guests).
const READ_CHUNK_BYTES: usize = 4096;
/// The longest the reader sleeps without a reason to wake.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// One tender run (two pipes).
struct Run {
    name: String,
    open_pipes: u8,
    last_tender: Option<String>,
    on_closed: Option<OnClosed>,
}

struct Pipe {
    fd: OwnedFd,
    run: u64,
    origin: Origin,
    partial: Vec<u8>,
}

/// The reader thread's own state: pipes are touched by this thread alone.
struct Reader {
    shared: Arc<Shared>,
    pipes: HashMap<u64, Pipe>,
    runs: HashMap<u64, Run>,
    next_token: u64,
}

impl Reader {
    fn new(shared: Arc<Shared>) -> Reader {
        Reader {
            shared,
            pipes: HashMap::new(),
            runs: HashMap::new(),
            next_token: WAKE_TOKEN + 1,
        }
    }

    fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        while !self.shared.stop.load(Ordering::SeqCst) {
            let timeout = self.timeout();
            let ts = rustix::event::Timespec {
                tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            events.clear();
            match epoll::wait(
                &self.shared.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&ts),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    log::error!("console reader: epoll_wait: {e}; stopping");
                    break;
                }
            }
            for ev in events.iter() {
                let token = ev.data.u64();
                if token == WAKE_TOKEN {
                    let mut counter = [0u8; 8];
                    let _ = rustix::io::read(&self.shared.wake, &mut counter);
                    self.take_pending();
                } else {
                    self.read_pipe(token, &mut buf);
                }
            }
            self.expire();
        }
        // Stopping: the pipes close with us; tell every run's owner.
        let tokens: Vec<u64> = self.pipes.keys().copied().collect();
        for t in tokens {
            self.close_pipe(t);
        }
        for ring in lock(&self.shared.rings).values() {
            ring.close_followers();
        }
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        lock(&self.shared.rings)
            .values()
            .filter_map(|r| r.forget_at)
            .map(|t| t.saturating_duration_since(now))
            .min()
            .unwrap_or(IDLE_WAIT)
            .min(IDLE_WAIT)
    }

    fn expire(&self) {
        let now = Instant::now();
        lock(&self.shared.rings).retain(|_, r| {
            let keep = !r.expired(now);
            if !keep {
                r.close_followers();
            }
            keep
        });
    }

    fn take_pending(&mut self) {
        let pending = std::mem::take(&mut *lock(&self.shared.pending));
        for a in pending {
            let run = self.next_token;
            self.next_token += 1;
            self.runs.insert(
                run,
                Run {
                    name: a.name,
                    open_pipes: 0,
                    last_tender: None,
                    on_closed: Some(a.on_closed),
                },
            );
            for (fd, origin) in [(a.stdout, Origin::Guest), (a.stderr, Origin::Tender)] {
                let token = self.next_token;
                self.next_token += 1;
                match epoll::add(
                    &self.shared.epoll,
                    fd.as_fd(),
                    epoll::EventData::new_u64(token),
                    epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
                ) {
                    Ok(()) => {
                        self.pipes.insert(
                            token,
                            Pipe {
                                fd,
                                run,
                                origin,
                                partial: Vec::new(),
                            },
                        );
                        if let Some(r) = self.runs.get_mut(&run) {
                            r.open_pipes += 1;
                        }
                    }
                    Err(e) => log::error!("console reader: epoll_ctl add: {e}"),
                }
            }
            self.finish_run_if_closed(run);
        }
    }

    fn read_pipe(&mut self, token: u64, buf: &mut [u8]) {
        let Some(pipe) = self.pipes.get_mut(&token) else {
            return;
        };
        let eof = match rustix::io::read(&pipe.fd, &mut *buf) {
            Ok(0) => true,
            Ok(n) => {
                pipe.partial.extend_from_slice(&buf[..n]);
                false
            }
            Err(Errno::AGAIN | Errno::INTR) => false,
            Err(e) => {
                log::warn!("console reader: read: {e}");
                true
            }
        };
        let max = self.shared.limits.max_line_bytes;
        let mut texts = take_lines(&mut pipe.partial, max);
        if eof && !pipe.partial.is_empty() {
            texts.push(sanitize(&pipe.partial));
            pipe.partial.clear();
        }
        let (run, origin) = (pipe.run, pipe.origin);
        if !texts.is_empty() {
            if let Some(r) = self.runs.get_mut(&run) {
                if origin == Origin::Tender {
                    r.last_tender = texts.last().cloned();
                }
                let now = now_unix_ms();
                let limits = &self.shared.limits;
                let mut rings = lock(&self.shared.rings);
                let ring = rings.entry(r.name.clone()).or_default();
                for text in texts {
                    ring.push(
                        Line {
                            unix_ms: now,
                            origin,
                            text,
                        },
                        limits,
                    );
                }
            }
        }
        if eof {
            self.close_pipe(token);
        }
    }

    fn close_pipe(&mut self, token: u64) {
        let Some(pipe) = self.pipes.remove(&token) else {
            return;
        };
        let _ = epoll::delete(&self.shared.epoll, &pipe.fd);
        drop(pipe.fd);
        if let Some(r) = self.runs.get_mut(&pipe.run) {
            r.open_pipes = r.open_pipes.saturating_sub(1);
        }
        self.finish_run_if_closed(pipe.run);
    }

    fn finish_run_if_closed(&mut self, run: u64) {
        if self.runs.get(&run).is_none_or(|r| r.open_pipes != 0) {
            return;
        }
        if let Some(mut r) = self.runs.remove(&run) {
            if let Some(cb) = r.on_closed.take() {
                cb(r.last_tender);
            }
        }
    }
}

/// Splits complete lines off the front of `partial` (and pieces of `max_line_bytes`
/// from a line that grows longer), sanitized; the incomplete rest stays.
pub fn take_lines(partial: &mut Vec<u8>, max_line_bytes: usize) -> Vec<String> {
    let max = max_line_bytes.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &partial[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i <= max => {
                out.push(sanitize(&rest[..i]));
                start += i + 1;
            }
            _ if rest.len() > max => {
                out.push(sanitize(&rest[..max]));
                start += max;
            }
            _ => break,
        }
    }
    partial.drain(..start);
    out
}

fn split_long(text: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let max = max.max(1);
    let pieces = if text.is_empty() {
        1
    } else {
        text.len().div_ceil(max)
    };
    (0..pieces).map(move |i| {
        let start = (i * max).min(text.len());
        &text[start..(start + max).min(text.len())]
    })
}

/// Untrusted bytes as printable text: invalid UTF-8 and control characters (except tab)
/// become U+FFFD, a trailing carriage return is dropped.
pub fn sanitize(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch (UTC, proleptic
/// Gregorian; years past 9999 are printed as they come).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let ms = unix_ms % 1000;
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm, for
/// non-negative days only.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConsoleLimits {
        ConsoleLimits {
            max_lines: 5,
            max_bytes: 10 * (LINE_OVERHEAD_BYTES + 10),
            max_line_bytes: 8,
            max_followers: 2,
            follower_queue_lines: 3,
            keep_after_forget: Duration::from_secs(60),
        }
    }

    fn line(ms: u64, text: &str) -> Line {
        Line {
            unix_ms: ms,
            origin: Origin::Guest,
            text: text.into(),
        }
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_798_327_270_456), "2026-12-26T23:21:10.456Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn lines_are_split_and_sanitized() {
        let mut p = b"ab\r\ncd\x1b[2Jef\n0123456789abc".to_vec();
        let out = take_lines(&mut p, 8);
        assert_eq!(out, ["ab", "cd\u{fffd}[2Jef", "01234567"]);
        assert_eq!(p, b"89abc");
        let mut p = b"\xff\xfe\n".to_vec();
        assert_eq!(take_lines(&mut p, 8), ["\u{fffd}\u{fffd}"]);
        assert!(p.is_empty());
        // A newline exactly at the limit ends the line; no empty line follows.
        let mut p = b"01234567\n".to_vec();
        assert_eq!(take_lines(&mut p, 8), ["01234567"]);
        assert!(p.is_empty());
        assert_eq!(sanitize(b"a\tb\x07"), "a\tb\u{fffd}");
        assert_eq!(sanitize("x\u{9b}y".as_bytes()), "x\u{fffd}y");
    }

    #[test]
    fn ring_bounds_lines_and_bytes() {
        let l = limits();
        let mut r = Ring::default();
        for i in 0..20 {
            r.push(line(i, "x"), &l);
        }
        assert_eq!(r.lines.len(), 5);
        assert_eq!(r.lines.front().map(|l| l.unix_ms), Some(15));
        let mut r = Ring::default();
        let big = "y".repeat(4 * 10 + 40);
        for i in 0..4 {
            r.push(line(i, &big), &l);
        }
        assert!(r.bytes <= l.max_bytes, "{} > {}", r.bytes, l.max_bytes);
        assert_eq!(r.lines.back().map(|l| l.unix_ms), Some(3));
        // One line larger than the whole budget is still kept (alone).
        r.push(line(9, &"z".repeat(l.max_bytes)), &l);
        assert_eq!(r.lines.len(), 1);
    }

    #[test]
    fn history_selection() {
        let l = limits();
        let mut r = Ring::default();
        for i in 1..=4 {
            r.push(line(i * 10, &i.to_string()), &l);
        }
        let texts = |h| r.history(h).map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(ConsoleHistory::None), Vec::<String>::new());
        assert_eq!(texts(ConsoleHistory::Lines(2)), ["3", "4"]);
        assert_eq!(texts(ConsoleHistory::Lines(99)).len(), 4);
        assert_eq!(texts(ConsoleHistory::SinceUnixMs(25)), ["3", "4"]);
        assert_eq!(texts(ConsoleHistory::SinceUnixMs(30)), ["3", "4"]);
        assert_eq!(texts(ConsoleHistory::All).len(), 4);
    }

    #[test]
    fn slow_follower_loses_lines_and_is_told() {
        let f = Follower::default();
        for i in 0..10 {
            assert!(f.offer(&line(i, &i.to_string()), 3));
        }
        let mut src = ConsoleSource {
            backlog: VecDeque::new(),
            follower: Some(Arc::new(f)),
            queue_cap: 3,
        };
        let Pull::Data(d) = src.next(Duration::ZERO) else {
            panic!("no data")
        };
        let text = String::from_utf8(d).expect("utf-8");
        let got: Vec<&str> = text
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or(""))
            .collect();
        assert_eq!(
            got,
            [
                "0",
                "1",
                "2",
                "7 console lines lost: this reader was too slow"
            ]
        );
        assert_eq!(src.next(Duration::from_millis(1)), Pull::Idle);
    }
}
