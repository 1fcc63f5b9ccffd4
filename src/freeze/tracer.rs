//! The ptrace owner: one thread that does every ptrace operation of a
//! supervisor. Workers ask it to freeze an exec ([`Tracer::freeze`]) and
//! tell it how the exec was answered ([`Tracer::finish`]); it seizes the
//! caller and the tasks sharing its memory ([`super::component`]), waits
//! for their stops, watches the caller to its exec event, re-checks the new
//! image there ([`super::exec::Expected`]) and lets everything go.
//!
//! Its table holds every task it has seized, with the number of freezes
//! that need it stopped. A task is detached once no freeze needs it and it
//! has stopped; until it stops it stays in the table, seized and with its
//! interrupt pending, and a later freeze that needs it takes it from there.
//! The loop polls its tracees (`WNOHANG`, by thread id, never `-1`: the
//! sandbox's first process is the host's own child) and sleeps on its
//! request queue between rounds while anything is outstanding.
//!
//! An exec let through is awaited without rounds: a [watcher](Watchers)
//! thread blocks in `waitid(WNOWAIT)` on the caller until its exec event
//! (or exit, or the trap of a failed exec) is there, and wakes the loop,
//! which then takes the event. Polling for an exec event every few tens of
//! microseconds cost more processor time than everything else the exec
//! freeze does, on the two processors the exec itself needed. A watched
//! tracee is polled only after its watcher has reported it: the loop never
//! takes its event, or detaches it, under a watcher still blocked on it.
//!
//! It also traces forks for their creation events ([`Tracer::trace_fork`]:
//! the policy's restrictions inherited at creation): the caller is seized
//! with creation events before its answer, watched to its event after it,
//! and the new process (attached here by the kernel, stopped before its
//! first instruction) is held until its [`ForkWitness`] has recorded it.
//! A task both a fork trace and a freeze need is one entry of the table:
//! it is let go once neither needs it, and neither fails for the other (a
//! fork whose caller a freeze holds stops at its pending interrupt before
//! it creates anything, and is restarted, and traced again, when let go).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::sys::ptrace::{self, TraceeState};
use crate::sys::seccomp;

use super::component::{self, Task};
use super::error::{FreezeError, Mismatch};
use super::exec::Expected;
use super::reissue::{self, Rewrite};
use super::{task_state, STOP_TIMEOUT};

mod forks;

use forks::ForkJob;
pub(crate) use forks::{ForkWitness, PendingFork};

/// How long the caller's exec may take before the tracer stops waiting
/// for its event (the caller is then let go when it stops).
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest sleep between two rounds while something is outstanding.
const MAX_NAP: Duration = Duration::from_micros(500);
/// The same while an exec is awaited.
const EXEC_NAP: Duration = Duration::from_micros(40);
/// The same when only stops still to come are left (a task asleep in a
/// long system call when its freeze ended): nobody waits for them.
const IDLE_NAP: Duration = Duration::from_millis(5);
/// Rounds of the sharer search before the freeze gives up on a set of
/// tasks that keeps growing.
const MAX_ROUNDS: u32 = 16;

/// What a worker asks of the tracer.
enum Request {
    Freeze {
        job: u64,
        caller: Task,
        /// The tasks sharing its memory, as the worker found them.
        sharers: Vec<Task>,
        reply: Sender<Result<(), FreezeError>>,
    },
    Finish {
        job: u64,
        expect: Option<Box<Expected>>,
    },
    /// A watcher saw a state change of this tracee (not taken yet).
    Ready(i32),
    /// Re-issue the trapped call `trapped` of `caller` (notification `id`,
    /// not answered yet) at its next stop ([`super::reissue`]): seized, its
    /// files added, interrupted before the reply.
    Reissue {
        caller: Task,
        id: u64,
        trapped: u64,
        reissue: crate::action::Reissue,
        reply: Sender<Result<(), FreezeError>>,
        /// Who has the request: the loop takes it, or the worker gives it
        /// up; the first one decides.
        claim: Arc<Claim>,
    },
    /// The exec `tid` re-issued is about to be refused by the supervisor
    /// (its freeze failed): the files added for it are closed at the stop
    /// the refusal leads to (see [`Tracer::before_refused_reissued_answer`]).
    CloseAdded { tid: i32, reply: Sender<()> },
    /// Interrupt this tracee now: the exec it re-issued is about to be let
    /// through (see [`Tracer::before_reissued_answer`]).
    Interrupt { tid: i32, reply: Sender<()> },
    /// Trace the fork-like call `caller` waits in for its creation event
    /// ([`Tracer::trace_fork`]).
    TraceFork {
        job: u64,
        caller: Task,
        witness: Box<dyn ForkWitness>,
        reply: Sender<Result<(), FreezeError>>,
    },
    /// The fork of `job` was answered; `delivered`: the kernel took its
    /// `CONTINUE`.
    ForkAnswered { job: u64, delivered: bool },
}

/// Watcher threads at most (one per exec awaited at once; further execs
/// are awaited by polling).
const MAX_WATCHERS: usize = 8;
/// The loop's longest sleep while every awaited exec is watched (its
/// deadlines are checked that often).
const WATCHED_NAP: Duration = Duration::from_millis(100);

/// The watcher threads of one tracer (see the module documentation).
struct Watchers {
    queue: Arc<WatchQueue>,
    spawned: usize,
}

#[derive(Default)]
struct WatchQueue {
    state: Mutex<WatchState>,
    ready: Condvar,
}

#[derive(Default)]
struct WatchState {
    tids: std::collections::VecDeque<i32>,
    /// Watchers waiting for a tid.
    idle: usize,
    closed: bool,
}

impl Watchers {
    /// Has a watcher wait for the next state change of tracee `tid` and
    /// report it to `inbox`; false if none is free (poll for it instead).
    fn watch(&mut self, tid: i32, inbox: &Arc<Inbox>) -> bool {
        let mut st = self.queue.state.lock();
        if st.closed {
            return false;
        }
        if st.idle <= st.tids.len() {
            if self.spawned >= MAX_WATCHERS {
                return false;
            }
            let queue = Arc::clone(&self.queue);
            let inbox = Arc::clone(inbox);
            let spawned = std::thread::Builder::new()
                .name("unotify-ptrace-w".into())
                .spawn(move || watch_loop(&queue, &inbox));
            if let Err(e) = spawned {
                log::debug!("cannot start an exec watcher ({e}); polling instead");
                return false;
            }
            self.spawned += 1;
        }
        st.tids.push_back(tid);
        self.queue.ready.notify_one();
        true
    }

    /// Ends the idle watchers (a busy one ends after its report).
    fn close(&self) {
        self.queue.state.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

/// A watcher: takes a tid, blocks until the tracee has a state change to
/// report (left in place: `WNOWAIT`; from another thread than the tracer,
/// which the kernel allows for tracees of the same thread group), reports
/// it, and takes the next.
fn watch_loop(queue: &WatchQueue, inbox: &Inbox) {
    loop {
        let tid = {
            let mut st = queue.state.lock();
            loop {
                if st.closed {
                    return;
                }
                if let Some(t) = st.tids.pop_front() {
                    break t;
                }
                st.idle += 1;
                queue.ready.wait(&mut st);
                st.idle -= 1;
            }
        };
        // An error (ECHILD: gone, or its exec moved it to another id)
        // is reported too: the loop polls and sorts it out.
        let _ = ptrace::peek(tid, libc::__WALL | libc::WEXITED | libc::WSTOPPED);
        if !inbox.send(Request::Ready(tid)) {
            return;
        }
    }
}

/// The tracer's request queue. Not a channel: the tracer naps between
/// rounds for tens of microseconds, and a channel's timed receive spins and
/// yields before it sleeps, taking the processor from the tasks it waits
/// for; a condition variable sleeps at once.
#[derive(Default)]
struct Inbox {
    queue: Mutex<InboxState>,
    ready: Condvar,
}

#[derive(Default)]
struct InboxState {
    requests: Vec<Request>,
    /// The handle was dropped: the thread ends.
    closed: bool,
}

impl Inbox {
    /// Queues `r`; false if the tracer is gone.
    fn send(&self, r: Request) -> bool {
        let mut q = self.queue.lock();
        if q.closed {
            return false;
        }
        q.requests.push(r);
        self.ready.notify_one();
        true
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_one();
    }

    /// Takes the queued requests, waiting for one for at most `nap`
    /// (`None`: without limit). `None` once closed.
    fn take(&self, nap: Option<Duration>) -> Option<Vec<Request>> {
        let mut q = self.queue.lock();
        if q.requests.is_empty() && !q.closed {
            match nap {
                Some(d) => {
                    self.ready.wait_for(&mut q, d);
                }
                None => self.ready.wait(&mut q),
            }
        }
        if q.closed {
            return None;
        }
        Some(std::mem::take(&mut q.requests))
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// Handle on the tracer thread. Dropping it ends the thread (its tracees
/// are detached by the kernel when it exits).
pub(crate) struct Tracer {
    inbox: Arc<Inbox>,
    next_job: AtomicU64,
    in_flight: Arc<InFlight>,
    /// The loop, until its thread is started by the first freeze: a
    /// sandbox whose only exec is its launcher's starts none.
    idle: Mutex<Option<Loop>>,
    /// Tasks whose trapped call the loop re-issued, until their re-issued
    /// call is answered (shared with the loop).
    reissued: Arc<Mutex<std::collections::HashSet<i32>>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("running", &self.idle.lock().is_none())
            .finish_non_exhaustive()
    }
}

/// Notifications received and not yet answered, shared with the poll
/// thread: a task whose last received id is still valid sleeps killably
/// in its seccomp wait and cannot return to user mode before its answer.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) map: Mutex<HashMap<i32, u64>>,
    pub(crate) listener: OwnedFd,
}

impl InFlight {
    /// Whether `tid` waits for the answer to a received notification.
    fn waits(&self, tid: i32) -> bool {
        let id = self.map.lock().get(&tid).copied();
        id.is_some_and(|id| seccomp::id_valid(self.listener.as_fd(), id).is_ok())
    }
}

impl Tracer {
    /// The tracer of the sandbox rooted at `root`; its thread starts with
    /// the first freeze.
    pub(crate) fn start(root: i32, listener: OwnedFd) -> std::io::Result<Tracer> {
        let inbox = Arc::new(Inbox::default());
        let in_flight = Arc::new(InFlight {
            map: Mutex::new(HashMap::new()),
            listener,
        });
        let reissued = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let state = Loop {
            reissued: Arc::clone(&reissued),
            root,
            supervisor: std::process::id() as i32,
            in_flight: Arc::clone(&in_flight),
            table: HashMap::new(),
            jobs: Vec::new(),
            inbox: Arc::clone(&inbox),
            watchers: Watchers {
                queue: Arc::default(),
                spawned: 0,
            },
            watched: std::collections::HashSet::new(),
            added: HashMap::new(),
            forks: Vec::new(),
        };
        Ok(Tracer {
            inbox,
            next_job: AtomicU64::new(1),
            in_flight,
            idle: Mutex::new(Some(state)),
            reissued,
        })
    }

    /// Starts the loop's thread if it is not running yet; false if it
    /// cannot be started (the freeze then fails closed).
    fn ensure_running(&self) -> bool {
        let mut idle = self.idle.lock();
        let Some(state) = idle.take() else {
            return true;
        };
        let inbox = Arc::clone(&self.inbox);
        match std::thread::Builder::new()
            .name("unotify-ptrace".into())
            .spawn(move || state.run(&inbox))
        {
            Ok(_) => true,
            Err(e) => {
                log::warn!("cannot start the ptrace thread: {e}");
                false
            }
        }
    }

    pub(crate) fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Asks for the freeze of an exec: `caller` seized for its exec event,
    /// `sharers` (the tasks sharing its memory, found by the worker) and any
    /// found later stopped. Returns at once; [`Pending::wait`] gives the
    /// outcome. Every freeze asked for is followed by one
    /// [`finish`](Self::finish), also when it failed.
    pub(crate) fn freeze(&self, caller: Task, sharers: Vec<Task>) -> Pending {
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = crossbeam_channel::bounded(1);
        let sent = self.ensure_running()
            && self.inbox.send(Request::Freeze {
                job,
                caller,
                sharers,
                reply,
            });
        Pending { job, answer, sent }
    }

    /// The answer of `job`'s exec was sent: `expect` is what it must run
    /// if it was let through, `None` if it was not.
    pub(crate) fn finish(&self, job: u64, expect: Option<Box<Expected>>) {
        let _ = self.inbox.send(Request::Finish { job, expect });
    }

    /// Before an exec of `tid` is let through: if it is a call this tracer
    /// re-issued, has `tid` interrupted now, so that if the kernel refuses
    /// the exec the task stops right at its return, where the files the
    /// re-issue added are closed ([`reissue::close_added`]); an interrupt
    /// asked after the answer may come when the task has run on. Asked once
    /// per re-issue: where the seccomp wait is not killable-only the
    /// interrupt cuts it short and the call is trapped again, then
    /// answered without it.
    pub(crate) fn before_reissued_answer(&self, tid: i32) {
        self.ask_for_reissued(tid, |tid, reply| Request::Interrupt { tid, reply });
    }

    /// If `tid`'s call is one this tracer re-issued (no longer, from now
    /// on): sends the loop the request `make` gives and waits for it.
    fn ask_for_reissued(&self, tid: i32, make: impl FnOnce(i32, Sender<()>) -> Request) {
        if !self.reissued.lock().remove(&tid) {
            return;
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        if self.inbox.send(make(tid, reply)) {
            let _ = answer.recv_timeout(STOP_TIMEOUT);
        }
    }

    /// Has the trapped call `trapped` of `caller` (notification `id`, which
    /// must not be answered before this returns) re-issued as `reissue`
    /// says ([`super::reissue`]). Returns once the caller is seized, the
    /// call's files added to it and its interrupt asked for: the call may
    /// then be answered (`EACCES`), and the caller is rewritten at the stop
    /// that answer leads to, before it runs one instruction. An error:
    /// nothing will be rewritten, and nothing stays added (what was is
    /// closed at that stop: see [`Loop::start_reissue`]).
    pub(crate) fn reissue(
        &self,
        caller: Task,
        id: u64,
        trapped: u64,
        reissue: crate::action::Reissue,
    ) -> Result<(), FreezeError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let claim = Arc::new(Claim::default());
        let sent = self.ensure_running()
            && self.inbox.send(Request::Reissue {
                caller,
                id,
                trapped,
                reissue,
                reply,
                claim: Arc::clone(&claim),
            });
        if !sent {
            return Err(FreezeError::TracerGone);
        }
        let patience = if super::fault::injected("reissue-late") {
            Duration::from_millis(50)
        } else if super::fault::injected("reissue-stall") {
            Duration::from_millis(100)
        } else {
            STOP_TIMEOUT * 4
        };
        if let Ok(r) = answer.recv_timeout(patience) {
            return r;
        }
        // Given up before the loop took it: it never acts on it.
        if claim.give_up() {
            return Err(FreezeError::NoAnswer);
        }
        // Taken: the loop acts, bounded by its own waits (a seize, within
        // STOP_TIMEOUT). A loop stalled past that (a task in an odd stop,
        // the thread blocked) would hold this worker and the call for
        // ever: it is left, and the caller killed before the call is
        // answered, so that whatever the loop does to it later (files
        // added, a rewrite set) never reaches a running program.
        if let Ok(r) = answer.recv_timeout(patience) {
            return r;
        }
        if claim.abandon() {
            super::kill_task(
                caller.tid,
                format_args!(
                    "task {}: the ptrace thread took its re-issue and did not answer within {:?}; killing it",
                    caller.tid,
                    patience * 2
                ),
            );
            return Err(FreezeError::Stalled);
        }
        // The loop finished first: its answer is sent right after.
        answer
            .recv_timeout(STOP_TIMEOUT)
            .unwrap_or(Err(FreezeError::NoAnswer))
    }

    /// Asks for the trace of the fork-like call `caller` waits in, for its
    /// creation event: the caller seized with creation events (or, if a
    /// freeze holds it, left to its pending interrupt, which makes the call
    /// restart). Once [`PendingFork::wait`] says so, the call may be
    /// answered; after it, [`PendingFork::answered`]. A process the call
    /// creates is held before its first instruction until `witness` has
    /// been told of it.
    pub(crate) fn trace_fork(&self, caller: Task, witness: Box<dyn ForkWitness>) -> PendingFork {
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = crossbeam_channel::bounded(1);
        let sent = self.ensure_running()
            && self.inbox.send(Request::TraceFork {
                job,
                caller,
                witness,
                reply,
            });
        PendingFork {
            pending: Pending { job, answer, sent },
            inbox: Arc::clone(&self.inbox),
            told: false,
        }
    }

    /// Whether `tid`'s trapped call is one this tracer re-issued, not
    /// answered yet.
    pub(crate) fn is_reissued(&self, tid: i32) -> bool {
        self.reissued.lock().contains(&tid)
    }

    /// Before an exec of `tid` is refused by the supervisor (its freeze
    /// failed): if it is a call this tracer re-issued, the files added for
    /// it are closed at the stop the refusal leads to (asked now: the
    /// task is interrupted before the answer, so it stops at the call's
    /// return). Without this they stayed open in the program.
    pub(crate) fn before_refused_reissued_answer(&self, tid: i32) {
        self.ask_for_reissued(tid, |tid, reply| Request::CloseAdded { tid, reply });
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.inbox.close();
    }
}

/// A freeze asked for, not waited for yet.
pub(crate) struct Pending {
    pub(crate) job: u64,
    answer: Receiver<Result<(), FreezeError>>,
    sent: bool,
}

impl Pending {
    /// Waits until the freeze holds, or why it cannot.
    pub(crate) fn wait(&self) -> Result<(), FreezeError> {
        if !self.sent {
            return Err(FreezeError::TracerGone);
        }
        // The tracer answers within STOP_TIMEOUT of taking the request; the
        // margin covers a queue of other freezes.
        match self.answer.recv_timeout(STOP_TIMEOUT * 4) {
            Ok(r) => r,
            Err(_) => Err(FreezeError::NoAnswer),
        }
    }
}

/// Where a tracee stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Seized; its stop has not been seen.
    Running,
    /// In a ptrace stop; the signal to deliver when it is let go.
    Stopped(i32),
    /// Exited, reaped, or no longer ours.
    Gone,
}

#[derive(Debug)]
struct Entry {
    st: St,
    /// Freezes that need it stopped.
    holders: u32,
    /// The job whose caller it is.
    caller_of: Option<u64>,
    interrupted: bool,
    /// It reported its exec event (a new image, stopped before its first
    /// instruction).
    exec_seen: bool,
    /// What to do at its next stop (the return of the trapped call it
    /// waits in: see [`Tracer::reissue`]).
    at_stop: Option<AtStop>,
    /// Seized with creation events (for a fork trace): a process or
    /// thread it creates is attached here.
    creation: bool,
    /// The fork trace whose caller it is.
    fork_of: Option<u64>,
    /// What its creation event created, not claimed yet.
    created: Option<i32>,
    /// The fork trace whose new process it is, not recorded yet: never let
    /// go before.
    new_of: Option<u64>,
}

impl Entry {
    /// A tracee just seized or attached, in state `st`.
    fn new(st: St, interrupted: bool, creation: bool) -> Entry {
        Entry {
            st,
            holders: 0,
            caller_of: None,
            interrupted,
            exec_seen: false,
            at_stop: None,
            creation,
            fork_of: None,
            created: None,
            new_of: None,
        }
    }
}

/// What a re-issue leaves to do at the stop its answer leads to.
#[derive(Debug)]
enum AtStop {
    /// Rewrite the task; if that cannot be done, close the files added.
    Rewrite(Box<Rewrite>),
    /// The re-issue failed after files were added for it (`trapped`: the
    /// call it answers): close them.
    Close { trapped: u64, added: reissue::Added },
    /// The re-issued call `nr` was refused by the supervisor: close the
    /// files added for it at its return.
    CloseFailed { nr: u64, added: reissue::Added },
}

/// Who has a re-issue request: the loop takes it ([`Claim::take`]) before
/// it acts, the worker gives it up ([`Claim::give_up`]) when it stops
/// waiting; whichever comes first decides, so a re-issue is carried out
/// only while its worker still waits to answer the call. Once taken, the
/// loop's end ([`Claim::finish`]) and the worker's leaving
/// ([`Claim::abandon`], after which it kills the caller) decide the same
/// way whether the loop's outcome is the one the worker answers with.
#[derive(Debug, Default)]
pub(crate) struct Claim(std::sync::atomic::AtomicU8);

impl Claim {
    const TAKEN: u8 = 1;
    const GIVEN_UP: u8 = 2;
    const FINISHED: u8 = 3;
    const ABANDONED: u8 = 4;

    /// The loop's: whether the request is still wanted (then it is the
    /// loop's to answer).
    fn take(&self) -> bool {
        // AcqRel: pairs with the same exchange in `give_up`; one of the two
        // wins.
        self.0
            .compare_exchange(0, Self::TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The worker's: whether the request was given up before the loop
    /// took it (else the loop's answer is coming).
    fn give_up(&self) -> bool {
        // AcqRel: pairs with the exchange in `take`.
        self.0
            .compare_exchange(0, Self::GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The loop's, once it acted on a taken request: whether its worker
    /// still waits (then the loop's answer is the one it answers with).
    fn finish(&self) -> bool {
        // AcqRel: pairs with the same exchange in `abandon`; one of the
        // two wins.
        self.0
            .compare_exchange(
                Self::TAKEN,
                Self::FINISHED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The worker's, when it stops waiting for a taken request: whether
    /// it left before the loop finished (then the caller is the worker's
    /// to kill, and the loop's outcome is dropped).
    fn abandon(&self) -> bool {
        // AcqRel: pairs with the exchange in `finish`.
        self.0
            .compare_exchange(
                Self::TAKEN,
                Self::ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the sharers to stop.
    Stopping,
    /// Frozen; waiting for the worker's answer.
    Frozen,
    /// Answered `CONTINUE`: waiting for the exec event or the failure.
    Exec,
}

#[derive(Debug)]
struct Job {
    id: u64,
    caller: Task,
    members: Vec<i32>,
    phase: Phase,
    rounds: u32,
    deadline: Instant,
    reply: Option<Sender<Result<(), FreezeError>>>,
    expect: Option<Box<Expected>>,
    /// `Finish` came before the freeze was in place: end it when it is.
    abandoned: bool,
    /// No sharer can appear any more: the freeze holds once the known
    /// ones have stopped.
    settled: bool,
}

struct Loop {
    /// See [`Tracer::reissued`].
    reissued: Arc<Mutex<std::collections::HashSet<i32>>>,
    root: i32,
    supervisor: i32,
    in_flight: Arc<InFlight>,
    table: HashMap<i32, Entry>,
    jobs: Vec<Job>,
    inbox: Arc<Inbox>,
    watchers: Watchers,
    /// Tracees a watcher waits on and has not reported yet: not polled.
    watched: std::collections::HashSet<i32>,
    /// Tasks whose trapped call was re-issued (kept when they are let go
    /// until the re-issued call traps): its number and the files it
    /// added, closed if it fails ([`reissue::close_added`]).
    added: HashMap<i32, (u64, reissue::Added)>,
    /// The fork traces.
    forks: Vec<ForkJob>,
}

/// Re-issued calls remembered before the gone tasks are swept out.
const MAX_ADDED: usize = 256;

impl Loop {
    fn run(mut self, inbox: &Inbox) {
        // Its naps are tens of microseconds: the default slack (50 µs)
        // made each round of an awaited fork's event cost about 66 µs.
        if let Err(e) = crate::sys::process::set_timer_slack(1_000) {
            log::debug!("ptrace thread: timer slack left as it was: {e}");
        }
        let mut nap = Duration::from_micros(10);
        loop {
            let busy = !self.jobs.is_empty() || !self.table.is_empty() || !self.forks.is_empty();
            let Some(requests) = inbox.take(busy.then_some(nap)) else {
                self.shut_down();
                return;
            };
            let mut progress = !requests.is_empty();
            for r in requests {
                self.handle(r);
            }
            progress |= self.poll_all();
            progress |= self.advance();
            self.release();
            // An exec awaited and not watched: its caller sits in its exec
            // stop until seen. An exec with frozen members: they are killed
            // by the exec, which waits until they are reaped (here).
            let unwatched_exec = self.jobs.iter().any(|j| {
                j.phase == Phase::Exec
                    && (!self.watched.contains(&j.caller.tid) || !j.members.is_empty())
            }) || self
                .table
                .iter()
                .any(|(t, e)| e.at_stop.is_some() && !self.watched.contains(t));
            let stops_to_come = self.table.iter().any(|(t, e)| {
                e.st == St::Running
                    && !self.watched.contains(t)
                    && !self.jobs.iter().any(|j| j.caller.tid == *t)
            });
            // A fork answered: its event comes within microseconds.
            let fork_awaited = self.fork_awaited();
            let cap = if unwatched_exec || fork_awaited {
                EXEC_NAP
            } else if self.jobs.iter().any(|j| j.phase == Phase::Stopping) {
                // (A frozen job waits for its worker's answer: its caller
                // sleeps in its seccomp wait, nothing to poll for.)
                MAX_NAP
            } else if stops_to_come {
                IDLE_NAP
            } else {
                WATCHED_NAP
            };
            nap = if cap == WATCHED_NAP {
                // Nothing to poll for: the watchers wake the loop.
                cap
            } else if progress {
                Duration::from_micros(10)
            } else {
                (nap * 2).min(cap)
            };
        }
    }

    /// The handle was dropped. A watcher blocked on a tracee that this
    /// thread's exit detaches would never hear of it again (its later
    /// stops and exit go to its parent): each watched tracee is asked to
    /// stop, which wakes its watcher, which then finds the queue closed
    /// and ends. The kernel detaches (and resumes) every tracee when this
    /// thread exits.
    fn shut_down(&mut self) {
        for &tid in &self.watched {
            let _ = ptrace::interrupt(tid);
        }
        self.watchers.close();
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Freeze {
                job,
                caller,
                sharers,
                reply,
            } => self.start_job(job, caller, sharers, reply),
            Request::TraceFork {
                job,
                caller,
                witness,
                reply,
            } => {
                let r = self.start_fork(job, caller, witness);
                let _ = reply.send(r);
            }
            Request::ForkAnswered { job, delivered } => self.fork_answered(job, delivered),
            Request::Ready(tid) => {
                self.watched.remove(&tid);
            }
            Request::Reissue {
                caller,
                id,
                trapped,
                reissue,
                reply,
                claim,
            } => {
                if super::fault::injected("reissue-late") {
                    std::thread::sleep(Duration::from_millis(300));
                }
                if !claim.take() {
                    log::debug!(
                        "task {}: a re-issue its worker gave up on is not made",
                        caller.tid
                    );
                    return;
                }
                if super::fault::injected("reissue-stall") {
                    std::thread::sleep(Duration::from_millis(600));
                }
                let r = self.start_reissue(caller, id, trapped, reissue);
                if !claim.finish() {
                    // Its worker stopped waiting and killed the caller
                    // (what was added or set for it dies with it).
                    log::debug!(
                        "task {}: a re-issue its worker left (the task killed) is over: {r:?}",
                        caller.tid
                    );
                    return;
                }
                let _ = reply.send(r);
            }
            Request::CloseAdded { tid, reply } => {
                self.close_after_refusal(tid);
                let _ = reply.send(());
            }
            Request::Interrupt { tid, reply } => {
                if let Some(e) = self.table.get_mut(&tid) {
                    if e.st == St::Running && !e.interrupted && ptrace::interrupt(tid).is_ok() {
                        e.interrupted = true;
                    }
                }
                let _ = reply.send(());
            }
            Request::Finish { job, expect } => {
                let Some(j) = self.jobs.iter_mut().find(|j| j.id == job) else {
                    return; // it failed and ended already
                };
                match (&j.phase, expect) {
                    (Phase::Frozen, Some(e)) => {
                        j.phase = Phase::Exec;
                        j.expect = Some(e);
                        j.deadline = Instant::now() + EXEC_TIMEOUT;
                        let tid = j.caller.tid;
                        // Asked only now: an interrupt before the answer
                        // would cut short a seccomp wait that is not
                        // killable (kernels without WAIT_KILLABLE_RECV).
                        // An exec does not fail for it; its exec event
                        // clears it. A failed exec traps on its return.
                        if let Some(e) = self.table.get_mut(&tid) {
                            if !e.interrupted && e.st == St::Running {
                                let _ = ptrace::interrupt(tid);
                                e.interrupted = true;
                            }
                        }
                        // A leader's exec event comes on its own id: a
                        // watcher waits for it (a non-leader's comes on
                        // the process id, polled for).
                        if tid == j.caller.tgid
                            && !self.watched.contains(&tid)
                            && self.table.get(&tid).is_some_and(|e| e.st == St::Running)
                            && self.watchers.watch(tid, &self.inbox)
                        {
                            self.watched.insert(tid);
                        }
                    }
                    (Phase::Stopping, _) => j.abandoned = true,
                    _ => {
                        let id = j.id;
                        self.end_job(id);
                    }
                }
            }
        }
    }

    /// The re-issued call `nr` of `tid` added the files `added`.
    fn note_added(&mut self, tid: i32, nr: u64, added: reissue::Added) {
        let mut reissued = self.reissued.lock();
        if self.added.len() >= MAX_ADDED {
            self.added.retain(|t, _| task_state(*t).is_some());
            reissued.retain(|t| task_state(*t).is_some());
        }
        self.added.insert(tid, (nr, added));
        reissued.insert(tid);
    }

    /// What a re-issue left to do at the stop of `tid` (signal `sig`) its
    /// answer led to: the rewrite; if it cannot be made, or the re-issue
    /// failed, the files it added closed (the task then sees the answer,
    /// `EACCES`).
    fn at_stop(&mut self, tid: i32, at: AtStop, sig: i32) {
        let (trapped, added) = match at {
            AtStop::Rewrite(rw) => match reissue::apply(tid, &rw) {
                Ok(()) => {
                    log::debug!("task {tid}: trapped call re-issued");
                    if !rw.added.is_empty() {
                        self.note_added(tid, rw.nr, rw.added);
                    }
                    return;
                }
                Err(why) => {
                    log::warn!(
                        "task {tid}: the trapped call cannot be re-issued ({why}); it fails with EACCES"
                    );
                    (rw.trapped, rw.added)
                }
            },
            AtStop::Close { trapped, added } => (trapped, added),
            AtStop::CloseFailed { nr, added } => {
                self.close_at_stop(tid, reissue::Return::Failed(nr), &added, sig);
                return;
            }
        };
        if !added.is_empty() {
            self.close_at_stop(tid, reissue::Return::Trapped(trapped), &added, sig);
        }
    }

    /// After a failed exec of `tid` (stopped, with signal `sig`): closes the
    /// files a re-issue added for that exec, if it was one
    /// ([`reissue::close_added`]); the signals that stopped it meanwhile
    /// are kept for its release.
    fn close_added(&mut self, tid: i32, sig: i32) {
        let Some((nr, added)) = self.added.remove(&tid) else {
            return;
        };
        self.close_at_stop(tid, reissue::Return::Failed(nr), &added, sig);
    }

    /// Before the supervisor refuses the re-issued exec of `tid`: the files
    /// added for it are closed at the stop its refusal leads to (the task
    /// waits in its seccomp wait: interrupted now, it stops at the call's
    /// return). Not a tracee any more (its freeze could not seize it):
    /// they stay (logged).
    fn close_after_refusal(&mut self, tid: i32) {
        let Some((nr, added)) = self.added.remove(&tid) else {
            return;
        };
        let Some(e) = self
            .table
            .get_mut(&tid)
            .filter(|e| e.st == St::Running && e.at_stop.is_none())
        else {
            log::debug!(
                "task {tid}: files of a refused re-issued call left open (not a tracee, or busy)"
            );
            return;
        };
        // Also when one was asked before: a pending one is the same trap.
        if let Err(err) = ptrace::interrupt(tid) {
            log::debug!("task {tid}: files of a refused re-issued call left open ({err})");
            return;
        }
        e.interrupted = true;
        e.at_stop = Some(AtStop::CloseFailed { nr, added });
    }

    /// Closes the files `added` of `tid`, stopped at return `at` with signal
    /// `sig` ([`reissue::close_added`]), and notes where it is left: in its
    /// stop (with the signal to deliver), or killed (not in a stop: its
    /// exit is collected). A task at the answered return of its trapped
    /// call whose files cannot be closed is killed too (fail closed); one
    /// whose re-issued call failed elsewhere than at its return keeps them
    /// (see the module documentation of [`super::reissue`]).
    fn close_at_stop(&mut self, tid: i32, at: reissue::Return, added: &reissue::Added, sig: i32) {
        let outcome = reissue::close_added(tid, at, added, tid == self.root, sig);
        let Some(e) = self.table.get_mut(&tid) else {
            return;
        };
        match outcome {
            reissue::Closed::Done(deliver) => {
                e.st = St::Stopped(deliver);
                log::debug!("task {tid}: the files a re-issue added are closed");
            }
            reissue::Closed::Left(deliver, why) => match at {
                reissue::Return::Failed(_) => {
                    e.st = St::Stopped(deliver);
                    log::debug!("task {tid}: files of a re-issued call left open ({why})")
                }
                reissue::Return::Trapped(_) => {
                    super::kill_task(
                        tid,
                        format_args!(
                            "task {tid}: the files a failed re-issue added cannot be closed ({why}); killing it"
                        ),
                    );
                    // Killed: not in a stop any more (as `Killed` below);
                    // its exit is collected.
                    e.st = St::Running;
                    e.interrupted = true;
                }
            },
            reissue::Closed::Killed(why) => {
                log::debug!("task {tid}: killed while its added files were closed ({why})");
                // Not in a stop any more: its exit is collected.
                e.st = St::Running;
                e.interrupted = true;
            }
        }
    }

    /// Takes a re-issue of `caller`'s trapped call `trapped` (notification
    /// `id`, not answered yet): the caller seized (if not ours yet), then
    /// the call's files added to it (`SECCOMP_IOCTL_NOTIF_ADDFD`,
    /// close-on-exec), its rewrite noted, its interrupt asked for (also
    /// when one is pending: the same trap), and a watcher set on it.
    ///
    /// Nothing is added before every check that can refuse has passed.
    /// If a file cannot be added after others were, those are closed at
    /// the stop the answer leads to ([`AtStop::Close`]), and an error is
    /// returned all the same; if the interrupt cannot be asked with files
    /// added, the caller's process is killed (they could not be closed).
    fn start_reissue(
        &mut self,
        caller: Task,
        id: u64,
        trapped: u64,
        r: crate::action::Reissue,
    ) -> Result<(), FreezeError> {
        let tid = caller.tid;
        log::debug!("task {tid}: re-issue taken");
        // Before the caller is seized: a refusal here leaves it untouched.
        let ids = r
            .files
            .iter()
            .map(|f| crate::sys::path::fstat(f.as_fd()).map(|st| (st.dev, st.ino)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FreezeError::Files)?;
        if !self.table.get(&tid).is_some_and(|e| e.st != St::Gone) {
            self.table.remove(&tid);
            self.seize(caller, false)?;
        }
        let Some(e) = self.table.get(&tid) else {
            return Err(FreezeError::CallerGone(tid));
        };
        // It waits in its trapped call: it cannot be in a stop, nor have
        // another re-issue to come.
        if e.st != St::Running || e.at_stop.is_some() || super::fault::injected("reissue-busy") {
            return Err(FreezeError::CallerBusy(tid));
        }
        let mut numbers = Vec::with_capacity(r.files.len());
        let mut added = Vec::with_capacity(r.files.len());
        let mut failure = None;
        for (f, fid) in r.files.iter().zip(ids) {
            let req = seccomp::SeccompNotifAddfd {
                id,
                flags: 0,
                srcfd: f.as_raw_fd() as u32,
                newfd: 0,
                newfd_flags: libc::O_CLOEXEC as u32,
            };
            match seccomp::addfd(self.in_flight.listener.as_fd(), &req) {
                Ok(n) => {
                    numbers.push(n);
                    added.push((n, fid));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && super::fault::injected("reissue-after-addfd") {
            failure = Some(std::io::Error::from_raw_os_error(libc::EMFILE));
        }
        let at_stop = match failure {
            None => match reissue::rewrite(&r, trapped, &numbers, added.clone()) {
                Some(rw) => AtStop::Rewrite(Box::new(rw)),
                None => AtStop::Close { trapped, added },
            },
            Some(_) if added.is_empty() => {
                return Err(FreezeError::Files(failure.expect("matched")));
            }
            Some(_) => AtStop::Close { trapped, added },
        };
        let rewriting = matches!(at_stop, AtStop::Rewrite(_));
        let Some(e) = self.table.get_mut(&tid) else {
            return Err(FreezeError::CallerGone(tid));
        };
        e.at_stop = Some(at_stop);
        if let Err(err) = ptrace::interrupt(tid) {
            // No stop to close the files at: gone (ESRCH; with them), or
            // killed here.
            e.at_stop = None;
            if err.raw_os_error() != Some(libc::ESRCH) {
                super::kill_task(
                    tid,
                    format_args!("task {tid}: cannot be interrupted after files were added to it ({err}); killing it"),
                );
            }
            return Err(FreezeError::Seize {
                tid,
                tgid: caller.tgid,
                source: err,
            });
        }
        e.interrupted = true;
        log::debug!("task {tid}: re-issue noted, interrupt asked");
        if !self.watched.contains(&tid) && self.watchers.watch(tid, &self.inbox) {
            self.watched.insert(tid);
        }
        if rewriting {
            Ok(())
        } else {
            let why = failure.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL));
            Err(FreezeError::Files(why))
        }
    }

    /// Seizes `tid` (if not ours yet) and interrupts it; `Ok(false)` if it
    /// is gone or a zombie.
    fn hold(&mut self, t: Task) -> Result<bool, FreezeError> {
        if let Some(e) = self.table.get_mut(&t.tid) {
            if e.st == St::Gone {
                return Ok(false);
            }
            e.holders += 1;
            if !e.interrupted && e.st == St::Running {
                let _ = ptrace::interrupt(t.tid);
                e.interrupted = true;
            }
            return Ok(true);
        }
        self.seize(t, true)?;
        if let Some(e) = self.table.get_mut(&t.tid) {
            e.holders += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Seizes `t` with exec events on (every tracee may be, or become, an
    /// exec caller); with `stop`, interrupts it too.
    fn seize(&mut self, t: Task, stop: bool) -> Result<(), FreezeError> {
        self.seize_with(t, stop, false)
    }

    /// [`seize`](Self::seize), with `creation` events too (a fork caller:
    /// its new processes are attached here, and killed should this thread
    /// end before they are let go).
    fn seize_with(&mut self, t: Task, stop: bool, creation: bool) -> Result<(), FreezeError> {
        let options = if creation {
            ptrace::TRACE_EXEC | ptrace::TRACE_CREATION | ptrace::EXIT_KILL
        } else {
            ptrace::TRACE_EXEC
        };
        match ptrace::seize(t.tid, options) {
            Ok(()) => {
                if stop {
                    if let Err(e) = ptrace::interrupt(t.tid) {
                        // Dying: its exit is collected like a stop.
                        log::debug!("interrupting task {} failed: {e}", t.tid);
                    }
                }
                self.table
                    .insert(t.tid, Entry::new(St::Running, stop, creation));
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            // Attached here already: a new task of a fork caller, whose
            // creation event is not taken yet (an interrupt reaches only
            // one's own tracee; its first stop is one anyway).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && ptrace::interrupt(t.tid).is_ok() => {
                self.table
                    .insert(t.tid, Entry::new(St::Running, true, true));
                Ok(())
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    && !matches!(task_state(t.tid), Some(s) if s != b'Z' && s != b'X') =>
            {
                Ok(()) // a zombie, or gone
            }
            Err(source) => Err(FreezeError::Seize {
                tid: t.tid,
                tgid: t.tgid,
                source,
            }),
        }
    }

    fn start_job(
        &mut self,
        id: u64,
        caller: Task,
        sharers: Vec<Task>,
        reply: Sender<Result<(), FreezeError>>,
    ) {
        let mut job = Job {
            id,
            caller,
            members: Vec::new(),
            phase: Phase::Stopping,
            rounds: 0,
            deadline: Instant::now() + STOP_TIMEOUT,
            reply: Some(reply),
            expect: None,
            abandoned: false,
            settled: false,
        };
        // A caller whose previous exec is still a job here: that exec was
        // answered (a thread makes one call at a time), and if it was let
        // through it failed (a successful one stops the new image at its
        // exec event, before it can make another call), e.g. an `ENOEXEC`
        // that glibc's `execvp` retries through `/bin/sh` before this
        // thread has even seen the answer. That job ends here; the
        // caller's pending interrupt, if any, traps after this exec too and
        // is read as its outcome.
        self.end_forks_of(caller.tid);
        let previous = self
            .table
            .get(&caller.tid)
            .and_then(|e| e.caller_of)
            .filter(|old| {
                self.jobs.iter().any(|j| {
                    j.id == *old && j.phase != Phase::Stopping && j.caller.tid == caller.tid
                })
            });
        if let Some(old) = previous {
            self.end_job(old);
        }
        // The caller: seized (not stopped) for its exec event.
        let seized = match self.table.get(&caller.tid) {
            Some(e) if e.st != St::Gone && e.caller_of.is_none() => Ok(()),
            Some(e) if e.st != St::Gone => Err(FreezeError::CallerBusy(caller.tid)),
            _ => self.seize(caller, false).and_then(|()| {
                if self.table.contains_key(&caller.tid) {
                    Ok(())
                } else {
                    Err(FreezeError::CallerGone(caller.tid))
                }
            }),
        };
        if let Err(why) = seized {
            let _ = job.reply.take().map(|r| r.send(Err(why)));
            return;
        }
        if let Some(e) = self.table.get_mut(&caller.tid) {
            e.caller_of = Some(id);
        }
        // No sharer: none can appear (only a sharer could create one),
        // nothing to look for again.
        job.settled = sharers.is_empty();
        let r = self.hold_all(&mut job, sharers);
        self.jobs.push(job);
        if let Err(why) = r {
            self.fail_job(id, why);
        }
    }

    /// Holds every sharer of the job's caller not held yet; returns how
    /// many were new.
    fn add_sharers(&mut self, job: &mut Job) -> Result<usize, FreezeError> {
        let found = component::sharers(job.caller, self.supervisor);
        self.hold_all(job, found)
    }

    fn hold_all(&mut self, job: &mut Job, found: Vec<Task>) -> Result<usize, FreezeError> {
        let mut new = 0;
        for t in found {
            if job.members.contains(&t.tid) {
                continue;
            }
            if self.hold(t)? {
                job.members.push(t.tid);
                new += 1;
            }
        }
        Ok(new)
    }

    fn fail_job(&mut self, id: u64, why: FreezeError) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == id) {
            if let Some(r) = j.reply.take() {
                let _ = r.send(Err(why));
            }
        }
        self.end_job(id);
    }

    /// Ends a job: its caller and members are let go (once stopped and
    /// needed by no other job).
    fn end_job(&mut self, id: u64) {
        let Some(pos) = self.jobs.iter().position(|j| j.id == id) else {
            return;
        };
        let job = self.jobs.swap_remove(pos);
        for m in &job.members {
            if let Some(e) = self.table.get_mut(m) {
                e.holders = e.holders.saturating_sub(1);
            }
        }
        for e in self.table.values_mut() {
            if e.caller_of == Some(id) {
                e.caller_of = None;
            }
        }
    }

    /// Collects the state changes of every tracee. Returns whether any.
    fn poll_all(&mut self) -> bool {
        let mut any = false;
        let root = self.root;
        let tids: Vec<i32> = self.table.keys().copied().collect();
        for tid in tids {
            if self.watched.contains(&tid) {
                continue;
            }
            any |= self.poll_one(tid);
        }
        // A caller that is not its process's leader reports its exec event
        // on the process id, which takes over the caller.
        let watch: Vec<(i32, u64)> = self
            .jobs
            .iter()
            .filter(|j| {
                j.caller.tid != j.caller.tgid
                    && j.phase != Phase::Stopping
                    && !self.table.contains_key(&j.caller.tgid)
            })
            .map(|j| (j.caller.tgid, j.id))
            .collect();
        for (tgid, job) in watch {
            if let Ok(Some(TraceeState::Event(ptrace::EVENT_EXEC))) =
                ptrace::wait_tracee(tgid, true, tgid == root)
            {
                any = true;
                let mut e = Entry::new(St::Stopped(0), false, false);
                e.caller_of = Some(job);
                e.exec_seen = true;
                self.table.insert(tgid, e);
            }
        }
        any
    }

    /// Collects the state change of tracee `tid` (in the table, not
    /// watched). Returns whether there was one.
    fn poll_one(&mut self, tid: i32) -> bool {
        let root = self.root;
        let Some(e) = self.table.get_mut(&tid) else {
            return false;
        };
        if e.st == St::Gone {
            return false;
        }
        match ptrace::wait_tracee(tid, true, tid == root) {
            Ok(None) => false,
            Ok(Some(s)) => {
                let mut new = None;
                e.st = match s {
                    TraceeState::Gone => St::Gone,
                    TraceeState::Signal(sig) => St::Stopped(sig),
                    TraceeState::Event(ptrace::EVENT_EXEC) => {
                        e.exec_seen = true;
                        St::Stopped(0)
                    }
                    TraceeState::Event(
                        ptrace::EVENT_FORK | ptrace::EVENT_VFORK | ptrace::EVENT_CLONE,
                    ) => {
                        match ptrace::event_msg(tid) {
                            Ok(child) => new = Some(child as i32),
                            Err(err) => {
                                log::error!("no new pid for the creation event of {tid}: {err}")
                            }
                        }
                        St::Stopped(0)
                    }
                    TraceeState::Trapped | TraceeState::Event(_) => St::Stopped(0),
                };
                let todo = match e.st {
                    St::Stopped(sig) => e.at_stop.take().map(|a| (a, sig)),
                    _ => e.at_stop.take().and(None),
                };
                if let Some(child) = new {
                    e.created = Some(child);
                    // Attached here, its first stop to come: held until
                    // its fork's trace claims it (that trace may not know
                    // yet that its answer was sent).
                    self.table.entry(child).or_insert_with(|| {
                        let mut c = Entry::new(St::Running, true, true);
                        c.new_of = Some(forks::UNCLAIMED);
                        c
                    });
                }
                if let Some((at, sig)) = todo {
                    self.at_stop(tid, at, sig);
                }
                true
            }
            Err(err) => {
                if err.raw_os_error() != Some(libc::ECHILD) {
                    log::debug!("waiting for traced task {tid} failed: {err}");
                }
                e.st = St::Gone;
                true
            }
        }
    }

    /// Moves each job on. Returns whether any changed phase.
    fn advance(&mut self) -> bool {
        let mut any = self.advance_forks();
        let now = Instant::now();
        let ids: Vec<u64> = self.jobs.iter().map(|j| j.id).collect();
        for id in ids {
            let Some(pos) = self.jobs.iter().position(|j| j.id == id) else {
                continue;
            };
            match self.jobs[pos].phase {
                Phase::Stopping => {
                    let waiting = self.jobs[pos]
                        .members
                        .iter()
                        .copied()
                        .find(|&m| !self.frozen(m));
                    match waiting {
                        None => {
                            let mut job = self.jobs.swap_remove(pos);
                            job.rounds += 1;
                            let r = if job.settled {
                                Ok(0)
                            } else if job.rounds > MAX_ROUNDS {
                                Err(FreezeError::Growing)
                            } else {
                                self.add_sharers(&mut job)
                            };
                            self.jobs.push(job);
                            match r {
                                Ok(0) => {
                                    any = true;
                                    let j = self.jobs.last_mut().expect("pushed");
                                    j.phase = Phase::Frozen;
                                    if let Some(r) = j.reply.take() {
                                        let _ = r.send(Ok(()));
                                    }
                                    if j.abandoned {
                                        self.end_job(id);
                                    }
                                }
                                Ok(_) => {}
                                Err(why) => {
                                    any = true;
                                    self.fail_job(id, why);
                                }
                            }
                        }
                        Some(tid) if now > self.jobs[pos].deadline => {
                            any = true;
                            self.fail_job(id, FreezeError::StopTimeout { tid });
                        }
                        Some(_) => {}
                    }
                }
                Phase::Frozen => {}
                Phase::Exec => {
                    if self.exec_outcome(pos) {
                        any = true;
                        self.end_job(id);
                    }
                }
            }
        }
        any
    }

    /// Whether member `tid` cannot run user code: stopped or gone, asleep
    /// uninterruptibly (it traps before it returns to user mode, its
    /// interrupt pending), or waiting for the answer to a received
    /// notification (likewise; its wait is killable only).
    fn frozen(&self, tid: i32) -> bool {
        match self.table.get(&tid) {
            None => true,
            Some(e) if e.st != St::Running => true,
            Some(_) => {
                task_state(tid).is_none_or(|s| matches!(s, b'D' | b'Z' | b'X'))
                    || self.in_flight.waits(tid)
            }
        }
    }

    /// Whether the exec of job `pos` has an outcome: its event (re-checked
    /// here; a mismatch kills the new image), a failure, or its death.
    fn exec_outcome(&mut self, pos: usize) -> bool {
        let caller = self.jobs[pos].caller;
        // The new image: on the caller's id, or (a non-leader caller) on
        // the process id.
        let image = [caller.tid, caller.tgid]
            .into_iter()
            .find(|t| self.table.get(t).is_some_and(|e| e.exec_seen));
        if let Some(pid) = image {
            let verdict = match &self.jobs[pos].expect {
                Some(expect) => expect.matches(pid),
                None => Err(Mismatch::NoExpectation),
            };
            if verdict.is_err() {
                // Threads of one process that exec at once are decided
                // and let through together; one wins (the kernel kills
                // the others), and its image shows on the process id for
                // every one of them. A job whose exec lost ends here and
                // leaves the image to the winner's job.
                let tgid = caller.tgid;
                let others = || {
                    self.jobs
                        .iter()
                        .enumerate()
                        .filter(move |(i, j)| *i != pos && j.caller.tgid == tgid)
                };
                if others().any(|(_, j)| {
                    j.phase == Phase::Exec
                        && j.expect.as_ref().is_some_and(|e| e.matches(pid).is_ok())
                }) {
                    return true;
                }
                // Another exec of the process was answered and its outcome
                // is not known here yet: wait for it before judging.
                if others().any(|(_, j)| j.phase == Phase::Frozen) {
                    return false;
                }
            }
            if let Err(why) = verdict {
                super::kill_task(
                    pid,
                    format_args!(
                        "exec of pid {pid} killed: the new image differs from what was checked ({why})"
                    ),
                );
            }
            // A new address space: nothing holds it any more; the old
            // leader's or caller's entry is gone with the old image.
            if let Some(e) = self.table.get_mut(&pid) {
                e.exec_seen = false;
                e.holders = 0;
                e.caller_of = None;
                e.interrupted = true;
            }
            // Close-on-exec: the exec closed them.
            for t in [pid, caller.tid, caller.tgid] {
                self.added.remove(&t);
            }
            for t in [caller.tid, caller.tgid] {
                if t != pid {
                    if let Some(e) = self.table.get_mut(&t) {
                        if e.st == St::Running {
                            e.st = St::Gone;
                        }
                    }
                }
            }
            return true;
        }
        match self.table.get(&caller.tid).map(|e| e.st) {
            // Trapped or signalled without an exec event: the exec failed.
            Some(St::Stopped(sig)) => {
                self.close_added(caller.tid, sig);
                true
            }
            Some(St::Running) => {
                if Instant::now() > self.jobs[pos].deadline {
                    log::error!(
                        "exec of task {} did not complete within {EXEC_TIMEOUT:?}",
                        caller.tid
                    );
                    return true;
                }
                false
            }
            // Gone: a leader died; a non-leader may have exec'd (its event
            // comes on the process id) or died with its process.
            Some(St::Gone) | None => {
                caller.tid == caller.tgid
                    || task_state(caller.tgid).is_none_or(|s| s == b'Z' || s == b'X')
                    || Instant::now() > self.jobs[pos].deadline
            }
        }
    }

    /// Detaches every tracee that is stopped and needed by no job; asks
    /// the ones not stopped yet to stop; forgets the gone. A new image no
    /// job waits for (its job gave up before the event) was never
    /// re-checked: it is killed.
    fn release(&mut self) {
        let callers: Vec<i32> = self
            .jobs
            .iter()
            .flat_map(|j| [j.caller.tid, j.caller.tgid])
            .collect();
        self.table.retain(|&tid, e| {
            if e.holders > 0 || e.caller_of.is_some() || e.fork_of.is_some() || e.new_of.is_some() {
                return true;
            }
            if e.exec_seen {
                if callers.contains(&tid) {
                    return true;
                }
                super::kill_task(
                    tid,
                    format_args!("exec of pid {tid} killed: its check had given up"),
                );
                e.exec_seen = false;
            }
            match e.st {
                St::Gone => false,
                St::Running => {
                    if !e.interrupted {
                        let _ = ptrace::interrupt(tid);
                        e.interrupted = true;
                    }
                    true
                }
                St::Stopped(sig) => match ptrace::detach(tid, sig) {
                    Ok(()) => false,
                    Err(err) => {
                        // ESRCH: killed while stopped; its exit is
                        // collected on a later round.
                        if err.raw_os_error() != Some(libc::ESRCH) {
                            log::warn!("cannot detach task {tid}: {err}");
                        }
                        e.st = St::Running;
                        true
                    }
                },
            }
        });
    }
}
