//! The supervisor: a poll thread, a pool of workers, a deferral pool.
//!
//! ```text
//! poll thread ──(crossbeam lanes)──> workers ── pipeline ── one answer
//!                                       └─ Defer ──> deferral pool (+ deadline timer)
//! ```

mod defer;
mod lanes;
mod pipeline;
mod poll;
mod respond;
mod semaphore;
mod stats;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::action::NotifAction;
use crate::error::{Error, Result};
use crate::handler::Chains;
use crate::notification::Notification;
use crate::sys::seccomp;

pub use stats::Stats;

pub(crate) use pipeline::trace;
pub(crate) use respond::{respond, Sent};

use defer::DeferPool;
use stats::Counters;

/// Default number of deferrals allowed in flight.
pub const DEFAULT_DEFER_LIMIT: usize = 64;
/// Default deadline of a deferral.
pub const DEFAULT_DEFER_TIMEOUT: Duration = Duration::from_secs(30);

/// How a supervisor is set up.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) defer_limit: usize,
    pub(crate) defer_timeout: Duration,
    pub(crate) chains: Chains,
    pub(crate) traced: Vec<bool>,
    pub(crate) sync_wake_up: bool,
    /// Process tracking and resource limits (issue 4).
    pub(crate) limits: crate::process::Limits,
    /// Exec argv safety: the exec freeze and its ptrace thread.
    pub(crate) argv_safety: bool,
    /// The policy callback and audit log, if any.
    pub(crate) policy: Option<crate::policy::PolicySetup>,
    /// Paths denied at run time are added here (shared with the path handlers).
    pub(crate) denied_paths: Option<Arc<crate::paths::DeniedPaths>>,
    /// The sandbox's cgroup membership, when a cgroup holds it (set per
    /// spawn): the process count is reconciled against it.
    pub(crate) members: Option<crate::sys::cgroup::Members>,
    /// The sandbox's memory cgroup, when it bounds memory (set per spawn):
    /// a policy lowers its limit.
    pub(crate) memory_cgroup: Option<Arc<crate::sys::cgroup::MemoryCgroup>>,
}

/// State shared by every supervisor thread.
///
/// Lock order: `world` → `held` (and the deferral pool's own locks, which
/// are never held while taking `world`).
pub(crate) struct Shared {
    listener: OwnedFd,
    /// Shared by every answer and receive; exclusive for an exec freeze.
    pub(crate) world: RwLock<()>,
    pub(crate) chains: Chains,
    traced: Vec<bool>,
    /// Process group of the sandbox, for `KillGroup`.
    pub(crate) pgid: i32,
    pub(crate) held: Mutex<HashMap<u64, Notification>>,
    pub(crate) counters: Counters,
    pub(crate) defer: DeferPool,
    pub(crate) stopping: AtomicBool,
    /// Wakes the poll thread for [`SupervisorHandle::stop`].
    pub(crate) waker: crate::sys::eventfd::EventFd,
    /// Interrupts the poll thread's blocking receive, when it uses one.
    pub(crate) interrupt: Option<poll::Interrupt>,
    /// Set (and notified) when the poll thread has wound everything down.
    done: (Mutex<bool>, parking_lot::Condvar),
    /// Process index, limits and freeze; `None` when nothing is tracked.
    pub(crate) tracker: Option<crate::process::Tracker>,
    /// Exec argv-safety state (in-flight tasks...); `None` when it is off.
    pub(crate) argv: Option<crate::freeze::ArgvSafety>,
    /// The policy callback's thread and run-time restrictions.
    pub(crate) policy: Option<crate::policy::PolicyState>,
}

impl Shared {
    pub(crate) fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    pub(crate) fn traced(&self, nr: i32) -> bool {
        usize::try_from(nr)
            .ok()
            .and_then(|i| self.traced.get(i))
            .copied()
            .unwrap_or(false)
    }

    fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.signal() {
            log::error!("cannot wake the poll thread: {e}");
        }
        if let Some(int) = &self.interrupt {
            // An interruption that comes just before the thread blocks is
            // lost: try again for a little while until it has left `RECV`
            // (`wait_done` keeps trying after that).
            for _ in 0..20 {
                int.kick(false);
                if !int.in_recv.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Waits until the poll thread has wound down (or `finished` says it
    /// ended otherwise: a panic). After a stop request, interrupts it again
    /// now and then: an interruption that came just before it blocked in
    /// `RECV` is lost.
    fn wait_done(&self, finished: impl Fn() -> bool) {
        let (lock, cv) = &self.done;
        let mut done = lock.lock();
        while !*done && !finished() {
            let timed_out = cv.wait_for(&mut done, Duration::from_millis(2)).timed_out();
            if timed_out && self.stopping.load(Ordering::SeqCst) {
                if let Some(int) = &self.interrupt {
                    int.kick(true);
                }
            }
        }
    }
}

/// A running supervisor. Dropping it stops it and joins its threads.
pub struct Supervisor {
    shared: Arc<Shared>,
    poll: Option<JoinHandle<poll::Ended>>,
}

impl Supervisor {
    /// Starts supervising `listener` (a seccomp notification fd).
    pub(crate) fn start(listener: OwnedFd, pgid: i32, config: Config) -> Result<Supervisor> {
        seccomp::check_sizes().map_err(|e| Error::Unsupported {
            feature: "seccomp user notification",
            source: e,
        })?;
        let sync = config.sync_wake_up
            && match seccomp::set_flags(listener.as_fd(), seccomp::USER_NOTIF_FD_SYNC_WAKE_UP) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("sync wake-up not available ({e}); trapped calls will be slower");
                    false
                }
            };
        let poll = mio::Poll::new().map_err(|e| Error::io("create the poll instance", e))?;
        let waker = crate::sys::eventfd::EventFd::new()
            .map_err(|e| Error::io("create the poll thread's wake-up eventfd", e))?;
        let tracker = if config.limits.enabled() {
            // Workers register pidfds directly (epoll_ctl is thread-safe):
            // no wake-up of the poll thread per new process.
            let registry = poll
                .registry()
                .try_clone()
                .map_err(|e| Error::io("clone the poll registry", e))?;
            crate::process::Tracker::new(
                config.limits,
                pgid,
                Some(registry),
                config.members.clone(),
                config.memory_cgroup.clone(),
            )
        } else {
            None
        };
        let policy = match &config.policy {
            Some(setup) => {
                let dynamic = Arc::new(crate::policy::DynamicPolicy::new(
                    config.denied_paths.clone(),
                ));
                let runner = crate::policy::PolicyRunner::start(setup, Arc::clone(&dynamic))
                    .map_err(|e| Error::io("start the policy thread", e))?;
                Some(crate::policy::PolicyState { runner, dynamic })
            }
            None => None,
        };
        // Argv safety's ptrace thread checks which tasks wait for answers.
        let argv = if config.argv_safety {
            let l = listener
                .try_clone()
                .map_err(|e| Error::io("duplicate the listener for the ptrace thread", e))?;
            Some(
                crate::freeze::ArgvSafety::new(pgid, l)
                    .map_err(|e| Error::io("start the ptrace thread", e))?,
            )
        } else {
            None
        };
        let shared = Arc::new(Shared {
            listener,
            world: RwLock::new(()),
            chains: config.chains,
            traced: config.traced,
            pgid,
            held: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            defer: DeferPool::new(config.defer_limit, config.defer_timeout),
            stopping: AtomicBool::new(false),
            waker,
            // Blocking receive: see `poll`. Not with tracked tasks (their
            // pidfds are polled) nor argv safety (its freeze needs every
            // receive done under `world`).
            interrupt: (sync && !config.limits.enabled() && !config.argv_safety)
                .then(|| poll::Interrupt::new_if_supported(crate::sys::interrupt::signal()))
                .flatten(),
            done: (Mutex::new(false), parking_lot::Condvar::new()),
            tracker,
            argv,
            policy,
        });
        let (lanes, workers) = lanes::Lanes::start(&shared, config.workers.max(1))
            .map_err(|e| Error::io("start the worker threads", e))?;
        let sh = Arc::clone(&shared);
        let poll_thread = std::thread::Builder::new()
            .name("unotify-poll".into())
            .spawn(move || {
                // `run` consumes the lanes: when it returns they are
                // disconnected and the workers exit once the queue is empty.
                let ended = poll::run(&sh, poll, lanes);
                wind_down(&sh, workers);
                *sh.done.0.lock() = true;
                sh.done.1.notify_all();
                ended
            })
            // If the thread cannot start, the closure is dropped with the
            // lanes, and the workers exit on their own.
            .map_err(|e| Error::io("start the poll thread", e))?;
        Ok(Supervisor {
            shared,
            poll: Some(poll_thread),
        })
    }

    /// A handle to inspect or stop the supervisor from elsewhere.
    pub fn handle(&self) -> SupervisorHandle {
        SupervisorHandle::new(&self.shared)
    }

    /// Asks the supervisor to stop; [`join`](Self::join) waits for it.
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// Waits until the supervisor has stopped (all tasks gone, or
    /// [`stop`](Self::stop)), joins every thread and answers any call still
    /// held with `EPERM`.
    pub fn join(mut self) {
        self.join_inner();
    }

    fn join_inner(&mut self) {
        let Some(poll) = self.poll.take() else { return };
        self.shared.wait_done(|| poll.is_finished());
        match poll.join() {
            Ok(ended) => log::debug!("supervisor ended: {ended:?}"),
            Err(_) => log::error!("the poll thread panicked"),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.handle().stats().unwrap_or_default()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.poll.is_some() {
            self.shared.request_stop();
            self.join_inner();
        }
    }
}

/// Ends a supervisor, on the poll thread, once its loop has returned: joins
/// the workers (which answer what was queued), lets running deferrals
/// finish, answers every held call `EPERM`, then detaches the listener so
/// that a call trapped from now on fails with `ENOSYS` instead of waiting
/// for an answer that would never come.
fn wind_down(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    for w in workers {
        if w.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    shared.defer.shutdown();
    if let Some(policy) = &shared.policy {
        policy.runner.shutdown();
    }
    let held: Vec<Notification> = {
        let mut held = shared.held.lock();
        shared.stopping.store(true, Ordering::Release);
        held.drain().map(|(_, n)| n).collect()
    };
    for notif in held {
        log::warn!(
            "supervisor stopping: answering held {} of pid {} with EPERM",
            notif.syscall_label(),
            notif.pid
        );
        pipeline::finish(shared, &notif, NotifAction::Errno(libc::EPERM));
    }
    if let Err(e) = crate::sys::fs::replace_with_null(shared.listener()) {
        log::error!("cannot detach the seccomp listener: {e}");
    }
}

/// A cheap, cloneable handle on a supervisor. It does not keep the
/// supervisor alive: once it has stopped, calls return
/// [`Error::InvalidConfig`]-free `None`/errors as documented.
#[derive(Clone)]
pub struct SupervisorHandle {
    shared: Weak<Shared>,
}

impl SupervisorHandle {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        SupervisorHandle {
            shared: Arc::downgrade(shared),
        }
    }

    /// Counters, or `None` once the supervisor is gone.
    pub fn stats(&self) -> Option<Stats> {
        let sh = self.shared.upgrade()?;
        let held = sh.held.lock().len() as u64;
        Some(sh.counters.snapshot(held))
    }

    /// Deferrals running now, or `None` once the supervisor is gone.
    pub fn deferrals_in_flight(&self) -> Option<usize> {
        Some(self.shared.upgrade()?.defer.in_flight())
    }

    /// The calls currently held ([`NotifAction::Hold`]).
    pub fn held(&self) -> Vec<Notification> {
        match self.shared.upgrade() {
            Some(sh) => sh.held.lock().values().copied().collect(),
            None => Vec::new(),
        }
    }

    /// Answers the held call `id` with `action` (which must not be `Hold` or
    /// `Defer`; those are answered `EPERM`). Returns `false` if no such call
    /// is held (already answered, or never held).
    pub fn release(&self, id: u64, action: NotifAction) -> bool {
        let Some(sh) = self.shared.upgrade() else {
            return false;
        };
        let Some(notif) = sh.held.lock().remove(&id) else {
            return false;
        };
        let action = match action {
            NotifAction::Hold | NotifAction::Defer(_) => {
                log::warn!("release of held call {id} with {action:?}; answering EPERM");
                NotifAction::Errno(libc::EPERM)
            }
            other => other,
        };
        // A counted fork held by a handler kept its token: it stays counted
        // only if it is let through now.
        let token = sh.tracker.as_ref().and_then(|t| t.take_held_token(id));
        let token = token.filter(|_| matches!(action, NotifAction::Continue));
        pipeline::finish_counted(&sh, &notif, action, token);
        true
    }

    /// Asks the supervisor to stop.
    pub fn stop(&self) {
        if let Some(sh) = self.shared.upgrade() {
            sh.request_stop();
        }
    }

    /// Freezes the sandbox: every new fork (`clone` of a process, `fork`,
    /// `vfork`; `clone3` is refused anyway) is held, and the sandbox's process group is stopped
    /// (`SIGSTOP`). Needs fork tracking
    /// ([`max_processes`](crate::SandboxBuilder::max_processes) or
    /// [`track_processes`](crate::SandboxBuilder::track_processes)).
    pub fn freeze(&self) -> Result<()> {
        let sh = self.shared.upgrade().ok_or_else(gone)?;
        let t = fork_tracker(&sh)?;
        t.freeze()
            .map_err(|e| Error::io("stop the sandbox's process group", e))
    }

    /// Thaws a frozen sandbox: answers every fork held by the freeze (each
    /// counted against the process limit now, `EAGAIN` at the limit), then
    /// continues the process group (`SIGCONT`). Returns how many held forks
    /// were answered.
    pub fn thaw(&self) -> Result<usize> {
        let sh = self.shared.upgrade().ok_or_else(gone)?;
        let t = fork_tracker(&sh)?;
        Ok(t.thaw(&sh, |notif, action| {
            pipeline::finish(&sh, notif, action) == respond::Sent::Delivered
        }))
    }

    /// Process tracking state, or `None` when the supervisor is gone or
    /// tracks nothing.
    pub fn process_stats(&self) -> Option<crate::process::ProcessStats> {
        let sh = self.shared.upgrade()?;
        sh.tracker.as_ref().map(|t| t.stats())
    }
}

fn gone() -> Error {
    Error::InvalidConfig {
        message: "the supervisor has stopped".into(),
    }
}

fn fork_tracker(sh: &Shared) -> Result<&crate::process::Tracker> {
    sh.tracker.as_ref().filter(|t| t.traps_forks()).ok_or_else(|| Error::InvalidConfig {
        message: "freeze/thaw need fork tracking: build the sandbox with max_processes(n) or track_processes()".into(),
    })
}
