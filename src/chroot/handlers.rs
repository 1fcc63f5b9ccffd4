//! The chroot's builtin handlers: every path-taking call of the program is
//! read once, walked in the view ([`View::walk`]) and performed by the
//! supervisor on what the walk pinned, with the task's rights; results go
//! back to the program's memory while its call is still pending
//! (`HandlerCtx::write_mem` checks the id before and after). Nothing is
//! answered `CONTINUE` with a path except an exec whose file (and
//! interpreters) the kernel's own resolution names identically; another
//! exec of a view file is re-issued on that file by fd (see
//! [`Op::exec`]). Uses `paths::resolve` for the task's rights and fds.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::arch::Arch;
use crate::handler::{Handler, HandlerCtx};
use crate::paths::creds::CredCache;
use crate::paths::resolve::{
    as_supervisor, is_supervisor_proc_with, mem_errno, open_beneath, open_trusted, pin_alias,
    read_path, reopen, task_view, with_c, Task,
};
use crate::sys::fs::{RESOLVE_BENEATH, RESOLVE_IN_ROOT};
use crate::sys::path::{
    fchownat, fstat, ftruncate, linkat, mkdirat, mknodat, readlinkat, renameat2, symlinkat,
    unlinkat, utimensat, FileStat,
};
use crate::sys::view::{access_fd, fchmod_fd, stat_bytes, statfs_bytes, statx_bytes};
use crate::syscalls;

use super::cwd::Cwds;
use super::exe::{Exes, Program};
use super::view::{join, normalize, How, Node, View, Walker};

use crate::paths::{inject_opened as inject, KERNEL_O_LARGEFILE, O_PATH_FLAGS, VALID_OPEN_FLAGS};

/// Symlinks followed while creating through dangling links.
const MAX_HOPS: usize = 40;
/// Interpreter levels of a `#!` chain followed.
const MAX_SCRIPT_LEVELS: usize = 6;
const CWD: i32 = libc::AT_FDCWD;
/// `PROC_SUPER_MAGIC`.
const PROC_MAGIC: i64 = 0x9fa0;

/// The calls, as the handler decodes them.
#[derive(Clone, Copy, Debug)]
enum Call {
    Open,
    Creat,
    Openat,
    Openat2,
    Stat,
    Lstat,
    Newfstatat,
    Statx,
    Access,
    Faccessat,
    Faccessat2,
    Readlink,
    Readlinkat,
    Statfs,
    Chdir,
    Fchdir,
    Getcwd,
    Execve,
    Execveat,
    Rename,
    Renameat,
    Renameat2,
    Link,
    Linkat,
    Symlink,
    Symlinkat,
    Unlink,
    Unlinkat,
    Rmdir,
    Mkdir,
    Mkdirat,
    Mknod,
    Mknodat,
    Truncate,
    Chmod,
    Fchmodat,
    Fchmodat2,
    Fchmod,
    Chown,
    Lchown,
    Fchownat,
    Fchown,
    Utime,
    Utimes,
    Futimesat,
    Utimensat,
}

const CALLS: &[(&str, Call)] = &[
    ("open", Call::Open),
    ("creat", Call::Creat),
    ("openat", Call::Openat),
    ("openat2", Call::Openat2),
    ("stat", Call::Stat),
    ("lstat", Call::Lstat),
    ("newfstatat", Call::Newfstatat),
    ("fstatat64", Call::Newfstatat),
    ("statx", Call::Statx),
    ("access", Call::Access),
    ("faccessat", Call::Faccessat),
    ("faccessat2", Call::Faccessat2),
    ("readlink", Call::Readlink),
    ("readlinkat", Call::Readlinkat),
    ("statfs", Call::Statfs),
    ("chdir", Call::Chdir),
    ("fchdir", Call::Fchdir),
    ("getcwd", Call::Getcwd),
    ("execve", Call::Execve),
    ("execveat", Call::Execveat),
    ("rename", Call::Rename),
    ("renameat", Call::Renameat),
    ("renameat2", Call::Renameat2),
    ("link", Call::Link),
    ("linkat", Call::Linkat),
    ("symlink", Call::Symlink),
    ("symlinkat", Call::Symlinkat),
    ("unlink", Call::Unlink),
    ("unlinkat", Call::Unlinkat),
    ("rmdir", Call::Rmdir),
    ("mkdir", Call::Mkdir),
    ("mkdirat", Call::Mkdirat),
    ("mknod", Call::Mknod),
    ("mknodat", Call::Mknodat),
    ("truncate", Call::Truncate),
    ("chmod", Call::Chmod),
    ("fchmodat", Call::Fchmodat),
    ("fchmodat2", Call::Fchmodat2),
    ("fchmod", Call::Fchmod),
    ("chown", Call::Chown),
    ("lchown", Call::Lchown),
    ("fchownat", Call::Fchownat),
    ("fchown", Call::Fchown),
    ("utime", Call::Utime),
    ("utimes", Call::Utimes),
    ("futimesat", Call::Futimesat),
    ("utimensat", Call::Utimensat),
];

/// What every handler of one chroot shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) view: View,
    pub(crate) cwds: Cwds,
    pub(crate) creds: Arc<CredCache>,
    /// What processes run through the view's ELF interpreter.
    pub(crate) exes: Exes,
    /// Whether a loader takes `--argv0` ([`takes_argv0`], which reads the
    /// whole file), by the loader's identity and change time.
    pub(crate) argv0: parking_lot::Mutex<HashMap<LoaderKey, bool>>,
}

/// A loader's `(st_dev, st_ino, st_ctime, st_ctime_nsec, st_size)`: a
/// file rewritten in place gets another.
pub(crate) type LoaderKey = (u64, u64, i64, i64, u64);

/// Loaders remembered before the table is emptied.
const MAX_LOADERS: usize = 64;

/// The view's resolution of unix socket pathnames, for the network's
/// on-behalf `bind`, `connect` and sends (a running feature with no
/// pipeline hooks).
pub(crate) struct UnixView(pub(crate) Arc<Shared>);

impl crate::supervisor::enforcement::Stage for UnixView {}

impl crate::net::UnixPaths for UnixView {
    fn socket(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<OwnedFd, i32> {
        Op { cx, s: &self.0 }.unix_socket(path).map_err(Errno::get)
    }

    fn parent(&self, cx: &HandlerCtx<'_>, path: &[u8]) -> Result<(OwnedFd, Vec<u8>), i32> {
        Op { cx, s: &self.0 }.unix_parent(path).map_err(Errno::get)
    }
}

struct ChrootHandler {
    shared: Arc<Shared>,
    call: Call,
}

/// The handlers, by syscall number (calls the architecture lacks are
/// skipped).
pub(crate) fn builtins(shared: &Arc<Shared>) -> Vec<(u32, Arc<dyn Handler>)> {
    let mut seen = HashMap::new();
    for (name, call) in CALLS {
        if let Some(nr) = syscalls::number(Arch::native(), name) {
            seen.entry(nr).or_insert(*call);
        }
    }
    let mut v: Vec<(u32, Arc<dyn Handler>)> = seen
        .into_iter()
        .map(|(nr, call)| {
            let h: Arc<dyn Handler> = Arc::new(ChrootHandler {
                shared: Arc::clone(shared),
                call,
            });
            (nr, h)
        })
        .collect();
    v.sort_by_key(|(nr, _)| *nr);
    v.extend(crate::paths::cred_changes(&shared.creds));
    v
}

impl Handler for ChrootHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let result = Op {
            cx,
            s: &self.shared,
        }
        .run(self.call);
        match result {
            Ok(a) => a,
            Err(e) => NotifAction::from(e),
        }
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_io(e)
}

fn done(r: std::io::Result<()>) -> Result<NotifAction, Errno> {
    r.map(|()| NotifAction::ReturnValue(0))
        .map_err(|e| errno(&e))
}

fn erofs() -> Errno {
    Errno::of(libc::EROFS)
}

/// Whether a write to a file of this type on a read-only file system is
/// refused (devices, FIFOs and sockets are not).
fn ro_kind(st: &FileStat) -> bool {
    st.is_file() || st.is_dir() || st.is_symlink()
}

/// One call being answered.
struct Op<'a> {
    cx: &'a HandlerCtx<'a>,
    s: &'a Shared,
}

/// A path argument: its dirfd and address.
type PathArg = (i32, u64);

impl Op<'_> {
    fn arg(&self, i: usize) -> u64 {
        self.cx.arg(i)
    }

    fn fd_arg(&self, i: usize) -> i32 {
        self.cx.arg(i) as u32 as i32
    }

    fn run(&self, call: Call) -> Result<NotifAction, Errno> {
        let a = |i| self.arg(i);
        let fd = |i| self.fd_arg(i);
        match call {
            Call::Open => self.open(CWD, a(0), a(1), a(2), 0, false),
            Call::Creat => self.open(
                CWD,
                a(0),
                (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
                a(1),
                0,
                false,
            ),
            Call::Openat => self.open(fd(0), a(1), a(2), a(3), 0, false),
            Call::Openat2 => self.openat2(),
            Call::Stat => self.stat((CWD, a(0)), a(1), 0, None),
            Call::Lstat => self.stat((CWD, a(0)), a(1), libc::AT_SYMLINK_NOFOLLOW, None),
            Call::Newfstatat => self.stat((fd(0), a(1)), a(2), a(3) as i32, None),
            Call::Statx => self.stat((fd(0), a(1)), a(4), a(2) as i32, Some(a(3) as u32)),
            Call::Access => self.access((CWD, a(0)), a(1) as i32, 0),
            Call::Faccessat => self.access((fd(0), a(1)), a(2) as i32, 0),
            Call::Faccessat2 => self.access((fd(0), a(1)), a(2) as i32, a(3) as i32),
            Call::Readlink => self.readlink((CWD, a(0)), a(1), a(2) as i64),
            Call::Readlinkat => self.readlink((fd(0), a(1)), a(2), a(3) as i64),
            Call::Statfs => self.statfs(a(0), a(1)),
            Call::Chdir => self.chdir(a(0)),
            Call::Fchdir => self.fchdir(fd(0)),
            Call::Getcwd => self.getcwd(a(0), a(1)),
            Call::Execve => self.exec(CWD, a(0), 0, a(1), a(2)),
            Call::Execveat => self.exec(fd(0), a(1), a(4) as i32, a(2), a(3)),
            Call::Rename => self.rename((CWD, a(0)), (CWD, a(1)), 0),
            Call::Renameat => self.rename((fd(0), a(1)), (fd(2), a(3)), 0),
            Call::Renameat2 => self.rename((fd(0), a(1)), (fd(2), a(3)), a(4) as u32),
            Call::Link => self.link((CWD, a(0)), (CWD, a(1)), 0),
            Call::Linkat => self.link((fd(0), a(1)), (fd(2), a(3)), a(4) as i32),
            Call::Symlink => self.symlink(a(0), (CWD, a(1))),
            Call::Symlinkat => self.symlink(a(0), (fd(1), a(2))),
            Call::Unlink => self.unlink((CWD, a(0)), 0),
            Call::Unlinkat => self.unlink((fd(0), a(1)), a(2) as i32),
            Call::Rmdir => self.unlink((CWD, a(0)), libc::AT_REMOVEDIR),
            Call::Mkdir => self.mknod((CWD, a(0)), a(1) as u32 | libc::S_IFDIR, 0),
            Call::Mkdirat => self.mknod((fd(0), a(1)), a(2) as u32 | libc::S_IFDIR, 0),
            Call::Mknod => self.mknod((CWD, a(0)), a(1) as u32, a(2) as u32),
            Call::Mknodat => self.mknod((fd(0), a(1)), a(2) as u32, a(3) as u32),
            Call::Truncate => self.truncate(a(0), a(1) as i64),
            Call::Chmod => self.chmod((CWD, a(0)), a(1) as u32, 0),
            Call::Fchmodat => self.chmod((fd(0), a(1)), a(2) as u32, 0),
            Call::Fchmodat2 => self.chmod((fd(0), a(1)), a(2) as u32, a(3) as i32),
            Call::Fchmod => self.fd_meta(fd(0), |f| fchmod_fd(f, a(1) as u32)),
            Call::Chown => self.chown((CWD, a(0)), a(1), a(2), 0),
            Call::Lchown => self.chown((CWD, a(0)), a(1), a(2), libc::AT_SYMLINK_NOFOLLOW),
            Call::Fchownat => self.chown((fd(0), a(1)), a(2), a(3), a(4) as i32),
            Call::Fchown => self.fd_meta(fd(0), |f| {
                fchownat(Some(f), c"", a(1) as u32, a(2) as u32, libc::AT_EMPTY_PATH)
            }),
            Call::Utime => self.utimes((CWD, a(0)), Times::Utimbuf(a(1)), 0),
            Call::Utimes => self.utimes((CWD, a(0)), Times::Timeval(a(1)), 0),
            Call::Futimesat => self.utimes((fd(0), a(1)), Times::Timeval(a(2)), 0),
            Call::Utimensat => self.utimes((fd(0), a(1)), Times::Timespec(a(2)), a(3) as i32),
        }
    }

    /// The task, with the supervisor lowered to its rights for the call.
    fn task(&self) -> Result<(Task, Option<crate::sys::caps::ThreadCaps>), Errno> {
        let task = Task::read(self.cx, &self.s.creds)?;
        let guard = task.rights.assume()?;
        Ok((task, guard))
    }

    fn who(task: &Task) -> Walker {
        Walker {
            tid: task.tid,
            tgid: task.tgid,
        }
    }

    /// The program's fd `fd`, duplicated.
    fn dup(&self, fd: i32) -> Result<OwnedFd, Errno> {
        as_supervisor(|| self.cx.dup_fd(fd)).map_err(|e| errno(&e))
    }

    /// Where in the view the program's dirfd `fd` is (`EACCES` for a
    /// directory outside the view: an fd from before the sandbox).
    fn place_of_fd(&self, fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
        let host = crate::paths::path_of_fd(fd).ok_or(Errno::of(libc::ENOTDIR))?;
        self.s.view.virtual_of(&host).ok_or_else(|| {
            log::debug!(
                "pid {}: a path relative to an fd outside the view ({}) refused",
                self.cx.pid(),
                host.display()
            );
            Errno::of(libc::EACCES)
        })
    }

    /// The virtual directory a path relative to `dirfd` starts from.
    fn base(&self, task: &Task, dirfd: i32, path: &[u8], anchored: bool) -> Result<Vec<u8>, Errno> {
        if path.first() == Some(&b'/') && !anchored {
            return Ok(b"/".to_vec());
        }
        if dirfd == CWD {
            return Ok(self.s.cwds.get(task.tgid));
        }
        let fd = self.dup(dirfd)?;
        let st = fstat(fd.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_dir() {
            return Err(Errno::of(libc::ENOTDIR));
        }
        self.place_of_fd(fd.as_fd())
    }

    /// Walks the program's path `path` from `dirfd`. An absolute path
    /// naming one of the task's own fds or its executable (`/dev/fd/N`,
    /// `/proc/self/fd/N`, `/proc/self/exe`) is that file.
    /// [`walk`](Self::walk) of a path the call names from the working
    /// directory, its last symlink followed (`chdir`, `statfs`, ...).
    fn walk_followed(&self, task: &Task, path: &[u8]) -> Result<Node, Errno> {
        self.walk(
            task,
            CWD,
            path,
            How {
                follow: true,
                resolve: 0,
            },
        )
    }

    fn walk(&self, task: &Task, dirfd: i32, path: &[u8], how: How) -> Result<Node, Errno> {
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        if how.resolve == 0 {
            if let (_, Some(alias)) = task_view(task, path) {
                if alias == crate::paths::resolve::Alias::Exe {
                    if let Some(node) = self.running_program(task) {
                        return Ok(node);
                    }
                }
                let fd = pin_alias(self.cx, task, &alias)?;
                let place =
                    crate::paths::path_of_fd(fd.as_fd()).and_then(|p| self.s.view.virtual_of(&p));
                let read_only = place
                    .as_deref()
                    .map(|p| self.read_only_at(p))
                    .unwrap_or(false);
                return Ok(Node {
                    fd,
                    vpath: place.unwrap_or_default(),
                    read_only,
                    mount: usize::MAX,
                });
            }
        }
        let anchored = how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0;
        if !anchored {
            if let Some(p) = self.own_dir_link(task, path) {
                return self.s.view.walk(Self::who(task), b"/", &p, how);
            }
        }
        let base = self.base(task, dirfd, path, anchored)?;
        self.s.view.walk(Self::who(task), &base, path, how)
    }

    /// `path` with a leading `/proc/self/cwd` or `/proc/self/root` (or the
    /// task's own pid, or `thread-self`) replaced by the task's virtual
    /// working directory or `/`: the kernel's links name host paths.
    fn own_dir_link(&self, task: &Task, path: &[u8]) -> Option<Vec<u8>> {
        if path.first() != Some(&b'/') {
            return None;
        }
        let mut parts = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        if parts.next()? != b"proc" {
            return None;
        }
        let who = parts.next()?;
        let ours = who == b"self"
            || who == b"thread-self"
            || std::str::from_utf8(who)
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .is_some_and(|n| n == task.tgid || n == task.tid);
        if !ours {
            return None;
        }
        let dir = match parts.next()? {
            b"cwd" => self.s.cwds.get(task.tgid),
            b"root" => b"/".to_vec(),
            _ => return None,
        };
        let mut out = dir;
        for p in parts {
            out = join(&out, p);
        }
        if path.last() == Some(&b'/') {
            out.push(b'/');
        }
        Some(out)
    }

    /// The program the task's process runs through the view's ELF
    /// interpreter, if its executable is still that interpreter (see
    /// [`Exes`]): its file and place.
    fn running_program(&self, task: &Task) -> Option<Node> {
        use std::os::unix::fs::MetadataExt;
        let exe = std::fs::metadata(format!("/proc/{}/exe", task.tid)).ok()?;
        let (fd, vpath) = self
            .s
            .exes
            .with_running(task.tgid, (exe.dev(), exe.ino()), |p| {
                (p.file.try_clone().ok(), p.vpath.clone())
            })?;
        let read_only = self.read_only_at(&vpath);
        Some(Node {
            fd: fd?,
            vpath,
            read_only,
            mount: usize::MAX,
        })
    }

    /// Whether the mount holding virtual path `p` is read-only.
    fn read_only_at(&self, p: &[u8]) -> bool {
        let mut best: Option<&super::view::Mount> = None;
        for m in self.s.view.mounts() {
            let under = p == m.virt.as_slice()
                || m.virt == b"/"
                || (p.starts_with(&m.virt) && p.get(m.virt.len()) == Some(&b'/'));
            if under && best.is_none_or(|b| b.virt.len() < m.virt.len()) {
                best = Some(m);
            }
        }
        best.is_some_and(|m| m.read_only)
    }

    /// The task's own fd `fd` (an `AT_EMPTY_PATH` call), as a node;
    /// `place`: find where it is in the view (whether it is read-only).
    fn own_fd_at(&self, fd: i32, place: bool) -> Result<Node, Errno> {
        let f = if fd == CWD {
            // The working directory itself.
            let task = Task::ids(self.cx);
            let place = self.s.cwds.get(task.tgid);
            return self.s.view.walk(
                Self::who(&task),
                b"/",
                &place,
                How {
                    follow: true,
                    resolve: 0,
                },
            );
        } else {
            self.dup(fd)?
        };
        if !place {
            return Ok(Node {
                fd: f,
                vpath: Vec::new(),
                read_only: false,
                mount: usize::MAX,
            });
        }
        let place = crate::paths::path_of_fd(f.as_fd()).and_then(|p| self.s.view.virtual_of(&p));
        let read_only = place
            .as_deref()
            .map(|p| self.read_only_at(p))
            .unwrap_or(false);
        Ok(Node {
            fd: f,
            vpath: place.unwrap_or_default(),
            read_only,
            mount: usize::MAX,
        })
    }

    /// [`own_fd_at`](Self::own_fd_at), with its place in the view.
    fn own_fd(&self, fd: i32) -> Result<Node, Errno> {
        self.own_fd_at(fd, true)
    }

    fn write_back(&self, ptr: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.cx.write_mem(ptr, bytes).map_err(|e| mem_errno(&e))
    }

    // ---- opens ----

    fn openat2(&self) -> Result<NotifAction, Errno> {
        let size = self.arg(3) as usize;
        if size < 24 {
            return Err(Errno::of(libc::EINVAL));
        }
        if size > 4096 {
            return Err(Errno::of(libc::E2BIG));
        }
        let raw = self
            .cx
            .read_mem(self.arg(2), size)
            .map_err(|e| mem_errno(&e))?;
        if raw[24..].iter().any(|&b| b != 0) {
            return Err(Errno::of(libc::E2BIG));
        }
        let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8"));
        let (flags, mode, resolve) = (word(0), word(1), word(2));
        if flags & !(VALID_OPEN_FLAGS as u32 as u64) != 0
            || resolve & !0x3f != 0
            || (resolve & RESOLVE_BENEATH != 0 && resolve & RESOLVE_IN_ROOT != 0)
            || mode & !0o7777 != 0
        {
            return Err(Errno::of(libc::EINVAL));
        }
        let f = flags as i32;
        if (mode != 0 && !creates(f)) || (f & libc::O_PATH != 0 && f & !O_PATH_FLAGS != 0) {
            return Err(Errno::of(libc::EINVAL));
        }
        self.open(self.fd_arg(0), self.arg(1), flags, mode, resolve, true)
    }

    fn open(
        &self,
        dirfd: i32,
        ptr: u64,
        flags: u64,
        mode: u64,
        resolve: u64,
        checked: bool,
    ) -> Result<NotifAction, Errno> {
        let mut flags = flags as u32 as i32 & VALID_OPEN_FLAGS;
        if !checked && flags & libc::O_PATH != 0 {
            flags &= O_PATH_FLAGS;
        }
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        let tmpfile = flags & libc::O_TMPFILE == libc::O_TMPFILE;
        if flags & libc::O_CREAT != 0 && flags & libc::O_DIRECTORY != 0 && !tmpfile {
            return Err(Errno::of(libc::EINVAL));
        }
        let mode = if creates(flags) {
            (mode & 0o7777) as u32 & !task.umask()
        } else {
            0
        };
        let how = How {
            follow: flags & libc::O_NOFOLLOW == 0,
            resolve,
        };
        if tmpfile {
            let dir = self.walk(
                &task,
                dirfd,
                &path,
                How {
                    follow: true,
                    ..how
                },
            )?;
            if dir.read_only {
                return Err(erofs());
            }
            let fd = open_beneath(
                Some(dir.fd.as_fd()),
                b".",
                open_flags(flags) as u64,
                mode.into(),
                0,
            )
            .map_err(|e| errno(&e))?;
            fix_mode(fd.as_fd(), mode);
            return Ok(inject(fd, flags));
        }
        if flags & libc::O_CREAT == 0 {
            let node = self.walk(&task, dirfd, &path, how)?;
            return self.finish(node, flags);
        }
        self.create(&task, dirfd, path, flags, mode, how)
    }

    fn create(
        &self,
        task: &Task,
        dirfd: i32,
        mut path: Vec<u8>,
        flags: i32,
        mode: u32,
        how: How,
    ) -> Result<NotifAction, Errno> {
        let excl = flags & libc::O_EXCL != 0;
        let mut base = self.base(
            task,
            dirfd,
            &path,
            how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0,
        )?;
        let mut hops = 0;
        let mut races = 0;
        loop {
            let e = self
                .s
                .view
                .entry(Self::who(task), &base, &path, libc::EISDIR)?;
            if e.slash {
                return Err(Errno::of(libc::EISDIR));
            }
            if self.s.view.is_mount_point(&e.vpath()) {
                if excl {
                    return Err(Errno::of(libc::EEXIST));
                }
                let node = self.s.view.walk(
                    Self::who(task),
                    b"/",
                    &e.vpath(),
                    How {
                        follow: true,
                        resolve: 0,
                    },
                )?;
                return self.finish(node, flags);
            }
            match super::view::open_name(e.dir.fd.as_fd(), &e.name) {
                Ok(fd) => {
                    if excl {
                        return Err(Errno::of(libc::EEXIST));
                    }
                    let st = fstat(fd.as_fd()).map_err(|e| errno(&e))?;
                    if st.is_symlink() {
                        if !how.follow || how.resolve & super::view::RESOLVE_NO_SYMLINKS != 0 {
                            return Err(Errno::of(libc::ELOOP));
                        }
                        hops += 1;
                        if hops > MAX_HOPS {
                            return Err(Errno::of(libc::ELOOP));
                        }
                        path = readlinkat(Some(fd.as_fd()), c"").map_err(|e| errno(&e))?;
                        if path.is_empty() {
                            return Err(Errno::of(libc::ENOENT));
                        }
                        base = e.dir.vpath.clone();
                        continue;
                    }
                    let node = Node {
                        fd,
                        vpath: e.vpath(),
                        read_only: e.dir.read_only,
                        mount: e.dir.mount,
                    };
                    return self.finish(node, flags);
                }
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(errno(&err)),
            }
            if e.dir.read_only {
                return Err(erofs());
            }
            let cflags = open_flags(flags) | libc::O_CREAT | libc::O_EXCL;
            match open_beneath(
                Some(e.dir.fd.as_fd()),
                &e.name,
                cflags as u64,
                mode.into(),
                RESOLVE_BENEATH,
            ) {
                Ok(fd) => {
                    fix_mode(fd.as_fd(), mode);
                    return Ok(inject(fd, flags));
                }
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) && !excl => {
                    races += 1;
                    if races > 8 {
                        return Err(Errno::of(libc::EEXIST));
                    }
                }
                Err(err) => return Err(errno(&err)),
            }
        }
    }

    /// Opens the pinned `node` with the program's flags and injects it.
    fn finish(&self, node: Node, flags: i32) -> Result<NotifAction, Errno> {
        let pinned = node.fd;
        let st = fstat(pinned.as_fd()).map_err(|e| errno(&e))?;
        if is_supervisor_proc_with(pinned.as_fd(), &st) {
            return Err(Errno::of(libc::EACCES));
        }
        let writes = flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0;
        if writes && node.read_only && ro_kind(&st) {
            return Err(erofs());
        }
        if writes
            && st.on_anonymous_device()
            && crate::sys::cgroup::is_host_control_fs(pinned.as_fd())
        {
            return Err(Errno::of(libc::EACCES));
        }
        if crate::freeze::refuses_open(pinned.as_fd(), &st, flags as u64) {
            return Err(Errno::of(libc::EACCES));
        }
        crate::paths::open_checked(self.cx, pinned, &st, flags, || {
            Ok(Task::read(self.cx, &self.s.creds)?.rights)
        })
    }

    // ---- metadata ----

    /// `stat`, `lstat`, `newfstatat` (`mask` `None`) and `statx`.
    fn stat(
        &self,
        (dirfd, ptr): PathArg,
        buf: u64,
        flags: i32,
        mask: Option<u32>,
    ) -> Result<NotifAction, Errno> {
        let known = libc::AT_SYMLINK_NOFOLLOW
            | libc::AT_EMPTY_PATH
            | libc::AT_NO_AUTOMOUNT
            | if mask.is_some() { 0x6000 } else { 0 };
        if flags & !known != 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let empty = flags & libc::AT_EMPTY_PATH != 0;
        let node = if ptr == 0 && empty {
            self.own_fd_at(dirfd, false)?
        } else {
            let path = read_path(self.cx, ptr)?;
            if path.is_empty() && empty {
                self.own_fd_at(dirfd, false)?
            } else {
                let (task, _acting) = self.task()?;
                let how = How {
                    follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                    resolve: 0,
                };
                self.walk(&task, dirfd, &path, how)?
            }
        };
        let bytes = match mask {
            None => stat_bytes(node.fd.as_fd()),
            Some(m) => statx_bytes(node.fd.as_fd(), flags, m),
        }
        .map_err(|e| errno(&e))?;
        self.write_back(buf, &bytes)?;
        Ok(NotifAction::ReturnValue(0))
    }

    fn access(&self, (dirfd, ptr): PathArg, mode: i32, flags: i32) -> Result<NotifAction, Errno> {
        if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0
            || flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS | libc::AT_EMPTY_PATH) != 0
        {
            return Err(Errno::of(libc::EINVAL));
        }
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        let node = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            self.own_fd_at(dirfd, mode & libc::W_OK != 0)?
        } else {
            let how = How {
                follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                resolve: 0,
            };
            self.walk(&task, dirfd, &path, how)?
        };
        if mode & libc::W_OK != 0 && node.read_only {
            let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
            if ro_kind(&st) {
                return Err(erofs());
            }
        }
        done(access_fd(node.fd.as_fd(), mode, flags))
    }

    fn readlink(&self, (dirfd, ptr): PathArg, buf: u64, size: i64) -> Result<NotifAction, Errno> {
        if size <= 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        let target = match self.proc_link(&task, dirfd, &path)? {
            Some(t) => t,
            None => {
                let node = self.walk(&task, dirfd, &path, How::default())?;
                let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
                if !st.is_symlink() {
                    return Err(Errno::of(libc::EINVAL));
                }
                let t = readlinkat(Some(node.fd.as_fd()), c"").map_err(|e| errno(&e))?;
                // A magic link of a mounted procfs names a host path: shown
                // as the view's path when the view has it.
                if t.first() == Some(&b'/')
                    && crate::sys::path::fs_type(node.fd.as_fd()).is_ok_and(|f| f == PROC_MAGIC)
                {
                    self.s
                        .view
                        .virtual_of(crate::paths::resolve::as_path(&t))
                        .unwrap_or(t)
                } else {
                    t
                }
            }
        };
        let n = target.len().min(size as usize);
        self.write_back(buf, &target[..n])?;
        Ok(NotifAction::ReturnValue(n as i64))
    }

    /// What `readlink` shows of the task's own `/proc/<pid>/{cwd,root,exe}`
    /// (the view's paths; `None`: not one of them).
    fn proc_link(&self, task: &Task, dirfd: i32, path: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
        let full = if path.first() == Some(&b'/') {
            normalize(path)
        } else if dirfd == CWD {
            normalize(&join(&self.s.cwds.get(task.tgid), path))
        } else {
            return Ok(None);
        };
        let parts: Vec<&[u8]> = full
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let ours = |p: &[u8]| {
            p == b"self"
                || std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse::<i32>().ok())
                    .is_some_and(|n| n == task.tgid || n == task.tid)
        };
        let pid_of = |p: &[u8]| -> Option<i32> {
            if p == b"self" {
                return Some(task.tgid);
            }
            std::str::from_utf8(p).ok()?.parse::<i32>().ok()
        };
        let (pid, what, fd): (i32, &[u8], Option<&[u8]>) = match parts.as_slice() {
            [b"proc", b"thread-self", w] => (task.tgid, *w, None),
            [b"proc", p, w] => match pid_of(p) {
                Some(pid) => (pid, *w, None),
                None => return Ok(None),
            },
            [b"proc", p, b"task", t, w] if ours(p) && ours(t) => (task.tgid, *w, None),
            [b"proc", p, b"fd", n] if ours(p) => (task.tgid, b"fd", Some(*n)),
            [b"proc", b"thread-self", b"fd", n] => (task.tgid, b"fd", Some(*n)),
            [b"dev", b"fd", n] => (task.tgid, b"fd", Some(*n)),
            _ => return Ok(None),
        };
        let own = pid == task.tgid || pid == task.tid;
        let host_link = |name: String| -> Result<Vec<u8>, Errno> {
            let t = std::fs::read_link(&name).map_err(|e| errno(&e))?;
            if !self.cx.id_valid() {
                return Err(Errno::of(libc::ESRCH));
            }
            let bytes = t.as_os_str().as_bytes().to_vec();
            Ok(if bytes.first() == Some(&b'/') {
                self.s.view.virtual_of(&t).unwrap_or(bytes)
            } else {
                bytes
            })
        };
        Ok(Some(match (what, fd) {
            (b"fd", Some(n)) => {
                let n: i32 = std::str::from_utf8(n)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(Errno::of(libc::ENOENT))?;
                host_link(format!("/proc/{}/fd/{n}", task.tgid))?
            }
            (b"cwd", _) if own => self.s.cwds.get(task.tgid),
            (b"cwd", _) => match self.s.cwds.peek(pid) {
                Some(c) => c,
                None => return Ok(None),
            },
            (b"root", _) if own || self.s.cwds.peek(pid).is_some() => b"/".to_vec(),
            (b"exe", _) if own && self.running_program(task).is_some() => self
                .running_program(task)
                .map(|n| n.vpath)
                .unwrap_or_default(),
            (b"exe", _) if own => {
                let host =
                    std::fs::read_link(format!("/proc/{}/exe", task.tid)).map_err(|e| errno(&e))?;
                self.s
                    .view
                    .virtual_of(&host)
                    .ok_or(Errno::of(libc::ENOENT))?
            }
            _ => return Ok(None),
        }))
    }

    fn statfs(&self, ptr: u64, buf: u64) -> Result<NotifAction, Errno> {
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        let node = self.walk_followed(&task, &path)?;
        let bytes = statfs_bytes(node.fd.as_fd()).map_err(|e| errno(&e))?;
        self.write_back(buf, &bytes)?;
        Ok(NotifAction::ReturnValue(0))
    }

    // ---- working directory ----

    fn chdir(&self, ptr: u64) -> Result<NotifAction, Errno> {
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        let node = self.walk_followed(&task, &path)?;
        self.enter(&task, node)
    }

    fn fchdir(&self, fd: i32) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let f = self.dup(fd)?;
        let st = fstat(f.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_dir() {
            return Err(Errno::of(libc::ENOTDIR));
        }
        let vpath = self.place_of_fd(f.as_fd())?;
        self.enter(
            &task,
            Node {
                fd: f,
                vpath,
                read_only: false,
                mount: usize::MAX,
            },
        )
    }

    fn enter(&self, task: &Task, node: Node) -> Result<NotifAction, Errno> {
        let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_dir() {
            return Err(Errno::of(libc::ENOTDIR));
        }
        if node.vpath.first() != Some(&b'/') {
            return Err(Errno::of(libc::EACCES));
        }
        access_fd(node.fd.as_fd(), libc::X_OK, 0).map_err(|e| errno(&e))?;
        if !self.s.cwds.set(task.tgid, node.vpath) {
            return Err(Errno::of(libc::ENOMEM));
        }
        Ok(NotifAction::ReturnValue(0))
    }

    fn getcwd(&self, buf: u64, size: u64) -> Result<NotifAction, Errno> {
        let task = Task::ids(self.cx);
        let mut cwd = self.s.cwds.get(task.tgid);
        cwd.push(0);
        if (size as usize) < cwd.len() {
            return Err(Errno::of(libc::ERANGE));
        }
        self.write_back(buf, &cwd)?;
        Ok(NotifAction::ReturnValue(cwd.len() as i64))
    }

    // ---- exec ----

    /// `execve`/`execveat`, decided in the view. The kernel would resolve
    /// the path again in the host's root and the real working directory,
    /// and the `#!` interpreters by their host paths. When each of those
    /// is the very file the view names (a program from a mount at its host
    /// path), the call is let through: argv safety's freeze holds the path
    /// still until the exec event and pinned the kernel's files
    /// (`exec_files`, compared here), and the exec event checks the new
    /// image is the first of them. Otherwise the call is re-issued as an
    /// `execveat` of the view's file by fd ([`Op::redirect`]), the `#!`
    /// step done here; the re-issued call is decided again by this rule.
    /// The ELF interpreter (`PT_INTERP`) is resolved in the view too: the
    /// kernel would open it by name in the host's root, so when that is
    /// not the view's file the exec is re-issued through the view's
    /// loader ([`Loader`], [`Op::redirect`]).
    fn exec(
        &self,
        dirfd: i32,
        ptr: u64,
        flags: i32,
        argv: u64,
        envp: u64,
    ) -> Result<NotifAction, Errno> {
        let fixed = self.cx.answer_fixed();
        if matches!(fixed, Some(libc::EFAULT | libc::E2BIG | libc::ESRCH)) {
            // Its memory, not its file, fails it: the freeze answers.
            return Ok(NotifAction::Continue);
        }
        let host_files = self.cx.exec_files();
        if host_files.is_empty() && fixed.is_none() {
            log::warn!("an exec under chroot without argv safety's pinned files; refusing it");
            return Err(Errno::of(libc::EACCES));
        }
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        let node = if path.is_empty() {
            if flags & libc::AT_EMPTY_PATH == 0 {
                return Err(Errno::of(libc::ENOENT));
            }
            self.own_fd(dirfd)?
        } else {
            let how = How {
                follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                resolve: 0,
            };
            self.walk(&task, dirfd, &path, how)?
        };
        let refuse = |what: &str| {
            log::debug!(
                "pid {}: exec of {} refused under chroot: {what}",
                self.cx.pid(),
                crate::shown::bytes(&path)
            );
            Errno::of(libc::EACCES)
        };
        // A file named by an fd (the program's, `/dev/fd/N`,
        // `/proc/self/exe`) must be in the view too, or a memfd (the
        // program's own bytes): an fd from before the sandbox names the
        // host's files.
        if node.vpath.first() != Some(&b'/') && !is_memfd(node.fd.as_fd()) {
            return Err(refuse("the file is outside the view"));
        }
        let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_file() {
            return Err(Errno::of(libc::EACCES));
        }
        access_fd(node.fd.as_fd(), libc::X_OK, libc::AT_EACCESS).map_err(|e| errno(&e))?;
        // The `#!` chain, in the view: (interpreter as written, its
        // argument) per level, and each file.
        let mut levels: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut files = vec![node.fd];
        // Where the program at the end of the chain is in the view.
        let mut program_vpath = node.vpath.clone();
        // The view's ELF interpreter, when the kernel would load another
        // file (the host's at that path, or none).
        let mut loader: Option<Loader> = None;
        loop {
            let cur = files.last().expect("one at least").as_fd();
            let head = read_head(cur).ok_or_else(|| refuse("unreadable"))?;
            let line = &head[..head.len().min(crate::script::SCRIPT_HEADER)];
            match crate::script::interpreter_and_arg(line)? {
                Some((name, arg)) => {
                    if levels.len() >= MAX_SCRIPT_LEVELS {
                        return Err(Errno::of(libc::ELOOP));
                    }
                    let next = self.walk_followed(&task, name)?;
                    access_fd(next.fd.as_fd(), libc::X_OK, libc::AT_EACCESS)
                        .map_err(|e| errno(&e))?;
                    levels.push((name.to_vec(), arg.map(<[u8]>::to_vec)));
                    files.push(next.fd);
                    program_vpath = next.vpath;
                }
                None => {
                    if let Some(interp) = elf_interpreter(cur, &head) {
                        let v = self
                            .walk_followed(&task, &interp)
                            .map_err(|_| Errno::of(libc::ENOENT))?;
                        let on_host = open_trusted(std::ffi::OsStr::from_bytes(&interp), 0).ok();
                        if !on_host.is_some_and(|h| same_file(v.fd.as_fd(), h.as_fd())) {
                            loader = Some(self.loader(interp, v.fd)?);
                        }
                    }
                    break;
                }
            }
        }
        // The pinned files: the executable, its `#!` chain, then the ELF
        // interpreter if there is one (the view's, when `loader` is none).
        let kernels = fixed.is_none()
            && loader.is_none()
            && (host_files.len() == files.len() || host_files.len() == files.len() + 1)
            && files
                .iter()
                .zip(host_files)
                .all(|(v, h)| same_file(v.as_fd(), h.as_fd()));
        if kernels {
            self.s.creds.exec_started(task.tid, task.tgid);
            let st = fstat(files[0].as_fd()).map_err(|e| errno(&e))?;
            self.s.exes.exec_started(task.tgid, (st.dev, st.ino));
            return Ok(NotifAction::Continue);
        }
        if !crate::freeze::reissue::supported() {
            return Err(refuse(
                "the kernel would run another file (the host's at that path)",
            ));
        }
        // What the kernel checks of each file it would open itself, and
        // of the file it would load, before the file is added to the task:
        // an exec the kernel refuses after that leaves the fd open in the
        // program (`freeze::reissue`'s limits).
        let runs = loader.as_ref().map_or(files.last(), |l| Some(&l.file));
        if let Some(e) = runs.and_then(|f| not_loadable(f.as_fd())) {
            return Err(Errno::of(e));
        }
        for f in files.iter().chain(loader.as_ref().map(|l| &l.file)) {
            if crate::sys::path::on_noexec_mount(f.as_fd()).map_err(|e| errno(&e))? {
                return Err(refuse("on a mount without exec rights"));
            }
        }
        self.redirect(Redirect {
            dirfd,
            ptr,
            path: &path,
            argv,
            envp,
            levels,
            program: files.pop().expect("one at least"),
            vpath: &node.vpath,
            program_vpath,
            tgid: task.tgid,
            loader,
        })
    }

    /// The view's ELF interpreter `file`, named `name` by the program:
    /// what the kernel checks of an interpreter (execute right, an ELF
    /// file) and what the exec through it needs (that it loads no
    /// interpreter itself, whether it takes `--argv0`).
    fn loader(&self, name: Vec<u8>, file: OwnedFd) -> Result<Loader, Errno> {
        access_fd(file.as_fd(), libc::X_OK, libc::AT_EACCESS).map_err(|e| errno(&e))?;
        let st = fstat(file.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_file() {
            return Err(Errno::of(libc::EACCES));
        }
        let head = read_head(file.as_fd()).unwrap_or_default();
        // The kernel refuses an interpreter that is not ELF (`ELIBBAD`);
        // one that names an interpreter itself would be re-issued again.
        if head.len() < 64
            || &head[..4] != b"\x7fELF"
            || elf_interpreter(file.as_fd(), &head).is_some()
        {
            log::debug!(
                "pid {}: the ELF interpreter {} is not a loader that runs alone",
                self.cx.pid(),
                crate::shown::bytes(&name)
            );
            return Err(Errno::of(libc::ELIBBAD));
        }
        let argv0 = self.takes_argv0(file.as_fd());
        Ok(Loader { name, file, argv0 })
    }

    /// [`takes_argv0`], remembered per loader file: it reads the whole
    /// file, at every exec run through the loader otherwise.
    fn takes_argv0(&self, fd: BorrowedFd<'_>) -> bool {
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .ok()
            .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec(), m.size()));
        let Some(key) = key else {
            return takes_argv0(fd);
        };
        if let Some(&known) = self.s.argv0.lock().get(&key) {
            return known;
        }
        let argv0 = takes_argv0(fd);
        let mut map = self.s.argv0.lock();
        if map.len() >= MAX_LOADERS {
            map.clear();
        }
        map.insert(key, argv0);
        argv0
    }

    /// Re-issues the exec as `execveat(N, "", argv', envp, AT_EMPTY_PATH)`
    /// of the view's program, N its fd added to the task (close-on-exec);
    /// for a script, argv' is what the kernel's `#!` step would make:
    /// each interpreter as written and its argument, innermost last, the
    /// script's name as the caller gave it, then its arguments after the
    /// first. The empty path is the NUL that ends the caller's own path.
    ///
    /// A program whose ELF interpreter the kernel would take from the
    /// host's root ([`Loader`]) is run the way `ld.so PROGRAM ARGS` runs
    /// it: N is the view's interpreter, argv' is `[PT_INTERP, --argv0,
    /// argv[0], path, argv[1..]]` (without `--argv0` for a loader that
    /// does not take it: the program's argv[0] is then the path). Why this
    /// way: the kernel opens `PT_INTERP` by name in the task's real root,
    /// and only an exec of the interpreter itself makes it load a file
    /// the supervisor chose, pinned, by fd. The loader opens the program
    /// and its libraries by path, with calls the view resolves (the
    /// program as the caller named it from its working directory, else by
    /// its place in the view), so nothing it loads is outside the view;
    /// a rename racing it runs another file of the view, which the program
    /// could run through the loader itself. What changes for the program:
    /// `/proc/self/exe` is the loader (the view answers with the program,
    /// see [`Exes`]), `AT_EXECFN` is the path the loader was
    /// given (a glibc loader sets it), `AT_BASE` is 0, and a set-id bit of
    /// the program is not honoured.
    fn redirect(&self, r: Redirect<'_>) -> Result<NotifAction, Errno> {
        use crate::action::{ReArg, Reissue};
        // The kernel's argv for a script.
        let script = if r.levels.is_empty() {
            None
        } else {
            let mut v = Vec::new();
            for (name, arg) in r.levels.iter().rev() {
                v.push(ReArg::Str(name.clone()));
                if let Some(a) = arg {
                    v.push(ReArg::Str(a.clone()));
                }
            }
            v.push(if r.path.is_empty() {
                ReArg::Str(format!("/dev/fd/{}", r.dirfd).into_bytes())
            } else if r.path[0] != b'/' && r.dirfd != CWD {
                let mut p = format!("/dev/fd/{}/", r.dirfd).into_bytes();
                p.extend_from_slice(r.path);
                ReArg::Str(p)
            } else {
                ReArg::Value(r.ptr)
            });
            v.extend(self.args_after_first(r.argv)?.into_iter().map(ReArg::Value));
            Some(v)
        };
        let (argv, file) = match (&r.loader, script) {
            (None, None) => (ReArg::Value(r.argv), r.program.as_fd()),
            (None, Some(v)) => (ReArg::Ptrs(v), r.program.as_fd()),
            (Some(l), script) => {
                // What the program gets as argv[0], the path the loader
                // opens, the arguments after them.
                let (first, path, rest) = match script {
                    Some(mut v) => {
                        let rest = v.split_off(1);
                        (v[0].clone(), v.remove(0), rest)
                    }
                    None => {
                        let path = if !r.path.is_empty() && (r.path[0] == b'/' || r.dirfd == CWD) {
                            ReArg::Value(r.ptr)
                        } else if r.vpath.first() == Some(&b'/') {
                            ReArg::Str(r.vpath.to_vec())
                        } else {
                            // A memfd: the loader has no name to open.
                            return Err(Errno::of(libc::EACCES));
                        };
                        let first = match self.arg_at(r.argv, 0)? {
                            0 => ReArg::Str(Vec::new()),
                            p => ReArg::Value(p),
                        };
                        let rest = self.args_after_first(r.argv)?;
                        (first, path, rest.into_iter().map(ReArg::Value).collect())
                    }
                };
                let mut v = vec![ReArg::Str(l.name.clone())];
                if l.argv0 {
                    v.extend([ReArg::Str(b"--argv0".to_vec()), first]);
                }
                v.push(path);
                v.extend(rest);
                (ReArg::Ptrs(v), l.file.as_fd())
            }
        };
        let nr = syscalls::number(Arch::native(), "execveat").ok_or(Errno::of(libc::EACCES))?;
        // Opened for reading (an `O_PATH` fd cannot be added to a task),
        // with the task's rights: an execute-only file is refused.
        let file =
            reopen(file, (libc::O_RDONLY | KERNEL_O_LARGEFILE) as u64).map_err(|e| errno(&e))?;
        if let Some(l) = &r.loader {
            let st = fstat(l.file.as_fd()).map_err(|e| errno(&e))?;
            self.s.exes.reissued(
                r.tgid,
                Program {
                    loader: (st.dev, st.ino),
                    file: r.program,
                    vpath: r.program_vpath,
                },
            );
        }
        log::debug!(
            "pid {}: exec of {} re-issued on the view's file{}",
            self.cx.pid(),
            crate::shown::bytes(r.path),
            if r.loader.is_some() {
                " through the view's ELF interpreter"
            } else {
                ""
            }
        );
        Ok(NotifAction::Reissue(Reissue {
            nr: u64::from(nr),
            args: vec![
                ReArg::File(0),
                ReArg::Value(r.ptr + r.path.len() as u64),
                argv,
                ReArg::Value(r.envp),
                ReArg::Value(libc::AT_EMPTY_PATH as u64),
            ],
            files: vec![file],
        }))
    }

    /// The pointer `argv[i]` of the caller's argument array (0 past its
    /// end or for no array).
    fn arg_at(&self, argv: u64, i: u64) -> Result<u64, Errno> {
        if argv == 0 {
            return Ok(0);
        }
        let mut w = [0u8; 8];
        self.cx
            .read_mem_into(argv + 8 * i, &mut w)
            .map_err(|e| mem_errno(&e))?;
        Ok(u64::from_ne_bytes(w))
    }

    /// The pointers `argv[1..]` of the caller's argument array.
    fn args_after_first(&self, argv: u64) -> Result<Vec<u64>, Errno> {
        /// Beyond this many the kernel's own limit refuses the exec.
        const MAX_ARGS: u64 = 1 << 16;
        let mut out = Vec::new();
        if argv == 0 {
            return Ok(out);
        }
        for i in 1..MAX_ARGS {
            match self.arg_at(argv, i)? {
                0 => return Ok(out),
                p => out.push(p),
            }
        }
        Err(Errno::of(libc::E2BIG))
    }

    // ---- unix socket paths ----

    /// The socket file a unix pathname names in the view (`connect`, a
    /// send): `ECONNREFUSED` for another kind of file, as the kernel.
    fn unix_socket(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        let (task, _acting) = self.task()?;
        let node = self.walk_followed(&task, path)?;
        if node.vpath.first() != Some(&b'/') {
            // An fd of the task's from outside the view (`/dev/fd/N`).
            return Err(Errno::of(libc::EACCES));
        }
        let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
        if st.mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::of(libc::ECONNREFUSED));
        }
        Ok(node.fd)
    }

    /// The directory of the view a `bind` to a unix pathname makes its
    /// socket in, and the name.
    fn unix_parent(&self, path: &[u8]) -> Result<(OwnedFd, Vec<u8>), Errno> {
        let (task, _acting) = self.task()?;
        let base = self.base(&task, CWD, path, false)?;
        let e = self
            .s
            .view
            .entry(Self::who(&task), &base, path, libc::EADDRINUSE)?;
        if e.slash || self.s.view.is_mount_point(&e.vpath()) {
            return Err(Errno::of(libc::EADDRINUSE));
        }
        if e.dir.read_only {
            return Err(erofs());
        }
        Ok((e.dir.fd, e.name))
    }

    // ---- names ----

    fn rename(&self, old: PathArg, new: PathArg, flags: u32) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let o = self.entry(&task, old, libc::EBUSY)?;
        let n = self.entry(&task, new, libc::EBUSY)?;
        let view = &self.s.view;
        if view.is_mount_point(&o.vpath()) || view.is_mount_point(&n.vpath()) {
            return Err(Errno::of(libc::EBUSY));
        }
        if o.dir.mount != n.dir.mount {
            return Err(Errno::of(libc::EXDEV));
        }
        if o.dir.read_only || n.dir.read_only {
            return Err(erofs());
        }
        with_c(&o.full_name(), |on| {
            with_c(&n.full_name(), |nn| {
                done(renameat2(
                    Some(o.dir.fd.as_fd()),
                    on,
                    Some(n.dir.fd.as_fd()),
                    nn,
                    flags,
                ))
            })
        })
    }

    fn entry(
        &self,
        task: &Task,
        (dirfd, ptr): PathArg,
        dot: i32,
    ) -> Result<super::view::Entry, Errno> {
        let path = read_path(self.cx, ptr)?;
        let base = self.base(task, dirfd, &path, false)?;
        self.s.view.entry(Self::who(task), &base, &path, dot)
    }

    fn link(&self, old: PathArg, new: PathArg, flags: i32) -> Result<NotifAction, Errno> {
        if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let (task, _acting) = self.task()?;
        let old_path = read_path(self.cx, old.1)?;
        let n = self.entry(&task, new, libc::EEXIST)?;
        if self.s.view.is_mount_point(&n.vpath()) {
            return Err(Errno::of(libc::EEXIST));
        }
        if n.dir.read_only {
            return Err(erofs());
        }
        let source = if old_path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            let node = self.own_fd(old.0)?;
            self.place_mount(&node)
                .map(|m| (node, m))
                .ok_or(Errno::of(libc::EXDEV))?
        } else if flags & libc::AT_SYMLINK_FOLLOW != 0 {
            let node = self.walk(
                &task,
                old.0,
                &old_path,
                How {
                    follow: true,
                    resolve: 0,
                },
            )?;
            let m = node.mount;
            (node, m)
        } else {
            let o = self.s.view.entry(
                Self::who(&task),
                &self.base(&task, old.0, &old_path, false)?,
                &old_path,
                libc::EPERM,
            )?;
            if self.s.view.is_mount_point(&o.vpath()) {
                return Err(Errno::of(libc::EXDEV));
            }
            if o.dir.mount != n.dir.mount {
                return Err(Errno::of(libc::EXDEV));
            }
            return with_c(&o.full_name(), |on| {
                with_c(&n.name, |nn| {
                    done(linkat(
                        Some(o.dir.fd.as_fd()),
                        on,
                        Some(n.dir.fd.as_fd()),
                        nn,
                        0,
                    ))
                })
            });
        };
        let (node, mount) = source;
        if mount != n.dir.mount {
            return Err(Errno::of(libc::EXDEV));
        }
        let proc = format!("/proc/self/fd/{}", node.fd.as_raw_fd());
        with_c(proc.as_bytes(), |p| {
            with_c(&n.name, |nn| {
                done(linkat(
                    None,
                    p,
                    Some(n.dir.fd.as_fd()),
                    nn,
                    libc::AT_SYMLINK_FOLLOW,
                ))
            })
        })
    }

    /// The mount an fd's file lies in (by its host path).
    fn place_mount(&self, node: &Node) -> Option<usize> {
        let host = crate::paths::path_of_fd(node.fd.as_fd())?;
        let vpath = self.s.view.virtual_of(&host)?;
        let who = Walker { tid: 0, tgid: 0 };
        let parent = match vpath.iter().rposition(|&b| b == b'/') {
            Some(0) => b"/".to_vec(),
            Some(i) => vpath[..i].to_vec(),
            None => return None,
        };
        self.s
            .view
            .walk(
                who,
                b"/",
                &parent,
                How {
                    follow: true,
                    resolve: 0,
                },
            )
            .ok()
            .map(|n| n.mount)
    }

    fn symlink(&self, target_ptr: u64, new: PathArg) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let target = read_path(self.cx, target_ptr)?;
        if target.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        let n = self.entry(&task, new, libc::EEXIST)?;
        if self.s.view.is_mount_point(&n.vpath()) {
            return Err(Errno::of(libc::EEXIST));
        }
        if n.dir.read_only {
            return Err(erofs());
        }
        with_c(&target, |t| {
            with_c(&n.full_name(), |nn| {
                done(symlinkat(t, Some(n.dir.fd.as_fd()), nn))
            })
        })
    }

    fn unlink(&self, path: PathArg, flags: i32) -> Result<NotifAction, Errno> {
        if flags & !libc::AT_REMOVEDIR != 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let (task, _acting) = self.task()?;
        let dot = if flags & libc::AT_REMOVEDIR != 0 {
            libc::EINVAL
        } else {
            libc::EISDIR
        };
        let e = self.entry(&task, path, dot)?;
        if self.s.view.is_mount_point(&e.vpath()) {
            return Err(Errno::of(libc::EBUSY));
        }
        if e.dir.read_only {
            return Err(erofs());
        }
        with_c(&e.full_name(), |name| {
            done(unlinkat(Some(e.dir.fd.as_fd()), name, flags))
        })
    }

    /// `mkdir*` (`mode` with `S_IFDIR`) and `mknod*`: regular files, FIFOs
    /// and sockets only (a device node would reach the host's devices).
    fn mknod(&self, path: PathArg, mode: u32, dev: u32) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let kind = mode & libc::S_IFMT;
        let dir = kind == libc::S_IFDIR;
        if !matches!(kind, 0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK) && !dir {
            return Err(Errno::of(libc::EPERM));
        }
        let e = self.entry(&task, path, libc::EEXIST)?;
        if e.slash && !dir {
            return Err(Errno::of(libc::ENOENT));
        }
        if self.s.view.is_mount_point(&e.vpath()) {
            return Err(Errno::of(libc::EEXIST));
        }
        if e.dir.read_only {
            return Err(erofs());
        }
        let perms = mode & 0o7777 & !task.umask();
        let r = with_c(&e.name, |name| {
            if dir {
                mkdirat(Some(e.dir.fd.as_fd()), name, perms)
            } else {
                mknodat(Some(e.dir.fd.as_fd()), name, kind | perms, dev)
            }
        });
        r.map_err(|err| errno(&err))?;
        if let Ok(fd) = super::view::open_name(e.dir.fd.as_fd(), &e.name) {
            fix_mode(fd.as_fd(), perms);
        }
        Ok(NotifAction::ReturnValue(0))
    }

    fn truncate(&self, ptr: u64, len: i64) -> Result<NotifAction, Errno> {
        let path = read_path(self.cx, ptr)?;
        let (task, _acting) = self.task()?;
        if len < 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let node = self.walk_followed(&task, &path)?;
        let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
        if st.is_dir() {
            return Err(Errno::of(libc::EISDIR));
        }
        if !st.is_file() {
            return Err(Errno::of(libc::EINVAL));
        }
        if node.read_only {
            return Err(erofs());
        }
        let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | KERNEL_O_LARGEFILE;
        let fd = reopen(node.fd.as_fd(), flags as u64).map_err(|e| errno(&e))?;
        done(ftruncate(fd.as_fd(), len))
    }

    /// A node for a metadata change (`EROFS` in a read-only mount).
    fn meta_node(&self, task: &Task, (dirfd, ptr): PathArg, flags: i32) -> Result<Node, Errno> {
        if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(Errno::of(libc::EINVAL));
        }
        let path = read_path(self.cx, ptr)?;
        let node = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            self.own_fd(dirfd)?
        } else {
            let how = How {
                follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                resolve: 0,
            };
            self.walk(task, dirfd, &path, how)?
        };
        if node.read_only {
            return Err(erofs());
        }
        Ok(node)
    }

    fn chmod(&self, path: PathArg, mode: u32, flags: i32) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let node = self.meta_node(&task, path, flags)?;
        let st = fstat(node.fd.as_fd()).map_err(|e| errno(&e))?;
        if st.is_symlink() {
            return Err(Errno::of(libc::EOPNOTSUPP));
        }
        let proc = format!("/proc/self/fd/{}", node.fd.as_raw_fd());
        with_c(proc.as_bytes(), |p| {
            done(crate::sys::path::chmod(p, mode & 0o7777))
        })
    }

    fn chown(&self, path: PathArg, uid: u64, gid: u64, flags: i32) -> Result<NotifAction, Errno> {
        let (task, _acting) = self.task()?;
        let node = self.meta_node(&task, path, flags)?;
        done(fchownat(
            Some(node.fd.as_fd()),
            c"",
            uid as u32,
            gid as u32,
            libc::AT_EMPTY_PATH,
        ))
    }

    fn utimes(&self, (dirfd, ptr): PathArg, t: Times, flags: i32) -> Result<NotifAction, Errno> {
        let times = self.read_times(t)?;
        let (task, _acting) = self.task()?;
        let node = if ptr == 0 && dirfd != CWD {
            // No path and a real fd (`futimens`, `futimesat(fd, NULL, ..)`):
            // the kernel acts on the program's fd itself, and takes no
            // flag there. With `AT_FDCWD` the missing path is `EFAULT`
            // (from the walk below), as in the kernel.
            if flags != 0 {
                return Err(Errno::of(libc::EINVAL));
            }
            let node = self.own_fd(dirfd)?;
            if node.read_only {
                return Err(erofs());
            }
            node
        } else {
            self.meta_node(&task, (dirfd, ptr), flags)?
        };
        done(utimensat(
            Some(node.fd.as_fd()),
            c"",
            times.as_ref(),
            libc::AT_EMPTY_PATH,
        ))
    }

    fn read_times(&self, t: Times) -> Result<Option<[libc::timespec; 2]>, Errno> {
        let (ptr, scale) = match t {
            Times::Utimbuf(p) => (p, 0),
            Times::Timeval(p) => (p, 1000),
            Times::Timespec(p) => (p, 1),
        };
        if ptr == 0 {
            return Ok(None);
        }
        let raw = self
            .cx
            .read_mem(ptr, 32.min(if scale == 0 { 16 } else { 32 }))
            .map_err(|e| mem_errno(&e))?;
        let w = |i: usize| i64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8"));
        let ts = |sec: i64, nsec: i64| libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        Ok(Some(match t {
            Times::Utimbuf(_) => [ts(w(0), 0), ts(w(1), 0)],
            Times::Timeval(_) => {
                for u in [w(1), w(3)] {
                    if !(0..1_000_000).contains(&u) {
                        return Err(Errno::of(libc::EINVAL));
                    }
                }
                [ts(w(0), w(1) * 1000), ts(w(2), w(3) * 1000)]
            }
            Times::Timespec(_) => [ts(w(0), w(1)), ts(w(2), w(3))],
        }))
    }

    /// `fchmod`/`fchown` on the program's fd: performed on a duplicate
    /// (another thread could put another file at that number), refused in
    /// a read-only mount.
    fn fd_meta(
        &self,
        fd: i32,
        f: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<()>,
    ) -> Result<NotifAction, Errno> {
        let (_task, _acting) = self.task()?;
        let node = self.own_fd(fd)?;
        if node.read_only {
            return Err(erofs());
        }
        done(f(node.fd.as_fd()))
    }
}

/// How a times argument is laid out.
#[derive(Clone, Copy, Debug)]
enum Times {
    Utimbuf(u64),
    Timeval(u64),
    Timespec(u64),
}

fn creates(flags: i32) -> bool {
    flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// The flags the supervisor opens with: the program's, without creation
/// and resolution flags, never a controlling terminal.
fn open_flags(flags: i32) -> i32 {
    (flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC))
        | libc::O_NOCTTY
        | KERNEL_O_LARGEFILE
}

/// Gives a new file the mode asked for (the supervisor's own umask may
/// have removed bits).
fn fix_mode(fd: BorrowedFd<'_>, mode: u32) {
    if let Ok(st) = fstat(fd) {
        if st.mode & 0o7777 != mode && !st.is_symlink() {
            let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            if let Err(e) = with_c(proc.as_bytes(), |p| crate::sys::path::chmod(p, mode)) {
                log::debug!("chmod of a created file to {mode:o}: {e}");
            }
        }
    }
}

/// An exec re-issued on the view's file ([`Op::redirect`]).
struct Redirect<'a> {
    dirfd: i32,
    /// The caller's path: its address and bytes.
    ptr: u64,
    path: &'a [u8],
    /// The caller's argv and envp pointers.
    argv: u64,
    envp: u64,
    /// The `#!` levels, outermost first: interpreter as written, argument.
    levels: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The program at the end of the chain, pinned.
    program: OwnedFd,
    /// Where the file the caller named is in the view (empty: a memfd).
    vpath: &'a [u8],
    /// Where the program is in the view.
    program_vpath: Vec<u8>,
    /// The caller's process.
    tgid: i32,
    /// The view's ELF interpreter of the program, when the kernel would
    /// load another file.
    loader: Option<Loader>,
}

/// An ELF interpreter of the view that the exec runs itself
/// ([`Op::redirect`]).
struct Loader {
    /// As the program names it (`PT_INTERP`).
    name: Vec<u8>,
    /// The view's file, pinned.
    file: OwnedFd,
    /// Whether it takes `--argv0 NAME` (glibc's since 2.33).
    argv0: bool,
}

/// Whether the loader `fd` takes `--argv0`: its bytes hold the option's
/// name as a string (a loader that does not know it would take it for the
/// program's path).
fn takes_argv0(fd: BorrowedFd<'_>) -> bool {
    /// Bound on what is read of a loader (glibc's is about 200 KiB).
    const MAX: u64 = 16 << 20;
    let Ok(f) = reopen(fd, (libc::O_RDONLY | KERNEL_O_LARGEFILE) as u64) else {
        return false;
    };
    let mut bytes = Vec::new();
    use std::io::Read;
    if std::fs::File::from(f)
        .take(MAX)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return false;
    }
    const NEEDLE: &[u8] = b"--argv0\0";
    bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// The errno the kernel's exec gives a file it cannot load, known from its
/// first bytes: `ENOEXEC` for an ELF file of another machine, kind or
/// program header size, or a file that is neither ELF nor a `#!` script
/// (unless `binfmt_misc` has handlers: it may run it). `None`: it may run.
fn not_loadable(fd: BorrowedFd<'_>) -> Option<i32> {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    const PHDR64_SIZE: u16 = 56;
    let head = read_head(fd)?;
    if head.starts_with(b"#!") {
        return None;
    }
    if !head.starts_with(b"\x7fELF") {
        return (!binfmt_misc_handlers()).then_some(libc::ENOEXEC);
    }
    if head.len() < 64 || head[4] != 2 {
        // Short, or 32-bit (the kernel's compat loader decides).
        return (head.len() < 64).then_some(libc::ENOEXEC);
    }
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let machine = if cfg!(target_arch = "x86_64") {
        EM_X86_64
    } else {
        EM_AARCH64
    };
    let fits = head[5] == 1
        && matches!(u16_at(0x10), ET_EXEC | ET_DYN)
        && u16_at(0x12) == machine
        && u16_at(0x36) == PHDR64_SIZE
        && u16_at(0x38) >= 1;
    (!fits).then_some(libc::ENOEXEC)
}

/// Whether `binfmt_misc` is mounted where the kernel shows it, enabled,
/// with a handler registered.
fn binfmt_misc_handlers() -> bool {
    const DIR: &str = "/proc/sys/fs/binfmt_misc";
    let enabled = std::fs::read(format!("{DIR}/status")).is_ok_and(|s| s.starts_with(b"enabled"));
    enabled
        && std::fs::read_dir(DIR).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name() != "status" && e.file_name() != "register")
        })
}

/// Whether `fd` is a memfd (its name, as the kernel gives it).
fn is_memfd(fd: BorrowedFd<'_>) -> bool {
    crate::paths::path_of_fd(fd).is_some_and(|p| p.as_os_str().as_bytes().starts_with(b"/memfd:"))
}

fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (fstat(a), fstat(b)) {
        (Ok(x), Ok(y)) => x.dev == y.dev && x.ino == y.ino,
        _ => false,
    }
}

/// The first bytes of a pinned file (`None`: it cannot be read), as
/// [`crate::script::read_head`] reads them.
fn read_head(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let st = fstat(fd).ok()?;
    if !st.is_file() {
        return Some(Vec::new());
    }
    let f = std::fs::File::from(reopen(fd, (libc::O_RDONLY | KERNEL_O_LARGEFILE) as u64).ok()?);
    crate::script::read_head(&f).ok()
}

/// The `PT_INTERP` path of the ELF file `fd` starting with `head`, found
/// as the exec freeze finds it ([`crate::script::elf_interpreter`]): the
/// two must agree on which file the kernel loads.
fn elf_interpreter(fd: BorrowedFd<'_>, head: &[u8]) -> Option<Vec<u8>> {
    let f = std::fs::File::from(reopen(fd, (libc::O_RDONLY | KERNEL_O_LARGEFILE) as u64).ok()?);
    crate::script::elf_interpreter(head, &f)
}

impl super::view::Entry {
    /// The name, with the trailing `/` it was given.
    fn full_name(&self) -> Vec<u8> {
        let mut n = self.name.clone();
        if self.slash {
            n.push(b'/');
        }
        n
    }
}
