//! The worker pool, split in per-CPU lanes.
//!
//! With sync wake-up the kernel runs the poll thread on the CPU of the task
//! that trapped. Waking a worker on that same CPU costs one context switch;
//! waking one on another, idle CPU costs an IPI and a VM exit, and the
//! trapped task then migrates to the worker's CPU to get its answer. So each
//! lane is a crossbeam channel served by workers pinned to one CPU, and the
//! poll thread feeds the lane of the CPU it is running on.
//!
//! # Placement
//!
//! Each thread of the sandbox has a home lane, and its notifications go
//! there. With sync wake-up the kernel wakes an answered task on the CPU of
//! the worker that answers it, so a task served by one lane stays on that
//! lane's CPU, and the hand-offs of its calls stay on one CPU. A new thread
//! gets a home in turn (round robin), which spreads the sandbox's threads
//! over the CPUs and keeps them there: on two CPUs, four threads trapping
//! in a loop run two on each, served in parallel. When the poll thread was
//! asleep, the kernel woke it on the CPU of the task that trapped, which
//! tells where that task really is (the scheduler may have moved it, or it
//! is pinned): its home follows.
//!
//! A notification waits for its home lane's worker even when that worker
//! is busy: a worker is most often just finishing (the task it answered
//! preempts it right after `SEND`), and another lane's answer would move
//! the task to another CPU. Should a worker stay busy (a slow handler)
//! with work waiting behind it, the poll thread marks its lane stuck after
//! [`STEAL_AFTER`] ([`Lanes::stalled`], [`Lanes::rebalance`]) and wakes a
//! worker of another lane, which takes (steals) the waiting work; new
//! calls then go to lanes with room until one of the stuck lane's workers
//! is idle again. Workers steal only from stuck lanes.
//!
//! # Start
//!
//! No worker runs before there is work: a lane starts its first worker
//! when its first notification comes, and another (up to its share of the
//! pool) whenever a notification comes while none of its workers is idle;
//! a stuck lane's work also starts a worker of a lane that has none. A
//! program that traps nothing (`unotify run -- /bin/true`) costs no worker
//! thread. A notification for a lane with no worker, when none can start,
//! is answered `EPERM` by the poll thread.
//!
//! # Hand-off
//!
//! Workers do not block in crossbeam's `recv`, which spins and calls
//! `sched_yield` before parking (each yield is a context switch on a busy
//! CPU) and wakes the receiver while holding the channel's lock. A worker
//! polls its lane with `try_recv` and sleeps on a futex; the poll thread
//! wakes a sleeper after queueing ([`Lanes::flush`]), holding no lock, and
//! takes it off the sleepers itself, so the rest of a burst costs no
//! further wake-up.
//! Pinned workers run under `SCHED_BATCH`: waking one on the poll thread's
//! CPU does not preempt the poll thread, which goes on receiving (or goes to
//! sleep) first. A `SCHED_BATCH` thread woken on *another*, busy CPU waits
//! for that CPU's running task to use up its slice (up to a scheduler tick,
//! 4 ms). That is harmless for an ordinary spill (if the woken worker is
//! late, the busy local worker steals the call back as soon as it is done),
//! but not when the local lane is stuck: before such a wake-up the poll
//! thread moves the sleeping workers of the other lane to `SCHED_OTHER`;
//! each returns to `SCHED_BATCH` before it next sleeps.
//!
//! Invariants: `idle` of a lane counts its workers inside [`Worker::next`]
//! (looking for work or asleep); it is a hint for placement only. A worker
//! sleeps only after announcing itself in `sleepers` and then finding every
//! queue empty; the poll thread checks `sleepers` after queueing (both sides
//! with a `SeqCst` fence between their store and their load), so a queued
//! notification never waits for a worker that is asleep unannounced.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::notification::Notification;
use crate::sys::process;

use super::Shared;

/// How long a notification may wait behind a busy worker while another
/// lane has an idle one before that one is woken to take it.
///
/// The poll thread sleeps with this timeout whenever a lane looks stalled,
/// which also happens for a few microseconds at a time in normal operation
/// (a worker preempted right after its `SEND`; 5 to 15% of the sleeps of
/// the one-thread benchmark). A timer due before the next scheduler tick
/// (4 ms at `HZ=250`) must be programmed into the hardware, which in a VM
/// costs an exit on arming and another on cancelling, about 3 µs per sleep
/// here, as much as a context switch; a timer due after the next tick does
/// not.
pub(crate) const STEAL_AFTER: Duration = Duration::from_millis(10);

/// One worker's scheduling state, shared with the poll thread.
#[derive(Default)]
struct Slot {
    /// Its thread id; 0 until it has started.
    tid: AtomicI32,
    /// Moved to `SCHED_OTHER` for a wake-up from another CPU; the worker
    /// moves itself back to `SCHED_BATCH` before it next sleeps.
    boosted: AtomicBool,
}

/// What the workers of one lane share with the poll thread.
#[derive(Default)]
struct LaneState {
    /// Workers looking for work or asleep (placement hint).
    idle: AtomicUsize,
    /// Workers asleep on `seq`, or about to be. A worker adds itself; the
    /// poll thread takes off those it wakes (so that the next notification
    /// of a burst does not wake them again), a worker that was not woken
    /// takes itself off.
    sleepers: AtomicU32,
    /// The futex word: bumped by every wake-up.
    seq: AtomicU32,
    /// Its workers stayed busy past [`STEAL_AFTER`] with work waiting:
    /// workers of other lanes may take that work, and the poll thread
    /// sends nothing more here until one of its workers is idle again.
    stuck: AtomicBool,
    /// Whether the workers run `SCHED_BATCH` between hand-offs.
    batch: bool,
    /// One per worker of the lane.
    slots: Vec<Slot>,
}

impl LaneState {
    /// Wakes up to `n` sleeping workers; with `urgent`, as `SCHED_OTHER`
    /// (the caller runs on another CPU and nobody else will take the work
    /// soon). The caller has queued the work and issued a `SeqCst` fence
    /// since.
    fn wake(&self, n: u32, urgent: bool) {
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return;
        }
        if urgent && self.batch {
            self.boost();
        }
        self.seq.fetch_add(1, Ordering::Release);
        let woken = process::futex_wake(&self.seq, i32::try_from(n).unwrap_or(i32::MAX));
        if woken > 0 {
            self.sleepers.fetch_sub(woken, Ordering::AcqRel);
        }
    }

    /// Moves the lane's workers to `SCHED_OTHER`, so that a wake-up from
    /// another CPU preempts what runs on theirs.
    fn boost(&self) {
        for slot in &self.slots {
            let tid = slot.tid.load(Ordering::Acquire);
            // Flag first: a worker racing back to SCHED_BATCH can at worst
            // stay SCHED_OTHER until its next boost, never miss this one.
            if tid > 0 && !slot.boosted.swap(true, Ordering::AcqRel) {
                if let Err(e) = process::set_sched_batch(tid, false) {
                    log::debug!("cannot move worker {tid} to SCHED_OTHER: {e}");
                }
            }
        }
    }
}

struct Lane {
    tx: Sender<Notification>,
    state: Arc<LaneState>,
    /// Its workers not started yet, the next last (poll thread only).
    pending: RefCell<Vec<Worker>>,
    /// Its workers started (poll thread only).
    started: Cell<usize>,
    /// Notifications queued since the last [`Lanes::flush`] (poll thread only).
    unflushed: Cell<u32>,
    /// One of them spilled here from a stuck lane (poll thread only).
    urgent: Cell<bool>,
}

impl Lane {
    fn idle(&self) -> usize {
        self.state.idle.load(Ordering::Acquire)
    }

    /// An idle worker is there for one more notification.
    fn has_room(&self) -> bool {
        self.idle() > self.tx.len()
    }
}

/// The sending side of the pool, owned by the poll thread. Dropping it
/// disconnects the lanes: workers finish what is queued and exit.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
    /// CPU number → lane index.
    lane_of_cpu: Vec<usize>,
    /// Thread id → home lane (poll thread only; see the module docs).
    homes: RefCell<HashMap<u32, usize>>,
    /// The home lane of the next new thread.
    next_home: Cell<usize>,
    /// The workers started, joined by the supervisor's wind-down.
    handles: WorkerHandles,
    /// Thread creation fails (tests of that path).
    #[cfg(test)]
    pub(crate) refuse_threads: Cell<bool>,
}

/// The join handles of a pool's started workers.
pub(crate) type WorkerHandles = Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>;

/// [`Lanes::homes`] starts over when it holds this many threads (exited
/// threads are not taken out one by one; a forgotten thread gets a new home).
const MAX_HOMES: usize = 4096;

impl Lanes {
    /// Prepares `workers` threads; returns the pool and the handles of
    /// the workers it will have started. A lane's workers start when it
    /// first gets work, and one more each time work comes while none of
    /// them is idle (see [`dispatch`](Self::dispatch)): a sandbox whose
    /// program traps nothing starts none.
    pub(crate) fn new(shared: &Arc<Shared>, workers: usize) -> (Lanes, WorkerHandles) {
        let cpus = process::allowed_cpus().unwrap_or_default();
        // Pin only when every allowed CPU gets at least one worker.
        let pinned = !cpus.is_empty() && workers >= cpus.len() && cpus.len() > 1;
        let nlanes = if pinned { cpus.len() } else { 1 };
        // SCHED_BATCH only when every wake-up can be told local or remote.
        let batch = pinned || cpus.len() == 1;
        let mut lanes = Vec::with_capacity(nlanes);
        let mut receivers = Vec::with_capacity(nlanes);
        for i in 0..nlanes {
            let (tx, rx) = crossbeam_channel::unbounded();
            let per_lane = (i..workers).step_by(nlanes).count();
            lanes.push(Lane {
                tx,
                state: Arc::new(LaneState {
                    batch,
                    slots: (0..per_lane).map(|_| Slot::default()).collect(),
                    ..LaneState::default()
                }),
                pending: RefCell::new(Vec::with_capacity(per_lane)),
                started: Cell::new(0),
                unflushed: Cell::new(0),
                urgent: Cell::new(false),
            });
            receivers.push(rx);
        }
        let max_cpu = cpus.iter().copied().max().unwrap_or(0);
        let mut lane_of_cpu = vec![0; max_cpu + 1];
        if pinned {
            for (i, &cpu) in cpus.iter().enumerate() {
                lane_of_cpu[cpu] = i;
            }
        }
        // The last first: each lane starts its workers from the back.
        for w in (0..workers).rev() {
            let lane = w % nlanes;
            // Its own lane first, then the others to steal from.
            let queues = (0..nlanes)
                .map(|i| {
                    let j = (lane + i) % nlanes;
                    (receivers[j].clone(), Arc::clone(&lanes[j].state))
                })
                .collect();
            lanes[lane].pending.borrow_mut().push(Worker {
                index: w,
                shared: Arc::clone(shared),
                queues,
                state: Arc::clone(&lanes[lane].state),
                slot: w / nlanes,
                cpu: pinned.then(|| cpus[lane]),
            });
        }
        let handles = WorkerHandles::default();
        (
            Lanes {
                lanes,
                lane_of_cpu,
                homes: RefCell::new(HashMap::new()),
                next_home: Cell::new(0),
                handles: Arc::clone(&handles),
                #[cfg(test)]
                refuse_threads: Cell::new(false),
            },
            handles,
        )
    }

    /// Starts the next worker of lane `i`, if it has one left; whether one
    /// started. A worker that cannot start stays pending (tried again at
    /// the next need).
    fn grow(&self, i: usize) -> bool {
        let lane = &self.lanes[i];
        let Some(worker) = lane.pending.borrow().last().cloned() else {
            return false;
        };
        let index = worker.index;
        #[cfg(test)]
        if self.refuse_threads.get() {
            log::error!("cannot start worker thread {index}: refused by the test");
            return false;
        }
        match std::thread::Builder::new()
            .name(format!("unotify-worker-{index}"))
            .spawn(move || worker.run())
        {
            Ok(h) => {
                lane.pending.borrow_mut().pop();
                lane.started.set(lane.started.get() + 1);
                self.handles.lock().push(h);
                true
            }
            Err(e) => {
                log::error!("cannot start worker thread {index}: {e}");
                false
            }
        }
    }

    /// Queues a notification for a worker of its task's home lane (see
    /// the module docs). `woken`: the poll thread slept before receiving
    /// it, so it runs on the CPU of the task that trapped. The worker is
    /// woken by the next [`flush`](Self::flush).
    ///
    /// Starts a worker of the lane when none of its workers is idle and it
    /// has one left; `Err` (the notification back, for the caller to
    /// answer) when the lane has no worker and none can start.
    pub(crate) fn dispatch(&self, notif: Notification, woken: bool) -> Result<(), Notification> {
        let (i, urgent) = self.pick(self.home_of(notif.pid, woken));
        let lane = &self.lanes[i];
        if lane.idle() == 0 && !self.grow(i) && lane.started.get() == 0 {
            return Err(notif);
        }
        lane.tx.send(notif).map_err(|e| e.into_inner())?;
        lane.unflushed.set(lane.unflushed.get().saturating_add(1));
        if urgent {
            lane.urgent.set(true);
        }
        Ok(())
    }

    /// How many lanes there are.
    pub(crate) fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Wakes sleeping workers for everything queued since the last call.
    pub(crate) fn flush(&self) {
        // Pairs with the fence in `Worker::next`: either the worker sees the
        // queued notification, or we see it in `sleepers`.
        fence(Ordering::SeqCst);
        for lane in &self.lanes {
            let n = lane.unflushed.replace(0);
            let urgent = lane.urgent.replace(false);
            if n > 0 {
                lane.state.wake(n, urgent);
            }
        }
    }

    /// The lane of the CPU the calling thread runs on.
    fn here(&self) -> usize {
        if self.lanes.len() == 1 {
            return 0;
        }
        process::current_cpu()
            .and_then(|c| self.lane_of_cpu.get(c).copied())
            .unwrap_or(0)
    }

    /// The home lane of thread `tid`.
    fn home_of(&self, tid: u32, woken: bool) -> usize {
        if self.lanes.len() == 1 {
            return 0;
        }
        let mut homes = self.homes.borrow_mut();
        if woken {
            // Where the task is now, whatever moved it there.
            let here = self.here();
            if homes.insert(tid, here).is_none() && homes.len() > MAX_HOMES {
                homes.clear();
            }
            return here;
        }
        if let Some(&lane) = homes.get(&tid) {
            return lane;
        }
        if homes.len() >= MAX_HOMES {
            homes.clear();
        }
        let lane = self.next_home.get() % self.lanes.len();
        self.next_home.set(lane + 1);
        homes.insert(tid, lane);
        lane
    }

    /// The lane for a notification whose home is lane `home`, and whether
    /// it spills from a stuck lane (see [`LaneState::wake`]).
    fn pick(&self, home: usize) -> (usize, bool) {
        if self.lanes.len() == 1 {
            return (0, false);
        }
        let lane = &self.lanes[home];
        if lane.has_room() {
            lane.state.stuck.store(false, Ordering::Relaxed);
            return (home, false);
        }
        if !lane.state.stuck.load(Ordering::Relaxed) {
            return (home, false);
        }
        match self.lanes.iter().position(Lane::has_room) {
            Some(i) => (i, true),
            None => (home, false),
        }
    }

    /// Whether some lane has notifications waiting behind busy workers: the
    /// poll thread should call [`rebalance`](Self::rebalance) if nothing
    /// else happens within [`STEAL_AFTER`]. (Whether another lane has room
    /// does not matter: one may have room by then, and nothing else would
    /// wake the poll thread.)
    pub(crate) fn stalled(&self) -> bool {
        self.lanes.len() > 1 && self.lanes.iter().any(|l| l.idle() == 0 && !l.tx.is_empty())
    }

    /// Marks stuck each lane whose queue waits behind busy workers, so that
    /// the workers of other lanes take its work as soon as they are free,
    /// and wakes an idle worker of another lane for each.
    pub(crate) fn rebalance(&self) {
        let mut stuck = 0;
        for lane in self
            .lanes
            .iter()
            .filter(|l| l.idle() == 0 && !l.tx.is_empty())
        {
            lane.state.stuck.store(true, Ordering::Relaxed);
            log::debug!(
                "{} notification(s) waiting behind busy workers; another lane takes them",
                lane.tx.len()
            );
            stuck += 1;
        }
        // Pairs with the fence in `Worker::next`: a worker going to sleep
        // either sees the stuck lane, or is seen among the sleepers.
        fence(Ordering::SeqCst);
        let helpers = self
            .lanes
            .iter()
            .filter(|l| !l.state.stuck.load(Ordering::Relaxed) && l.has_room());
        let mut helped = 0;
        for helper in helpers.take(stuck) {
            helper.state.wake(1, true);
            helped += 1;
        }
        // A lane none of whose workers has started has none to wake: start
        // one there, which takes the stuck lanes' work.
        for i in 0..self.lanes.len() {
            if helped >= stuck {
                break;
            }
            let lane = &self.lanes[i];
            if !lane.state.stuck.load(Ordering::Relaxed) && lane.started.get() == 0 && self.grow(i)
            {
                helped += 1;
            }
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Disconnect every lane first, so that a woken worker sees it.
        let states: Vec<Arc<LaneState>> = self.lanes.drain(..).map(|l| l.state).collect();
        for st in states {
            // Urgent: a SCHED_BATCH worker woken on a busy CPU could wait a
            // whole scheduler tick, which every shutdown would pay.
            if st.batch {
                st.boost();
            }
            st.seq.fetch_add(1, Ordering::Release);
            let woken = process::futex_wake(&st.seq, i32::MAX);
            st.sleepers.fetch_sub(woken, Ordering::AcqRel);
        }
    }
}

/// One worker thread.
#[derive(Clone)]
struct Worker {
    /// Its number in the pool (its thread's name).
    index: usize,
    shared: Arc<Shared>,
    /// Its lane's queue first, then the other lanes', each with its lane.
    queues: Vec<(Receiver<Notification>, Arc<LaneState>)>,
    state: Arc<LaneState>,
    /// Its index in `state.slots`.
    slot: usize,
    cpu: Option<usize>,
}

impl Worker {
    fn run(self) {
        if let Some(cpu) = self.cpu {
            if let Err(e) = process::pin_to_cpu(0, cpu) {
                log::debug!("cannot pin worker to CPU {cpu}: {e}");
            }
        }
        if let Some(slot) = self.state.slots.get(self.slot) {
            slot.tid.store(process::gettid(), Ordering::Release);
        }
        if self.state.batch {
            if let Err(e) = process::set_sched_batch(0, true) {
                log::debug!("cannot move worker to SCHED_BATCH: {e}");
            }
        }
        loop {
            self.state.idle.fetch_add(1, Ordering::AcqRel);
            let next = self.next();
            self.state.idle.fetch_sub(1, Ordering::AcqRel);
            match next {
                Some(notif) => {
                    // Handler panics are caught inside the pipeline; this
                    // catches the rest, so that the worker survives and the
                    // call still gets a definite answer (ENOENT, harmless,
                    // if it was answered before the panic).
                    let run = std::panic::AssertUnwindSafe(|| {
                        super::pipeline::process(&self.shared, notif)
                    });
                    if std::panic::catch_unwind(run).is_err() {
                        log::error!(
                            "the pipeline panicked on {} of pid {}; answering EPERM",
                            notif.syscall_label(),
                            notif.pid
                        );
                        self.shared
                            .core
                            .answer(&notif, crate::NotifAction::Errno(libc::EPERM));
                    }
                }
                None => return,
            }
        }
    }

    /// The next notification, sleeping until there is one; `None` once the
    /// lanes are disconnected and the own queue is empty.
    fn next(&self) -> Option<Notification> {
        loop {
            if let Some(got) = self.take() {
                return got;
            }
            let seq = self.state.seq.load(Ordering::Acquire);
            self.state.sleepers.fetch_add(1, Ordering::SeqCst);
            // Pairs with the fence in `Lanes::flush`.
            fence(Ordering::SeqCst);
            let got = self.take();
            let woken = got.is_none() && {
                self.unboost();
                process::futex_wait(&self.state.seq, seq)
            };
            if !woken {
                // Whoever wakes a worker takes it off; nobody woke this one.
                self.state.sleepers.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(got) = got {
                return got;
            }
        }
    }

    /// Back to `SCHED_BATCH` after a wake-up from another CPU.
    fn unboost(&self) {
        let Some(slot) = self.state.slots.get(self.slot) else {
            return;
        };
        if slot.boosted.load(Ordering::Relaxed) && slot.boosted.swap(false, Ordering::AcqRel) {
            if let Err(e) = process::set_sched_batch(0, true) {
                log::debug!("cannot move worker back to SCHED_BATCH: {e}");
            }
        }
    }

    /// `Some(Some(n))`: got one; `Some(None)`: disconnected; `None`: nothing
    /// queued (in its own lane, or in a stuck one).
    fn take(&self) -> Option<Option<Notification>> {
        let ((own, _), others) = self.queues.split_first()?;
        match own.try_recv() {
            Ok(n) => return Some(Some(n)),
            Err(TryRecvError::Disconnected) => return Some(None),
            Err(TryRecvError::Empty) => {}
        }
        others
            .iter()
            .filter(|(_, lane)| lane.stuck.load(Ordering::Acquire))
            .find_map(|(rx, _)| rx.try_recv().ok())
            .map(Some)
    }
}
