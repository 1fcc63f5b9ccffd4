//! Calls that create a name without opening it: `mkdir`, `mkdirat`,
//! `mknod`, `mknodat` and `bind` of a pathname AF_UNIX socket, refused in
//! a denied directory or on a denied name.
//!
//! `mkdir` and `mknod` are performed by the supervisor in the pinned,
//! checked parent directory with the task's umask. `bind` is performed on
//! the `pidfd_getfd` duplicate of the socket with the copied address, for
//! every family (a second thread could `dup2` an AF_UNIX socket onto the
//! fd after a check that let an AF_INET bind through): a pathname is bound
//! with the program's exact bytes (the address the socket records, that
//! `getsockname` and peers see), resolved from the task's pinned working
//! directory, and its parent checked again afterwards. Called by
//! [`super::handlers`]; uses [`super::resolve`], `sys::path`, `sys::net`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::sys::net::{bind_from, socket_domain};
use crate::sys::path::{chmod, fstat, mkdirat, mknodat, unlinkat};

use super::creds::CredCache;
use super::deny::{DeniedPaths, FileId};
use super::handlers::{entry_of, policy_gate, Entry};
use super::resolve::{
    as_supervisor, base, borrow, errno_of, mem_errno, pin, pin_parent, read_path, with_c, Errno,
    Task,
};

/// Gives a node the supervisor just made in `e` the permission bits the
/// task asked for (the supervisor's own umask may have removed some).
fn fix_perms(d: &DeniedPaths, e: &Entry, want: u32) {
    let Ok(Some(fd)) = e.target(false) else {
        return;
    };
    let Ok(st) = fstat(fd.as_fd()) else {
        return;
    };
    if st.is_symlink() || st.mode & 0o777 == want & 0o777 || d.check_fd(fd.as_fd()) {
        return;
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mode = (st.mode & 0o7000) | (want & 0o777);
    if let Err(e) = with_c(path.as_bytes(), |p| chmod(p, mode)) {
        log::debug!("chmod of a created node to {mode:o}: {e}");
    }
}

/// `mkdir`/`mkdirat` (`dev` `None`) and `mknod`/`mknodat`.
pub(super) fn make_node(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    dirfd: i32,
    ptr: u64,
    mode: u64,
    dev: Option<u32>,
) -> Result<NotifAction, Errno> {
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let path = read_path(cx, ptr)?;
    let e = entry_of(cx, &task, dirfd, &path)?;
    if e.creates_denied(d) {
        log::debug!(
            "pid {}: creating a name in a denied place refused",
            cx.pid()
        );
        return Err(Errno::of(libc::EACCES));
    }
    // The kernel takes a `umode_t`.
    let mode = mode as u32 & 0xffff;
    policy_gate(cx)?;
    let (r, want) = with_c(&e.name, |name| match dev {
        None => {
            let want = mode & 0o1777 & !task.umask();
            (mkdirat(Some(e.dir()), name, want), want)
        }
        Some(dev) => {
            let want = mode & 0o7777 & !task.umask();
            let kind = mode & libc::S_IFMT;
            (mknodat(Some(e.dir()), name, kind | want, dev), want)
        }
    });
    r.map_err(|e| errno_of(&e))?;
    fix_perms(d, &e, want);
    Ok(NotifAction::ReturnValue(0))
}

/// The pathname of an AF_UNIX socket address (none for an abstract or
/// unnamed one): the bytes after the family, up to the first NUL.
fn unix_path(addr: &[u8]) -> Option<&[u8]> {
    const FAMILY: usize = std::mem::size_of::<libc::sa_family_t>();
    let path = addr.get(FAMILY..)?;
    if path.first().is_none_or(|&b| b == 0) {
        return None;
    }
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    Some(&path[..end])
}

fn identity(fd: BorrowedFd<'_>) -> Option<FileId> {
    fstat(fd).ok().map(|st| FileId::from(&st))
}

/// `bind(fd, addr, len)`, on the program's behalf.
pub(super) fn bind(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    creds: &CredCache,
    sockfd: i32,
    addr_ptr: u64,
    addr_len: u64,
) -> Result<NotifAction, Errno> {
    let len = addr_len as u32 as i32;
    let Ok(len) = usize::try_from(len) else {
        return Err(Errno::of(libc::EINVAL));
    };
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(Errno::of(libc::EINVAL));
    }
    let addr = if len == 0 {
        Vec::new()
    } else {
        cx.read_mem(addr_ptr, len).map_err(|e| mem_errno(&e))?
    };
    let task = Task::read(cx, creds)?;
    // Everything from here on runs with the task's capabilities.
    let _acting = task.rights.assume()?;
    let sock = as_supervisor(|| cx.dup_fd(sockfd)).map_err(|e| errno_of(&e))?;
    let domain = socket_domain(sock.as_fd()).map_err(|e| errno_of(&e))?;
    let path = if domain == libc::AF_UNIX {
        unix_path(&addr)
    } else {
        None
    };
    let Some(path) = path else {
        policy_gate(cx)?;
        return done(bind_from(sock.as_fd(), &addr, None));
    };
    bind_unix_path(cx, d, &task, &sock, &addr, path)
}

fn done(r: std::io::Result<()>) -> Result<NotifAction, Errno> {
    r.map(|()| NotifAction::ReturnValue(0))
        .map_err(|e| errno_of(&e))
}

/// Binds `sock` to the pathname `path` (inside `addr`) if the new name is
/// not denied; the parent is pinned and checked first, and checked again
/// after the bind: a directory swapped in meanwhile gets the new socket
/// file removed and the call refused.
fn bind_unix_path(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    task: &Task,
    sock: &OwnedFd,
    addr: &[u8],
    path: &[u8],
) -> Result<NotifAction, Errno> {
    // The base the kernel would resolve a relative path from, pinned once.
    let cwd = base(cx, libc::AT_FDCWD, path, false)?;
    let (parent, name) = pin_parent(borrow(&cwd), path, 0)?;
    let e = Entry::new(parent, name);
    let same = |a: BorrowedFd<'_>, b: BorrowedFd<'_>| matches!((identity(a), identity(b)), (Some(x), Some(y)) if x == y);
    if e.creates_denied(d) {
        log::debug!(
            "pid {}: bind of a socket in a denied place refused",
            cx.pid()
        );
        return Err(Errno::of(libc::EACCES));
    }
    policy_gate(cx)?;
    // Before the bind: a socket file older than this found after it is
    // another's (a socket already in a denied directory, named while the
    // bind went elsewhere), never removed below.
    let started = crate::sys::host::clock_gettime(libc::CLOCK_REALTIME_COARSE).ok();
    bind_from(sock.as_fd(), addr, borrow(&cwd)).map_err(|e| errno_of(&e))?;
    // Where the name was made: it must still be the checked directory.
    let after = pin_parent(borrow(&cwd), path, 0)
        .ok()
        .filter(|(p, n)| *n == e.name && same(p.as_fd(), e.dir()));
    if after.is_none() {
        log::warn!(
            "pid {}: the directory of a socket being bound changed during the call; refusing it",
            cx.pid()
        );
        if let Ok((p, n)) = pin_parent(borrow(&cwd), path, 0) {
            let made_now = pin(Some(p.as_fd()), &n, libc::O_NOFOLLOW, 0)
                .ok()
                .and_then(|f| {
                    use std::os::fd::AsRawFd;
                    std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
                })
                .zip(started)
                .is_some_and(|(m, started)| {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    m.file_type().is_socket() && (m.ctime(), m.ctime_nsec()) >= started
                });
            if made_now {
                let _ = with_c(&n, |c| unlinkat(Some(p.as_fd()), c, 0));
            }
        }
        return Err(Errno::of(libc::EACCES));
    }
    // The socket file's mode: the socket inode's mode less the umask.
    if let Ok(st) = fstat(sock.as_fd()) {
        fix_perms(d, &e, st.mode & 0o777 & !task.umask());
    }
    Ok(NotifAction::ReturnValue(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(path: &[u8]) -> Vec<u8> {
        let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(path);
        a
    }

    #[test]
    fn unix_paths() {
        assert_eq!(unix_path(&un(b"/tmp/s\0")), Some(&b"/tmp/s"[..]));
        assert_eq!(unix_path(&un(b"rel")), Some(&b"rel"[..]));
        assert_eq!(unix_path(&un(b"\0abstract")), None);
        assert_eq!(unix_path(&un(b"")), None);
        assert_eq!(unix_path(&[1]), None);
    }
}
