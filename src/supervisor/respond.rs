//! Turning a [`NotifAction`] into the one answer the kernel gets.
//!
//! Every path here answers with a definite result: a failed injection is
//! answered `EACCES`, never `CONTINUE`; an invalid errno becomes `EPERM`.

use std::io;
use std::os::fd::AsRawFd;

use crate::action::NotifAction;
use crate::notification::Notification;
use crate::sys::seccomp::{self, SeccompNotifAddfd, SeccompNotifResp};
use crate::sys::{pidfd, process};

use super::stats::Counters;
use super::Shared;

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

fn resp(id: u64, val: i64, error: i32, flags: u32) -> SeccompNotifResp {
    SeccompNotifResp {
        id,
        val,
        error,
        flags,
    }
}

fn valid_errno(errno: i32) -> i32 {
    if (1..=4095).contains(&errno) {
        errno
    } else {
        log::warn!("handler answered invalid errno {errno}; answering EPERM instead");
        libc::EPERM
    }
}

fn send(shared: &Shared, r: &SeccompNotifResp) -> io::Result<Sent> {
    match seccomp::send(shared.listener(), r) {
        Ok(()) => {
            Counters::bump(&shared.counters.answered);
            Ok(Sent::Delivered)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            Counters::bump(&shared.counters.stale);
            Ok(Sent::Stale)
        }
        Err(e) => Err(e),
    }
}

fn send_errno(shared: &Shared, id: u64, errno: i32) -> io::Result<Sent> {
    send(shared, &resp(id, 0, -valid_errno(errno), 0))
}

/// Adds an fd; on failure answers `EACCES` (fail closed) and returns `None`.
fn add_fd(shared: &Shared, req: &SeccompNotifAddfd) -> io::Result<Result<i32, Sent>> {
    match seccomp::addfd(shared.listener(), req) {
        Ok(n) => Ok(Ok(n)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            Counters::bump(&shared.counters.stale);
            Ok(Err(Sent::Stale))
        }
        Err(e) => {
            log::warn!(
                "fd injection for notification {} failed: {e}; answering EACCES",
                req.id
            );
            send_errno(shared, req.id, libc::EACCES).map(Err)
        }
    }
}

/// Sends the answer for `notif`. The caller holds the `world` lock shared.
pub(crate) fn respond(
    shared: &Shared,
    notif: &Notification,
    action: NotifAction,
) -> io::Result<Sent> {
    let id = notif.id;
    match action {
        NotifAction::Continue => send(shared, &resp(id, 0, 0, seccomp::USER_NOTIF_FLAG_CONTINUE)),
        NotifAction::Errno(e) => send_errno(shared, id, e),
        NotifAction::ReturnValue(v) => send(shared, &resp(id, v, 0, 0)),
        NotifAction::InjectFd {
            fd,
            target,
            newfd_flags,
        } => {
            if target < 0 {
                log::warn!("InjectFd with negative target {target}; answering EACCES");
                return send_errno(shared, id, libc::EACCES);
            }
            let req = SeccompNotifAddfd {
                id,
                flags: seccomp::ADDFD_FLAG_SETFD,
                srcfd: fd.as_raw_fd() as u32,
                newfd: target as u32,
                newfd_flags,
            };
            match add_fd(shared, &req)? {
                Ok(_) => send(shared, &resp(id, 0, 0, seccomp::USER_NOTIF_FLAG_CONTINUE)),
                Err(sent) => Ok(sent),
            }
        }
        NotifAction::InjectFdSend { fd, newfd_flags } => {
            inject_and_send(shared, id, &fd, newfd_flags, None)
        }
        NotifAction::InjectFdSendTracked {
            fd,
            newfd_flags,
            on_success,
        } => inject_and_send(shared, id, &fd, newfd_flags, Some(on_success)),
        NotifAction::Hold => {
            let mut held = shared.held.lock();
            if shared.stopping.load(std::sync::atomic::Ordering::Acquire) {
                drop(held);
                log::warn!("supervisor stopping: not holding notification {id}; answering EPERM");
                return send_errno(shared, id, libc::EPERM);
            }
            held.insert(id, *notif);
            Ok(Sent::Held)
        }
        NotifAction::KillTask { signal } => {
            kill_task(notif.pid as i32, signal);
            send_errno(shared, id, libc::ENOMEM)
        }
        NotifAction::KillGroup { signal } => {
            if let Err(e) = process::kill_group(shared.pgid, signal) {
                log::warn!("cannot signal sandbox group {}: {e}", shared.pgid);
            }
            send_errno(shared, id, libc::ENOMEM)
        }
        NotifAction::Defer(_) => {
            log::error!("a Defer reached the responder for notification {id}; answering EIO");
            send_errno(shared, id, libc::EIO)
        }
    }
}

/// Adds `fd` to the task and answers the call with its number, atomically
/// (`SECCOMP_ADDFD_FLAG_SEND`); then tells `on_success` that number.
fn inject_and_send(
    shared: &Shared,
    id: u64,
    fd: &std::os::fd::OwnedFd,
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
    match add_fd(shared, &req)? {
        Ok(n) => {
            Counters::bump(&shared.counters.answered);
            if let Some(f) = on_success {
                f(n);
            }
            Ok(Sent::Delivered)
        }
        Err(sent) => Ok(sent),
    }
}

fn kill_task(tid: i32, signal: i32) {
    let tgid = crate::handler::thread_group_of(tid).unwrap_or(tid);
    match pidfd::pidfd_open(tgid, 0) {
        Ok(pfd) => {
            use std::os::fd::AsFd;
            if let Err(e) = pidfd::pidfd_send_signal(pfd.as_fd(), signal) {
                log::warn!("cannot signal process {tgid}: {e}");
            }
        }
        Err(e) => log::debug!("process {tgid} already gone: {e}"),
    }
}
