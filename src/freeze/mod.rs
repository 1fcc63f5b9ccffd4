//! Exec argv safety: the ptrace freeze around `execve`/`execveat` and the
//! creation tracking of fork-like calls.
//!
//! - [`tasks`]: every task of the sandbox (process index, `/proc` threads
//!   and children).
//! - [`exec`]: before anything reads the argv of an exec, every task that
//!   could write it is stopped (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`); the
//!   answer is sent while they are stopped and they are released only once
//!   the kernel has copied argv (the caller's exec event) or the exec has
//!   failed.
//! - [`creation`]: a fork-like call let through is traced for exactly one
//!   creation event, so that the new process is in the process index
//!   before it runs its first instruction.
//!
//! # ptrace ownership
//!
//! Only the thread that seized a task drives it (interrupt, wait, detach),
//! and it waits only on the tids it owns (`__WALL | __WNOTHREAD`). An exec
//! freeze holds the supervisor's `world` lock exclusively from the first
//! seize to the last detach, and a creation trace holds it shared: no two
//! threads ever trace the same task, and no answer (which would let a task
//! return to user space) is sent elsewhere while a freeze is in place.
//! Tasks whose notification has been received and not yet answered (the
//! in-flight set) cannot return to user space before their answer, which
//! needs the lock: they are left alone.
//!
//! A task in uninterruptible sleep (`D`) is seized and interrupted but not
//! waited for: with the interrupt pending it traps before it returns to user
//! mode. If it has not stopped when the freeze ends, the worker that seized
//! it waits for it outside the lock (at most [`PENDING_TIMEOUT`], then on
//! its next freeze or trace), and meanwhile other freezes count it as
//! frozen (it is in [`ArgvSafety::pending`]). The `vfork` parent of the
//! exec caller is not seized at all (see `exec::vfork_parent_of`): it cannot
//! run before the exec has copied argv and replaced the shared memory.

pub(crate) mod creation;
pub(crate) mod exec;
pub(crate) mod tasks;

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;

use crate::notification::Notification;
use crate::syscalls;

/// Bound on the wait for a frozen task to stop.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// `CLONE_UNTRACED`: a clone that a tracer would not see.
const CLONE_UNTRACED: u64 = 0x0080_0000;
/// `CLONE_THREAD`.
const CLONE_THREAD: u64 = 0x0001_0000;

/// Argv-safety state of one supervisor (present only when it is on).
#[derive(Debug)]
pub(crate) struct ArgvSafety {
    exec_nrs: Vec<i32>,
    clone_nr: Option<i32>,
    clone3_nr: Option<i32>,
    fork_nrs: Vec<i32>,
    /// Tasks whose notification is received and not yet answered.
    in_flight: Mutex<HashSet<i32>>,
    /// Tasks seized by some thread whose stop is still pending (see the
    /// module documentation); other freezes count them as frozen.
    pub(crate) pending: Mutex<HashSet<i32>>,
}

fn nr(name: &str) -> Option<i32> {
    syscalls::resolve(name).ok().map(|n| n as i32)
}

impl ArgvSafety {
    pub(crate) fn new() -> Self {
        ArgvSafety {
            exec_nrs: ["execve", "execveat"]
                .iter()
                .filter_map(|n| nr(n))
                .collect(),
            clone_nr: nr("clone"),
            clone3_nr: nr("clone3"),
            fork_nrs: ["fork", "vfork"].iter().filter_map(|n| nr(n)).collect(),
            in_flight: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `notif` is an exec (frozen before dispatch).
    pub(crate) fn is_exec(&self, notif: &Notification) -> bool {
        self.exec_nrs.contains(&notif.nr)
    }

    /// Whether `notif` is a fork-like call.
    pub(crate) fn is_fork_like(&self, notif: &Notification) -> bool {
        Some(notif.nr) == self.clone_nr
            || Some(notif.nr) == self.clone3_nr
            || self.fork_nrs.contains(&notif.nr)
    }

    /// Whether letting `notif` through needs creation tracking: a fork-like
    /// call that may create a process. `clone3` is always traced: its flags
    /// live in the program's memory, which may change after any read of
    /// ours; a traced thread creation is harmless (registered, detached).
    pub(crate) fn tracks_creation(&self, notif: &Notification) -> bool {
        if Some(notif.nr) == self.clone_nr {
            notif.args[0] & CLONE_THREAD == 0
        } else {
            Some(notif.nr) == self.clone3_nr || self.fork_nrs.contains(&notif.nr)
        }
    }

    /// Whether the call asks to be invisible to a tracer (refused).
    pub(crate) fn untraced(&self, notif: &Notification) -> bool {
        Some(notif.nr) == self.clone_nr && notif.args[0] & CLONE_UNTRACED != 0
    }

    /// The poll thread received a notification of `tid` (under `world`).
    pub(crate) fn received(&self, tid: i32) {
        self.in_flight.lock().insert(tid);
    }

    /// `tid`'s notification was answered (under `world`).
    pub(crate) fn answered(&self, tid: i32) {
        self.in_flight.lock().remove(&tid);
    }

    /// Whether `tid` waits for an answer (read under `world` exclusive).
    pub(crate) fn in_flight(&self, tid: i32) -> bool {
        self.in_flight.lock().contains(&tid)
    }
}

/// The scheduling state letter of task `tid` (`/proc/<tid>/stat` field 3).
pub(crate) fn task_state(tid: i32) -> Option<u8> {
    let text = std::fs::read(format!("/proc/{tid}/stat")).ok()?;
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// Whether task `tid` sleeps in a `vfork` wait (uninterruptibly, in the
/// kernel's clone path: `/proc/<tid>/wchan` names the function).
pub(crate) fn in_vfork_wait(tid: i32) -> bool {
    task_state(tid) == Some(b'D')
        && std::fs::read(format!("/proc/{tid}/wchan")).is_ok_and(|w| {
            matches!(
                &w[..],
                b"kernel_clone" | b"wait_for_vfork_done" | b"_do_fork" | b"do_fork"
            )
        })
}

/// A sleep schedule for polling a tracee: a few yields first (a tracee
/// that is runnable gets this CPU at once), then sleeps growing to 1 ms.
pub(crate) struct Backoff {
    yields: u32,
    sleep: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            yields: 0,
            sleep: Duration::from_micros(10),
        }
    }

    pub(crate) fn sleep(&mut self) {
        if self.yields < 4 {
            self.yields += 1;
            std::thread::yield_now();
            return;
        }
        std::thread::sleep(self.sleep);
        self.sleep = (self.sleep * 2).min(Duration::from_millis(1));
    }
}

/// Where a task seized by the current thread stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum St {
    /// Seized (and interrupted); its stop has not been seen yet.
    Running,
    /// In a ptrace stop; the signal to deliver when it is let go (0: none).
    Stopped(i32),
    /// Exited (reaped), or not ours any more.
    Gone,
}

/// A task seized by the current thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracee {
    pub(crate) tid: i32,
    pub(crate) tgid: i32,
    pub(crate) st: St,
    /// The sandbox's first process, our own child: its exit is left for
    /// [`Child::wait`](crate::Child::wait), only peeked at.
    keep_exit: bool,
}

impl Tracee {
    pub(crate) fn new(tid: i32, tgid: i32, root: i32) -> Self {
        Tracee {
            tid,
            tgid,
            st: St::Running,
            keep_exit: tid == root,
        }
    }

    /// Collects a pending state change (`nohang`) or waits for one, and
    /// returns what was seen. `ECHILD` makes the task [`St::Gone`] and is
    /// returned as `Err` for callers that must tell it from an exit.
    pub(crate) fn poll(
        &mut self,
        nohang: bool,
    ) -> std::io::Result<Option<crate::sys::ptrace::TraceeState>> {
        use crate::sys::ptrace::{wait_tracee, TraceeState};
        if self.st == St::Gone {
            return Ok(None);
        }
        match wait_tracee(self.tid, nohang, self.keep_exit) {
            Ok(None) => Ok(None),
            Ok(Some(s)) => {
                self.st = match s {
                    TraceeState::Gone => St::Gone,
                    TraceeState::Signal(sig) => St::Stopped(sig),
                    TraceeState::Trapped | TraceeState::Event(_) => St::Stopped(0),
                };
                Ok(Some(s))
            }
            Err(e) => {
                if e.raw_os_error() != Some(libc::ECHILD) {
                    log::warn!("waiting for traced task {} failed: {e}", self.tid);
                }
                self.st = St::Gone;
                Err(e)
            }
        }
    }

    /// Lets a stopped task go. Returns whether it is released (or gone);
    /// `false` while its stop is still to come.
    pub(crate) fn detach(&mut self) -> bool {
        match self.st {
            St::Gone => true,
            St::Running => false,
            St::Stopped(sig) => match crate::sys::ptrace::detach(self.tid, sig) {
                Ok(()) => {
                    self.st = St::Gone;
                    true
                }
                Err(e) => {
                    // ESRCH: killed while stopped (dying or a zombie of
                    // ours to reap). Collect it on a later poll.
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        log::warn!("cannot detach task {}: {e}", self.tid);
                    }
                    self.st = St::Running;
                    let _ = self.poll(true);
                    self.st == St::Gone
                }
            },
        }
    }
}

thread_local! {
    /// Tasks this thread seized whose stop never came within the bounds:
    /// retried (detached if stopped by now) by the next freeze or creation
    /// trace on this thread.
    static LEFTOVERS: std::cell::RefCell<Vec<Tracee>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Retries the leftovers of this thread. The caller holds `world` (shared
/// or exclusive).
pub(crate) fn retry_leftovers(argv: &ArgvSafety) {
    LEFTOVERS.with(|l| {
        let mut l = l.borrow_mut();
        l.retain_mut(|t| {
            if t.st == St::Running {
                let _ = t.poll(true);
            }
            let done = t.detach();
            if done {
                argv.pending.lock().remove(&t.tid);
            }
            !done
        });
    });
}

/// How long a worker waits, outside the `world` lock, for tasks whose stop
/// was pending when their freeze ended.
pub(crate) const PENDING_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits (without the `world` lock, which is taken only to detach) for
/// tasks seized by this thread whose stop is pending, and releases them.
/// While they wait they are in [`ArgvSafety::pending`], so other freezes
/// count them as frozen.
pub(crate) fn release_pending(
    shared: &crate::supervisor::Shared,
    argv: &ArgvSafety,
    mut rest: Vec<Tracee>,
) {
    let deadline = std::time::Instant::now() + PENDING_TIMEOUT;
    let mut backoff = Backoff::new();
    while !rest.is_empty() {
        for t in rest.iter_mut() {
            if t.st == St::Running {
                let _ = t.poll(true);
            }
        }
        if rest.iter().any(|t| t.st != St::Running) {
            let _world = shared.world.read();
            rest.retain_mut(|t| {
                let done = t.detach();
                if done {
                    argv.pending.lock().remove(&t.tid);
                }
                !done
            });
        }
        if rest.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            log::error!(
                "{} frozen task(s) never stopped within {PENDING_TIMEOUT:?}; kept for a later retry: {:?}",
                rest.len(),
                rest.iter().map(|t| t.tid).collect::<Vec<_>>()
            );
            LEFTOVERS.with(|l| l.borrow_mut().extend(rest));
            return;
        }
        backoff.sleep();
    }
}
