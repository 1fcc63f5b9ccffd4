//! Process tracking and resource limits.
//!
//! - `index`: every task that produced a notification, keyed by
//!   (pid, start time), with a pidfd watched by the poll thread.
//! - `limits`: the process count (fork tokens, reconciled with the real
//!   sandbox's cgroup or process tree before refusing) and, without a memory
//!   cgroup, the writable-memory estimate.
//! - `clone_args`: a fork-like call's flags, read once.
//! - `handlers`: the builtin handlers the sandbox installs for
//!   `clone`/`clone3`/`fork`/`vfork`, `mmap`/`munmap`/`brk`/`mremap` and
//!   `execve`/`execveat`.
//!
//! Enabled by [`SandboxBuilder::max_processes`](crate::SandboxBuilder::max_processes),
//! [`max_memory`](crate::SandboxBuilder::max_memory) or
//! [`track_processes`](crate::SandboxBuilder::track_processes); a sandbox
//! without them pays nothing per notification.
//!
//! Pause and resume: [`SupervisorHandle::pause`](crate::SupervisorHandle::pause)
//! holds every new fork (in the answer core, tagged as the pause's) and
//! stops the sandbox's process group (`SIGSTOP`);
//! [`resume`](crate::SupervisorHandle::resume) takes every held fork from
//! the core in one step, answers each (counted against the limit then) and
//! continues the group. (Not argv safety's freeze, which stops only the
//! tasks sharing an exec caller's memory, with ptrace.)
//!
//! Plugs into the supervisor as an `Enforcement` (stage 1: register;
//! the poll thread's pidfds and sweep; after the verdicts: limits a policy
//! callback lowered); uses the answer core and `handler`.

pub(crate) mod clone_args;
pub(crate) mod handlers;
pub(crate) mod index;
pub(crate) mod limits;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::action::NotifAction;
use crate::error::Error;
use crate::notification::Notification;
use crate::supervisor::enforcement::{Enforcement, Install, Running, Stage, StartEnv};
use crate::supervisor::handle::SupervisorHandle;
use crate::supervisor::notifier::{Notifier, Settle};
use crate::sys::{process as sysproc, seccomp};

pub(crate) use index::{Process, ProcessIndex};
pub(crate) use limits::{ForkToken, MemoryLimit, ProcessCounter};

/// How often the poll thread sweeps the index for exits it missed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// What the sandbox limits and tracks. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// At most this many processes at once (the first one and zombies
    /// included); forks beyond get `EAGAIN`.
    pub max_processes: Option<u32>,
    /// At most this many bytes of memory over the sandbox (see
    /// [`SandboxBuilder::max_memory`](crate::SandboxBuilder::max_memory)).
    pub max_memory: Option<u64>,
    /// Track processes and trap forks even without a limit (for
    /// [`pause`](crate::SupervisorHandle::pause)).
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
#[non_exhaustive]
pub struct ProcessStats {
    /// Tasks (threads and processes) in the index.
    pub tracked_tasks: usize,
    /// Processes counted against the limit (0 without a limit).
    pub processes: u32,
    /// Times the count was reconciled with the process tree.
    pub reconciles: u64,
    /// Anonymous memory charged over the sandbox, in bytes.
    pub memory: u64,
    /// Whether the sandbox is paused.
    pub paused: bool,
    /// Forks held by the pause.
    pub held_forks: usize,
}

/// Per-supervisor process state: the index, the limits, the pause.
pub(crate) struct Tracker {
    pub(crate) index: ProcessIndex,
    pub(crate) counter: Option<Arc<ProcessCounter>>,
    pub(crate) memory: Option<MemoryLimit>,
    /// The memory cgroup that bounds memory instead, if there is one.
    memory_cgroup: Option<Arc<crate::sys::cgroup::MemoryCgroup>>,
    /// The sandbox's cgroup membership, if a cgroup holds it.
    members: Option<crate::sys::cgroup::Members>,
    /// Limits a policy callback lowers at run time, if it has one.
    dynamic: Option<Arc<crate::policy::DynamicPolicy>>,
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
        dynamic: Option<Arc<crate::policy::DynamicPolicy>>,
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
            dynamic,
            pgid: root,
            traps_forks: limits.traps_forks(),
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    /// Applies limits a policy callback lowered at run time: the process
    /// count, the memory ledger and the memory cgroup. Cheap when nothing
    /// changed (atomic loads).
    pub(crate) fn apply_dynamic(&self) {
        let Some(dynamic) = &self.dynamic else {
            return;
        };
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

    /// Whether fork-like calls are trapped (needed by pause and resume).
    pub(crate) fn traps_forks(&self) -> bool {
        self.traps_forks
    }

    /// Pipeline stage 1: registers the notifying task if it is new.
    pub(crate) fn register(&self, core: &Notifier, notif: &Notification) -> Option<Arc<Process>> {
        let listener = core.listener();
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

    pub(crate) fn stats(&self, core: &Notifier) -> ProcessStats {
        let (paused, held_forks) = core.pause_state();
        ProcessStats {
            tracked_tasks: self.index.len(),
            processes: self.counter.as_ref().map(|c| c.current()).unwrap_or(0),
            reconciles: self.counter.as_ref().map(|c| c.reconciles()).unwrap_or(0),
            memory: self.memory.as_ref().map(|m| m.total()).unwrap_or(0),
            paused,
            held_forks,
        }
    }

    /// Pauses the sandbox: new forks are held, the group is stopped.
    pub(crate) fn pause(&self, core: &Notifier) -> std::io::Result<()> {
        core.pause();
        match sysproc::kill_group(self.pgid, libc::SIGSTOP) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(e),
            _ => Ok(()),
        }
    }

    /// Resumes the sandbox: every fork held by the pause is taken from the
    /// core and answered (counted against the limit now: `EAGAIN` at the
    /// limit), then the group continues. Returns how many held forks were
    /// answered.
    pub(crate) fn resume(&self, core: &Notifier) -> usize {
        let held = core.resume();
        let answered = held.len();
        for notif in held {
            let token = match &self.counter {
                None => None,
                Some(c) => match c.try_take(notif.pid as i32, || self.index.pids()) {
                    Some(t) => Some(Box::new(t) as Box<dyn Settle>),
                    None => {
                        core.answer(&notif, NotifAction::Errno(libc::EAGAIN));
                        continue;
                    }
                },
            };
            core.answer_settled(&notif, NotifAction::Continue, token);
        }
        if let Err(e) = sysproc::kill_group(self.pgid, libc::SIGCONT) {
            log::debug!("cannot continue sandbox group {}: {e}", self.pgid);
        }
        answered
    }
}

impl Settle for ForkToken {
    /// Commits the fork on a delivered answer; rolls it back (drop) else.
    fn settle(self: Box<Self>, delivered: bool) {
        if delivered {
            self.commit();
        }
    }
}

impl Stage for Tracker {
    fn tick_interval(&self) -> Option<Duration> {
        Some(SWEEP_INTERVAL)
    }

    fn tick(&self) {
        self.maybe_sweep();
    }

    fn on_ready(&self, token: usize) {
        // A tracked task's pidfd: it exited.
        if token >= index::FIRST_TOKEN {
            Tracker::on_ready(self, token);
        }
    }

    fn register(&self, core: &Notifier, notif: &Notification) {
        Tracker::register(self, core, notif);
    }

    fn after_verdict(&self) {
        // Limits the callback lowered take effect before the answer.
        self.apply_dynamic();
    }
}

/// Process tracking and limits, as a feature of the sandbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessTracking {
    pub(crate) limits: Limits,
    /// A memory cgroup bounds memory: no memory call is trapped.
    pub(crate) memory_cgroup: bool,
}

impl Enforcement for ProcessTracking {
    fn builtins(&self, install: &mut Install<'_>) -> crate::Result<()> {
        for (nr, h) in handlers::builtins(&self.limits, self.memory_cgroup) {
            install.builtin(nr, h)?;
        }
        Ok(())
    }

    fn start(&self, env: &StartEnv<'_>) -> crate::Result<Option<Running>> {
        if !self.limits.enabled() {
            return Ok(None);
        }
        let registry = env
            .poll
            .registry()
            .and_then(mio::Registry::try_clone)
            .map_err(|e| Error::io("clone the poll registry", e))?;
        let dynamic = env
            .services
            .get::<crate::policy::PolicyState>()
            .map(|p| Arc::clone(&p.dynamic));
        Ok(Tracker::new(
            self.limits,
            env.pgid,
            Some(registry),
            env.members.clone(),
            env.memory_cgroup.clone(),
            dynamic,
        )
        .map(|t| Running::new(Arc::new(t))))
    }
}

/// The tracker of a running supervisor that traps forks.
fn fork_tracker<R>(
    handle: &SupervisorHandle,
    f: impl FnOnce(&Tracker, &Notifier) -> R,
) -> crate::Result<R> {
    handle
        .with(|core, services| {
            services
                .get::<Tracker>()
                .filter(|t| t.traps_forks())
                .map(|t| f(t, core))
        })?
        .ok_or_else(|| Error::InvalidConfig {
            message: "pause/resume need fork tracking: build the sandbox with max_processes(n) or track_processes()".into(),
        })
}

impl SupervisorHandle {
    /// Pauses the sandbox: every new fork (`clone` of a process, `fork`,
    /// `vfork`; `clone3` is refused anyway) is held, and the sandbox's process group is stopped
    /// (`SIGSTOP`). Needs fork tracking
    /// ([`max_processes`](crate::SandboxBuilder::max_processes) or
    /// [`track_processes`](crate::SandboxBuilder::track_processes)).
    pub fn pause(&self) -> crate::Result<()> {
        fork_tracker(self, |t, core| t.pause(core))?
            .map_err(|e| Error::io("stop the sandbox's process group", e))
    }

    /// Resumes a paused sandbox: answers every fork held by the pause (each
    /// counted against the process limit now, `EAGAIN` at the limit), then
    /// continues the process group (`SIGCONT`). Returns how many held forks
    /// were answered.
    pub fn resume(&self) -> crate::Result<usize> {
        fork_tracker(self, |t, core| t.resume(core))
    }

    /// Process tracking state, or `None` when the supervisor is gone or
    /// tracks nothing.
    pub fn process_stats(&self) -> Option<ProcessStats> {
        self.with(|core, services| services.get::<Tracker>().map(|t| t.stats(core)))
            .ok()
            .flatten()
    }
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
}
