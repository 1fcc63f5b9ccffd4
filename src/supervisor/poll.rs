//! The poll thread: receives notifications and hands them to the workers.
//!
//! `NOTIF_RECV` blocks even on a non-blocking fd, so the thread receives only
//! after a zero-timeout `poll(2)` probe says a notification is pending. mio is
//! edge-triggered: after each readiness event it drains until the probe says
//! the queue is empty, and only then wakes the workers, once per burst. It
//! never runs handlers.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::notification::Notification;
use crate::sys::seccomp::{self, Probe};

use super::lanes::{Lanes, STEAL_AFTER};
use super::stats::Counters;
use super::Shared;

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);

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
    let fd = shared.listener().as_raw_fd();
    if let Err(e) = poll
        .registry()
        .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)
    {
        log::error!("cannot watch the seccomp listener: {e}");
        return Ended::Failed;
    }
    let mut events = Events::with_capacity(64);
    // With process tracking, wake up now and then to sweep the index.
    let timeout = shared.tracker.as_ref().map(|_| crate::process::SWEEP_INTERVAL);
    // Since when a call has been waiting behind a busy worker while another
    // lane idles: after STEAL_AFTER it is handed over ([`Lanes::rebalance`]).
    let mut stalled_since: Option<Instant> = None;
    let ended = 'outer: loop {
        let wait = if lanes.stalled() {
            stalled_since.get_or_insert_with(Instant::now);
            Some(timeout.map_or(STEAL_AFTER, |t| t.min(STEAL_AFTER)))
        } else {
            stalled_since = None;
            timeout
        };
        if let Err(e) = poll.poll(&mut events, wait) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("poll failed: {e}");
            break Ended::Failed;
        }
        if shared.stopping.load(Ordering::Acquire) {
            break Ended::Stopped;
        }
        if stalled_since.is_some_and(|t| t.elapsed() >= STEAL_AFTER) {
            lanes.rebalance();
            stalled_since = None;
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                if let Some(end) = drain(shared, &lanes) {
                    break 'outer end;
                }
            } else if let Some(tracker) = &shared.tracker {
                // A tracked task's pidfd: it exited.
                if ev.token().0 >= crate::process::index::FIRST_TOKEN {
                    tracker.on_ready(ev.token().0);
                }
            }
        }
        if let Some(tracker) = &shared.tracker {
            tracker.maybe_sweep();
        }
    };
    log::debug!("poll thread ends: {ended:?}");
    ended
}

/// Receives every pending notification, then wakes the workers once for
/// the whole burst; `Some` when the loop must end.
fn drain(shared: &Arc<Shared>, lanes: &Lanes) -> Option<Ended> {
    let end = receive_all(shared, lanes);
    lanes.flush();
    end
}

fn receive_all(shared: &Arc<Shared>, lanes: &Lanes) -> Option<Ended> {
    loop {
        match seccomp::probe(shared.listener()) {
            Probe::Empty => return None,
            Probe::HungUp => return Some(Ended::HungUp),
            Probe::Pending => {}
        }
        let received = {
            let _world = shared.world.read();
            seccomp::recv(shared.listener())
        };
        match received {
            Ok(raw) => {
                Counters::bump(&shared.counters.received);
                let notif = Notification::from(&raw);
                if let Err(notif) = lanes.dispatch(notif) {
                    log::error!("no worker left for notification {}; answering EPERM", notif.id);
                    super::pipeline::finish(shared, &notif, crate::NotifAction::Errno(libc::EPERM));
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::ENOENT)) => continue,
            Err(e) => {
                log::error!("receiving a notification failed: {e}");
                return Some(Ended::Failed);
            }
        }
    }
}
