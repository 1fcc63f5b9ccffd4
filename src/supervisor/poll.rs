//! The poll thread: receives notifications and hands them to the workers.
//!
//! `NOTIF_RECV` blocks even on a non-blocking fd, so the thread receives one
//! notification each time `poll(2)` says one is pending (level-triggered:
//! it says so again at once while more are queued). The thread is the only
//! receiver, so a notification reported pending is still there when `RECV`
//! comes; if its task went away meanwhile, `RECV` fails with `ENOENT`
//! instead of blocking (the kernel's count of pending notifications is not
//! lowered by a withdrawal). It never runs handlers.
//!
//! # Blocking receive
//!
//! When nothing else needs watching (no tracked tasks, no argv safety, whose
//! freeze must see every receive under the `world` lock) and the kernel
//! ends a blocked `RECV` once every task using the filter is gone (Linux
//! 6.11), the thread skips `poll(2)` and blocks in `RECV` itself: one
//! system call less per notification. [`SupervisorHandle::stop`]
//! (crate::SupervisorHandle::stop) then interrupts it with a signal
//! ([`Interrupt`]), and [`Supervisor::join`](super::Supervisor::join)
//! repeats the signal until the thread is done, since one sent just
//! before the thread blocks is lost. While some lane has work waiting
//! behind busy workers, a one-shot timer sends the same signal after
//! [`STEAL_AFTER`], so that the thread hands that work over
//! ([`Lanes::rebalance`]) even if nothing else arrives (without the timer,
//! the thread uses `poll(2)` with a timeout while stalled).

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::notification::Notification;
use crate::sys::interrupt::{self, AlarmTimer};
use crate::sys::process;
use crate::sys::seccomp;

use super::lanes::{Lanes, STEAL_AFTER};
use super::stats::Counters;
use super::Shared;

/// How the poll thread is interrupted out of a blocking `RECV`.
pub(crate) struct Interrupt {
    /// The signal ([`interrupt::signal`]).
    pub(crate) sig: i32,
    /// The poll thread's id; 0 until it has started.
    pub(crate) tid: AtomicI32,
    /// The poll thread is in (or about to enter) a blocking `RECV`.
    pub(crate) in_recv: AtomicBool,
}

impl Interrupt {
    /// Blocking receive with `sig`, if the kernel and the signal allow it.
    pub(crate) fn new_if_supported(sig: i32) -> Option<Interrupt> {
        if !interrupt::kernel_at_least(6, 11) {
            return None;
        }
        match interrupt::install(sig) {
            Ok(true) => Some(Interrupt {
                sig,
                tid: AtomicI32::new(0),
                in_recv: AtomicBool::new(false),
            }),
            Ok(false) => {
                log::debug!("signal {sig} has a handler already; receiving with poll(2)");
                None
            }
            Err(e) => {
                log::debug!(
                    "cannot install the handler of signal {sig} ({e}); receiving with poll(2)"
                );
                None
            }
        }
    }

    /// Interrupts the poll thread if it may be blocked in `RECV` (`always`:
    /// whatever it is doing).
    pub(crate) fn kick(&self, always: bool) {
        let tid = self.tid.load(Ordering::SeqCst);
        if tid > 0 && (always || self.in_recv.load(Ordering::SeqCst)) {
            if let Err(e) = interrupt::interrupt(tid, self.sig) {
                log::debug!("cannot interrupt the poll thread: {e}");
            }
        }
    }
}

/// The poll thread's time slice (the kernel's minimum for a custom slice).
const POLL_SLICE: Duration = Duration::from_micros(100);

/// A `poll(2)` that lasted this long slept before it returned.
const SLEPT: Duration = Duration::from_micros(2);

/// Why the poll loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every task using the filter is gone.
    HungUp,
    /// [`SupervisorHandle::stop`](crate::SupervisorHandle::stop) was called.
    Stopped,
    /// The listener failed.
    Failed,
}

pub(crate) fn run(shared: &Arc<Shared>, mut poll: Poll, lanes: Lanes) -> Ended {
    let mut events = Events::with_capacity(64);
    // The listener is watched with poll(2), not through mio's epoll: with
    // sync wake-up the kernel wakes a poll(2) waiter on the CPU of the task
    // that trapped, but epoll passes the wake-up on as an ordinary one, and
    // the poll thread would then be placed on whatever CPU is idle, taking
    // the worker and the trapped task with it. The stop eventfd sits beside
    // it. mio's epoll fd (tracked tasks' pidfds) is watched only when tasks
    // are tracked: polling it costs about 1 µs per trapped call.
    let mut fds = [
        pollin(shared.core.listener().as_raw_fd()),
        pollin(shared.waker.as_fd().as_raw_fd()),
        pollin(poll.as_raw_fd()),
    ];
    // A feature that ticks (process tracking) also polls pidfds.
    let watched = if shared.tick.is_some() { 3 } else { 2 };
    let timeout = shared.tick;
    // Since when a call has been waiting behind a busy worker while another
    // lane idles: after STEAL_AFTER it is handed over ([`Lanes::rebalance`]).
    let mut stalled_since: Option<Instant> = None;
    let multi_lane = lanes.count() > 1;
    // The shortest time slice (Linux 6.12 and later). The poll thread runs
    // for microseconds per wake-up; with the earliest deadline it runs as
    // soon as a trapping task wakes it, ahead of a worker that the answered
    // task preempted right after its `SEND`, which then finds the next call
    // queued instead of first switching out to sleep. Measured: 3.0 context
    // switches per trapped call instead of 3.4 (one client thread,
    // `benches/trapped_call.rs`).
    if let Err(e) = process::set_fair_slice(false, POLL_SLICE) {
        log::debug!("cannot shorten the poll thread's time slice: {e}");
    }
    let blocking = shared.interrupt.as_ref().filter(|_| shared.tick.is_none());
    if let Some(int) = blocking {
        if let Err(e) = interrupt::unblock_here(int.sig) {
            log::debug!("cannot unblock signal {}: {e}", int.sig);
        }
        int.tid.store(process::gettid(), Ordering::SeqCst);
    }
    // In blocking receive, a stall is timed by an alarm signal that
    // interrupts `RECV`; without one, the thread polls while stalled.
    let alarm = blocking.and_then(|int| match AlarmTimer::for_this_thread(int.sig) {
        Ok(a) => Some(a),
        Err(e) => {
            log::debug!("no alarm timer ({e}); polling while a lane is stalled");
            None
        }
    });
    // When the alarm armed last expires.
    let mut alarm_due: Option<Instant> = None;
    let ended = loop {
        if let Some(int) = blocking {
            let stalled = lanes.stalled();
            if !stalled {
                stalled_since = None;
            }
            if let (true, Some(alarm)) = (stalled, &alarm) {
                let now = Instant::now();
                let since = *stalled_since.get_or_insert(now);
                let left = STEAL_AFTER.saturating_sub(now - since);
                if left.is_zero() {
                    lanes.rebalance();
                    stalled_since = None;
                    continue;
                }
                if alarm_due.is_none_or(|due| due <= now) {
                    match alarm.arm(left) {
                        Ok(()) => alarm_due = Some(now + left),
                        Err(e) => log::debug!("cannot arm the stall alarm: {e}"),
                    }
                }
            }
            if !stalled || alarm.is_some() {
                match receive_blocking(shared, &lanes, int, multi_lane) {
                    Some(end) => break end,
                    None => continue,
                }
            }
        }
        let wait = if lanes.stalled() {
            stalled_since.get_or_insert_with(Instant::now);
            Some(timeout.map_or(STEAL_AFTER, |t| t.min(STEAL_AFTER)))
        } else {
            stalled_since = None;
            timeout
        };
        // Whether poll(2) slept (see `Lanes::dispatch`): a call that finds
        // the listener ready returns in well under a microsecond; one that
        // sleeps lasts at least a context switch there and another back.
        let before = multi_lane.then(Instant::now);
        let polled = process::poll(&mut fds[..watched], wait);
        let woken = before.is_some_and(|t| t.elapsed() >= SLEPT)
            && fds[1..watched].iter().all(|f| f.revents == 0);
        if let Err(e) = polled {
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            log::error!("poll failed: {e}");
            break Ended::Failed;
        }
        if shared.core.stopping() {
            break Ended::Stopped;
        }
        if stalled_since.is_some_and(|t| t.elapsed() >= STEAL_AFTER) {
            lanes.rebalance();
            stalled_since = None;
        }
        if fds[2].revents != 0 {
            if let Err(e) = poll.poll(&mut events, Some(Duration::ZERO)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    break Ended::Failed;
                }
            }
            for ev in events.iter() {
                for stage in &shared.stages {
                    stage.on_ready(ev.token().0);
                }
            }
        }
        let listener = fds[0].revents;
        if listener & libc::POLLIN != 0 {
            if let Some(end) = receive(shared, &lanes, woken) {
                break end;
            }
        } else if listener & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            break Ended::HungUp;
        }
        for stage in &shared.stages {
            stage.tick();
        }
    };
    log::debug!("poll thread ends: {ended:?}");
    ended
}

/// A `pollfd` waiting for `fd` to be readable.
fn pollin(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// For a supervisor without a poll thread (nothing to receive): returns,
/// as the thread's loop would end, once every task using the filter is
/// gone (the listener hangs up) or a stop was asked for.
pub(super) fn wait_end(shared: &Shared) {
    let mut fds = [
        pollin(shared.core.listener().as_raw_fd()),
        pollin(shared.waker.as_fd().as_raw_fd()),
    ];
    while !shared.core.stopping() {
        match process::poll(&mut fds, None) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                log::error!("poll failed: {e}");
                return;
            }
            Ok(_) if fds[0].revents != 0 => return,
            Ok(_) => {}
        }
    }
}

/// Blocks in `RECV` and hands what comes to a worker; `Some` when the loop
/// must end.
fn receive_blocking(
    shared: &Arc<Shared>,
    lanes: &Lanes,
    int: &Interrupt,
    multi_lane: bool,
) -> Option<Ended> {
    // Either `request_stop` sees `in_recv` and interrupts, or we see
    // `stopping` here (both SeqCst).
    int.in_recv.store(true, Ordering::SeqCst);
    if shared.core.stopping() {
        int.in_recv.store(false, Ordering::SeqCst);
        return Some(Ended::Stopped);
    }
    let before = multi_lane.then(Instant::now);
    let received = seccomp::recv(shared.core.listener());
    int.in_recv.store(false, Ordering::SeqCst);
    let woken = before.is_some_and(|t| t.elapsed() >= SLEPT);
    match received {
        Ok(raw) => {
            hand_over(shared, lanes, &raw, woken);
            lanes.flush();
            None
        }
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
            shared.core.stopping().then_some(Ended::Stopped)
        }
        // A task went away before its notification was received, or every
        // task is gone (then the listener reports a hang-up).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let mut fd = [pollin(shared.core.listener().as_raw_fd())];
            match process::poll(&mut fd, Some(Duration::ZERO)) {
                Ok(_) if fd[0].revents & libc::POLLHUP != 0 => Some(Ended::HungUp),
                _ => None,
            }
        }
        Err(e) => {
            log::error!("receiving a notification failed: {e}");
            Some(Ended::Failed)
        }
    }
}

/// Counts a received notification and queues it for a worker (answered
/// `EPERM` if no worker is left).
pub(super) fn hand_over(
    shared: &Arc<Shared>,
    lanes: &Lanes,
    raw: &seccomp::SeccompNotif,
    woken: bool,
) {
    Counters::bump(&shared.core.counters.received);
    let notif = Notification::from(raw);
    if let Err(notif) = lanes.dispatch(notif, woken) {
        log::error!(
            "no worker left for notification {}; answering EPERM",
            notif.id
        );
        shared
            .core
            .answer(&notif, crate::NotifAction::Errno(libc::EPERM));
    }
}

/// Receives the notification `poll(2)` has just reported and hands it to a
/// worker; `Some` when the loop must end. `woken`: `poll(2)` slept before
/// reporting it (see [`Lanes::dispatch`]).
fn receive(shared: &Arc<Shared>, lanes: &Lanes, woken: bool) -> Option<Ended> {
    let end = receive_one(shared, lanes, woken);
    lanes.flush();
    end
}

fn receive_one(shared: &Arc<Shared>, lanes: &Lanes, woken: bool) -> Option<Ended> {
    let received = {
        // A feature that must see every receive (argv safety: an exec
        // freeze leaves tasks waiting for an answer alone) is told under
        // the shared `world` lock.
        let _world = shared.watch_receives.then(|| shared.core.world());
        let r = seccomp::recv(shared.core.listener());
        if let (Ok(raw), true) = (&r, shared.watch_receives) {
            for stage in &shared.stages {
                stage.on_receive(raw.pid as i32, raw.id);
            }
        }
        r
    };
    match received {
        Ok(raw) => hand_over(shared, lanes, &raw, woken),
        // Interrupted, or the task went away: poll(2) tells whether
        // another one is pending.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::ENOENT)) => {}
        Err(e) => {
            log::error!("receiving a notification failed: {e}");
            return Some(Ended::Failed);
        }
    }
    None
}
