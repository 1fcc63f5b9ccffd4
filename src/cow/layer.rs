//! The layered view of one work directory: the upper tree, built as a
//! shadow of the lower one (directories made, regular files hard-linked
//! and never opened for writing, symlinks made again), the rewriting of
//! the program's paths into it, and the copy-up of a shared file before
//! its first change. Path denial's on-behalf calls use it through
//! [`Layered`]; nothing here runs the program's calls itself.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::action::Errno;
use crate::paths::{fd_path, Layered};
use crate::sys::fs::{openat2, OpenHow, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS};
use crate::sys::path::{fstat, FileStat};

/// `RESOLVE_NO_SYMLINKS`.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// The view: where the lower and upper trees are, and which files the
/// upper one still shares with the lower one.
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
    /// `st_dev` of the lower tree.
    dev: u64,
    /// Inodes of the lower tree the upper one links to (`st_dev` is
    /// `dev`): never written, copied up first.
    shared: HashSet<u64>,
    /// Names for copy-up temporaries.
    serial: AtomicU64,
    /// The bytes the layer may hold (`None`: no cap); see `quota`.
    pub(crate) quota: Option<super::quota::Quota>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .field("shared", &self.shared.len())
            .finish()
    }
}

impl Layer {
    /// Builds the upper tree `upper` (which must not exist) as a shadow of
    /// `lower` (canonical; `given` as the caller named it).
    pub(crate) fn build(
        lower: &Path,
        given: &Path,
        upper: &Path,
        quota: Option<u64>,
    ) -> io::Result<Layer> {
        let dev = fs::metadata(lower)?.dev();
        let mut shared = HashSet::new();
        fs::create_dir(upper)?;
        shadow_dir(lower, upper, dev, &mut shared)?;
        let upper = fs::canonicalize(upper)?;
        let upper_fd = open_dir(None, &upper)?;
        let alias = (given != lower && given.is_absolute()).then(|| given.to_path_buf());
        Ok(Layer {
            lower: lower.to_path_buf(),
            alias,
            upper,
            upper_fd,
            dev,
            shared,
            serial: AtomicU64::new(0),
            quota: quota.map(super::quota::Quota::new),
        })
    }

    /// Whether `st` is a lower file the upper tree still links to.
    pub(crate) fn is_shared(&self, st: &FileStat) -> bool {
        st.dev == self.dev && self.shared.contains(&st.ino)
    }

    /// Whether the inode `ino` of the lower device is shared.
    pub(crate) fn is_shared_ino(&self, ino: u64) -> bool {
        self.shared.contains(&ino)
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
        let src = crate::paths::reopen_fd(fd.as_fd(), libc::O_RDONLY)?;
        let src = fs::File::from(src);
        let meta = src.metadata()?;
        if let Some(q) = &self.quota {
            q.charge(if keep_data { meta.len() } else { 0 })?;
        }
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(
            ".{}.unotify-copyup.{}.{n}",
            name.to_string_lossy(),
            std::process::id()
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
        )?;
        let mut out = fs::File::from(tmp);
        let result = (|| -> io::Result<()> {
            if keep_data {
                io::copy(&mut (&src), &mut out)?;
            }
            out.set_permissions(fs::Permissions::from_mode(st.mode & 0o7777))?;
            let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
            if keep_data {
                let times = fs::FileTimes::new()
                    .set_accessed(meta.accessed()?)
                    .set_modified(meta.modified()?);
                out.set_times(times)?;
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
            return Err(e);
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
        Ok(fresh)
    }
}

impl Layered for Layer {
    fn charge_growth(&self, fd: BorrowedFd<'_>, len: u64) -> Result<(), Errno> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        let size = crate::paths::reopen_fd(fd, libc::O_PATH)
            .and_then(|f| fs::File::from(f).metadata())
            .map_err(|e| Errno::from_io(&e))?
            .len();
        let growth = len.saturating_sub(size);
        if growth == 0 {
            return Ok(());
        }
        quota
            .charge_counted(growth, &self.upper, &|ino| self.is_shared_ino(ino))
            .map_err(|_| Errno::of(libc::ENOSPC))
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

    fn is_lower(&self, fd: BorrowedFd<'_>) -> bool {
        match fstat(fd) {
            Ok(st) if st.dev == self.dev => {
                if st.is_file() && self.shared.contains(&st.ino) {
                    return true;
                }
                // Fails closed: a file without a path on the lower device
                // is taken for a lower one.
                fd_path(fd).is_none_or(|p| p.starts_with(&self.lower))
            }
            Ok(_) => false,
            Err(_) => true,
        }
    }

    fn copy_up(&self, fd: OwnedFd, st: &FileStat, keep_data: bool) -> Result<OwnedFd, Errno> {
        if !self.is_shared(st) {
            return Ok(fd);
        }
        let fresh =
            crate::paths::as_supervisor(|| self.copy_up_inner(fd, st, keep_data)).map_err(|e| {
                log::debug!("copy-up in {}: {e}", self.upper.display());
                Errno::from_io(&e)
            })?;
        // Fails closed: whatever the name holds now must not be shared.
        match fstat(fresh.as_fd()) {
            Ok(now) if !self.is_shared(&now) => Ok(fresh),
            _ => Err(Errno::of(libc::EACCES)),
        }
    }
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
fn make_node(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use crate::sys::path::{chmod, fchownat, mknodat, utimensat};
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
    let _ = fchownat(
        None,
        &to_c,
        meta.uid(),
        meta.gid(),
        libc::AT_SYMLINK_NOFOLLOW,
    );
    chmod(&to_c, meta.mode() & 0o7777)?;
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

fn shadow_dir(lower: &Path, upper: &Path, dev: u64, shared: &mut HashSet<u64>) -> io::Result<()> {
    for entry in fs::read_dir(lower)? {
        let entry = entry?;
        let from = entry.path();
        let to = upper.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            shadow_dir(&from, &to, dev, shared)?;
            copy_dir_meta(&meta, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if !ft.is_file() {
            // A FIFO, socket or device node is made anew (a link would let
            // chmod or utimensat through the layer reach DIR's node).
            make_node(&from, &to, &meta)?;
        } else {
            match fs::hard_link(&from, &to) {
                Ok(()) if meta.dev() == dev => {
                    shared.insert(meta.ino());
                }
                Ok(()) => {
                    let _ = fs::remove_file(&to);
                    return Err(io::Error::other(format!(
                        "{} is on another file system (a mount inside the work directory is not supported)",
                        from.display()
                    )));
                }
                Err(e)
                    if ft.is_file()
                        && matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EPERM)) =>
                {
                    fs::copy(&from, &to)?;
                    let f = fs::File::options().write(true).open(&to)?;
                    f.set_times(
                        fs::FileTimes::new()
                            .set_accessed(meta.accessed()?)
                            .set_modified(meta.modified()?),
                    )?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
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
