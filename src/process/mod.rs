//! Process tracking and resource limits.
//!
//! - [`index`]: every task that produced a notification, keyed by
//!   (pid, start time), with a pidfd watched by the poll thread.
//! - [`limits`]: the process count (fork tokens, reconciled with the real
//!   sandbox's cgroup or process tree before refusing) and, without a memory
//!   cgroup, the writable-memory estimate.
//! - [`clone_args`]: a fork-like call's flags, read once.
//! - `handlers`: the builtin handlers the sandbox installs for
//!   `clone`/`clone3`/`fork`/`vfork`, `mmap`/`munmap`/`brk`/`mremap` and
//!   `execve`/`execveat`.
//!
//! Enabled by [`SandboxBuilder::max_processes`](crate::SandboxBuilder::max_processes),
//! [`max_memory`](crate::SandboxBuilder::max_memory) or
//! [`track_processes`](crate::SandboxBuilder::track_processes); a sandbox
//! without them pays nothing per notification.
//!
//! Freeze and thaw: [`SupervisorHandle::freeze`](crate::SupervisorHandle::freeze)
//! holds every new fork and stops the sandbox's process group;
//! [`thaw`](crate::SupervisorHandle::thaw) answers every held fork (counted
//! against the limit then) and continues the group.

pub mod clone_args;
pub(crate) mod handlers;
pub mod index;
pub mod limits;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::supervisor::Shared;
use crate::sys::{process as sysproc, seccomp};

pub use index::{Process, ProcessIndex, ProcessKey};
pub use limits::{ForkToken, MemoryLimit, ProcessCounter};

/// How often the poll thread sweeps the index for exits it missed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// What the sandbox limits and tracks. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// At most this many processes at once (the first one and zombies
    /// included); forks beyond get `EAGAIN`.
    pub max_processes: Option<u32>,
    /// At most this many bytes of memory over the sandbox (see
    /// [`SandboxBuilder::max_memory`](crate::SandboxBuilder::max_memory)).
    pub max_memory: Option<u64>,
    /// Track processes and trap forks even without a limit (for
    /// [`freeze`](crate::SupervisorHandle::freeze)).
    pub track: bool,
}

impl Limits {
    /// Whether anything is tracked.
    pub fn enabled(&self) -> bool {
        self.track || self.max_processes.is_some() || self.max_memory.is_some()
    }

    /// Whether fork-like calls are trapped.
    pub fn traps_forks(&self) -> bool {
        self.track || self.max_processes.is_some()
    }
}

/// A snapshot of the tracker, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Tasks (threads and processes) in the index.
    pub tracked_tasks: usize,
    /// Processes counted against the limit (0 without a limit).
    pub processes: u32,
    /// Times the count was reconciled with the process tree.
    pub reconciles: u64,
    /// Anonymous memory charged over the sandbox, in bytes.
    pub memory: u64,
    /// Whether the sandbox is frozen.
    pub frozen: bool,
    /// Forks held by the freeze.
    pub held_forks: usize,
}

#[derive(Debug, Default)]
struct FreezeState {
    frozen: bool,
    held: Vec<Notification>,
}

/// Per-supervisor process state: the index, the limits, the freeze.
pub(crate) struct Tracker {
    pub(crate) index: ProcessIndex,
    pub(crate) counter: Option<Arc<ProcessCounter>>,
    pub(crate) memory: Option<MemoryLimit>,
    /// The memory cgroup that bounds memory instead, if there is one.
    memory_cgroup: Option<Arc<crate::sys::cgroup::MemoryCgroup>>,
    /// The sandbox's cgroup membership, if a cgroup holds it.
    members: Option<crate::sys::cgroup::Members>,
    freeze: Mutex<FreezeState>,
    /// Tokens of counted forks that a handler held, by notification id.
    held_tokens: Mutex<HashMap<u64, ForkToken>>,
    pgid: i32,
    traps_forks: bool,
    last_sweep: Mutex<Instant>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("pgid", &self.pgid)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker for the sandbox whose first process (and group) is `root`,
    /// or `None` when `limits` track nothing.
    pub(crate) fn new(
        limits: Limits,
        root: i32,
        registry: Option<mio::Registry>,
        members: Option<crate::sys::cgroup::Members>,
        memory_cgroup: Option<Arc<crate::sys::cgroup::MemoryCgroup>>,
    ) -> Option<Tracker> {
        if !limits.enabled() {
            return None;
        }
        Some(Tracker {
            index: ProcessIndex::new(registry),
            counter: limits
                .max_processes
                .map(|n| ProcessCounter::with_members(n, root, members.clone())),
            // A memory cgroup bounds memory in the kernel instead.
            memory: limits
                .max_memory
                .filter(|_| memory_cgroup.is_none())
                .map(MemoryLimit::new),
            memory_cgroup,
            members,
            freeze: Mutex::new(FreezeState::default()),
            held_tokens: Mutex::new(HashMap::new()),
            pgid: root,
            traps_forks: limits.traps_forks(),
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    /// Applies limits a policy callback lowered at run time: the process
    /// count, the memory ledger and the memory cgroup. Cheap when nothing
    /// changed (atomic loads).
    pub(crate) fn apply_dynamic(&self, dynamic: &crate::policy::DynamicPolicy) {
        if let (Some(n), Some(c)) = (dynamic.max_processes(), &self.counter) {
            c.lower_limit(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some(n) = dynamic.max_memory() {
            if let Some(m) = &self.memory {
                m.lower_limit(n);
            }
            if let Some(cg) = &self.memory_cgroup {
                if n < cg.limit() {
                    match cg.lower(n) {
                        Ok(now) if now > n => {
                            log::debug!("memory cgroup limit lowered to {now} (in use), toward {n}")
                        }
                        Ok(_) => {}
                        Err(e) => log::warn!("cannot lower the memory cgroup's limit to {n}: {e}"),
                    }
                }
            }
        }
    }

    /// What the sandbox's processes may write, counted from `/proc`: the
    /// processes of its cgroup, or else those of its process tree, of its
    /// index and of its process group.
    pub(crate) fn writable_memory(&self) -> u64 {
        let pids = match &self.members {
            Some(m) => {
                let mut roots = m.pids();
                roots.push(self.pgid);
                limits::tree_pids(&roots)
            }
            None => {
                let mut roots = self.index.pids();
                roots.push(self.pgid);
                roots.extend(limits::group_members(self.pgid));
                limits::tree_pids(&roots)
            }
        };
        limits::sandbox_writable_memory(&pids)
    }

    /// Whether fork-like calls are trapped (needed by freeze and thaw).
    pub(crate) fn traps_forks(&self) -> bool {
        self.traps_forks
    }

    /// Pipeline stage 1: registers the notifying task if it is new.
    pub(crate) fn register(&self, shared: &Shared, notif: &Notification) -> Option<Arc<Process>> {
        let listener = shared.listener();
        self.index.register(
            notif.pid as i32,
            || seccomp::id_valid(listener, notif.id).is_ok(),
            |p| self.gone(&p),
        )
    }

    /// Releases everything charged to a process that is gone.
    fn gone(&self, p: &Process) {
        if let Some(m) = &self.memory {
            m.exited(p);
        }
        log::debug!(
            "process {} (start {}) left the index",
            p.key().pid,
            p.key().start
        );
    }

    /// A watched pidfd is readable (poll thread).
    pub(crate) fn on_ready(&self, token: usize) {
        if let Some(p) = self.index.on_ready(token) {
            self.gone(&p);
        }
    }

    /// The periodic sweep (poll thread), at most every [`SWEEP_INTERVAL`].
    pub(crate) fn maybe_sweep(&self) {
        {
            let mut last = self.last_sweep.lock();
            if last.elapsed() < SWEEP_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        self.sweep_now();
    }

    /// Sweeps the index now; returns how many processes were found gone.
    pub(crate) fn sweep_now(&self) -> usize {
        let gone = self.index.sweep();
        for p in &gone {
            self.gone(p);
        }
        gone.len()
    }

    /// Keeps the token of a counted fork that a handler held (before the
    /// hold is visible, so that a release always finds it).
    pub(crate) fn park_held_token(&self, id: u64, token: ForkToken) {
        self.held_tokens.lock().insert(id, token);
    }

    /// The token of held fork `id`, if it was counted.
    pub(crate) fn take_held_token(&self, id: u64) -> Option<ForkToken> {
        self.held_tokens.lock().remove(&id)
    }

    /// Holds `notif` if the sandbox is frozen.
    fn hold_if_frozen(&self, notif: &Notification) -> bool {
        let mut f = self.freeze.lock();
        if f.frozen {
            f.held.push(*notif);
        }
        f.frozen
    }

    pub(crate) fn stats(&self) -> ProcessStats {
        let f = self.freeze.lock();
        ProcessStats {
            tracked_tasks: self.index.len(),
            processes: self.counter.as_ref().map(|c| c.current()).unwrap_or(0),
            reconciles: self.counter.as_ref().map(|c| c.reconciles()).unwrap_or(0),
            memory: self.memory.as_ref().map(|m| m.total()).unwrap_or(0),
            frozen: f.frozen,
            held_forks: f.held.len(),
        }
    }

    /// Freezes the sandbox: new forks are held, the group is stopped.
    pub(crate) fn freeze(&self) -> std::io::Result<()> {
        self.freeze.lock().frozen = true;
        match sysproc::kill_group(self.pgid, libc::SIGSTOP) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(e),
            _ => Ok(()),
        }
    }

    /// Thaws the sandbox: every fork held by the freeze is answered (counted
    /// against the limit now: `EAGAIN` at the limit), then the group
    /// continues. `answer` sends one answer and says whether the kernel
    /// took it. Returns how many held forks were answered.
    pub(crate) fn thaw(
        &self,
        shared: &Shared,
        answer: impl Fn(&Notification, NotifAction) -> bool,
    ) -> usize {
        let held = {
            let mut f = self.freeze.lock();
            f.frozen = false;
            std::mem::take(&mut f.held)
        };
        let mut answered = 0;
        for notif in held {
            // The worker that held it parks it in the engine's held set just
            // after deciding: wait for that (briefly), so the id is taken
            // out of the set and answered exactly once.
            let deadline = Instant::now() + Duration::from_secs(2);
            let parked = loop {
                if shared.held.lock().remove(&notif.id).is_some() {
                    break true;
                }
                if seccomp::id_valid(shared.listener(), notif.id).is_err()
                    || Instant::now() > deadline
                {
                    // Released by someone else, or the task is gone.
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            if !parked {
                continue;
            }
            let token = match &self.counter {
                None => None,
                Some(c) => match c.try_take(notif.pid as i32, || self.index.pids()) {
                    Some(t) => Some(t),
                    None => {
                        answer(&notif, NotifAction::Errno(libc::EAGAIN));
                        answered += 1;
                        continue;
                    }
                },
            };
            let delivered = answer(&notif, NotifAction::Continue);
            if let (Some(t), true) = (token, delivered) {
                t.commit();
            }
            answered += 1;
        }
        if let Err(e) = sysproc::kill_group(self.pgid, libc::SIGCONT) {
            log::debug!("cannot continue sandbox group {}: {e}", self.pgid);
        }
        answered
    }
}

thread_local! {
    /// The token of the fork the current worker is deciding: set by the
    /// fork handler (pipeline stage 3), taken by the pipeline right after
    /// dispatch (stage 4).
    static FORK_TOKEN: Cell<Option<ForkToken>> = const { Cell::new(None) };
}

/// Parks the token of the fork being decided on this worker.
pub(crate) fn park_fork_token(token: ForkToken) {
    FORK_TOKEN.with(|t| {
        // A stale token (never taken) is rolled back here.
        drop(t.replace(Some(token)));
    });
}

/// Takes the token the fork handler parked for this notification, if any.
pub(crate) fn take_fork_token() -> Option<ForkToken> {
    FORK_TOKEN.with(|t| t.take())
}

/// Error from [`parse_size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    input: String,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size {:?}: expected a number of bytes with an optional K, M or G suffix (e.g. 512M)",
            self.input
        )
    }
}

impl std::error::Error for SizeError {}

/// Parses a size such as `4096`, `64K`, `512M`, `2G` (binary units; a
/// trailing `B`/`iB` and lower case are accepted: `64k`, `64KiB`, `64MB`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let err = || SizeError {
        input: s.to_owned(),
    };
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(err());
    }
    let n: u64 = t[..digits].parse().map_err(|_| err())?;
    let unit = t[digits..].to_ascii_uppercase();
    let shift = match unit.as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(err()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        for bad in ["", "M", "12X", "-5M", "1.5G", "99999999999G", "12 M M"] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn parked_token_is_taken_once() {
        let c = ProcessCounter::new(10, std::process::id() as i32);
        park_fork_token(c.try_take(1, Vec::new).unwrap());
        assert_eq!(c.current(), 2);
        let t = take_fork_token().expect("parked");
        assert!(take_fork_token().is_none());
        drop(t);
        assert_eq!(c.current(), 1);
    }
}
