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
//! directory, confined by Landlock to the checked directory. That check
//! and bind is [`bind_unix`], the one the network's on-behalf `bind` uses
//! too (it resolves the place in the program's view, or a feature's).
//! Called by [`super::handlers`] and `net::onbehalf`; uses
//! [`super::resolve`], `sys::path`, `sys::net`, `sys::landlock`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::action::NotifAction;
use crate::handler::HandlerCtx;
use crate::sys::net::{self as sysnet, run_as, socket_domain, unix_path_addr, ThreadSetup};
use crate::sys::path::{chmod, fstat, mkdirat, mknodat};

use super::creds::CredCache;
use super::deny::DeniedPaths;
use super::handlers::{entry_of, policy_gate, Entry};
use super::resolve::{
    as_supervisor, base, errno_of, mem_errno, pin_parent, read_path, with_c, Errno, Task,
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
    let path = crate::sys::procfs::fd_link(fd.as_fd());
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
    let node = if dev.is_none() { super::NODE_BYTES } else { 0 };
    let charge = super::Charge::node(d.layer(), e.dir(), super::entry_bytes(&e.name) + node)?;
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
    charge.settle(&r);
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
    // Everything from here on runs with the task's capabilities (the
    // bind's own thread inherits them).
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
        return sysnet::bind(sock.as_fd(), &addr)
            .map(|()| NotifAction::ReturnValue(0))
            .map_err(|e| errno_of(&e));
    };
    // The base the kernel would resolve a relative path from, pinned once.
    let cwd = base(cx, libc::AT_FDCWD, path, true)?.ok_or(Errno::of(libc::EIO))?;
    let (dir, name) = pin_parent(Some(cwd.as_fd()), path, 0)?;
    let unix = UnixBind {
        sock: sock.as_fd(),
        dir,
        name,
        as_given: Some((cwd.as_fd(), &addr)),
        creds: None,
        umask: task.umask(),
    };
    bind_unix(cx, Some(d), unix).map(|()| NotifAction::ReturnValue(0))
}

/// A pathname `AF_UNIX` bind made on the program's behalf, its place
/// already resolved by the caller (path denial's `bind` handler, or the
/// network's on-behalf `bind`, in the program's view or a feature's).
pub(crate) struct UnixBind<'a> {
    /// The socket (the supervisor's duplicate of the program's).
    pub(crate) sock: BorrowedFd<'a>,
    /// The pinned directory the socket file is to be made in.
    pub(crate) dir: OwnedFd,
    /// The socket file's name in `dir` (one component).
    pub(crate) name: Vec<u8>,
    /// The directory the program's relative path is resolved from (its
    /// working directory, pinned) and its exact address: if given, the
    /// socket is bound by that address when the bind can be kept beneath
    /// `dir` (the name the socket records, which `getsockname` and peers
    /// see, is then what the program gave); else by `name` in `dir`.
    pub(crate) as_given: Option<(BorrowedFd<'a>, &'a [u8])>,
    /// Credentials the bind's thread takes on (`None`: the calling
    /// thread's, inherited).
    pub(crate) creds: Option<&'a crate::sys::net::Creds>,
    /// The program's umask: the socket file's mode is the socket's less it.
    pub(crate) umask: u32,
}

/// The one check and bind of a pathname `AF_UNIX` socket for both routes
/// (path denial's `bind`, the network's): refused (`EACCES`) where path
/// denial refuses to create a name (`d`: a denied name or directory,
/// outside the write allow list, in the lower tree of a copy-on-write
/// view, in a cgroup file system), and otherwise made so that it cannot
/// land anywhere else, although a thread of the program's may swap a
/// symlink of its path between the check and the bind (and back before
/// any re-check could see it): by the program's exact bytes from its
/// pinned working directory, on a thread under a Landlock domain of its
/// own that allows making socket files only in the checked directory and
/// beneath it (the kernel refuses, `EACCES`, any other place the path may
/// lead to at the bind). That is exact when nothing beneath the checked
/// directory is denied; otherwise (or without Landlock) the socket is
/// bound by its last component in the pinned directory itself. Without
/// `d`, by the exact bytes if given, unconfined. The policy gate is passed
/// between the check and the bind. Not covered: a denied directory mounted
/// again beneath the checked one.
pub(crate) fn bind_unix(
    cx: &HandlerCtx<'_>,
    d: Option<&DeniedPaths>,
    b: UnixBind<'_>,
) -> Result<(), Errno> {
    let e = Entry::new(b.dir, b.name);
    if d.is_some_and(|d| e.creates_denied(d)) {
        log::debug!(
            "pid {}: bind of a socket in a denied place refused",
            cx.pid()
        );
        return Err(Errno::of(libc::EACCES));
    }
    policy_gate(cx)?;
    let charge = super::Charge::node(
        d.and_then(|d| d.layer()),
        e.dir(),
        super::entry_bytes(&e.name),
    )?;
    let given = b.as_given.and_then(|(cwd, addr)| match d {
        None => Some((cwd, addr, None)),
        Some(d) => super::deny::fd_path(e.dir())
            .filter(|p| !d.has_denied_beneath(p))
            .and_then(|_| crate::sys::landlock::make_sock_beneath(e.dir()).ok())
            .map(|ruleset| (cwd, addr, Some(ruleset))),
    });
    let by_name;
    let (base, addr, confine) = match &given {
        Some((cwd, addr, confine)) => (*cwd, *addr, confine.as_ref()),
        None => {
            by_name = unix_path_addr(&e.name);
            (e.dir(), &by_name[..], None)
        }
    };
    let setup = ThreadSetup {
        creds: b.creds,
        fs: Some((base, b.umask)),
    };
    let r = run_as(&setup, || {
        if let Some(ruleset) = confine {
            // This thread ends with the call.
            ruleset.restrict_this_thread()?;
        }
        sysnet::bind(b.sock, addr)
    });
    charge.settle(&r);
    r.map_err(|e| errno_of(&e))
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
