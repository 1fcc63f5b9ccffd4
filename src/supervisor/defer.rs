//! The deferral pool: blocking closures decided off the workers.
//!
//! Invariants:
//! - a deferral is admitted only with a [`Permit`]; the permit lives until
//!   its closure returns, so at most `limit` closures run at once;
//! - each deferral has one [`Slot`]; whoever claims it first (the closure's
//!   thread or the deadline timer) sends the one answer, the other drops its
//!   result.
//!
//! A deferral that watches its own call ([`DeferKind::WatchesItsCall`])
//! takes neither a permit nor a deadline: its closure returns by itself
//! soon after the call stops waiting (the task killed or gone, the call
//! answered), and otherwise may rightly wait as long as the call would on
//! bare Linux (a FIFO open waits for its other end for good). The core does
//! not know why; it runs such a closure on a thread of its own, up to
//! [`WATCHING_LIMIT`] at once, so a program waiting on many of them takes
//! nothing from other handlers' slow work, and answers any still waiting
//! `EPERM` at shutdown (which ends them: their calls no longer wait).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::action::{DeferKind, Deferred, NotifAction};
use crate::notification::Notification;

use super::semaphore::{Permit, Semaphore};
use super::stats::Counters;
use super::Shared;

/// Deferrals that watch their own call, running at once, at most.
///
/// Each is one thread parked in a blocking call (a FIFO open: only a
/// blocking open counts as the FIFO's reader or writer and is woken
/// exactly when the other end comes, so one thread cannot wait for many;
/// no readiness event says "a writer opened"). Such a thread reserves a
/// small stack and uses a few pages, and its closure wakes every tick to
/// watch its call (a FIFO open: about 3 ms of CPU a second, measured with
/// 200 waits). Each stands for a task of the program that waits in the
/// same call, which counts against the program's own process limit: 4096
/// is far more than a program blocks at once in practice; beyond it, the
/// call is answered `EAGAIN`, as a full pool's.
pub(crate) const WATCHING_LIMIT: usize = 4096;

/// The stack of a thread running a deferral that watches its call: the
/// closures are shallow (an open, a check, a log line).
const WATCHING_STACK: usize = 256 * 1024;

/// Claimed by the first of closure and deadline.
#[derive(Debug, Default)]
struct Slot(AtomicBool);

impl Slot {
    fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    fn is_claimed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct Job {
    /// Whether the sender already took an idle thread's place in `idle`.
    reserved: bool,
    notif: Notification,
    work: Deferred,
    slot: Arc<Slot>,
    _permit: Permit,
}

/// A deferral running on a thread of its own ([`DeferPool::watch`]).
struct Watching {
    notif: Notification,
    slot: Arc<Slot>,
    thread: JoinHandle<()>,
}

struct Deadline {
    at: Instant,
    notif: Notification,
    slot: Arc<Slot>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct Timer {
    queue: Mutex<(BinaryHeap<Reverse<Deadline>>, bool)>,
    wake: Condvar,
}

/// The deferral pool. Threads are started on demand, up to `limit`.
pub(crate) struct DeferPool {
    sem: Arc<Semaphore>,
    timeout: Duration,
    limit: usize,
    tx: Mutex<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    idle: Arc<AtomicUsize>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    timer: Arc<Timer>,
    /// Deferrals that watch their own call, by notification id: the one
    /// answer's slot, and the thread (taken out by the thread when done).
    watching: Mutex<HashMap<u64, Watching>>,
    /// Set by the first refusal while the pool is full, cleared by the
    /// next admission: one warning per time the pool fills, not one per
    /// refused call (a program blocking on many FIFOs would flood stderr).
    full_told: AtomicBool,
}

impl DeferPool {
    pub(crate) fn new(limit: usize, timeout: Duration) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        DeferPool {
            sem: Semaphore::new(limit),
            timeout,
            limit,
            tx: Mutex::new(Some(tx)),
            rx,
            idle: Arc::new(AtomicUsize::new(0)),
            threads: Mutex::new(Vec::new()),
            timer: Arc::new(Timer::default()),
            watching: Mutex::new(HashMap::new()),
            full_told: AtomicBool::new(false),
        }
    }

    /// Deferrals currently running.
    pub(crate) fn in_flight(&self) -> usize {
        self.sem.in_use()
    }

    /// Admits `work` for `notif`, or returns the answer to send now
    /// (`EAGAIN` when full, `EPERM` when the pool is shut down).
    pub(crate) fn submit(
        shared: &Arc<Shared>,
        notif: Notification,
        work: Deferred,
    ) -> Option<NotifAction> {
        let pool = &shared.defer;
        if work.kind == DeferKind::WatchesItsCall {
            return pool.watch(shared, notif, work);
        }
        let Some(permit) = pool.sem.try_acquire() else {
            Counters::bump(&shared.core.counters.defer_rejected);
            // Relaxed: a flag for the log, ordering nothing.
            if pool.full_told.swap(true, Ordering::Relaxed) {
                log::debug!(
                    "deferral pool still full; answering EAGAIN to {} of pid {}",
                    notif.syscall_label(),
                    notif.pid
                );
            } else {
                log::warn!(
                    "more than {} deferrals in flight; answering EAGAIN to {} of pid {} (and to any other slow call until one ends)",
                    pool.limit,
                    notif.syscall_label(),
                    notif.pid
                );
            }
            return Some(NotifAction::Errno(libc::EAGAIN));
        };
        pool.full_told.store(false, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        pool.schedule(notif, Arc::clone(&slot));
        Counters::bump(&shared.core.counters.deferred);
        let job = Job {
            reserved: false,
            notif,
            work,
            slot,
            _permit: permit,
        };
        match pool.hand_over(shared, job) {
            Ok(()) => None,
            Err(job) => {
                // Nobody will run it: answer now, unless the deadline already did.
                if job.slot.claim() {
                    Some(NotifAction::Errno(libc::EPERM))
                } else {
                    None
                }
            }
        }
    }

    /// Gives `job` to an idle thread, or to a new one while fewer than
    /// `limit` exist. Permits never exceed `limit`, so a job is queued only
    /// while a thread is between two jobs.
    fn hand_over(&self, shared: &Arc<Shared>, mut job: Job) -> Result<(), Box<Job>> {
        let mut threads = self.threads.lock();
        if threads.is_empty() {
            let timer = Arc::clone(&self.timer);
            let sh = Arc::clone(shared);
            match std::thread::Builder::new()
                .name("unotify-deadline".into())
                .spawn(move || run_timer(&sh, &timer))
            {
                Ok(t) => threads.push(t),
                Err(e) => log::error!("cannot start the deferral deadline thread: {e}"),
            }
        }
        let Some(tx) = self.tx.lock().clone() else {
            return Err(Box::new(job));
        };
        let reserved = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if reserved || threads.len() > self.limit {
            job.reserved = reserved;
            return tx.send(job).map_err(|e| Box::new(e.into_inner()));
        }
        let rx = self.rx.clone();
        let idle = Arc::clone(&self.idle);
        let sh = Arc::clone(shared);
        let n = threads.len();
        let first = Mutex::new(Some(job));
        let first = Arc::new(first);
        let handed = Arc::clone(&first);
        match std::thread::Builder::new()
            .name(format!("unotify-defer-{n}"))
            .spawn(move || {
                let job = handed.lock().take();
                run_deferrals(&sh, job, &rx, &idle)
            }) {
            Ok(t) => {
                threads.push(t);
                Ok(())
            }
            Err(e) => {
                log::error!("cannot start a deferral thread: {e}");
                let job = first.lock().take();
                match job {
                    Some(job) => Err(Box::new(job)),
                    None => Ok(()),
                }
            }
        }
    }

    /// Runs `work`, which watches its own call, on a thread of its own
    /// (see [`WATCHING_LIMIT`]), or returns the answer to send now.
    fn watch(
        &self,
        shared: &Arc<Shared>,
        notif: Notification,
        work: Deferred,
    ) -> Option<NotifAction> {
        let mut watching = self.watching.lock();
        if self.tx.lock().is_none() {
            return Some(NotifAction::Errno(libc::EPERM));
        }
        if watching.len() >= WATCHING_LIMIT {
            Counters::bump(&shared.core.counters.defer_rejected);
            log::warn!(
                "{WATCHING_LIMIT} calls already wait on their own threads; answering EAGAIN to {} of pid {}",
                notif.syscall_label(),
                notif.pid
            );
            return Some(NotifAction::Errno(libc::EAGAIN));
        }
        Counters::bump(&shared.core.counters.deferred);
        let slot = Arc::new(Slot::default());
        let sh = Arc::clone(shared);
        let mine = Arc::clone(&slot);
        let id = notif.id;
        let started = std::thread::Builder::new()
            .name("unotify-wait".into())
            .stack_size(WATCHING_STACK)
            .spawn(move || {
                let action = run_guarded(&sh, &notif, work);
                if mine.claim() {
                    sh.core.answer(&notif, action);
                }
                // Done: no longer the shutdown's to answer or join.
                sh.defer.watching.lock().remove(&id);
            });
        match started {
            Ok(thread) => {
                watching.insert(
                    id,
                    Watching {
                        notif,
                        slot,
                        thread,
                    },
                );
                None
            }
            Err(e) => {
                log::error!("cannot start a thread for a waiting call: {e}; answering EAGAIN");
                Some(NotifAction::Errno(libc::EAGAIN))
            }
        }
    }

    fn schedule(&self, notif: Notification, slot: Arc<Slot>) {
        let mut q = self.timer.queue.lock();
        // Deadlines of deferrals that already answered are dead weight:
        // drop them now and then so the queue stays near the in-flight count.
        if q.0.len() >= 2 * self.limit {
            q.0.retain(|Reverse(d)| !d.slot.is_claimed());
        }
        q.0.push(Reverse(Deadline {
            at: Instant::now() + self.timeout,
            notif,
            slot,
        }));
        self.timer.wake.notify_one();
    }

    /// Whether some deferral has neither answered nor reached its deadline.
    fn awaiting_answer(&self) -> bool {
        self.timer
            .queue
            .lock()
            .0
            .iter()
            .any(|Reverse(d)| !d.slot.is_claimed())
    }

    /// Stops taking work and ends the pool: answers `EPERM` to the calls
    /// still waiting on threads of their own, which ends those threads
    /// (within their tick), and joins them; waits until every admitted
    /// deferral has been answered (by its closure, or `EIO` at its deadline),
    /// joins the threads that are done and leaves behind, with a warning,
    /// the threads of closures still running past their deadline, since
    /// their answer was already sent and nothing can interrupt user code.
    pub(crate) fn shutdown(&self, core: &super::notifier::Notifier) {
        {
            // Under the lock: no watching deferral starts after this.
            let _watching = self.watching.lock();
            self.tx.lock().take();
        }
        // Calls still waiting on their own threads: answered now, which
        // ends their waits (their calls no longer wait); then joined.
        let watching = std::mem::take(&mut *self.watching.lock());
        for w in watching.values() {
            if w.slot.claim() {
                log::warn!(
                    "supervisor stopping: answering {} of pid {}, still waiting on its own thread, with EPERM",
                    w.notif.syscall_label(),
                    w.notif.pid
                );
                core.answer(&w.notif, NotifAction::Errno(libc::EPERM));
            }
        }
        for w in watching.into_values() {
            if w.thread.join().is_err() {
                log::error!("a waiting call's thread panicked");
            }
        }
        while self.awaiting_answer() {
            std::thread::sleep(Duration::from_millis(2));
        }
        {
            let mut q = self.timer.queue.lock();
            q.1 = true;
            self.timer.wake.notify_all();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if !t.is_finished() && self.in_flight() > 0 {
                // Idle threads exit at once on the closed channel; give them a moment.
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() || self.in_flight() == 0 {
                if t.join().is_err() {
                    log::error!("a deferral thread panicked");
                }
            } else {
                log::warn!(
                    "a deferred closure is still running past its deadline (answered EIO); \
                     leaving its thread behind"
                );
            }
        }
    }
}

fn run_deferrals(shared: &Arc<Shared>, first: Option<Job>, rx: &Receiver<Job>, idle: &AtomicUsize) {
    let mut next = first;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => {
                idle.fetch_add(1, Ordering::AcqRel);
                match rx.recv() {
                    Ok(job) => {
                        if !job.reserved {
                            // Saturating: a sender may have reserved this
                            // thread's place meanwhile; its job waits in
                            // the queue for the next free thread.
                            let _ = idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                n.checked_sub(1)
                            });
                        }
                        job
                    }
                    Err(_) => return,
                }
            }
        };
        let Job {
            notif,
            work,
            slot,
            _permit,
            ..
        } = job;
        let action = run_guarded(shared, &notif, work);
        if slot.claim() {
            shared.core.answer(&notif, action);
        } else {
            log::debug!("late deferred result for notification {} dropped", notif.id);
        }
    }
}

/// Runs `work` for `notif`: its action, with a panic answered `EPERM` and
/// a second `Defer` answered `EIO`.
fn run_guarded(shared: &Shared, notif: &Notification, work: Deferred) -> NotifAction {
    match catch_unwind(AssertUnwindSafe(|| work.run())) {
        Ok(NotifAction::Defer(_)) => {
            log::warn!(
                "a deferred closure for {} of pid {} deferred again; answering EIO",
                notif.syscall_label(),
                notif.pid
            );
            NotifAction::Errno(libc::EIO)
        }
        Ok(action) => action,
        Err(_) => {
            Counters::bump(&shared.core.counters.panics);
            log::error!(
                "a deferred closure for {} of pid {} panicked; answering EPERM",
                notif.syscall_label(),
                notif.pid
            );
            NotifAction::Errno(libc::EPERM)
        }
    }
}

fn run_timer(shared: &Arc<Shared>, timer: &Timer) {
    let mut q = timer.queue.lock();
    loop {
        if q.1 {
            return;
        }
        let now = Instant::now();
        match q.0.peek() {
            Some(Reverse(d)) if d.at <= now => {
                let Reverse(d) = q.0.pop().expect("peeked");
                if d.slot.claim() {
                    drop(q);
                    Counters::bump(&shared.core.counters.defer_timeouts);
                    log::warn!(
                        "deferred handler for {} of pid {} missed its deadline; answering EIO",
                        d.notif.syscall_label(),
                        d.notif.pid
                    );
                    shared.core.answer(&d.notif, NotifAction::Errno(libc::EIO));
                    q = timer.queue.lock();
                }
            }
            Some(Reverse(d)) => {
                let at = d.at;
                timer.wake.wait_until(&mut q, at);
            }
            None => timer.wake.wait(&mut q),
        }
    }
}
