//! The layered view of one work directory: the upper tree, built as a
//! shadow of the lower one (directories made, symlinks made again, each
//! regular file a placeholder: an empty file the layer knows by inode
//! that stands for the lower file, whose bytes the supervisor serves),
//! the rewriting of the program's paths into it, and the copy-up of a
//! placeholder before its first change. Path denial's on-behalf calls use
//! it through [`Layered`]; nothing here runs the program's calls itself.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};

use crate::action::Errno;
use crate::paths::{fd_path, Charged, DeniedPaths, Layered};
use crate::sys::fs::{openat2, OpenHow, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS};
use crate::sys::path::{fstat, FileStat};

/// Whether a process of a sandbox with this cgroup membership (`None`:
/// not known yet; `Some(None)`: no cgroup) may still run.
pub(crate) fn survivors_in(members: Option<&Option<crate::sys::cgroup::Members>>) -> bool {
    match members {
        // A list that cannot be read may hold a survivor; a cgroup
        // removed (only an empty one can be) holds none.
        Some(Some(m)) => match m.try_pids() {
            Ok(pids) => !pids.is_empty(),
            Err(e) => e.raw_os_error() != Some(libc::ENOENT),
        },
        _ => true,
    }
}

/// `RESOLVE_NO_SYMLINKS`.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// The lower file a placeholder stands for.
#[derive(Debug)]
struct Origin {
    /// Its inode on the lower device.
    ino: u64,
    /// Its path relative to the work directory.
    rel: Box<Path>,
    /// Its other names there (hard links), which share the placeholder.
    also: Box<[Box<Path>]>,
}

impl Origin {
    /// Whether `r` (relative to the work directory) is one of its names.
    fn named(&self, r: &Path) -> bool {
        *self.rel == *r || self.also.iter().any(|a| **a == *r)
    }
}

/// The view: where the lower and upper trees are, and which files of the
/// upper one are placeholders for lower files.
pub(crate) struct Layer {
    /// The work directory, canonical.
    pub(crate) lower: PathBuf,
    /// The work directory as the caller named it, when not canonical
    /// (paths the program gives in that form are rewritten too).
    alias: Option<PathBuf>,
    /// The upper tree, canonical.
    pub(crate) upper: PathBuf,
    /// The upper tree, pinned (copy-ups resolve beneath it).
    upper_fd: OwnedFd,
    /// The work directory, pinned (placeholders' files open beneath it).
    lower_fd: OwnedFd,
    /// `st_dev` of the lower tree.
    dev: u64,
    /// `st_dev` of the upper tree.
    upper_dev: u64,
    /// The placeholders, by inode of the upper device: never holding
    /// data, read from their origin, copied up before any change.
    placeholders: HashMap<u64, Origin>,
    /// The work directory's sockets, made anew in the upper tree (no
    /// listener behind them), by upper inode: their change time then and
    /// their path (a `connect` to one reaches the work directory's).
    sockets: HashMap<u64, ((i64, i64), Box<Path>)>,
    /// Names for copy-up temporaries.
    serial: AtomicU64,
    /// The bytes the layer may hold (`None`: no cap); see `quota`.
    pub(crate) quota: Option<super::quota::Quota>,
    /// The path denial the layer is held to (its checks of a
    /// placeholder's origin before an exec's copy-up).
    denied: OnceLock<Weak<DeniedPaths>>,
    /// Copies made for an exec, by upper inode: the lower inode they
    /// copied and their `ctime` then (unchanged since: the same bytes).
    exec_copies: parking_lot::Mutex<HashMap<u64, (u64, i64, i64)>>,
    /// The supervisor's own directories beside the upper tree (the held
    /// links, the state directory): never read without the supervisor.
    private: OnceLock<Vec<PathBuf>>,
    /// The sandbox's cgroup membership, set when it starts (`None` inside:
    /// no cgroup holds the sandbox, so a process of it may outlive it).
    members: OnceLock<Option<crate::sys::cgroup::Members>>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .field("placeholders", &self.placeholders.len())
            .finish()
    }
}

impl Layer {
    /// Records the sandbox's cgroup membership (`None`: no cgroup).
    pub(crate) fn set_members(&self, members: Option<crate::sys::cgroup::Members>) {
        let _ = self.members.set(members);
    }

    /// Whether a process of the sandbox may still run, and so hold a file
    /// of the layer in a way no scan sees (an fd in flight in a socket):
    /// true without a cgroup, or while the cgroup still lists a process.
    pub(crate) fn survivors_possible(&self) -> bool {
        survivors_in(self.members.get())
    }

    /// Builds the upper tree `upper` (which must not exist) as a shadow of
    /// `lower` (canonical; `given` as the caller named it), holding a
    /// second link to each placeholder in `held` (a new directory on the
    /// same file system).
    pub(crate) fn build(
        lower: &Path,
        given: &Path,
        upper: &Path,
        held: &Path,
        quota: Option<u64>,
    ) -> io::Result<Layer> {
        let dev = fs::metadata(lower)?.dev();
        fs::create_dir(upper)?;
        fs::create_dir(held)?;
        let held_fd = open_dir(None, held)?;
        let mut shadow = Shadow {
            dev,
            held: held_fd,
            n: 0,
            made: Vec::new(),
            linked: HashMap::new(),
            sockets: Vec::new(),
        };
        shadow.dir(lower, upper, Path::new(""))?;
        // Out of reach of a program without privileges (the layer never
        // resolves paths there).
        fs::set_permissions(held, fs::Permissions::from_mode(0o000))?;
        let upper = fs::canonicalize(upper)?;
        let upper_fd = open_dir(None, &upper)?;
        let upper_dev = fstat(upper_fd.as_fd())?.dev;
        let lower_fd = open_dir(None, lower)?;
        let placeholders: HashMap<u64, Origin> = shadow
            .made
            .into_iter()
            .map(|(up_ino, ino, rel, also)| {
                (
                    up_ino,
                    Origin {
                        ino,
                        rel: rel.into_boxed_path(),
                        also: also.into_iter().map(PathBuf::into_boxed_path).collect(),
                    },
                )
            })
            .collect();
        let quota = quota.map(|cap| {
            super::quota::Quota::new(cap, upper_dev, &upper, &|ino| {
                placeholders.contains_key(&ino)
            })
        });
        let alias = (given != lower && given.is_absolute()).then(|| given.to_path_buf());
        let sockets = shadow
            .sockets
            .into_iter()
            .map(|(ino, ctime, rel)| (ino, (ctime, rel.into_boxed_path())))
            .collect();
        Ok(Layer {
            lower: lower.to_path_buf(),
            alias,
            upper,
            upper_fd,
            lower_fd,
            dev,
            upper_dev,
            placeholders,
            sockets,
            serial: AtomicU64::new(0),
            quota,
            denied: OnceLock::new(),
            exec_copies: parking_lot::Mutex::new(HashMap::new()),
            private: OnceLock::new(),
            members: OnceLock::new(),
        })
    }

    /// Holds the layer to `denied` (set once, by `WorkDir::hold`).
    pub(crate) fn set_denied(&self, denied: &std::sync::Arc<DeniedPaths>) {
        let _ = self.denied.set(std::sync::Arc::downgrade(denied));
    }

    /// Names the supervisor's directories beside the upper tree (set
    /// once, by `WorkDir::open`).
    pub(crate) fn set_private(&self, dirs: Vec<PathBuf>) {
        let _ = self.private.set(dirs);
    }

    /// Whether a read-only open of the absolute path `path` names nothing
    /// the layer answers for: not beneath the work directory (either
    /// name), the upper tree or the supervisor's directories beside it,
    /// and not in `/proc` (links there name the upper tree) or `/dev/fd`,
    /// compared after `.` and `..` are removed. Symlinks are not followed:
    /// one outside that leads into the work directory reads it as it was,
    /// as the supervisor's own open of such a path does.
    fn outside(&self, path: &[u8]) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let Some(private) = self.private.get() else {
            return false;
        };
        let norm = crate::paths::normalize_abs(Path::new(std::ffi::OsStr::from_bytes(path)));
        let roots = [&self.lower, &self.upper]
            .into_iter()
            .chain(self.alias.as_ref())
            .chain(private);
        let special = [Path::new("/proc"), Path::new("/dev/fd")];
        !roots
            .map(PathBuf::as_path)
            .chain(special)
            .any(|r| norm.starts_with(r))
    }

    /// Whether `st` is one of the layer's placeholders.
    pub(crate) fn is_placeholder(&self, st: &FileStat) -> bool {
        st.dev == self.upper_dev && self.placeholders.contains_key(&st.ino)
    }

    /// The work directory's socket that the upper file `fd` was made for
    /// (pinned, `O_PATH`), if `fd` is that socket made anew and unchanged
    /// since (the same inode and change time).
    pub(crate) fn socket_origin(&self, fd: BorrowedFd<'_>) -> Option<io::Result<OwnedFd>> {
        if self.sockets.is_empty() {
            return None;
        }
        let m = fd
            .try_clone_to_owned()
            .and_then(|f| fs::File::from(f).metadata())
            .ok()?;
        if m.dev() != self.upper_dev || !m.file_type().is_socket() {
            return None;
        }
        let (ctime, rel) = self.sockets.get(&m.ino())?;
        if *ctime != (m.ctime(), m.ctime_nsec()) {
            return None;
        }
        Some(openat2(
            Some(self.lower_fd.as_fd()),
            &cpath(rel),
            &OpenHow {
                flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
            },
        ))
    }

    /// Whether the regular file `fd` (`st` its `fstat`) is a file of the
    /// upper tree, by one read of its path; one of the upper device whose
    /// path cannot be read counts as one (fails closed).
    pub(crate) fn is_upper_file(
        &self,
        fd: BorrowedFd<'_>,
        st: &crate::sys::path::FileStat,
    ) -> bool {
        match fd_path(fd) {
            Some(p) => p.starts_with(&self.upper),
            None => st.dev == self.upper_dev,
        }
    }

    /// Whether `(dev, ino)` is one of the layer's placeholders.
    pub(crate) fn is_placeholder_id(&self, dev: u64, ino: u64) -> bool {
        dev == self.upper_dev && self.placeholders.contains_key(&ino)
    }

    /// Whether a file of device `dev` is the layer's or DIR's (a file
    /// system whose regular files hold what their size says, unlike
    /// `/proc`'s).
    pub(crate) fn holds_dev(&self, dev: u64) -> bool {
        dev == self.dev || dev == self.upper_dev
    }

    /// Whether the inode `ino` of the upper device is a placeholder.
    pub(crate) fn is_placeholder_ino(&self, ino: u64) -> bool {
        self.placeholders.contains_key(&ino)
    }

    /// Whether the file `(dev, ino)` is the lower file the placeholder
    /// `st` stands for.
    pub(crate) fn is_origin_of(&self, st: &FileStat, dev: u64, ino: u64) -> bool {
        dev == self.dev
            && st.dev == self.upper_dev
            && self.placeholders.get(&st.ino).is_some_and(|o| o.ino == ino)
    }

    /// The lower file the placeholder with upper inode `ino` stands for,
    /// pinned (`O_PATH`), or `None` if `ino` is no placeholder.
    fn origin_of(&self, ino: u64) -> Option<io::Result<OwnedFd>> {
        let o = self.placeholders.get(&ino)?;
        Some((|| {
            let fd = openat2(
                Some(self.lower_fd.as_fd()),
                &cpath(&o.rel),
                &OpenHow {
                    flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                    mode: 0,
                    resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
                },
            )?;
            let st = fstat(fd.as_fd())?;
            if !st.is_file() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            if st.ino != o.ino {
                log::debug!(
                    "{}: the work directory's file changed during the run",
                    o.rel.display()
                );
            }
            Ok(fd)
        })())
    }

    /// The path relative to the upper tree of a pinned file, if it lies
    /// there.
    pub(crate) fn upper_rel(&self, fd: BorrowedFd<'_>) -> Option<PathBuf> {
        let p = fd_path(fd)?;
        p.strip_prefix(&self.upper).ok().map(Path::to_path_buf)
    }

    /// Opens `rel` (relative, no symlinks) beneath the upper tree.
    fn open_upper(&self, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        openat2(Some(self.upper_fd.as_fd()), &cpath(rel), &how)
    }

    /// The placeholder that stands, at the same path of the upper tree,
    /// for the pinned lower file `fd` (`st`), if there is one.
    fn placeholder_for_lower(&self, fd: BorrowedFd<'_>, st: &FileStat) -> Option<OwnedFd> {
        if st.dev != self.dev || !st.is_file() {
            return None;
        }
        let rel = fd_path(fd)?.strip_prefix(&self.lower).ok()?.to_path_buf();
        let up = self
            .open_upper(&rel, libc::O_PATH | libc::O_NOFOLLOW)
            .ok()?;
        let ust = fstat(up.as_fd()).ok()?;
        self.is_origin_of(&ust, st.dev, st.ino).then_some(up)
    }

    /// Copies the placeholder `fd` (`st`) up: a private file with its
    /// origin's mode, owner, times and (`keep_data`) bytes, renamed over
    /// it; returns the new file, pinned.
    fn copy_up_inner(&self, fd: OwnedFd, st: &FileStat, keep_data: bool) -> io::Result<OwnedFd> {
        let rel = self
            .upper_rel(fd.as_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?
            .to_owned();
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = self.open_upper(parent_rel, libc::O_PATH | libc::O_DIRECTORY)?;
        let origin = self
            .origin_of(st.ino)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))??;
        let src = crate::paths::reopen_fd(origin.as_fd(), libc::O_RDONLY)?;
        let src = fs::File::from(src);
        let meta = src.metadata()?;
        let charged = match &self.quota {
            Some(q) => q.charge(if keep_data {
                super::quota::growth(0, meta.len())
            } else {
                0
            })?,
            None => Charged::default(),
        };
        // A copy that fails adds nothing.
        let refund = || {
            if let Some(q) = &self.quota {
                q.refund(charged);
            }
        };
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let tmp_name = super::storage::hidden_name(
            name.as_ref(),
            &format!(".unotify-copyup.{}.{n}", std::process::id()),
        );
        let tmp = openat2(
            Some(parent.as_fd()),
            &cpath(Path::new(&tmp_name)),
            &OpenHow {
                flags: (libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_CLOEXEC
                    | libc::O_NOFOLLOW) as u64,
                mode: 0o600,
                resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            },
        )
        .inspect_err(|_| refund())?;
        let mut out = fs::File::from(tmp);
        let result = (|| -> io::Result<()> {
            if keep_data {
                io::copy(&mut (&src), &mut out)?;
            }
            let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
            // After the owner and the bytes (either would clear a file
            // capability), before the mode (an access ACL sets it too).
            copy_xattrs(src.as_fd(), out.as_fd());
            out.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            if keep_data {
                let times = fs::FileTimes::new()
                    .set_accessed(meta.accessed()?)
                    .set_modified(meta.modified()?);
                out.set_times(times)?;
            }
            // Only the placeholder is replaced (a name the program swapped
            // meanwhile for another file is left alone: the copy is
            // dropped and the call fails).
            let now = crate::sys::path::fstatat(
                Some(parent.as_fd()),
                &cpath(Path::new(&name)),
                libc::AT_SYMLINK_NOFOLLOW,
            )?;
            if now.dev != st.dev || now.ino != st.ino {
                return Err(io::Error::from_raw_os_error(libc::EAGAIN));
            }
            crate::sys::path::renameat2(
                Some(parent.as_fd()),
                &cpath(Path::new(&tmp_name)),
                Some(parent.as_fd()),
                &cpath(Path::new(&name)),
                0,
            )
        })();
        if let Err(e) = result {
            let _ =
                crate::sys::path::unlinkat(Some(parent.as_fd()), &cpath(Path::new(&tmp_name)), 0);
            refund();
            return Err(e);
        }
        if let Some(q) = &self.quota {
            q.settle(charged);
        }
        let fresh = openat2(
            Some(parent.as_fd()),
            &cpath(Path::new(&name)),
            &OpenHow {
                flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            },
        )?;
        // Other names the program linked to the placeholder (beyond the
        // held link) follow the copy: one file, as on a real file system.
        if fstat(fd.as_fd()).is_ok_and(|now| now.nlink > 1) {
            self.relink_dir(Path::new(""), st.ino, fresh.as_fd())?;
        }
        Ok(fresh)
    }

    /// Puts a link to `fresh` in place of every name of the placeholder
    /// `ino` beneath the upper directory `rel` (each through a temporary
    /// name renamed over it, so the name never goes missing).
    fn relink_dir(&self, rel: &Path, ino: u64, fresh: BorrowedFd<'_>) -> io::Result<()> {
        use std::os::unix::fs::DirEntryExt;
        let dir = self.open_upper(rel, libc::O_PATH | libc::O_DIRECTORY)?;
        // Listed through the pinned directory, not by its path again (a
        // name swapped meanwhile for a symlink would list another tree).
        let Ok(entries) = fs::read_dir(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        )) else {
            return Ok(());
        };
        let src = CString::new(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fresh)
        ))
        .unwrap_or_default();
        for entry in entries {
            let entry = entry?;
            let ft = entry.file_type()?;
            let name = entry.file_name();
            if ft.is_dir() {
                self.relink_dir(&rel.join(&name), ino, fresh)?;
                continue;
            }
            if !ft.is_file() || entry.ino() != ino {
                continue;
            }
            let n = self.serial.fetch_add(1, Ordering::Relaxed);
            let tmp = cpath(Path::new(&super::storage::hidden_name(
                &name,
                &format!(".unotify-relink.{}.{n}", std::process::id()),
            )));
            crate::sys::path::linkat(None, &src, Some(dir.as_fd()), &tmp, libc::AT_SYMLINK_FOLLOW)?;
            let name = cpath(Path::new(&name));
            let swapped =
                crate::sys::path::fstatat(Some(dir.as_fd()), &name, libc::AT_SYMLINK_NOFOLLOW)
                    .and_then(|now| {
                        if now.dev != self.upper_dev || now.ino != ino {
                            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                        }
                        crate::sys::path::renameat2(
                            Some(dir.as_fd()),
                            &tmp,
                            Some(dir.as_fd()),
                            &name,
                            0,
                        )
                    });
            if let Err(e) = swapped {
                let _ = crate::sys::path::unlinkat(Some(dir.as_fd()), &tmp, 0);
                log::debug!("a second name of a copied-up file: {e}");
            }
        }
        Ok(())
    }

    /// Copies up every placeholder of the upper tree that is not at its
    /// origin's path (`all`: every one), so that the tree holds what the
    /// program sees: before the change set is taken (a lower file renamed
    /// or linked elsewhere) or the tree is kept.
    pub(crate) fn materialize(&self, all: bool) -> io::Result<()> {
        self.materialize_dir(Path::new(""), all)
    }

    fn materialize_dir(&self, rel: &Path, all: bool) -> io::Result<()> {
        for entry in fs::read_dir(self.upper.join(rel))? {
            let entry = entry?;
            let r = rel.join(entry.file_name());
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.materialize_dir(&r, all)?;
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let fd = self.open_upper(&r, libc::O_PATH | libc::O_NOFOLLOW)?;
            let st = fstat(fd.as_fd())?;
            let Some(o) = self
                .placeholders
                .get(&st.ino)
                .filter(|_| st.dev == self.upper_dev)
            else {
                continue;
            };
            if all || !o.named(&r) {
                self.copy_up_inner(fd, &st, true)?;
            }
        }
        Ok(())
    }

    /// Whether the upper entry `rel` (`st`) is the placeholder of the
    /// lower file at the same path (unchanged, without reading it).
    pub(crate) fn unchanged_placeholder(&self, rel: &Path, dev: u64, ino: u64) -> bool {
        dev == self.upper_dev && self.placeholders.get(&ino).is_some_and(|o| o.named(rel))
    }

    /// Answers a stat of the placeholder `ino`: its origin's `fstatat`
    /// bytes (`None`: not a placeholder).
    pub(crate) fn origin_stat(&self, ino: u64) -> Option<io::Result<Vec<u8>>> {
        let fd = self.origin_of(ino)?;
        Some(fd.and_then(|fd| {
            crate::sys::path::fstatat_bytes(Some(fd.as_fd()), c"", libc::AT_EMPTY_PATH)
        }))
    }

    /// [`origin_stat`](Self::origin_stat) for `statx`.
    pub(crate) fn origin_statx(
        &self,
        ino: u64,
        flags: i32,
        mask: u32,
    ) -> Option<io::Result<Vec<u8>>> {
        let fd = self.origin_of(ino)?;
        Some(fd.and_then(|fd| {
            crate::sys::path::statx_bytes(
                Some(fd.as_fd()),
                c"",
                (flags & libc::AT_STATX_SYNC_TYPE) | libc::AT_EMPTY_PATH,
                mask,
            )
        }))
    }

    /// The path of the placeholder `ino`'s origin, for calls that take a
    /// path (`None`: not a placeholder).
    pub(crate) fn origin_path(&self, ino: u64) -> Option<PathBuf> {
        self.placeholders.get(&ino).map(|o| self.lower.join(&o.rel))
    }

    /// Copies up the placeholder `fd` (`st`) an exec is about to run, if
    /// path denial does not refuse its origin.
    pub(crate) fn copy_up_for_exec(&self, fd: OwnedFd, st: &FileStat) -> Result<OwnedFd, Errno> {
        if let Some(d) = self.denied.get().and_then(Weak::upgrade) {
            if d.check_fd_with(fd.as_fd(), st) {
                return Err(Errno::of(libc::EACCES));
            }
        }
        let origin = self.placeholders.get(&st.ino).map(|o| o.ino);
        let fresh = self.copy_up(fd, st, true)?;
        if let (Some(origin), Some((ino, c, cn))) = (origin, ctime_of(fresh.as_fd())) {
            self.exec_copies.lock().insert(ino, (origin, c, cn));
        }
        Ok(fresh)
    }

    /// Whether the upper file `view` is a copy an exec made of the lower
    /// file `(dev, ino)`, unchanged since.
    pub(crate) fn is_exec_copy_of(&self, view: BorrowedFd<'_>, dev: u64, ino: u64) -> bool {
        let Some((up, c, cn)) = ctime_of(view) else {
            return false;
        };
        dev == self.dev && self.exec_copies.lock().get(&up) == Some(&(ino, c, cn))
    }

    /// A path of the upper tree given back as the program's view names it
    /// (the work directory's path), if it lies in the upper tree.
    pub(crate) fn to_view(&self, path: &[u8]) -> Option<Vec<u8>> {
        let rest = strip_root(path, self.upper.as_os_str().as_bytes())?;
        Some([self.lower.as_os_str().as_bytes(), rest].concat())
    }
}

impl Layered for Layer {
    fn reads_untouched(&self, path: &[u8]) -> bool {
        self.outside(path)
    }

    fn charge_growth(&self, fd: BorrowedFd<'_>, len: u64) -> Result<Charged, Errno> {
        let Some(quota) = &self.quota else {
            return Ok(Charged::default());
        };
        let st = crate::sys::path::fstat(fd).map_err(|e| Errno::from_io(&e))?;
        // A file outside the upper tree (truncated by path) is not charged.
        if !self.is_upper_file(fd, &st) {
            return Ok(Charged::default());
        }
        // Without a name (a clone into an `O_TMPFILE`): counted while it
        // lives, by its handle.
        if st.nlink == 0 {
            quota.nameless(fd, &st);
        }
        let file = super::quota::Growth {
            ino: st.ino,
            size: st.size,
            end: len,
        };
        quota
            .charge_file(file, &self.upper, &|ino| self.is_placeholder_ino(ino))
            .map_err(|_| Errno::of(libc::ENOSPC))
    }

    fn charge_node(&self, fd: BorrowedFd<'_>, bytes: u64) -> Result<Charged, Errno> {
        let Some(quota) = &self.quota else {
            return Ok(Charged::default());
        };
        // Outside the upper tree (a directory of the host's), no charge;
        // a file without a path fails closed.
        if fd_path(fd).is_some_and(|p| !p.starts_with(&self.upper)) {
            return Ok(Charged::default());
        }
        quota
            .charge_counted(bytes, &self.upper, &|ino| self.is_placeholder_ino(ino))
            .map_err(|_| Errno::of(libc::ENOSPC))
    }

    fn naming(&self, fd: BorrowedFd<'_>) -> u64 {
        let Some(quota) = &self.quota else {
            return 0;
        };
        match crate::sys::path::fstat(fd) {
            Ok(st) if st.is_file() && self.is_upper_file(fd, &st) => quota.naming(fd, &st),
            _ => 0,
        }
    }

    fn removing(&self, dir: BorrowedFd<'_>, name: &std::ffi::CStr, change: &mut dyn FnMut()) {
        match &self.quota {
            // A name of the upper tree (a directory without a path, as
            // one of it: fails closed).
            Some(q) if fd_path(dir).is_none_or(|p| p.starts_with(&self.upper)) => {
                q.removing(dir, name, self.upper_dev, change)
            }
            _ => change(),
        }
    }

    fn crosses(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
        // Fails closed: a file without a path crosses. (A file made with
        // `O_TMPFILE`, or unlinked, keeps its directory's path.)
        let inside = |fd| fd_path(fd).map(|p| p.starts_with(&self.upper));
        match (inside(from), inside(to)) {
            (Some(a), Some(b)) => a != b,
            _ => true,
        }
    }

    fn refund(&self, charged: Charged) {
        if let Some(q) = &self.quota {
            q.refund(charged);
        }
    }

    fn settled(&self, charged: Charged) {
        if let Some(q) = &self.quota {
            q.settle(charged);
        }
    }

    fn freed(&self) {
        if let Some(q) = &self.quota {
            q.freed();
        }
    }

    fn rewrite(&self, path: &[u8]) -> Option<Vec<u8>> {
        let upper = self.upper.as_os_str().as_bytes();
        [Some(&self.lower), self.alias.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|root| strip_root(path, root.as_os_str().as_bytes()))
            .map(|rest| [upper, rest].concat())
    }

    fn upper_of(&self, fd: BorrowedFd<'_>) -> Option<Result<OwnedFd, Errno>> {
        let st = fstat(fd).ok()?;
        if st.dev != self.dev || !st.is_dir() {
            return None;
        }
        let p = fd_path(fd)?;
        let rel = p.strip_prefix(&self.lower).ok()?;
        Some(
            self.open_upper(rel, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| Errno::from_io(&e)),
        )
    }

    fn holds_layer(&self, path: &Path) -> bool {
        // The supervisor's directories beside the layer and what is in
        // them too: the held links keep the placeholders' inode numbers
        // from reuse (a root program reaches them whatever their mode; a
        // placeholder's number given to a file it made would be taken for
        // the work directory's file).
        self.lower.starts_with(path)
            || self.upper.starts_with(path)
            || self.private.get().is_some_and(|dirs| {
                dirs.iter()
                    .any(|p| p.starts_with(path) || path.starts_with(p))
            })
    }

    fn is_private(&self, fd: BorrowedFd<'_>) -> bool {
        // Fails closed before the directories are named (the layer is not
        // in use then).
        let Some(dirs) = self.private.get() else {
            return true;
        };
        fd_path(fd).is_some_and(|p| dirs.iter().any(|d| p.starts_with(d)))
    }

    fn is_lower(&self, fd: BorrowedFd<'_>) -> bool {
        match fstat(fd) {
            // Fails closed: a file without a path on the lower device is
            // taken for a lower one.
            Ok(st) if st.dev == self.dev => fd_path(fd).is_none_or(|p| p.starts_with(&self.lower)),
            Ok(_) => false,
            Err(_) => true,
        }
    }

    fn origin(&self, fd: BorrowedFd<'_>, st: &FileStat) -> Option<Result<OwnedFd, Errno>> {
        let _ = fd;
        if st.dev != self.upper_dev || !st.is_file() {
            return None;
        }
        self.origin_of(st.ino)
            .map(|r| r.map_err(|e| Errno::from_io(&e)))
    }

    fn copy_up(&self, fd: OwnedFd, st: &FileStat, keep_data: bool) -> Result<OwnedFd, Errno> {
        // A lower file the program holds (opened for reading through its
        // placeholder): the placeholder at its path is copied up instead.
        let (fd, st) = if self.is_placeholder(st) {
            (fd, *st)
        } else if let Some(up) = self.placeholder_for_lower(fd.as_fd(), st) {
            let ust = fstat(up.as_fd()).map_err(|e| Errno::from_io(&e))?;
            (up, ust)
        } else {
            return Ok(fd);
        };
        let fresh = crate::paths::as_supervisor(|| self.copy_up_inner(fd, &st, keep_data))
            .map_err(|e| {
                log::debug!("copy-up in {}: {e}", self.upper.display());
                Errno::from_io(&e)
            })?;
        // Fails closed: whatever the name holds now must be the layer's own.
        match fstat(fresh.as_fd()) {
            Ok(now) if !self.is_placeholder(&now) && now.dev == self.upper_dev => Ok(fresh),
            _ => Err(Errno::of(libc::EACCES)),
        }
    }
}

/// Gives the file `to` the extended attributes of `from` (both open
/// fds): every name this process may read and set (`user.*`, ACLs,
/// `security.*` and `trusted.*` where privileged); a name the kernel or a
/// security module refuses to set is left out, as `cp -a` does.
pub(crate) fn copy_xattrs(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let proc = |fd: BorrowedFd<'_>| {
        CString::new(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap_or_default()
    };
    let (src, dst) = (proc(from), proc(to));
    let names = match crate::sys::path::listxattr_path(&src, 65536, true) {
        Ok((_, names)) => names,
        Err(e) => {
            if e.raw_os_error() != Some(libc::ENOTSUP) {
                log::debug!("listxattr for a copy: {e}");
            }
            return;
        }
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = CString::new(name) else {
            continue;
        };
        let copied = crate::sys::path::getxattr_path(&src, &name, 65536, true)
            .and_then(|(_, value)| crate::sys::path::setxattr(&dst, &name, &value, 0, true));
        if let Err(e) = copied {
            log::debug!(
                "xattr {} not copied: {e}",
                crate::shown::bytes(name.as_bytes())
            );
        }
    }
}

/// The inode and `ctime` of a pinned file.
fn ctime_of(fd: BorrowedFd<'_>) -> Option<(u64, i64, i64)> {
    let m = fs::metadata(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .ok()?;
    Some((m.ino(), m.ctime(), m.ctime_nsec()))
}

/// What follows `root` in `path` (empty or starting with `/`) when `path`
/// names `root` or something beneath it, with repeated separators and `.`
/// components in the `root` part allowed; `None` otherwise (a `..` there
/// included).
pub(crate) fn strip_root<'a>(path: &'a [u8], root: &[u8]) -> Option<&'a [u8]> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut pos = 0;
    for want in root.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        loop {
            while pos < path.len() && path[pos] == b'/' {
                pos += 1;
            }
            let end = path[pos..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| pos + i);
            let comp = &path[pos..end];
            if comp == b"." {
                pos = end;
                continue;
            }
            if comp != want {
                return None;
            }
            pos = end;
            break;
        }
    }
    let rest = &path[pos..];
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn open_dir(base: Option<BorrowedFd<'_>>, p: &Path) -> io::Result<OwnedFd> {
    openat2(
        base,
        &cpath(p),
        &OpenHow {
            flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: 0,
        },
    )
}

/// Fills the new directory `upper` with a shadow of `lower`'s entries.
/// `to`: a node of `from`'s type, mode, device number, owner and times.
pub(super) fn make_node(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use crate::sys::path::{mknodat, utimensat};
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    let rdev = meta.rdev();
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    // The kernel's 32-bit encoding.
    let dev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
    let to_c = c(to);
    mknodat(None, &to_c, meta.mode(), dev as u32).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot make {} anew in the layer ({e}); remove it from the work directory",
                from.display()
            ),
        )
    })?;
    // Neither call opens the node (a FIFO would block).
    owner_and_mode(&to_c, meta)?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    utimensat(None, &to_c, Some(&times), libc::AT_SYMLINK_NOFOLLOW)
}

/// The walk that builds the upper tree.
struct Shadow {
    /// `st_dev` of the lower tree.
    dev: u64,
    /// The directory of second links to the placeholders.
    held: OwnedFd,
    /// Names in `held`.
    n: u64,
    /// The placeholders made: (upper inode, lower inode, path, the
    /// lower file's other names).
    made: Vec<(u64, u64, PathBuf, Vec<PathBuf>)>,
    /// Lower files with more than one name, by lower inode: the first
    /// name's placeholder (upper path, index in `made`).
    linked: HashMap<u64, (PathBuf, usize)>,
    /// The sockets made anew: (upper inode, its change time, path).
    sockets: Vec<(u64, (i64, i64), PathBuf)>,
}

impl Shadow {
    /// Fills the new directory `upper` with a shadow of `lower`'s entries
    /// (`rel`: its path in the work directory).
    fn dir(&mut self, lower: &Path, upper: &Path, rel: &Path) -> io::Result<()> {
        for entry in fs::read_dir(lower)? {
            let entry = entry?;
            let from = entry.path();
            let to = upper.join(entry.file_name());
            let r = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(&from)?;
            let ft = meta.file_type();
            if meta.dev() != self.dev {
                return Err(io::Error::other(format!(
                    "{} is on another file system (a mount inside the work directory is not supported)",
                    from.display()
                )));
            }
            if ft.is_dir() {
                fs::create_dir(&to)?;
                self.dir(&from, &to, &r)?;
                copy_dir_meta(&meta, &to)?;
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
            } else if !ft.is_file() {
                // A FIFO, socket or device node is made anew (a link would let
                // chmod or utimensat through the layer reach DIR's node).
                make_node(&from, &to, &meta)?;
                if ft.is_socket() {
                    let m = fs::symlink_metadata(&to)?;
                    self.sockets
                        .push((m.ino(), (m.ctime(), m.ctime_nsec()), r.clone()));
                }
            } else {
                self.placeholder(&to, &meta, r)?;
            }
        }
        Ok(())
    }

    /// Makes the placeholder `to` of the lower file `meta` (at `rel`): an
    /// empty file of its mode and owner, linked into `held` too.
    /// A lower file with several names (hard links) gets one placeholder,
    /// linked at each: the names stay one file in the view.
    fn placeholder(&mut self, to: &Path, meta: &fs::Metadata, rel: PathBuf) -> io::Result<()> {
        use crate::sys::path::{fstatat, linkat, mknodat};
        let to_c = cpath(to);
        if let Some((first, i)) = self.linked.get(&meta.ino()) {
            linkat(None, &cpath(first), None, &to_c, 0)?;
            self.made[*i].3.push(rel);
            return Ok(());
        }
        if meta.nlink() > 1 {
            self.linked
                .insert(meta.ino(), (to.to_path_buf(), self.made.len()));
        }
        mknodat(None, &to_c, libc::S_IFREG | 0o600, 0)?;
        owner_and_mode(&to_c, meta)?;
        let name = CString::new(self.n.to_string()).unwrap_or_default();
        self.n += 1;
        linkat(None, &to_c, Some(self.held.as_fd()), &name, 0)?;
        let st = fstatat(None, &to_c, libc::AT_SYMLINK_NOFOLLOW)?;
        self.made.push((st.ino, meta.ino(), rel, Vec::new()));
        Ok(())
    }
}

/// Gives the directory `to` the mode and times of `meta`.
pub(crate) fn copy_dir_meta(meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let f = fs::File::open(to)?;
    let _ = f.set_times(
        fs::FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?),
    );
    Ok(())
}

/// Gives the new entry `to` the owner (where this process may) and the
/// mode of the lower entry `meta`, without opening it.
fn owner_and_mode(to: &CString, meta: &fs::Metadata) -> io::Result<()> {
    let _ = crate::sys::path::fchownat(None, to, meta.uid(), meta.gid(), libc::AT_SYMLINK_NOFOLLOW);
    crate::sys::path::chmod(to, meta.mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::strip_root;

    #[test]
    fn strips_the_root_by_components() {
        let s = |p: &str| {
            strip_root(p.as_bytes(), b"/w/dir").map(|r| String::from_utf8(r.to_vec()).unwrap())
        };
        assert_eq!(s("/w/dir"), Some(String::new()));
        assert_eq!(s("/w/dir/a/b"), Some("/a/b".into()));
        assert_eq!(s("//w/./dir//a"), Some("//a".into()));
        assert_eq!(s("/w/dirt"), None);
        assert_eq!(s("/w/../w/dir"), None);
        assert_eq!(s("w/dir"), None);
        assert_eq!(s("/w/dir/../x"), Some("/../x".into()));
    }
}
