//! Path denial: files and directories the sandboxed program cannot open,
//! execute, link, rename, symlink to, replace or remove.
//!
//! Given to [`SandboxBuilder::deny_path`](crate::SandboxBuilder::deny_path)
//! (or shared and changed at run time through a [`DeniedPaths`] given to
//! [`SandboxBuilder::denied_paths`](crate::SandboxBuilder::denied_paths)),
//! a denied path is matched by name (normalised and canonical) and by file
//! identity (`st_dev`, `st_ino`), so `..`, symlinks, hard links that
//! already exist, relative paths and dirfds all lead to the same refusal,
//! `EACCES`. A denied directory denies everything beneath it.
//!
//! How each call is decided:
//!
//! - `open`, `creat`, `openat`, `openat2` are performed on the program's
//!   behalf. The path is read once, resolved relative to the task's dirfd
//!   (duplicated with `pidfd_getfd`) or working directory with `openat2`
//!   and `RESOLVE_NO_MAGICLINKS`, and pinned as an `O_PATH` fd; the pinned
//!   file is checked, then reopened with the program's flags through
//!   `/proc/self/fd` and injected. A thread rewriting the path during the
//!   call cannot change what is opened. New files are created with
//!   `O_EXCL` in a pinned, checked parent directory, with the task's umask.
//! - `link`, `linkat`, `rename`, `renameat`, `renameat2`, `symlink`,
//!   `symlinkat`, `unlink`, `unlinkat` and `rmdir` check both names (a
//!   symlink's target as resolved from the link's directory), then are
//!   performed by the supervisor in the pinned parent directories;
//!   `truncate` is performed on the pinned, checked file.
//! - `execve` and `execveat` are checked (the pinned executable) and then
//!   run by the kernel, which reads the path again: the exec freeze of the
//!   policy layer closes that window.
//!
//! `io_uring_setup` and `open_by_handle_at` are refused (`EPERM`) while
//! paths are denied: their opens would not be trapped. Opening a procfs
//! file of the supervisor itself (reached through a `/proc/self` symlink
//! the supervisor would resolve to itself) is refused with `EACCES`; a
//! leading `/proc/self` or `/proc/thread-self` is rewritten to the task's
//! own ids. Calls made on the program's behalf need the
//! supervisor and the task to have the same file-system ids, groups and
//! mount namespace, and are made with the task's effective capabilities
//! (the worker thread lowers its own for the call, and raises them only
//! to take the task's own fds, working directory and executable);
//! otherwise they fail with `EACCES`.
//!
//! Whether the supervisor may act for a thread is remembered per thread
//! (`creds`): `/proc/<tid>/status` is read again only after the thread
//! changes its credentials (the set*id family, `setgroups` and `capset`
//! are trapped for this, and let run) or execs.
//!
//! The program's view of the file system cannot change while paths are
//! denied: `chroot`, `pivot_root`, `setns`, the mount family and new mount
//! or user namespaces are refused with `EPERM` in the filter (`view`).
//!
//! Known limits: `linkat(fd, "", AT_EMPTY_PATH)` of the task's own fd needs
//! `DAC_READ_SEARCH`, dropped by default (`ENOENT`); paths through magic links other than the task's own fds
//! and executable (`/proc/<other pid>/root/...`) fail with `ELOOP`; the
//! interpreter of a `#!` script is not checked; opening a FIFO without
//! `O_NONBLOCK` waits on the deferral pool (its deadline applies);
//! metadata calls (`stat`, `chmod`, `chown`, `utimensat`, xattrs) and
//! `mkdir`/`mknod` are not checked. Path denial answers every open, link,
//! rename, symlink, unlink and truncate itself, so user handlers on those
//! calls never see them while paths are denied (the network policy's
//! `/etc/hosts` handler runs before it).

mod creds;
mod deny;
mod handlers;
mod onbehalf_open;
mod resolve;
mod view;

use std::sync::Arc;

pub(crate) use deny::normalize_abs;
pub use deny::DeniedPaths;

use crate::error::Result;
use crate::filter::FilterBuilder;
use crate::handler::Handler;
use crate::syscalls;

/// The builtin handlers that enforce `denied`, by syscall number.
pub(crate) fn builtins(denied: &Arc<DeniedPaths>) -> Vec<(u32, Arc<dyn Handler>)> {
    handlers::builtins(denied)
}

/// Checks a trapped `execve`/`execveat` against `denied` (`Continue` or
/// `Errno(EACCES)`, or the errno of a failed resolution). The builtin exec
/// handler does this before the kernel runs the call; an exec freeze (or
/// any handler) can call it again once the task's peers are stopped, which
/// closes the window in which another thread could rewrite the path.
pub fn check_exec(
    cx: &crate::handler::HandlerCtx<'_>,
    denied: &DeniedPaths,
) -> crate::action::NotifAction {
    handlers::check_exec(cx, denied)
}

/// The filter rules that keep the program's view of the file system the
/// supervisor's (see `view`): `chroot`, mounts and new mount or user
/// namespaces refused with `EPERM`, in front of any other rule. Call it
/// after every other rule is in.
pub(crate) fn install_view(filter: &mut FilterBuilder) -> Result<()> {
    view::install(filter)
}

/// Filter rules of path denial: `io_uring_setup` (its opens are not
/// trapped) and `open_by_handle_at` (opens by inode, bypassing paths)
/// refused with `EPERM`.
pub(crate) fn install(filter: &mut FilterBuilder) -> Result<()> {
    for name in ["io_uring_setup", "open_by_handle_at"] {
        if let Some(nr) = syscalls::number(filter.arch(), name) {
            if filter.is_denied(nr).is_none() && !filter.is_notified(nr) {
                filter.deny(nr, libc::EPERM)?;
            }
        }
    }
    Ok(())
}
