//! Path denial: files and directories the sandboxed program cannot open,
//! execute, link, rename, symlink to, replace, remove, change the modes,
//! owners, times or attributes of, or create names in.
//!
//! Given to [`SandboxBuilder::deny_path`](crate::SandboxBuilder::deny_path)
//! (or shared and changed at run time through a [`DeniedPaths`] given to
//! [`SandboxBuilder::denied_paths`](crate::SandboxBuilder::denied_paths)),
//! a denied path is matched by name (normalised and canonical) and by file
//! identity (`st_dev`, `st_ino`), so `..`, symlinks, hard links that
//! already exist, relative paths and dirfds all lead to the same refusal,
//! `EACCES`. A denied directory denies everything beneath it.
//!
//! How each call is decided (where the program's Landlock domain refuses
//! the denied paths itself, `backstop`, an open beneath its rules, and a
//! removal whose parent directory lies beneath them, are answered
//! `CONTINUE` after one `stat`, and `execve`/`execveat` are not trapped:
//! the kernel refuses what the checks below would):
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
//! - `execve` and `execveat` are checked (the pinned executable, the `#!`
//!   interpreters of a script, a chain of them included, and the ELF
//!   interpreter (`PT_INTERP`) of the program the chain ends with,
//!   resolved as the kernel does) and then run by the kernel, which reads
//!   the path and the interpreters' names again: the exec freeze of the
//!   policy layer closes that window (its exec event checks the new
//!   image's executable and the files it mapped).
//!   `#!/usr/bin/env prog` names `env`; its own exec of `prog` is checked.
//! - `chmod`, `fchmodat`, `fchmodat2`, `chown`, `lchown`, `fchownat`,
//!   `utime`, `utimes`, `futimesat`, `utimensat`, `setxattr`, `lsetxattr`,
//!   `setxattrat`, `removexattr`, `lremovexattr`, `removexattrat` and
//!   `file_setattr` copy their arguments once and are performed by the
//!   supervisor on the pinned, checked file (a symlink that is not
//!   followed: by its name in its pinned parent). `mkdir`, `mkdirat`,
//!   `mknod` and `mknodat` are refused on a denied name or in a denied
//!   directory, and performed in the pinned parent with the task's umask.
//! - Without a network policy (a policy callback brings one) and without a
//!   user handler on `bind`, `bind` is performed on the duplicated
//!   socket with the copied address (for every family: a second thread
//!   could `dup2` an AF_UNIX socket onto the fd); a pathname AF_UNIX
//!   socket is refused in a denied directory. It is bound with the
//!   program's exact name (what `getsockname` and peers see), from the
//!   task's pinned working directory, by a thread that Landlock lets make
//!   socket files only beneath the checked directory (see
//!   `nodes::bind_unix`). A network policy's handlers own `bind` in some
//!   cases (a bind deny list, port remap, a chroot or work directory):
//!   they resolve where the name goes and make the same check and bind
//!   through `bind_unix`.
//!
//! The forms that take an fd (`fchmod`, `fchown`, `futimens` and
//! `utimensat` with a null path, `fsetxattr`, `fremovexattr`) are not
//! checked: the program's fd came from an open that was checked (or from
//! outside the sandbox, a choice the host made), so it names nothing the
//! program could not open. The `AT_EMPTY_PATH` forms of the calls above
//! are checked all the same.
//!
//! `io_uring_setup`, `open_by_handle_at`, `acct`, `swapon` and `uselib`
//! are refused (`EPERM`) while paths are denied: the opens they make
//! would not be trapped. Opening a procfs
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
//! and executable (`/proc/<other pid>/root/...`) fail with `ELOOP`;
//! opening a FIFO without `O_NONBLOCK` waits on the deferral pool (its
//! deadline applies); the kernel cannot inject an `O_PATH` fd, so an
//! `O_PATH` open of a regular file or directory gives a read-only fd (and
//! needs read permission), of anything else fails with `EACCES`. Reading metadata (`stat`, `statx`, `access`,
//! `getxattr`, `listxattr`, `readlink`, `file_getattr`) is not checked:
//! denied files can be seen to exist, not read. A script's `#!` line is
//! read by the supervisor before the kernel reads it again: a process
//! that can write the script can change the interpreter in between (the
//! exec freeze does not stop other processes; [`exec_image_denied`] lets
//! it check the new image at the exec event); an executable the
//! supervisor cannot read is refused (`EACCES`), as its interpreter
//! cannot be checked; interpreters chosen by `binfmt_misc` are not
//! checked. A name re-resolved in a pinned parent (`unlink`, `rename`, a
//! symlink's own attributes, the name of a bound socket) can be swapped
//! by another process between the check and the call, only for names the
//! sandbox could create, which are not denied. `connect` to a socket in a
//! denied directory is not checked. Path denial answers every open, link,
//! rename, symlink, unlink, truncate, metadata, mkdir and mknod call
//! itself, so user handlers on those calls never see them while paths are
//! denied (the network policy's `/etc/hosts` handler runs before it).

pub(crate) mod backstop;
pub(crate) mod creds;
mod deny;
pub(crate) mod fs_ioctl;
mod handlers;
mod metadata;
mod nodes;
mod onbehalf_open;
pub(crate) use onbehalf_open::{
    inject as inject_opened, open_checked, KERNEL_O_LARGEFILE, O_PATH_FLAGS, VALID_OPEN_FLAGS,
};
pub(crate) mod resolve;
mod shebang;
mod view;
mod watch;

use std::sync::Arc;

pub use deny::DeniedPaths;
pub(crate) use deny::{normalize_abs, FreeReads, FsLists};

/// What another feature may give an open that path denial performs for
/// the program, once the file is pinned and passed the checks: an fd of
/// its own instead of the file (determinism's virtual files). Found by
/// type among the running features' services ([`OpenHook`]).
pub(crate) trait ServeOpen: Send + Sync {
    /// The fd the open gets instead of `pinned` (whose `fstat` is `st`,
    /// opened with `flags`), or `None` to open the file itself.
    fn serve(
        &self,
        cx: &crate::handler::HandlerCtx<'_>,
        pinned: std::os::fd::BorrowedFd<'_>,
        st: &crate::sys::path::FileStat,
        flags: i32,
    ) -> Option<std::result::Result<std::os::fd::OwnedFd, crate::action::Errno>>;
}

/// The [`ServeOpen`] of a running feature, in its services.
pub(crate) struct OpenHook(pub(crate) Arc<dyn ServeOpen>);

/// A layered view of one directory (copy-on-write, `crate::cow`): the
/// hooks path denial's on-behalf calls take, so that the program's paths
/// beneath the directory name its upper layer, and nothing of the lower
/// directory is ever written on the program's behalf.
pub(crate) trait Layered: Send + Sync + std::fmt::Debug {
    /// The path the supervisor resolves for an absolute path the program
    /// gave (`None`: unchanged).
    fn rewrite(&self, path: &[u8]) -> Option<Vec<u8>>;
    /// The upper layer's directory for a pinned directory of the lower
    /// tree (a dirfd or working directory there), `None` if not lower.
    fn upper_of(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Option<std::result::Result<std::os::fd::OwnedFd, Errno>>;
    /// Whether the pinned file lies in the lower tree (never written).
    fn is_lower(&self, fd: std::os::fd::BorrowedFd<'_>) -> bool;
    /// Whether the pinned file is one of the supervisor's directories
    /// beside the layer (the held links, the state) or lies in one:
    /// never written, and no name made there, for the program.
    fn is_private(&self, fd: std::os::fd::BorrowedFd<'_>) -> bool;
    /// Whether the absolute `path` is the lower tree's or the upper
    /// tree's root or a directory holding one: renamed or removed, it
    /// would take the work directory (or its view) away and let another
    /// tree take its name; or one of the supervisor's directories beside
    /// them, a directory holding one, or a name in one (the held links).
    fn holds_layer(&self, path: &std::path::Path) -> bool;
    /// The lower file that the pinned upper file (`st` its `fstat`)
    /// stands for, pinned, if it is a placeholder of the layer (an empty
    /// file whose reads are served from the lower tree); `None` if not.
    fn origin(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        st: &crate::sys::path::FileStat,
    ) -> Option<std::result::Result<std::os::fd::OwnedFd, Errno>>;
    /// Before a change of the pinned file (`st` its `fstat`): the file to
    /// change instead, a private copy if it is a placeholder, or a lower
    /// file read through one (`keep_data`: with its contents). Fails
    /// closed.
    fn copy_up(
        &self,
        fd: std::os::fd::OwnedFd,
        st: &crate::sys::path::FileStat,
        keep_data: bool,
    ) -> std::result::Result<std::os::fd::OwnedFd, Errno>;
    /// Whether a read-only open of the absolute `path` may run as the
    /// kernel resolves it, without the supervisor: the path names nothing
    /// of the layer (see `cow` for why a racing rewrite of it cannot reach
    /// a write).
    fn reads_untouched(&self, _path: &[u8]) -> bool {
        false
    }
    /// Before the pinned file is truncated to `len` on the program's
    /// behalf: charges its growth to the layer's size cap (`ENOSPC` past
    /// it).
    fn charge_growth(
        &self,
        _fd: std::os::fd::BorrowedFd<'_>,
        _len: u64,
    ) -> std::result::Result<Charged, Errno> {
        Ok(Charged::default())
    }
    /// Before a new node is made in the pinned directory `fd`, or
    /// extended attributes are set on the pinned file `fd`: charges the
    /// `bytes` they take to the layer's size cap (`ENOSPC` past it).
    fn charge_node(
        &self,
        _fd: std::os::fd::BorrowedFd<'_>,
        _bytes: u64,
    ) -> std::result::Result<Charged, Errno> {
        Ok(Charged::default())
    }
    /// Whether a link or rename between the pinned `from` (the file
    /// linked, or the directory of the name renamed) and the pinned
    /// directory `to` crosses the border of the upper tree (one lies in
    /// it, the other not, or a path is unknown): the layer is then its own
    /// file system (`EXDEV`), so that every name of a file of the upper
    /// tree lies in it (its writes are charged to the size cap) and no
    /// file written outside it, uncharged, enters it by a name.
    fn crosses(
        &self,
        _from: std::os::fd::BorrowedFd<'_>,
        _to: std::os::fd::BorrowedFd<'_>,
    ) -> bool {
        false
    }
    /// What a new name for the pinned file `fd` adds to the layer's size
    /// cap beyond the name itself: the blocks of a file without a name
    /// that the cap does not count (an `O_TMPFILE`, or an unlinked file,
    /// linked back).
    fn naming(&self, _fd: std::os::fd::BorrowedFd<'_>) -> u64 {
        0
    }
    /// Makes `change`, the removal of the name `name` in the pinned
    /// directory `dir` or a rename over it, with what the layer needs
    /// around it: the size cap keeps a handle of the file that may lose
    /// its last name (it counts such a file while anything holds it).
    fn removing(
        &self,
        _dir: std::os::fd::BorrowedFd<'_>,
        _name: &std::ffi::CStr,
        change: &mut dyn FnMut(),
    ) {
        change()
    }
    /// Gives back a charge whose call failed.
    fn refund(&self, _charged: Charged) {}
    /// Keeps a charge whose call was made.
    fn settled(&self, _charged: Charged) {}
    /// A name was removed or replaced, or a file truncated, on the
    /// program's behalf: space may have been freed.
    fn freed(&self) {}
}

/// What a charge to a layer's size cap took: the bytes, and for a file's
/// growth, the file and the range of its end charged. In flight until its
/// call is settled or the charge refunded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Charged {
    /// The bytes charged.
    pub(crate) bytes: u64,
    /// For a file's growth: (inode, the end charged from, the end charged
    /// to).
    pub(crate) file: Option<(u64, u64, u64)>,
}

/// A charge for a call made on the program's behalf, given back when
/// dropped (the call failed: nothing was added) unless [`settled`](Self::settle)
/// by a success.
#[must_use = "dropped, the charge is given back"]
pub(crate) struct Charge<'a> {
    layer: Option<&'a dyn Layered>,
    charged: Charged,
}

impl<'a> Charge<'a> {
    /// Charges a new node or extended attributes (`bytes`) at the pinned
    /// `fd` to `layer`, if there is one.
    pub(crate) fn node(
        layer: Option<&'a std::sync::Arc<dyn Layered>>,
        fd: std::os::fd::BorrowedFd<'_>,
        bytes: u64,
    ) -> std::result::Result<Charge<'a>, Errno> {
        Charge::made(layer, |l| l.charge_node(fd, bytes))
    }

    /// Charges the growth of the pinned file `fd` to `len` bytes.
    pub(crate) fn growth(
        layer: Option<&'a std::sync::Arc<dyn Layered>>,
        fd: std::os::fd::BorrowedFd<'_>,
        len: u64,
    ) -> std::result::Result<Charge<'a>, Errno> {
        Charge::made(layer, |l| l.charge_growth(fd, len))
    }

    /// The charge `charge` makes to `layer`, if there is one.
    fn made(
        layer: Option<&'a std::sync::Arc<dyn Layered>>,
        charge: impl FnOnce(&dyn Layered) -> std::result::Result<Charged, Errno>,
    ) -> std::result::Result<Charge<'a>, Errno> {
        let layer = layer.map(|l| &**l);
        let charged = match layer {
            Some(l) => charge(l)?,
            None => Charged::default(),
        };
        Ok(Charge { layer, charged })
    }

    /// Keeps the charge if the call `r` succeeded, else gives it back.
    pub(crate) fn settle<T, E>(self, r: &std::result::Result<T, E>) {
        if r.is_ok() {
            if let Some(l) = self.layer {
                l.settled(self.charged);
            }
            std::mem::forget(self);
        }
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.layer {
            l.refund(self.charged);
        }
    }
}

impl std::fmt::Debug for Charge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("charged", &self.charged)
            .finish_non_exhaustive()
    }
}

/// What a new directory, or a symlink whose target does not fit in its
/// inode, takes at least (one block), for the layer's size cap.
const NODE_BYTES: u64 = 4096;

/// What a new name takes in its directory, for the layer's size cap: an
/// ext4 entry (8 bytes and the name, to 4 bytes), twice (the blocks of a
/// large directory are about half full after their splits).
pub(crate) fn entry_bytes(name: &[u8]) -> u64 {
    2 * ((8 + name.len() as u64 + 3) & !3)
}

/// What an extended attribute may take (a block of its own, beyond what
/// fits in the inode), for the layer's size cap.
pub(crate) fn xattr_bytes(name: &[u8], value: &[u8]) -> u64 {
    (name.len() as u64 + value.len() as u64).div_ceil(NODE_BYTES) * NODE_BYTES
}

/// The [`Layered`] view of a running sandbox, in its services.
pub(crate) struct LayerHook(pub(crate) Arc<dyn Layered>);

pub(crate) use creds::CredCache;
pub(crate) use deny::fd_path;
pub(crate) use handlers::report_denied;
pub(crate) use nodes::{bind_unix, UnixBind};
pub(crate) use resolve::{as_supervisor, read_path, Errno, Task};

/// Reopens our `fd` through `/proc/self/fd` with `flags`.
pub(crate) fn reopen_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    flags: i32,
) -> std::io::Result<std::os::fd::OwnedFd> {
    resolve::reopen(fd, flags as u64)
}

/// Opens a directory path the supervisor chose (`/proc/<tid>/cwd`) as
/// `O_PATH`, magic links allowed, by its exact bytes.
pub(crate) fn open_trusted_dir(
    path: &(impl AsRef<std::ffi::OsStr> + ?Sized),
) -> std::io::Result<std::os::fd::OwnedFd> {
    resolve::open_trusted(path, libc::O_DIRECTORY)
}

use crate::error::Result;
use crate::filter::FilterBuilder;
use crate::handler::Handler;
use crate::supervisor::enforcement::{Enforcement, Install};

/// The builtin handlers that enforce `denied`, by syscall number. With
/// `with_bind` (no network policy, whose handlers own `bind`, and no user
/// handler on it), `bind` is
/// among them: performed on the program's behalf, a pathname AF_UNIX
/// socket refused in a denied directory.
pub(crate) fn builtins(denied: &Arc<DeniedPaths>, with_bind: bool) -> Vec<(u32, Arc<dyn Handler>)> {
    handlers::builtins(denied, with_bind)
}

/// The handlers that keep `creds` current across the program's own
/// credential changes (for another feature acting for the program with
/// [`resolve::Task::read`], as `chroot` does).
pub(crate) fn cred_changes(creds: &Arc<creds::CredCache>) -> Vec<(u32, Arc<dyn Handler>)> {
    handlers::cred_changes(creds)
}

/// The calls that change a file's metadata by path, which Landlock does
/// not restrict: under file system allow lists alone, path denial takes
/// only these (and the credential changes its cache follows), refusing
/// them outside the write paths.
const METADATA_CALLS: &[&str] = &[
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "removexattr",
    "lremovexattr",
    "setxattrat",
    "removexattrat",
    "file_setattr",
];

/// Which calls path denial takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathScope {
    /// Every path call.
    All,
    /// Only the metadata calls (file system allow lists without denied
    /// paths: the Landlock domain holds the rest in the kernel).
    Metadata,
    /// Only the opens that are not a plain read, and the credential
    /// changes its cache follows: path denial is there for argv safety
    /// alone (an empty, fixed set; nothing else decides by path; see
    /// [`FreeReads::Always`]), to refuse an open of a procfs
    /// `mem` file for writing. Such an open has a write access mode, which
    /// `open` and `openat` carry in a register: the filter traps those
    /// ([`onbehalf_open::writing_cases`]) and lets a read-only open run
    /// untrapped (the `$PATH` searches, loaders and imports of a build:
    /// most of its opens). `creat` and `openat2` (whose flags are in
    /// memory) stay trapped. Links, renames, metadata, `mkdir`, `bind`
    /// and exec decide nothing with nothing denied: not trapped for path
    /// denial (exec is argv safety's).
    WriteOpens,
}

/// Path denial, as a feature of the sandbox's plan: its filter rules and
/// builtin handlers (on-behalf opens and the path calls).
pub(crate) struct PathDenial {
    pub(crate) set: Arc<DeniedPaths>,
    /// `bind` is path denial's (no network policy or user handler owns it).
    pub(crate) with_bind: bool,
    /// Which calls it takes.
    pub(crate) scope: PathScope,
}

impl Enforcement for PathDenial {
    fn rules(&self, filter: &mut FilterBuilder) -> Result<()> {
        install(filter)?;
        // With paths denied: `fanotify_init` too (a mark on a denied
        // file, or on the mount or file system that holds it, tells of
        // its use, and of the names made in a denied directory; no mark
        // can be made on-behalf on a pinned file of the program's
        // choosing for every kind). `inotify_add_watch` is made
        // on-behalf instead (`watch`).
        if self.scope == PathScope::All {
            filter.refuse_undecided(&["fanotify_init"], libc::EPERM)?;
        }
        Ok(())
    }

    fn builtins(&self, install: &mut Install<'_>) -> Result<()> {
        let metadata: Vec<u32> = METADATA_CALLS
            .iter()
            .chain(handlers::CRED_CHANGES.iter())
            .filter_map(|n| crate::syscalls::number(crate::arch::Arch::native(), n))
            .collect();
        let number = |n: &str| crate::syscalls::number(crate::arch::Arch::native(), n);
        let exec: Vec<u32> = ["execve", "execveat"]
            .iter()
            .filter_map(|n| number(n))
            .collect();
        let creds: Vec<u32> = handlers::CRED_CHANGES
            .iter()
            .filter_map(|n| number(n))
            .collect();
        // The opens whose flags are a register: (number, argument index).
        let flags_at: Vec<(u32, u8)> = [("open", 1), ("openat", 2)]
            .iter()
            .filter_map(|&(n, i)| Some((number(n)?, i)))
            .collect();
        let opens: Vec<u32> = ["open", "creat", "openat", "openat2"]
            .iter()
            .filter_map(|n| number(n))
            .collect();
        for (nr, h) in builtins(&self.set, self.with_bind) {
            // Under the kernel backstop, Landlock checks every file an
            // exec opens.
            if self.set.has_backstop() && exec.contains(&nr) {
                continue;
            }
            match self.scope {
                PathScope::All => install.builtin(nr, h)?,
                PathScope::Metadata if metadata.contains(&nr) => install.builtin(nr, h)?,
                PathScope::WriteOpens if creds.contains(&nr) => install.builtin(nr, h)?,
                PathScope::WriteOpens if opens.contains(&nr) => {
                    match flags_at.iter().find(|(n, _)| *n == nr) {
                        Some(&(_, i)) => {
                            install.builtin_if(nr, h, onbehalf_open::writing_cases(i))?
                        }
                        None => install.builtin(nr, h)?,
                    }
                }
                PathScope::Metadata | PathScope::WriteOpens => {}
            }
        }
        Ok(())
    }
}

/// The view rules of path denial: last in the plan, since these refusals
/// go in front of every rule and handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathView;

impl Enforcement for PathView {
    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        install_view(install.filter)
    }
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

/// Whether the image task `pid` now runs (`/proc/<pid>/exe`) is denied;
/// for an exec freeze to call at the exec event, when the new image is in
/// place: for a script, the image is its final interpreter, so this
/// catches a `#!` line rewritten after [`check_exec`] read it. An image
/// that cannot be looked at counts as denied.
pub fn exec_image_denied(pid: u32, denied: &DeniedPaths) -> bool {
    match resolve::open_trusted(&format!("/proc/{pid}/exe"), 0) {
        Ok(fd) => denied.check_fd(std::os::fd::AsFd::as_fd(&fd)),
        Err(e) => {
            log::warn!(
                "the new image of pid {pid} cannot be looked at ({e}); treating it as denied"
            );
            true
        }
    }
}

/// The filter rules that keep the program's view of the file system the
/// supervisor's (see `view`): `chroot`, mounts and new mount or user
/// namespaces refused with `EPERM`, in front of any other rule. Call it
/// after every other rule is in.
pub(crate) fn install_view(filter: &mut FilterBuilder) -> Result<()> {
    view::install(filter)
}

/// Filter rules of path denial: `io_uring_setup` (its opens are not
/// trapped), `open_by_handle_at` (opens by inode, bypassing paths), and
/// `acct`, `swapon` and `uselib` (the kernel opens the file they name and
/// writes, swaps to or maps it) refused with `EPERM`.
pub(crate) fn install(filter: &mut FilterBuilder) -> Result<()> {
    filter.refuse_undecided(crate::filter::IO_URING, libc::EPERM)?;
    filter.refuse_undecided(
        &["open_by_handle_at", "acct", "swapon", "uselib"],
        libc::EPERM,
    )
}

/// The absolute path of an open fd, as `/proc/self/fd` shows it.
pub(crate) fn path_of_fd(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::path::PathBuf> {
    deny::fd_path(fd)
}
