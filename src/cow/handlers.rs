//! The calls the layered view answers itself, ahead of path denial: the
//! stat family, `access`, `readlink` and the xattr reads answer from the
//! view (performed by the supervisor when the path reaches the work
//! directory or the upper tree, the answer written to the program's
//! memory while the call is pending; a placeholder is answered with the
//! lower file it stands for); `getcwd` and the `readlink` of a procfs
//! link into the upper tree (`/proc/<pid>/cwd`, `/proc/<pid>/fd/N`) give
//! the work directory's path; `fchmod`, `fchown`, `fsetxattr`,
//! `fremovexattr` and the inode-flag `ioctl`s change a private copy of a
//! placeholder (or of the placeholder of a lower file the fd reads);
//! `execve` of a path in the work directory runs only what the view names,
//! a placeholder copied up first when the kernel would run it; the write
//! family is charged to `--max-disk`. Everything else about paths is path
//! denial's, with the layer's hooks.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::handler::{Handler, HandlerCtx};
use crate::paths::{as_supervisor, read_path, CredCache, Layered, Task};
use crate::sys::path::{faccessat2, fstat, fstatat_bytes, readlinkat, statx_bytes};

use super::layer::Layer;
use super::writes::WriteKind;

#[derive(Clone, Copy, Debug)]
enum Call {
    /// `stat`/`lstat`/`newfstatat`: (dirfd arg, path arg, buf arg, flags).
    Stat {
        dirfd: Option<usize>,
        path: usize,
        buf: usize,
        flags: Flags,
    },
    Statx,
    Access {
        dirfd: Option<usize>,
        path: usize,
        mode: usize,
        flags: Option<usize>,
    },
    Readlink {
        dirfd: Option<usize>,
        path: usize,
    },
    Fchmod,
    Fchown,
    Fxattr {
        set: bool,
    },
    Exec {
        at: bool,
    },
    Write(WriteKind),
    /// `ioctl` setting inode flags (`FS_IOC_SETFLAGS`, `FS_IOC_FSSETXATTR`).
    SetFlags,
    /// `getcwd`.
    Getcwd,
    /// `getxattr`/`lgetxattr` (`list`: the list forms).
    Xattr {
        list: bool,
        follow: bool,
    },
    /// `chdir`.
    Chdir,
}

#[derive(Clone, Copy, Debug)]
enum Flags {
    Fixed(i32),
    Arg(usize),
}

struct ViewHandler {
    layer: Arc<Layer>,
    creds: Arc<CredCache>,
    call: Call,
}

/// `AF_UNIX` pathnames resolved in the view, for the network's `bind`,
/// `connect` and sends (its `UnixPathHook`): a name beneath DIR is the
/// upper tree's, and a bind makes its socket there (never in DIR).
pub(crate) struct UnixView(ViewHandler);

impl UnixView {
    pub(crate) fn new(layer: &Arc<Layer>) -> UnixView {
        UnixView(ViewHandler {
            layer: Arc::clone(layer),
            creds: Arc::new(CredCache::default()),
            call: Call::Getcwd,
        })
    }
}

impl crate::net::UnixPaths for UnixView {
    fn socket(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<OwnedFd, i32> {
        self.0.unix_socket(cx, path).map_err(Errno::get)
    }

    fn parent(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<(OwnedFd, Vec<u8>), i32> {
        self.0.unix_parent(cx, path).map_err(Errno::get)
    }
}

/// The handler of the `ioctl`s that change inode flags and of the other
/// file-system `ioctl`s (an allow list, `paths::fs_ioctl`).
pub(crate) fn set_flags_handler(layer: &Arc<Layer>) -> Arc<dyn Handler> {
    Arc::new(ViewHandler {
        layer: Arc::clone(layer),
        creds: Arc::new(CredCache::default()),
        call: Call::SetFlags,
    })
}

/// The stat calls that can name an fd's own file (`AT_EMPTY_PATH`), by
/// syscall number, with the index of their flags argument.
pub(crate) fn by_fd_stats() -> Vec<(u32, u8)> {
    [("newfstatat", 3), ("statx", 2)]
        .into_iter()
        .filter_map(|(name, flags)| {
            Some((
                crate::syscalls::number(crate::arch::Arch::native(), name)?,
                flags,
            ))
        })
        .collect()
}

/// The view's builtin handlers, by syscall number.
pub(crate) fn builtins(layer: &Arc<Layer>) -> Vec<(u32, Arc<dyn Handler>)> {
    let creds = Arc::new(CredCache::default());
    let mut calls = vec![
        (
            "stat",
            Call::Stat {
                dirfd: None,
                path: 0,
                buf: 1,
                flags: Flags::Fixed(0),
            },
        ),
        (
            "lstat",
            Call::Stat {
                dirfd: None,
                path: 0,
                buf: 1,
                flags: Flags::Fixed(libc::AT_SYMLINK_NOFOLLOW),
            },
        ),
        (
            "newfstatat",
            Call::Stat {
                dirfd: Some(0),
                path: 1,
                buf: 2,
                flags: Flags::Arg(3),
            },
        ),
        ("statx", Call::Statx),
        (
            "access",
            Call::Access {
                dirfd: None,
                path: 0,
                mode: 1,
                flags: None,
            },
        ),
        (
            "faccessat",
            Call::Access {
                dirfd: Some(0),
                path: 1,
                mode: 2,
                flags: None,
            },
        ),
        (
            "faccessat2",
            Call::Access {
                dirfd: Some(0),
                path: 1,
                mode: 2,
                flags: Some(3),
            },
        ),
        (
            "readlink",
            Call::Readlink {
                dirfd: None,
                path: 0,
            },
        ),
        (
            "readlinkat",
            Call::Readlink {
                dirfd: Some(0),
                path: 1,
            },
        ),
        ("fchmod", Call::Fchmod),
        ("fchown", Call::Fchown),
        ("fsetxattr", Call::Fxattr { set: true }),
        ("fremovexattr", Call::Fxattr { set: false }),
        (
            "getxattr",
            Call::Xattr {
                list: false,
                follow: true,
            },
        ),
        (
            "lgetxattr",
            Call::Xattr {
                list: false,
                follow: false,
            },
        ),
        (
            "listxattr",
            Call::Xattr {
                list: true,
                follow: true,
            },
        ),
        (
            "llistxattr",
            Call::Xattr {
                list: true,
                follow: false,
            },
        ),
        ("getcwd", Call::Getcwd),
        ("chdir", Call::Chdir),
        ("execve", Call::Exec { at: false }),
        ("execveat", Call::Exec { at: true }),
    ];
    if layer.quota.is_some() {
        calls.extend([
            ("write", Call::Write(WriteKind::Plain { len: 2, off: None })),
            (
                "pwrite64",
                Call::Write(WriteKind::Plain {
                    len: 2,
                    off: Some(3),
                }),
            ),
            (
                "writev",
                Call::Write(WriteKind::Vector {
                    off: None,
                    rwf: None,
                }),
            ),
            (
                "pwritev",
                Call::Write(WriteKind::Vector {
                    off: Some(3),
                    rwf: None,
                }),
            ),
            (
                "pwritev2",
                Call::Write(WriteKind::Vector {
                    off: Some(3),
                    rwf: Some(5),
                }),
            ),
            ("fallocate", Call::Write(WriteKind::Fallocate)),
            ("ftruncate", Call::Write(WriteKind::Ftruncate)),
            ("copy_file_range", Call::Write(WriteKind::CopyFileRange)),
            ("sendfile", Call::Write(WriteKind::Sendfile)),
            ("splice", Call::Write(WriteKind::Splice)),
        ]);
    }
    calls
        .into_iter()
        .filter_map(|(name, call)| {
            let nr = crate::syscalls::number(crate::arch::Arch::native(), name)?;
            let h: Arc<dyn Handler> = Arc::new(ViewHandler {
                layer: Arc::clone(layer),
                creds: Arc::clone(&creds),
                call,
            });
            Some((nr, h))
        })
        .collect()
}

impl Handler for ViewHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let r = match self.call {
            Call::Stat {
                dirfd,
                path,
                buf,
                flags,
            } => {
                let flags = match flags {
                    Flags::Fixed(f) => f,
                    Flags::Arg(i) => cx.arg(i) as u32 as i32,
                };
                self.stat(cx, dirfd, path, buf, flags)
            }
            Call::Statx => self.statx(cx),
            Call::Access {
                dirfd,
                path,
                mode,
                flags,
            } => self.access(cx, dirfd, path, mode, flags),
            Call::Readlink { dirfd, path } => self.readlink(cx, dirfd, path),
            Call::Fchmod | Call::Fchown => self.fchange(cx),
            Call::Fxattr { set } => self.fxattr(cx, set),
            Call::Exec { at } => self.exec(cx, at),
            Call::Write(kind) => self.write(cx, kind),
            Call::Xattr { list, follow } => self.xattr(cx, list, follow),
            Call::SetFlags => self.set_flags(cx),
            Call::Getcwd => self.getcwd(cx),
            Call::Chdir => self.chdir(cx),
        };
        r.unwrap_or_else(NotifAction::from)
    }
}

/// The absolute path of target `t` (its base directory's path, which the
/// supervisor reads from its own fd, joined with its relative path).
fn upper_path(t: &Target) -> Result<Vec<u8>, Errno> {
    let Some(base) = &t.base else {
        return Ok(t.path.clone());
    };
    let dir = as_supervisor(|| {
        std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(base)
        ))
    })
    .map_err(|e| Errno::from_io(&e))?;
    let mut full = dir.as_os_str().as_encoded_bytes().to_vec();
    full.push(b'/');
    full.extend_from_slice(&t.path);
    Ok(full)
}

fn dirfd_of(cx: &HandlerCtx<'_>, i: Option<usize>) -> i32 {
    i.map_or(libc::AT_FDCWD, |i| cx.arg(i) as u32 as i32)
}

fn c(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap_or_default()
}

/// Where a path the program gave is to be resolved in the view.
struct Target {
    base: Option<OwnedFd>,
    path: Vec<u8>,
}

impl ViewHandler {
    /// The view's target for `path` relative to `dirfd`, if it differs
    /// from what the kernel would resolve (`None`: the kernel's is the
    /// view's, the call runs as it is).
    fn target(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: i32,
        path: &[u8],
    ) -> Result<Option<Target>, Errno> {
        if path.first() == Some(&b'/') {
            if self.layer.to_view(path).is_some() {
                return Ok(Some(Target {
                    base: None,
                    path: path.to_vec(),
                }));
            }
            return Ok(self.layer.rewrite(path).map(|p| Target {
                base: None,
                path: p,
            }));
        }
        // Relative: only a base directory in the lower tree is redirected.
        let link = if dirfd == libc::AT_FDCWD {
            format!("/proc/{}/cwd", cx.pid())
        } else {
            format!("/proc/{}/fd/{dirfd}", cx.pid())
        };
        let Ok(at) = as_supervisor(|| std::fs::read_link(&link)) else {
            return Ok(None);
        };
        // A base in the upper tree: the kernel's resolution is the view's,
        // but a placeholder it reaches must be answered for.
        let in_upper = at.starts_with(&self.layer.upper);
        if !in_upper && !at.starts_with(&self.layer.lower) {
            return Ok(None);
        }
        let fd = as_supervisor(|| {
            if dirfd == libc::AT_FDCWD {
                crate::paths::open_trusted_dir(&link)
            } else {
                cx.dup_fd(dirfd)
            }
        })
        .map_err(|e| Errno::from_io(&e))?;
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        if in_upper {
            return Ok(Some(Target {
                base: Some(fd),
                path: path.to_vec(),
            }));
        }
        match self.layer.upper_of(fd.as_fd()) {
            Some(up) => Ok(Some(Target {
                base: Some(up?),
                path: path.to_vec(),
            })),
            None => Ok(None),
        }
    }

    /// The path at `ptr` and its view's [`target`](Self::target) from
    /// `dirfd`; `None` for an empty path (an fd's own file) or one the
    /// kernel resolves as the view does.
    fn named_target(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: i32,
        ptr: u64,
    ) -> Result<Option<(Vec<u8>, Target)>, Errno> {
        let p = read_path(cx, ptr)?;
        if p.is_empty() {
            return Ok(None);
        }
        Ok(self.target(cx, dirfd, &p)?.map(|t| (p, t)))
    }

    fn task(&self, cx: &HandlerCtx<'_>) -> Result<Task, Errno> {
        Task::read(cx, &self.creds)
    }

    /// `path` (from the task's working directory) pinned `O_PATH` in the
    /// view, with `flags`: symlinks followed as the kernel follows them
    /// (with the caller's rights: assume them first), magic links not
    /// (`/proc/self` would be the supervisor's).
    fn pin_in_view(&self, cx: &HandlerCtx<'_>, path: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
        let (base, p) = match self.target(cx, libc::AT_FDCWD, path)? {
            Some(t) => (t.base, t.path),
            None if path.first() == Some(&b'/') => (None, path.to_vec()),
            None => {
                let link = format!("/proc/{}/cwd", cx.pid());
                let cwd = as_supervisor(|| crate::paths::open_trusted_dir(&link))
                    .map_err(|e| Errno::from_io(&e))?;
                if !cx.id_valid() {
                    return Err(Errno::of(libc::ESRCH));
                }
                (Some(cwd), path.to_vec())
            }
        };
        crate::sys::fs::openat2(
            base.as_ref().map(|f| f.as_fd()),
            &c(&p),
            &crate::sys::fs::OpenHow {
                flags: (libc::O_PATH | libc::O_CLOEXEC | flags) as u64,
                mode: 0,
                resolve: crate::sys::fs::RESOLVE_NO_MAGICLINKS,
            },
        )
        .map_err(|e| Errno::from_io(&e))
    }

    /// The socket file a `connect` or send to `path` reaches in the view;
    /// one of DIR's sockets (made anew in the upper tree, where nothing
    /// listens) is DIR's own.
    fn unix_socket(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let fd = self.pin_in_view(cx, path, 0)?;
        match self.layer.socket_origin(fd.as_fd()) {
            Some(lower) => lower.map_err(|e| Errno::from_io(&e)),
            None => Ok(fd),
        }
    }

    /// The directory a `bind` to `path` makes its socket in, and the
    /// socket's name: a directory of DIR is its upper tree's counterpart,
    /// so that no socket is ever made in DIR.
    fn unix_parent(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<(OwnedFd, Vec<u8>), Errno> {
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        if path.ends_with(b"/") {
            return Err(Errno::of(libc::EINVAL));
        }
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(0) => (&b"/"[..], &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b"."[..], path),
        };
        if name == b"." || name == b".." {
            return Err(Errno::of(libc::EADDRINUSE));
        }
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let fd = self.pin_in_view(cx, dir, libc::O_DIRECTORY)?;
        let fd = if self.layer.is_lower(fd.as_fd()) {
            match self.layer.upper_of(fd.as_fd()) {
                Some(up) => up?,
                None => return Err(Errno::of(libc::EACCES)),
            }
        } else {
            fd
        };
        // Fails closed: never a name made in DIR.
        if self.layer.is_lower(fd.as_fd()) {
            return Err(Errno::of(libc::EACCES));
        }
        // The name is charged by the bind itself (`paths::bind_unix`, with
        // the layer's set), and given back if the bind fails.
        Ok((fd, name.to_vec()))
    }

    fn stat(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: Option<usize>,
        path: usize,
        buf: usize,
        flags: i32,
    ) -> Result<NotifAction, Errno> {
        let dirfd = dirfd_of(cx, dirfd);
        let empty_ok = flags & libc::AT_EMPTY_PATH != 0;
        if cx.arg(path) == 0 && empty_ok {
            return Ok(NotifAction::Continue);
        }
        let p = read_path(cx, cx.arg(path))?;
        // The fd's own file (`fstat`): DIR's file or an upper file, which
        // the kernel answers right. A path rewritten after this read only
        // shows the program a placeholder's own stat.
        if p.is_empty() && empty_ok {
            return Ok(NotifAction::Continue);
        }
        let Some(t) = self.target(cx, dirfd, &p)? else {
            return Ok(NotifAction::Continue);
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let mut bytes = fstatat_bytes(t.base.as_ref().map(|f| f.as_fd()), &c(&t.path), flags)
            .map_err(|e| Errno::from_io(&e))?;
        // `st_dev` and `st_ino` lead `struct stat` on x86_64 and aarch64.
        let (dev, ino) = (le_u64(&bytes, 0), le_u64(&bytes, 8));
        if self.layer.is_placeholder_id(dev, ino) {
            if let Some(r) = self.layer.origin_stat(ino) {
                bytes = r.map_err(|e| Errno::from_io(&e))?;
            }
        }
        write_back(cx, cx.arg(buf), &bytes)?;
        Ok(NotifAction::ReturnValue(0))
    }

    fn statx(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let (dirfd, flags, mask) = (
            cx.arg(0) as u32 as i32,
            cx.arg(2) as u32 as i32,
            cx.arg(3) as u32,
        );
        if cx.arg(1) == 0 {
            return Ok(NotifAction::Continue);
        }
        let Some((_, t)) = self.named_target(cx, dirfd, cx.arg(1))? else {
            return Ok(NotifAction::Continue);
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let mut bytes = statx_bytes(
            t.base.as_ref().map(|f| f.as_fd()),
            &c(&t.path),
            flags,
            mask | libc::STATX_INO,
        )
        .map_err(|e| Errno::from_io(&e))?;
        // `stx_ino` at 32, `stx_dev_major` and `stx_dev_minor` at 136, 140.
        let ino = le_u64(&bytes, 32);
        let dev = libc::makedev(le_u32(&bytes, 136), le_u32(&bytes, 140));
        if self.layer.is_placeholder_id(dev, ino) {
            if let Some(r) = self.layer.origin_statx(ino, flags, mask) {
                bytes = r.map_err(|e| Errno::from_io(&e))?;
            }
        }
        write_back(cx, cx.arg(4), &bytes)?;
        Ok(NotifAction::ReturnValue(0))
    }

    fn access(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: Option<usize>,
        path: usize,
        mode: usize,
        flags: Option<usize>,
    ) -> Result<NotifAction, Errno> {
        let dirfd = dirfd_of(cx, dirfd);
        let p = read_path(cx, cx.arg(path))?;
        let Some(t) = self.target(cx, dirfd, &p)? else {
            return Ok(NotifAction::Continue);
        };
        let flags = flags.map_or(0, |i| cx.arg(i) as u32 as i32);
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        faccessat2(
            t.base.as_ref().map(|f| f.as_fd()),
            &c(&t.path),
            cx.arg(mode) as i32,
            flags,
        )
        .map_err(|e| Errno::from_io(&e))?;
        Ok(NotifAction::ReturnValue(0))
    }

    fn readlink(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: Option<usize>,
        path: usize,
    ) -> Result<NotifAction, Errno> {
        let (buf, size) = match dirfd {
            Some(_) => (cx.arg(2), cx.arg(3) as i64),
            None => (cx.arg(1), cx.arg(2) as i64),
        };
        let dirfd = dirfd_of(cx, dirfd);
        let p = read_path(cx, cx.arg(path))?;
        if size <= 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        if p.starts_with(b"/proc/") {
            return self.proc_link(cx, &p, buf, size as usize);
        }
        let Some(t) = self.target(cx, dirfd, &p)? else {
            return Ok(NotifAction::Continue);
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let target = readlinkat(t.base.as_ref().map(|f| f.as_fd()), &c(&t.path))
            .map_err(|e| Errno::from_io(&e))?;
        let n = target.len().min(size as usize);
        write_back(cx, buf, &target[..n])?;
        Ok(NotifAction::ReturnValue(n as i64))
    }

    /// `fchmod`/`fchown`: performed on a duplicate of the fd (a private
    /// copy if the file is shared with the lower tree).
    fn fchange(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let fd =
            as_supervisor(|| cx.dup_fd(cx.arg(0) as u32 as i32)).map_err(|e| Errno::from_io(&e))?;
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let fd = self.own_copy(fd)?.ok_or(Errno::of(libc::EACCES))?;
        let r = match self.call {
            Call::Fchmod => crate::sys::path::chmod(
                &c(crate::sys::procfs::fd_link(fd.as_fd()).as_bytes()),
                cx.arg(1) as u32,
            ),
            _ => crate::sys::path::fchownat(
                Some(fd.as_fd()),
                c"",
                cx.arg(1) as u32,
                cx.arg(2) as u32,
                libc::AT_EMPTY_PATH,
            ),
        };
        r.map_err(|e| Errno::from_io(&e))?;
        Ok(NotifAction::ReturnValue(0))
    }

    /// `fsetxattr`/`fremovexattr`: performed on a duplicate of the fd;
    /// refused (`ENOTSUP`) on a file shared with the lower tree.
    fn fxattr(&self, cx: &HandlerCtx<'_>, set: bool) -> Result<NotifAction, Errno> {
        let fd =
            as_supervisor(|| cx.dup_fd(cx.arg(0) as u32 as i32)).map_err(|e| Errno::from_io(&e))?;
        let name = cx
            .read_cstr(cx.arg(1), 255)
            .map_err(|_| Errno::of(libc::EFAULT))?;
        let value = if set {
            let size = cx.arg(3) as usize;
            if size > 65536 {
                return Err(Errno::of(libc::E2BIG));
            }
            cx.read_mem(cx.arg(2), size)
                .map_err(|_| Errno::of(libc::EFAULT))?
        } else {
            Vec::new()
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let fd = self.own_copy(fd)?.ok_or(Errno::of(libc::ENOTSUP))?;
        let layer: Arc<dyn crate::paths::Layered> = self.layer.clone();
        let bytes = if set {
            crate::paths::xattr_bytes(&name, &value)
        } else {
            0
        };
        let charge = crate::paths::Charge::node(Some(&layer).filter(|_| set), fd.as_fd(), bytes)?;
        let path = c(crate::sys::procfs::fd_link(fd.as_fd()).as_bytes());
        let r = if set {
            crate::sys::path::setxattr(&path, &c(&name), &value, cx.arg(4) as i32, true)
        } else {
            crate::sys::path::removexattr(&path, &c(&name), true)
        };
        charge.settle(&r);
        r.map_err(|e| Errno::from_io(&e))?;
        Ok(NotifAction::ReturnValue(0))
    }

    /// `ioctl`s that change an inode's flags, performed on a duplicate of
    /// the fd; refused (`EPERM`) on a file shared with, or in, the lower
    /// tree. Under `--max-disk`, `FICLONE` and `FICLONERANGE` are charged
    /// and made on-behalf (`reflink`). Other file-system `ioctl`s are answered from the allow list
    /// (`paths::fs_ioctl`), whatever the fd: a request that writes could
    /// write DIR through a read-only fd of it.
    fn set_flags(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let cmd = cx.arg(1) & 0xffff_ffff;
        if let Some(quota) = &self.layer.quota {
            if cmd == super::reflink::FICLONE || cmd == super::reflink::FICLONERANGE {
                let task = self.task(cx)?;
                let _acting = task.rights.assume()?;
                return super::reflink::clone_charged(cx, &self.layer, quota, cmd);
            }
        }
        let Some(size) = crate::paths::fs_ioctl::SET_INODE
            .iter()
            .find(|(c, _)| *c == cmd)
            .map(|(_, n)| *n)
        else {
            return Ok(crate::paths::fs_ioctl::answer(cx));
        };
        let fd =
            as_supervisor(|| cx.dup_fd(cx.arg(0) as u32 as i32)).map_err(|e| Errno::from_io(&e))?;
        let mut arg = cx
            .read_mem(cx.arg(2), size)
            .map_err(|_| Errno::of(libc::EFAULT))?;
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let before = fstat(fd.as_fd()).map_err(|e| Errno::from_io(&e))?;
        let fd = self.own_copy(fd)?.ok_or(Errno::of(libc::EPERM))?;
        let now = fstat(fd.as_fd()).map_err(|e| Errno::from_io(&e))?;
        // A copy is pinned `O_PATH`: the ioctl needs an open file.
        let fd = if (now.dev, now.ino) != (before.dev, before.ino) {
            crate::paths::reopen_fd(fd.as_fd(), libc::O_RDONLY | libc::O_NONBLOCK)
                .map_err(|e| Errno::from_io(&e))?
        } else {
            fd
        };
        let r = crate::sys::path::ioctl_buf(fd.as_fd(), cmd, &mut arg)
            .map_err(|e| Errno::from_io(&e))?;
        Ok(NotifAction::ReturnValue(r as i64))
    }

    /// The xattr reads by path, from the view.
    fn xattr(&self, cx: &HandlerCtx<'_>, list: bool, follow: bool) -> Result<NotifAction, Errno> {
        let p = read_path(cx, cx.arg(0))?;
        let Some(t) = self.target(cx, libc::AT_FDCWD, &p)? else {
            return Ok(NotifAction::Continue);
        };
        // The path through the pinned base (a magic link the supervisor
        // made itself).
        let mut full = match &t.base {
            Some(b) => [
                crate::sys::procfs::fd_link(b.as_fd()).as_bytes(),
                b"/",
                &t.path,
            ]
            .concat(),
            None => t.path.clone(),
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let nofollow = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        if let Ok(st) = crate::sys::path::fstatat(None, &c(&full), nofollow) {
            if self.layer.is_placeholder(&st) {
                if let Some(o) = self.layer.origin_path(st.ino) {
                    full = o.into_os_string().into_encoded_bytes();
                }
            }
        }
        let (buf, size) = if list {
            (cx.arg(1), cx.arg(2) as usize)
        } else {
            (cx.arg(2), cx.arg(3) as usize)
        };
        let r = if list {
            crate::sys::path::listxattr_path(&c(&full), size, follow)
        } else {
            let name = cx
                .read_cstr(cx.arg(1), 255)
                .map_err(|_| Errno::of(libc::EFAULT))?;
            crate::sys::path::getxattr_path(&c(&full), &c(&name), size, follow)
        };
        let (n, data) = r.map_err(|e| Errno::from_io(&e))?;
        if size > 0 && !data.is_empty() {
            write_back(cx, buf, &data)?;
        }
        Ok(NotifAction::ReturnValue(n as i64))
    }

    /// An exec names its file again in the kernel, from the lower tree:
    /// let it run only when that is the file the view names (a file the
    /// upper tree still shares); a path that the kernel resolves in the
    /// upper tree (relative to a working directory there) runs as it is.
    fn exec(&self, cx: &HandlerCtx<'_>, at: bool) -> Result<NotifAction, Errno> {
        let (dirfd, ptr) = if at {
            (cx.arg(0) as u32 as i32, cx.arg(1))
        } else {
            (libc::AT_FDCWD, cx.arg(0))
        };
        let Some((p, t)) = self.named_target(cx, dirfd, ptr)? else {
            return Ok(NotifAction::Continue);
        };
        let task = self.task(cx)?;
        let _acting = task.rights.assume()?;
        let view = crate::sys::path::fstatat(t.base.as_ref().map(|f| f.as_fd()), &c(&t.path), 0)
            .map_err(|e| Errno::from_io(&e))?;
        // What the kernel will open: the path as given, from the task's
        // own base (a lower directory, or none for an absolute path).
        let kernel_base = if p.first() == Some(&b'/') {
            None
        } else {
            let fd = as_supervisor(|| {
                if dirfd == libc::AT_FDCWD {
                    crate::paths::open_trusted_dir(&format!("/proc/{}/cwd", cx.pid()))
                } else {
                    cx.dup_fd(dirfd)
                }
            })
            .map_err(|e| Errno::from_io(&e))?;
            Some(fd)
        };
        match crate::sys::path::fstatat(kernel_base.as_ref().map(|f| f.as_fd()), &c(&p), 0) {
            // The kernel would run a placeholder (an empty file): it runs
            // a copy of the lower file instead, made now.
            Ok(k) if k.dev == view.dev && k.ino == view.ino && self.layer.is_placeholder(&view) => {
                let pinned = crate::paths::resolve::open_beneath(
                    t.base.as_ref().map(|f| f.as_fd()),
                    &t.path,
                    libc::O_PATH as u64,
                    0,
                    0,
                )
                .map_err(|e| Errno::from_io(&e))?;
                let st = fstat(pinned.as_fd()).map_err(|e| Errno::from_io(&e))?;
                if st.dev != view.dev || st.ino != view.ino {
                    return Err(Errno::of(libc::EAGAIN));
                }
                drop(_acting);
                self.layer.copy_up_for_exec(pinned, &st)?;
                Ok(NotifAction::Continue)
            }
            Ok(k) if k.dev == view.dev && k.ino == view.ino => Ok(NotifAction::Continue),
            // The kernel runs the lower file the view's placeholder stands
            // for (an absolute path of the work directory).
            Ok(k) if self.layer.is_origin_of(&view, k.dev, k.ino) => Ok(NotifAction::Continue),
            // Or the lower file of which the view's file is an unchanged
            // copy an earlier exec made.
            Ok(k) if self.exec_copy(&t, k.dev, k.ino) => Ok(NotifAction::Continue),
            // The kernel would run DIR's file (or find none) where the view
            // has another: re-issued by the view file's path in the upper
            // tree, and decided again when it comes back. Never for a path
            // of the upper tree itself (the kernel's is the view's there).
            _ if self.layer.to_view(&p).is_none() => {
                drop(_acting);
                self.reissue_exec(cx, at, &t)
            }
            _ => {
                log::debug!(
                    "pid {}: exec of {} refused: the kernel would run another file than the view's",
                    cx.pid(),
                    crate::shown::bytes(&p)
                );
                Err(Errno::of(libc::EACCES))
            }
        }
    }

    /// The write family under `--max-disk`: a call into a file of the
    /// upper tree is charged and made on the program's behalf (`writes`).
    fn write(&self, cx: &HandlerCtx<'_>, kind: WriteKind) -> Result<NotifAction, Errno> {
        let Some(quota) = &self.layer.quota else {
            return Ok(NotifAction::Continue);
        };
        super::writes::write(&self.layer, quota, cx, kind, || {
            Task::rights_for_fd(cx, &self.creds)
        })
    }
}

impl ViewHandler {
    /// The file an fd-based change of the program's `fd` is made on: the
    /// fd itself, or a private copy of a placeholder (the fd's, or the one
    /// standing for the lower file it reads); `None` for a lower file
    /// without one (never changed).
    fn own_copy(&self, fd: OwnedFd) -> Result<Option<OwnedFd>, Errno> {
        let st = fstat(fd.as_fd()).map_err(|e| Errno::from_io(&e))?;
        let fd = if st.is_file() {
            self.layer.copy_up(fd, &st, true)?
        } else {
            fd
        };
        Ok((!self.layer.is_lower(fd.as_fd())).then_some(fd))
    }

    /// Whether the view's file `t` is an unchanged exec copy of the lower
    /// file `(dev, ino)`.
    fn exec_copy(&self, t: &Target, dev: u64, ino: u64) -> bool {
        crate::paths::resolve::open_beneath(
            t.base.as_ref().map(|f| f.as_fd()),
            &t.path,
            libc::O_PATH as u64,
            0,
            0,
        )
        .is_ok_and(|fd| self.layer.is_exec_copy_of(fd.as_fd(), dev, ino))
    }

    /// `chdir` to a directory of the work directory by a path the kernel
    /// would resolve in DIR itself (an absolute path of DIR, as a shell's
    /// `cd` makes from `$PWD`, or a path relative to a working directory
    /// in DIR): re-issued as `chdir` of its counterpart in the upper tree,
    /// so that the working directory stays in the view (a directory the
    /// program made exists only there). The re-issued call is trapped and
    /// decided again like any other.
    fn chdir(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let Some((p, t)) = self.named_target(cx, libc::AT_FDCWD, cx.arg(0))? else {
            return Ok(NotifAction::Continue);
        };
        let upper = match &t.base {
            // Already an upper path: the kernel's is the view's.
            None if self.layer.to_view(&p).is_some() => return Ok(NotifAction::Continue),
            None => t.path.clone(),
            // A base in the upper tree already: nothing to redirect.
            Some(_) if self.cwd_in_upper(cx) => return Ok(NotifAction::Continue),
            Some(_) => upper_path(&t)?,
        };
        let nr = crate::syscalls::number(crate::arch::Arch::native(), "chdir")
            .ok_or(Errno::of(libc::EACCES))?;
        log::debug!(
            "pid {}: chdir to {} re-issued in the upper tree",
            cx.pid(),
            crate::shown::bytes(&p)
        );
        Ok(NotifAction::Reissue(crate::action::Reissue {
            nr: u64::from(nr),
            args: vec![crate::action::ReArg::Str(upper)],
            files: Vec::new(),
        }))
    }

    /// Re-issues an exec as the same call on the absolute path of the view's
    /// file `t` in the upper tree (its arguments otherwise unchanged; an
    /// `execveat`'s directory fd is not needed any more).
    fn reissue_exec(
        &self,
        cx: &HandlerCtx<'_>,
        at: bool,
        t: &Target,
    ) -> Result<NotifAction, Errno> {
        use crate::action::{ReArg, Reissue};
        let path = upper_path(t)?;
        let name = if at { "execveat" } else { "execve" };
        let nr = crate::syscalls::number(crate::arch::Arch::native(), name)
            .ok_or(Errno::of(libc::EACCES))?;
        let args = if at {
            vec![
                ReArg::Value(libc::AT_FDCWD as u32 as u64),
                ReArg::Str(path),
                ReArg::Value(cx.arg(2)),
                ReArg::Value(cx.arg(3)),
                ReArg::Value(cx.arg(4) & !(libc::AT_EMPTY_PATH as u64)),
            ]
        } else {
            vec![
                ReArg::Str(path),
                ReArg::Value(cx.arg(1)),
                ReArg::Value(cx.arg(2)),
            ]
        };
        log::debug!(
            "pid {}: exec re-issued by its path in the upper tree",
            cx.pid()
        );
        Ok(NotifAction::Reissue(Reissue {
            nr: u64::from(nr),
            args,
            files: Vec::new(),
        }))
    }

    /// Whether the task's real working directory is in the upper tree.
    fn cwd_in_upper(&self, cx: &HandlerCtx<'_>) -> bool {
        as_supervisor(|| std::fs::read_link(format!("/proc/{}/cwd", cx.pid())))
            .is_ok_and(|at| at.starts_with(&self.layer.upper))
    }

    /// `getcwd`: a working directory in the upper tree is given as the
    /// work directory's path (anything else is the kernel's).
    fn getcwd(&self, cx: &HandlerCtx<'_>) -> Result<NotifAction, Errno> {
        let (buf, size) = (cx.arg(0), cx.arg(1) as usize);
        let Ok(at) = as_supervisor(|| std::fs::read_link(format!("/proc/{}/cwd", cx.pid()))) else {
            return Ok(NotifAction::Continue);
        };
        let Some(mut view) = self.layer.to_view(at.as_os_str().as_encoded_bytes()) else {
            return Ok(NotifAction::Continue);
        };
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        view.push(0);
        if view.len() > size {
            return Err(Errno::of(libc::ERANGE));
        }
        write_back(cx, buf, &view)?;
        Ok(NotifAction::ReturnValue(view.len() as i64))
    }

    /// `readlink` of a procfs path: a link into the upper tree (a working
    /// directory, an fd) reads as the work directory's path.
    fn proc_link(
        &self,
        cx: &HandlerCtx<'_>,
        p: &[u8],
        buf: u64,
        size: usize,
    ) -> Result<NotifAction, Errno> {
        let task = crate::paths::Task::ids(cx);
        let (path, _) = crate::paths::resolve::task_view(&task, p);
        let Ok(target) = as_supervisor(|| readlinkat(None, &c(&path))) else {
            return Ok(NotifAction::Continue);
        };
        let Some(view) = self.layer.to_view(&target) else {
            return Ok(NotifAction::Continue);
        };
        if !cx.id_valid() {
            return Err(Errno::of(libc::ESRCH));
        }
        let n = view.len().min(size);
        write_back(cx, buf, &view[..n])?;
        Ok(NotifAction::ReturnValue(n as i64))
    }
}

/// Before an exec of `tid` (path at `ptr`, relative to `dirfd`) is
/// decided: if the kernel would run a placeholder of the upper tree (a
/// relative path from a directory there, or an absolute path into it), it
/// is copied up now, unless path denial refuses the file it stands for
/// (the exec's checks then refuse it). Best effort: the exec handler
/// decides. The path is read by the supervisor, resolved as the kernel
/// resolves it, and only the copy-up of a placeholder follows from it.
pub(crate) fn prepare_exec(layer: &Layer, tid: i32, dirfd: i32, ptr: u64) {
    let Some(path) = read_exec_path(tid, ptr) else {
        return;
    };
    if path.is_empty() || (path[0] == b'/' && layer.to_view(&path).is_none()) {
        return;
    }
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    // The exact bytes: a name that is not UTF-8 names its own file.
    let mut at = if path[0] == b'/' {
        Vec::new()
    } else if dirfd == libc::AT_FDCWD {
        format!("/proc/{tid}/cwd/").into_bytes()
    } else {
        format!("/proc/{tid}/fd/{dirfd}/").into_bytes()
    };
    at.extend_from_slice(&path);
    let at = std::ffi::OsString::from_vec(at);
    let Ok(pinned) = crate::paths::resolve::open_trusted(&at, 0) else {
        return;
    };
    let Ok(st) = fstat(pinned.as_fd()) else {
        return;
    };
    if layer.is_placeholder(&st) {
        if let Err(e) = layer.copy_up_for_exec(pinned, &st) {
            log::debug!(
                "copy-up of {} before its exec: {e:?}",
                crate::shown::bytes(at.as_bytes())
            );
        }
    }
}

/// The exec path at `ptr` in `tid` (at most `PATH_MAX` bytes).
fn read_exec_path(tid: i32, ptr: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut cur = ptr;
    let mut chunk = [0u8; PAGE as usize];
    while out.len() <= libc::PATH_MAX as usize && cur != 0 {
        let want = (PAGE - cur % PAGE) as usize;
        let n = crate::sys::mem::read(tid, cur, &mut chunk[..want]).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Some(out);
        }
        out.extend_from_slice(&chunk[..n]);
        cur += n as u64;
    }
    None
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |s| u64::from_ne_bytes(s.try_into().expect("8 bytes")))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
}

/// Writes an answer into the task's memory while its call is pending.
fn write_back(cx: &HandlerCtx<'_>, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    cx.write_mem(addr, bytes).map_err(|e| match e {
        crate::handler::MemoryError::Gone => Errno::of(libc::ESRCH),
        _ => Errno::of(libc::EFAULT),
    })
}
