//! `inotify_add_watch` on the program's behalf: a watch on a denied file
//! would tell of its use (opens, reads, writes), and one on a denied
//! directory the names of the entries made, opened or removed in it;
//! neither Landlock nor the kernel's permission check (read access to
//! the inode) refuses it. The path is pinned as an open is (read once,
//! resolved in the task's view, magic links refused), the pinned file
//! checked like an open's, and the watch added to the program's own
//! inotify instance (a duplicate of its fd) through the pinned file.
//! Called by the path handlers (`handlers`); calls `resolve` and `sys`.

use std::os::fd::{AsFd, AsRawFd};

use crate::action::NotifAction;
use crate::handler::HandlerCtx;

use super::creds::CredCache;
use super::deny::DeniedPaths;
use super::resolve::{
    as_supervisor, errno_of, is_supervisor_proc, path_as_task, pin_in_view, Errno,
};

/// `inotify_add_watch(fd, path, mask)` of the task: the watch descriptor,
/// or `EACCES` for a denied file.
pub(super) fn add_watch(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    fd: i32,
    ptr: u64,
    mask: u32,
) -> Result<NotifAction, Errno> {
    // Everything from here on runs with the task's capabilities.
    let (path, task, _acting) = path_as_task(cx, creds, ptr)?;
    let mut extra = 0;
    if mask & libc::IN_DONT_FOLLOW != 0 {
        extra |= libc::O_NOFOLLOW;
    }
    if mask & libc::IN_ONLYDIR != 0 {
        extra |= libc::O_DIRECTORY;
    }
    let pinned = pin_in_view(cx, &task, &path, extra)?;
    if d.check_fd(pinned.as_fd()) || is_supervisor_proc(pinned.as_fd()) {
        return Err(Errno::of(libc::EACCES));
    }
    let group = as_supervisor(|| cx.dup_fd(fd)).map_err(|e| errno_of(&e))?;
    super::handlers::policy_gate(cx)?;
    // The pinned file itself (followed: the link was, or was not, by the
    // pin as the task asked).
    let at = std::ffi::CString::new(format!("/proc/self/fd/{}", pinned.as_raw_fd()))
        .map_err(|_| Errno::of(libc::EINVAL))?;
    match crate::sys::path::inotify_add_watch(group.as_fd(), &at, mask & !libc::IN_DONT_FOLLOW) {
        Ok(wd) => Ok(NotifAction::ReturnValue(i64::from(wd))),
        Err(e) => Err(errno_of(&e)),
    }
}
