//! The supervisor: a poll thread, a pool of workers, a deferral pool.
//!
//! ```text
//! poll thread ──(crossbeam lanes)──> workers ── pipeline ── one answer
//!                                       └─ Defer ──> deferral pool (+ deadline timer)
//! ```
//!
//! Every answer goes through the answer core (`notifier`), a leaf that
//! owns the listener and the held calls. The supervisor imports no
//! feature: process tracking, argv safety, the policy callback and the
//! rest plug in through `enforcement` (started per supervisor, called at
//! the stages `pipeline` orders) and are found by type in `services`.

mod defer;
pub(crate) mod enforcement;
pub(crate) mod handle;
mod lanes;
pub(crate) mod notifier;
mod pipeline;
mod poll;
mod semaphore;
pub(crate) mod services;
mod stats;
#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::handler::Chains;
use crate::sys::seccomp;

pub use handle::SupervisorHandle;
pub use stats::Stats;

use defer::DeferPool;
use enforcement::{Enforcement, PollOnDemand, Stage, StartEnv};
use handle::HandleOps;
use notifier::Notifier;
use services::Services;

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
    /// The filter can send notifications (see [`crate::filter::may_notify`]).
    pub(crate) notifies: bool,
    /// The sandbox's features, in the order they start (a feature starts
    /// after those it needs).
    pub(crate) features: Vec<Arc<dyn Enforcement>>,
    /// The sandbox's cgroup membership, when a cgroup holds it (set per
    /// spawn).
    pub(crate) members: Option<crate::sys::cgroup::Members>,
    /// The sandbox's memory cgroup, when it bounds memory (set per spawn).
    pub(crate) memory_cgroup: Option<Arc<crate::sys::cgroup::MemoryCgroup>>,
}

/// State shared by every supervisor thread.
///
/// Lock order: the answer core's (`world` → `held`), then the deferral
/// pool's own locks, which are never held while taking `world`.
pub(crate) struct Shared {
    /// The answer core: listener, held calls, counters, `world`.
    pub(crate) core: Notifier,
    pub(crate) chains: Chains,
    pub(crate) defer: DeferPool,
    /// Wakes the poll thread for [`SupervisorHandle::stop`].
    pub(crate) waker: crate::sys::eventfd::EventFd,
    /// Interrupts the poll thread's blocking receive, when it uses one.
    pub(crate) interrupt: Option<poll::Interrupt>,
    /// Set (and notified) when the poll thread has wound everything down.
    done: (Mutex<bool>, parking_lot::Condvar),
    /// The running features, by type (for handlers and other features).
    pub(crate) services: Services,
    /// The running features' hooks, in start order.
    pub(crate) stages: Vec<Arc<dyn Stage>>,
    /// Some feature must see every receive (under `world`).
    pub(crate) watch_receives: bool,
    /// The shortest tick a feature asked for (it also polls pidfds).
    pub(crate) tick: Option<Duration>,
    /// A handle on this supervisor, for handlers.
    pub(crate) handle: SupervisorHandle,
}

impl Shared {
    fn request_stop(&self) {
        self.core.set_stopping();
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
            if timed_out && self.core.stopping() {
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
    /// A supervisor with nothing to receive runs no thread: what the poll
    /// thread would wind down at its end, kept until [`join`](Self::join).
    idle: Option<Idle>,
}

/// What a supervisor without a poll thread holds until it ends.
struct Idle {
    /// The features' pidfd registry, if one asked for it (empty: no
    /// feature ticks).
    _poll: Option<mio::Poll>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &(self.poll.is_some() || self.idle.is_some()))
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts supervising `listener` (a seccomp notification fd).
    pub(crate) fn start(listener: OwnedFd, pgid: i32, config: Config) -> Result<Supervisor> {
        seccomp::check_sizes().map_err(|e| Error::Unsupported {
            feature: "seccomp user notification",
            source: e,
        })?;
        // A program that cannot trap (its filter has no notifying return)
        // sends nothing to receive: unless a feature must poll its pidfds,
        // the supervisor then runs no thread at all. The listener stays
        // open until the end all the same (the program cannot install a
        // listener of its own: see `Error::Nested`).
        let receives = config.notifies;
        let sync = receives
            && config.sync_wake_up
            && match seccomp::set_flags(listener.as_fd(), seccomp::USER_NOTIF_FD_SYNC_WAKE_UP) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("sync wake-up not available ({e}); trapped calls will be slower");
                    false
                }
            };
        let poll = PollOnDemand::default();
        let waker = crate::sys::eventfd::EventFd::new()
            .map_err(|e| Error::io("create the poll thread's wake-up eventfd", e))?;
        let mut services = Services::default();
        let mut stages = Vec::new();
        for feature in &config.features {
            let env = StartEnv {
                listener: listener.as_fd(),
                pgid,
                poll: &poll,
                members: config.members.clone(),
                memory_cgroup: config.memory_cgroup.clone(),
                services: &services,
            };
            if let Some(running) = feature.start(&env)? {
                stages.push(running.publish(&mut services));
            }
        }
        let watch_receives = stages.iter().any(|s| s.watches_receives());
        let tick = stages.iter().filter_map(|s| s.tick_interval()).min();
        let thread = receives || tick.is_some();
        let shared = Arc::new_cyclic(|weak| Shared {
            core: Notifier::new(listener, pgid, config.traced),
            chains: config.chains,
            defer: DeferPool::new(config.defer_limit, config.defer_timeout),
            waker,
            // Blocking receive: see `poll`. Not when a feature polls pidfds
            // or must see every receive under `world`.
            interrupt: (thread && sync && !watch_receives && tick.is_none())
                .then(|| poll::Interrupt::new_if_supported(crate::sys::interrupt::signal()))
                .flatten(),
            done: (Mutex::new(false), parking_lot::Condvar::new()),
            services,
            stages,
            watch_receives,
            tick,
            handle: SupervisorHandle::new(Weak::clone(weak) as Weak<dyn HandleOps>),
        });
        let poll = poll.into_inner();
        if !thread {
            return Ok(Supervisor {
                shared,
                poll: None,
                idle: Some(Idle { _poll: poll }),
            });
        }
        let poll = match poll {
            Some(p) => p,
            None => mio::Poll::new().map_err(|e| Error::io("create the poll instance", e))?,
        };
        // The workers start as work comes (see `lanes`).
        let (lanes, workers) = lanes::Lanes::new(&shared, config.workers.max(1));
        let sh = Arc::clone(&shared);
        let poll_thread = std::thread::Builder::new()
            .name("unotify-poll".into())
            .spawn(move || {
                // `run` consumes the lanes: when it returns they are
                // disconnected and the workers exit once the queue is empty.
                let ended = poll::run(&sh, poll, lanes);
                wind_down(&sh, workers, Detach::Listener);
                *sh.done.0.lock() = true;
                sh.done.1.notify_all();
                ended
            })
            // If the thread cannot start, the closure is dropped with the
            // lanes (no worker has started: none does before work comes).
            .map_err(|e| Error::io("start the poll thread", e))?;
        Ok(Supervisor {
            shared,
            poll: Some(poll_thread),
            idle: None,
        })
    }

    /// A handle to inspect or stop the supervisor from elsewhere.
    pub fn handle(&self) -> SupervisorHandle {
        self.shared.handle.clone()
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
        if let Some(idle) = self.idle.take() {
            // As the poll thread would: until every task is gone, or a stop.
            poll::wait_end(&self.shared);
            // What the poll thread does after its loop; no worker started.
            // The filter has no notifying return: no call can wait on the
            // listener, which closes when the supervisor is dropped.
            wind_down(
                &self.shared,
                lanes::WorkerHandles::default(),
                Detach::Nothing,
            );
            drop(idle);
            *self.shared.done.0.lock() = true;
            self.shared.done.1.notify_all();
            log::debug!("supervisor ended (it had nothing to receive)");
            return;
        }
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
        if self.poll.is_some() || self.idle.is_some() {
            self.shared.request_stop();
            self.join_inner();
        }
    }
}

/// Whether [`wind_down`] detaches the listener.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detach {
    /// A call may still be trapped: it must fail rather than wait.
    Listener,
    /// The filter cannot trap (an idle supervisor): the detach would be
    /// three system calls on the path that ends every such sandbox, for
    /// nothing.
    Nothing,
}

/// Ends a supervisor, on the poll thread, once its loop has returned: joins
/// the workers (which answer what was queued), lets running deferrals
/// finish, answers every held call `EPERM`, then (`Detach::Listener`)
/// detaches the listener so that a call trapped from now on fails with
/// `ENOSYS` instead of waiting for an answer that would never come.
fn wind_down(shared: &Shared, workers: lanes::WorkerHandles, detach: Detach) {
    let started = std::mem::take(&mut *workers.lock());
    for w in started {
        if w.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    shared.defer.shutdown(&shared.core);
    for stage in &shared.stages {
        stage.shutdown();
    }
    shared.core.release_all_held();
    if detach == Detach::Nothing {
        return;
    }
    if let Err(e) = crate::sys::fs::replace_with_null(shared.core.listener()) {
        log::error!("cannot detach the seccomp listener: {e}");
    }
}

impl HandleOps for Shared {
    fn core(&self) -> &Notifier {
        &self.core
    }

    fn services(&self) -> &Services {
        &self.services
    }

    fn deferrals_in_flight(&self) -> usize {
        self.defer.in_flight()
    }

    fn request_stop(&self) {
        Shared::request_stop(self);
    }
}
