//! The answer core: owns the listener, the held calls, the counters, the
//! `world` lock, the sandbox's process group and the stopping flag, and is
//! the one place that turns a [`NotifAction`] into the kernel's answer.
//!
//! It calls only `sys`, `action` and `notification` (and the counters
//! next to it). The pipeline, the deferral pool, the poll thread and every
//! feature (process tracking, the exec freeze, ...) answer through it, so
//! every lock order of the answer path is kept here: `world` → `held`.
//!
//! Every path answers with a definite result: a failed injection is
//! answered `EACCES`, never `CONTINUE`; an invalid errno becomes `EPERM`; an
//! answer the kernel refuses for another reason than a gone call is
//! replaced by `EPERM`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::sys::seccomp::{self, SeccompNotifAddfd, SeccompNotifResp};
use crate::sys::{pidfd, process};

use super::stats::{Counters, Stats};

/// What happened to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The kernel took the answer.
    Delivered,
    /// The call was gone (task died or interrupted): nothing to answer.
    Stale,
    /// Not answered now: the call is held.
    Held,
}

/// Something that must learn whether a call's answer was delivered: a
/// counted fork's token commits on a delivered `CONTINUE` and rolls back
/// when dropped unsettled.
pub(crate) trait Settle: Send {
    /// The answer was delivered (`true`) or not (`false`).
    fn settle(self: Box<Self>, delivered: bool);
}

/// Why a call is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldBy {
    /// A handler answered [`NotifAction::Hold`]; released by
    /// [`SupervisorHandle::release`](crate::SupervisorHandle::release).
    Handler,
    /// A fork held while the sandbox is paused; answered by the resume.
    Pause,
}

/// One held call.
pub(crate) struct Held {
    pub(crate) notif: Notification,
    pub(crate) by: HeldBy,
    /// Settled when the call is answered (a counted fork's token).
    pub(crate) settle: Option<Box<dyn Settle>>,
}

#[derive(Default)]
struct HeldSet {
    calls: HashMap<u64, Held>,
    /// New forks are held ([`HeldBy::Pause`]) while this is set.
    paused: bool,
}

/// What [`Notifier::hold_if_paused`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PauseHold {
    /// The sandbox is not paused: decide the call as usual.
    NotPaused,
    /// Held until the resume answers it.
    Held,
    /// The supervisor is stopping: answer `EPERM`.
    Stopping,
}

/// The answer core of one supervisor (see the module docs).
pub(crate) struct Notifier {
    listener: OwnedFd,
    /// Taken shared around a receive when a feature needs the receive and
    /// its bookkeeping to be seen together (argv safety's in-flight map).
    /// Lock order: `world` → `held`.
    world: RwLock<()>,
    /// Process group of the sandbox, for `KillGroup`.
    pgid: i32,
    held: Mutex<HeldSet>,
    pub(crate) counters: Counters,
    /// Set under the `held` lock when the supervisor winds down: nothing is
    /// held after that.
    stopping: AtomicBool,
    /// Syscall numbers whose calls are logged (`--trace`).
    traced: Vec<bool>,
}

impl Notifier {
    pub(crate) fn new(listener: OwnedFd, pgid: i32, traced: Vec<bool>) -> Notifier {
        Notifier {
            listener,
            world: RwLock::new(()),
            pgid,
            held: Mutex::new(HeldSet::default()),
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            traced,
        }
    }

    pub(crate) fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Whether call `id` is still waiting for its answer.
    pub(crate) fn id_valid(&self, id: u64) -> bool {
        seccomp::id_valid(self.listener(), id).is_ok()
    }

    /// Shares the `world` lock (around a receive).
    pub(crate) fn world(&self) -> RwLockReadGuard<'_, ()> {
        self.world.read()
    }

    /// Whether calls of `nr` are traced.
    pub(crate) fn traced(&self, nr: i32) -> bool {
        usize::try_from(nr)
            .ok()
            .and_then(|i| self.traced.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// Whether the supervisor is stopping. `SeqCst`: the poll thread's
    /// blocking receive orders it with its `in_recv` flag (see `poll`).
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Asks everything to stop (the poll thread's loop sees it).
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> Stats {
        let held = self.held.lock().calls.len() as u64;
        self.counters.snapshot(held)
    }

    /// Traces and sends the one answer for `notif`. Returns what became of
    /// it; when the answer failed and `EPERM` was sent instead, `Stale`
    /// (the action asked for was not delivered).
    pub(crate) fn answer(&self, notif: &Notification, action: NotifAction) -> Sent {
        self.answer_settled(notif, action, None)
    }

    /// [`answer`](Self::answer), then settles `settle` with whether the
    /// answer was delivered. A held call keeps `settle` with it.
    pub(crate) fn answer_settled(
        &self,
        notif: &Notification,
        action: NotifAction,
        settle: Option<Box<dyn Settle>>,
    ) -> Sent {
        if self.traced(notif.nr) {
            trace(self, notif, &action.label());
        }
        if matches!(action, NotifAction::Hold) {
            return self.hold(notif, HeldBy::Handler, settle);
        }
        let sent = match self.respond(notif, action) {
            Ok(sent) => sent,
            Err(e) => {
                // Fail closed: the call must still get one definite answer.
                log::error!(
                    "answering {} of pid {} failed: {e}; answering EPERM",
                    notif.syscall_label(),
                    notif.pid
                );
                if let Err(e) = self.respond(notif, NotifAction::Errno(libc::EPERM)) {
                    log::error!(
                        "answering EPERM to notification {} failed too: {e}",
                        notif.id
                    );
                }
                Sent::Stale
            }
        };
        if sent == Sent::Stale {
            log::debug!(
                "{} of pid {} was gone before its answer",
                notif.syscall_label(),
                notif.pid
            );
        }
        if let Some(s) = settle {
            s.settle(sent == Sent::Delivered);
        }
        sent
    }

    /// Holds `notif` (its answer comes later, from [`take_held`](Self::take_held)
    /// or at the end). While stopping, answers `EPERM` instead.
    fn hold(&self, notif: &Notification, by: HeldBy, settle: Option<Box<dyn Settle>>) -> Sent {
        let mut held = self.held.lock();
        if self.stopping.load(Ordering::Acquire) {
            drop(held);
            log::warn!(
                "supervisor stopping: not holding notification {}; answering EPERM",
                notif.id
            );
            drop(settle);
            return self.answer(notif, NotifAction::Errno(libc::EPERM));
        }
        held.calls.insert(
            notif.id,
            Held {
                notif: *notif,
                by,
                settle,
            },
        );
        Sent::Held
    }

    /// The calls held now.
    pub(crate) fn held(&self) -> Vec<Notification> {
        self.held.lock().calls.values().map(|h| h.notif).collect()
    }

    /// Takes held call `id` out of the held set (its answer is the caller's
    /// to send), or `None` if it is not held.
    pub(crate) fn take_held(&self, id: u64) -> Option<Held> {
        self.held.lock().calls.remove(&id)
    }

    /// Pauses the sandbox's forks: from now on [`hold_if_paused`](Self::hold_if_paused)
    /// holds them.
    pub(crate) fn pause(&self) {
        self.held.lock().paused = true;
    }

    /// Ends a pause and takes every fork it held, in one step: a fork is
    /// either held before this (and returned here) or decided after it.
    pub(crate) fn resume(&self) -> Vec<Notification> {
        let mut held = self.held.lock();
        held.paused = false;
        let ids: Vec<u64> = held
            .calls
            .iter()
            .filter(|(_, h)| h.by == HeldBy::Pause)
            .map(|(id, _)| *id)
            .collect();
        ids.iter()
            .filter_map(|id| held.calls.remove(id))
            .map(|h| h.notif)
            .collect()
    }

    /// Whether the sandbox is paused, and how many forks the pause holds.
    pub(crate) fn pause_state(&self) -> (bool, usize) {
        let held = self.held.lock();
        let n = held
            .calls
            .values()
            .filter(|h| h.by == HeldBy::Pause)
            .count();
        (held.paused, n)
    }

    /// Holds `notif` for the pause if the sandbox is paused (checked and
    /// held in one step with [`resume`](Self::resume)).
    pub(crate) fn hold_if_paused(&self, notif: &Notification) -> PauseHold {
        let mut held = self.held.lock();
        if !held.paused {
            return PauseHold::NotPaused;
        }
        if self.stopping.load(Ordering::Acquire) {
            return PauseHold::Stopping;
        }
        held.calls.insert(
            notif.id,
            Held {
                notif: *notif,
                by: HeldBy::Pause,
                settle: None,
            },
        );
        PauseHold::Held
    }

    /// Winds down: nothing is held from now on, and every call held so far
    /// is answered `EPERM`.
    pub(crate) fn release_all_held(&self) {
        let held: Vec<Held> = {
            let mut held = self.held.lock();
            self.stopping.store(true, Ordering::Release);
            held.calls.drain().map(|(_, h)| h).collect()
        };
        for h in held {
            log::warn!(
                "supervisor stopping: answering held {} of pid {} with EPERM",
                h.notif.syscall_label(),
                h.notif.pid
            );
            // A held fork's token is rolled back (dropped unsettled).
            self.answer(&h.notif, NotifAction::Errno(libc::EPERM));
        }
    }

    /// Sends the answer for `notif`. The only caller that may pass `Hold` is
    /// [`answer_settled`](Self::answer_settled), which holds it instead.
    fn respond(&self, notif: &Notification, action: NotifAction) -> io::Result<Sent> {
        let id = notif.id;
        match action {
            NotifAction::Continue => self.send(&resp(id, 0, 0, seccomp::USER_NOTIF_FLAG_CONTINUE)),
            NotifAction::Errno(e) => self.send_errno(id, e),
            NotifAction::ReturnValue(v) => self.send(&resp(id, v, 0, 0)),
            NotifAction::InjectFd {
                fd,
                target,
                newfd_flags,
            } => {
                if target < 0 {
                    log::warn!("InjectFd with negative target {target}; answering EACCES");
                    return self.send_errno(id, libc::EACCES);
                }
                let req = SeccompNotifAddfd {
                    id,
                    flags: seccomp::ADDFD_FLAG_SETFD,
                    srcfd: fd.as_raw_fd() as u32,
                    newfd: target as u32,
                    newfd_flags,
                };
                match self.add_fd(&req)? {
                    Ok(_) => self.send(&resp(id, 0, 0, seccomp::USER_NOTIF_FLAG_CONTINUE)),
                    Err(sent) => Ok(sent),
                }
            }
            NotifAction::InjectFdSend { fd, newfd_flags } => {
                self.inject_and_send(id, &fd, newfd_flags, None)
            }
            NotifAction::InjectFdSendTracked {
                fd,
                newfd_flags,
                on_success,
            } => self.inject_and_send(id, &fd, newfd_flags, Some(on_success)),
            NotifAction::Hold => {
                log::error!("a Hold reached the responder for notification {id}; answering EPERM");
                self.send_errno(id, libc::EPERM)
            }
            NotifAction::KillTask { signal } => {
                kill_task(notif.pid as i32, signal);
                self.send_errno(id, libc::ENOMEM)
            }
            NotifAction::KillGroup { signal } => {
                if let Err(e) = process::kill_group(self.pgid, signal) {
                    log::warn!("cannot signal sandbox group {}: {e}", self.pgid);
                }
                self.send_errno(id, libc::ENOMEM)
            }
            NotifAction::Defer(_) => {
                log::error!("a Defer reached the responder for notification {id}; answering EIO");
                self.send_errno(id, libc::EIO)
            }
            NotifAction::Reissue(_) => {
                // No stage started it (pipeline stage 8): argv safety's
                // ptrace thread makes re-issues, so not without it, nor
                // from a deferral.
                log::warn!(
                    "a re-issue of {} that no feature could make (it needs argv safety, and is not made from a deferral); answering EACCES",
                    notif.syscall_label()
                );
                self.send_errno(id, libc::EACCES)
            }
        }
    }

    fn send(&self, r: &SeccompNotifResp) -> io::Result<Sent> {
        match seccomp::send(self.listener(), r) {
            Ok(()) => {
                Counters::bump(&self.counters.answered);
                Ok(Sent::Delivered)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                Counters::bump(&self.counters.stale);
                Ok(Sent::Stale)
            }
            Err(e) => Err(e),
        }
    }

    fn send_errno(&self, id: u64, errno: i32) -> io::Result<Sent> {
        let errno = match crate::action::Errno::new(errno) {
            Some(e) => e.get(),
            None => {
                log::warn!("handler answered invalid errno {errno}; answering EPERM instead");
                libc::EPERM
            }
        };
        self.send(&resp(id, 0, -errno, 0))
    }

    /// Adds an fd; on failure answers `EACCES` (fail closed) and returns
    /// what became of that answer.
    fn add_fd(&self, req: &SeccompNotifAddfd) -> io::Result<Result<i32, Sent>> {
        match seccomp::addfd(self.listener(), req) {
            Ok(n) => Ok(Ok(n)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                Counters::bump(&self.counters.stale);
                Ok(Err(Sent::Stale))
            }
            Err(e) => {
                log::warn!(
                    "fd injection for notification {} failed: {e}; answering EACCES",
                    req.id
                );
                self.send_errno(req.id, libc::EACCES).map(Err)
            }
        }
    }

    /// Adds `fd` to the task and answers the call with its number, atomically
    /// (`SECCOMP_ADDFD_FLAG_SEND`); then tells `on_success` that number.
    fn inject_and_send(
        &self,
        id: u64,
        fd: &OwnedFd,
        newfd_flags: u32,
        on_success: Option<crate::action::OnInjected>,
    ) -> io::Result<Sent> {
        let req = SeccompNotifAddfd {
            id,
            flags: seccomp::ADDFD_FLAG_SEND,
            srcfd: fd.as_raw_fd() as u32,
            newfd: 0,
            newfd_flags,
        };
        match self.add_fd(&req)? {
            Ok(n) => {
                Counters::bump(&self.counters.answered);
                if let Some(f) = on_success {
                    f(n);
                }
                Ok(Sent::Delivered)
            }
            Err(sent) => Ok(sent),
        }
    }
}

fn resp(id: u64, val: i64, error: i32, flags: u32) -> SeccompNotifResp {
    SeccompNotifResp {
        id,
        val,
        error,
        flags,
    }
}

fn kill_task(tid: i32, signal: i32) {
    let tgid = crate::sys::procfs::thread_group_of(tid).unwrap_or(tid);
    match pidfd::pidfd_open(tgid, 0) {
        Ok(pfd) => {
            if let Err(e) = pidfd::pidfd_send_signal(pfd.as_fd(), signal) {
                log::warn!("cannot signal process {tgid}: {e}");
            }
        }
        Err(e) => log::debug!("process {tgid} already gone: {e}"),
    }
}

/// Logs one trapped call and its decision (`--trace`), decoded like strace
/// (see `notification::decode`): the task's memory is read before the
/// answer and the id checked valid after, so what is shown belonged to
/// the call (a call whose task went away is shown raw).
pub(crate) fn trace(core: &Notifier, notif: &Notification, decision: &str) {
    let name = notif.syscall_label();
    let read = |addr: u64, buf: &mut [u8]| matches!(crate::sys::mem::read(notif.pid as i32, addr, buf), Ok(n) if n == buf.len());
    let mut shown = crate::notification::decode::call(&name, &notif.args, &read);
    if !core.id_valid(notif.id) {
        let a = &notif.args;
        shown = format!(
            "{name}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
            a[0], a[1], a[2], a[3], a[4], a[5]
        );
    }
    log::info!(
        target: "unotify::trace",
        "pid {} {} -> {}",
        notif.pid,
        shown,
        crate::notification::decode::decision(decision)
    );
}
