//! Where the kernel wakes a task answered with an injected fd.
//!
//! A call answered with `SECCOMP_IOCTL_NOTIF_ADDFD` and
//! `SECCOMP_ADDFD_FLAG_SEND` (every open made on the program's behalf)
//! wakes its task with a plain `complete()` (`kernel/seccomp.c`,
//! `seccomp_notify_addfd`), not with the same-CPU wake-up that
//! `NOTIF_SEND` gets under `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`
//! (`complete_on_current_cpu`). The scheduler then looks for an idle CPU:
//! the worker's own CPU is busy (the worker is running the ioctl), so on a
//! quiet machine the task goes to the other, idle CPU (an IPI, and a
//! halted virtual CPU to wake), the poll thread follows it there at its
//! next call, and the worker, asleep in the ioctl until the task has
//! installed the fd, is woken back across CPUs.
//!
//! The scheduler counts a CPU that runs only `SCHED_IDLE` tasks as idle
//! (`sched_idle_cpu`) and then keeps the woken task on it. So a pinned
//! worker runs the ioctl as `SCHED_IDLE` ([`around`]): the task wakes on
//! the worker's CPU, preempts the worker there, installs the fd and runs
//! on.
//!
//! Only on a quiet machine ([`machine_quiet`], sampled from
//! `/proc/loadavg` at most every [`SAMPLE_FOR`]): that is when the task
//! would move, and when nothing else competes with a worker left runnable
//! at `SCHED_IDLE` behind the task it answered. On a busy machine the two
//! policy changes (about 2 µs per call here) would buy nothing, and an
//! idle-policy worker could wait behind other tasks for a long time.
//! Should load come between two samples, the poll thread moves a lowered
//! worker back ([`Lowering::rescue`]) when work stalls behind it.
//!
//! Invariant: a worker that is off its CPU at `SCHED_IDLE` is marked
//! `LOWERING` or `LOWERED`, so the next rescue restores it; the worker
//! skips its own restore only when a rescue made after its lowering said
//! so (`RESTORED`, in the same generation).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::sys::{process, procfs};

/// How long a sample of the machine's load holds.
const SAMPLE_FOR: Duration = Duration::from_millis(50);
/// The machine ran nothing but the sampling thread at the last sample.
static QUIET: AtomicBool = AtomicBool::new(false);
/// When the last sample was taken, in microseconds since [`EPOCH`] (0: never).
static SAMPLED_AT: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Whether the rest of the machine was idle at the latest sample (taken
/// now if the last is older than [`SAMPLE_FOR`]): `/proc/loadavg` counts
/// the tasks running or runnable right now, the caller among them.
fn machine_quiet() -> bool {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let now = u64::try_from(epoch.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let last = SAMPLED_AT.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= SAMPLE_FOR.as_micros() as u64;
    // One sampler at a time; the others use the last sample.
    if due
        && SAMPLED_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let quiet = procfs::read_text("/proc/loadavg")
            .ok()
            .and_then(|s| {
                let field = s.split_whitespace().nth(3)?.split('/').next()?.to_owned();
                field.parse::<u32>().ok()
            })
            .is_some_and(|running| running <= 1);
        QUIET.store(quiet, Ordering::Relaxed);
    }
    QUIET.load(Ordering::Relaxed)
}

/// No lowering in progress.
const NORMAL: u32 = 0;
/// The worker is moving itself to `SCHED_IDLE` (it may already be there).
const LOWERING: u32 = 1;
/// The worker is at `SCHED_IDLE` (or was moved back since).
const LOWERED: u32 = 2;
/// The poll thread moved it back after it was `LOWERED`.
const RESTORED: u32 = 3;
/// The phase bits of [`Lowering::state`]; the rest is a generation.
const PHASE: u32 = 3;

/// One pinned worker's scheduling window around its fd injections.
#[derive(Default)]
pub(crate) struct Lowering {
    /// The worker's thread id; 0 until it has started.
    tid: AtomicI32,
    /// Generation (upper bits) and phase (see the constants).
    state: AtomicU32,
}

thread_local! {
    static MINE: RefCell<Option<Arc<Lowering>>> = const { RefCell::new(None) };
}

impl Lowering {
    /// Makes `self` the calling worker's window.
    pub(crate) fn adopt(self: &Arc<Self>) {
        self.tid.store(process::gettid(), Ordering::Release);
        MINE.with_borrow_mut(|m| *m = Some(Arc::clone(self)));
    }

    /// Moves the worker back to `SCHED_BATCH` if it is (or may be) at
    /// `SCHED_IDLE`; whether it was. Poll thread only.
    pub(crate) fn rescue(&self) -> bool {
        let s = self.state.load(Ordering::SeqCst);
        let phase = s & PHASE;
        if phase != LOWERING && phase != LOWERED {
            return false;
        }
        let tid = self.tid.load(Ordering::Acquire);
        if tid <= 0 {
            return false;
        }
        if let Err(e) = process::set_sched_batch(tid, true) {
            log::debug!("cannot move worker {tid} back to SCHED_BATCH: {e}");
            return false;
        }
        if phase == LOWERED {
            let _ = self.state.compare_exchange(
                s,
                (s & !PHASE) | RESTORED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        true
    }
}

/// Runs `inject` (an fd injection that answers its call) at `SCHED_IDLE`
/// when the calling thread is a pinned worker and the machine is quiet
/// (see the module docs).
pub(crate) fn around<R>(inject: impl FnOnce() -> R) -> R {
    let Some(l) = MINE.with_borrow(|m| m.clone()) else {
        return inject();
    };
    if !machine_quiet() {
        return inject();
    }
    lowered(&l, inject)
}

/// Runs `inject` with the calling worker, whose window is `l`, at
/// `SCHED_IDLE`.
fn lowered<R>(l: &Lowering, inject: impl FnOnce() -> R) -> R {
    let generation = (l.state.load(Ordering::Relaxed) & !PHASE).wrapping_add(PHASE + 1);
    // Marked before the change (SeqCst, with the rescue's load): should the
    // worker be preempted right after it, a rescue finds it.
    l.state.store(generation | LOWERING, Ordering::SeqCst);
    if let Err(e) = process::set_sched_idle(0) {
        log::debug!("cannot move worker to SCHED_IDLE: {e}");
        l.state.store(generation | NORMAL, Ordering::SeqCst);
        return inject();
    }
    // Stored once the change took effect: a rescue that sees it restores
    // for good, and may say so.
    l.state.store(generation | LOWERED, Ordering::SeqCst);
    let r = inject();
    if l.state.load(Ordering::SeqCst) != generation | RESTORED {
        if let Err(e) = process::set_sched_batch(0, true) {
            log::debug!("cannot move worker back to SCHED_BATCH: {e}");
        }
    }
    // Cleared only once back (a late rescue is harmless: the worker is
    // moved to where it is).
    l.state.store(generation | NORMAL, Ordering::SeqCst);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        process::policy_of(0).expect("sched_getscheduler")
    }

    #[test]
    fn an_injection_runs_at_idle_policy_and_the_worker_comes_back() {
        std::thread::spawn(|| {
            process::set_sched_batch(0, true).expect("SCHED_BATCH");
            let l = Arc::new(Lowering::default());
            l.adopt();
            assert_eq!(lowered(&l, policy), libc::SCHED_IDLE);
            assert_eq!(policy(), libc::SCHED_BATCH);
            assert_eq!(l.state.load(Ordering::SeqCst) & PHASE, NORMAL);
            // Not lowered: nothing to rescue.
            assert!(!l.rescue());
        })
        .join()
        .expect("worker thread");
    }

    #[test]
    fn a_rescue_restores_a_lowered_worker_and_spares_its_own_restore() {
        let l = Arc::new(Lowering::default());
        let (to_rescuer, lowered_rx) = std::sync::mpsc::channel::<()>();
        let (to_worker, rescued_rx) = std::sync::mpsc::channel::<()>();
        let worker = {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                process::set_sched_batch(0, true).expect("SCHED_BATCH");
                l.adopt();
                let during = lowered(&l, || {
                    to_rescuer.send(()).expect("send");
                    rescued_rx.recv().expect("recv");
                    // The rescuer moved this thread back already.
                    (policy(), l.state.load(Ordering::SeqCst) & PHASE)
                });
                (during, policy())
            })
        };
        lowered_rx.recv().expect("recv");
        assert!(l.rescue(), "the lowered worker is rescued");
        to_worker.send(()).expect("send");
        let ((during, phase), after) = worker.join().expect("worker thread");
        assert_eq!(during, libc::SCHED_BATCH);
        assert_eq!(phase, RESTORED);
        assert_eq!(after, libc::SCHED_BATCH);
        assert!(!l.rescue(), "nothing left to rescue");
    }
}
