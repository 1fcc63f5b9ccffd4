//! The virtual file system of a chroot: a root directory and the host
//! directories mounted into it, and the resolver that walks a program's
//! path inside them.
//!
//! The walk opens one component at a time, as an `O_PATH` fd relative to
//! the directory fd reached so far, with `O_NOFOLLOW` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (a single name with no `/`:
//! the kernel never leaves that directory). `..` pops the walk's own stack
//! of directories and never goes above the root; a symlink is read by the
//! supervisor and its target walked again in the view (an absolute one
//! from the view's root); a mount point is replaced by the mount's host
//! directory. So no name, `..`, symlink or magic link reaches a file
//! outside the root except through a declared mount. Used by the chroot
//! handlers; calls only `sys`.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::action::Errno;
use crate::sys::fs::{openat2, OpenHow, RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use crate::sys::path::{fs_type, fstat, readlinkat, FileStat};

/// `RESOLVE_NO_XDEV`.
pub(crate) const RESOLVE_NO_XDEV: u64 = 0x01;
/// `RESOLVE_NO_SYMLINKS`.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Symlinks a walk follows (`MAXSYMLINKS`).
const MAX_HOPS: usize = 40;
/// `PROC_SUPER_MAGIC`.
const PROC_MAGIC: i64 = 0x9fa0;

/// A host directory seen at a virtual path.
#[derive(Debug)]
pub(crate) struct Mount {
    /// The virtual path (absolute, normalised; `/` for the root).
    pub(crate) virt: Vec<u8>,
    /// The host directory (canonical).
    pub(crate) host: PathBuf,
    /// The host directory, pinned when the sandbox was built.
    pub(crate) fd: OwnedFd,
    /// Writes beneath it are refused with `EROFS`.
    pub(crate) read_only: bool,
}

/// The view: mount 0 is the root.
#[derive(Debug)]
pub(crate) struct View {
    mounts: Vec<Mount>,
    /// Virtual path of each mount but the root, to its index.
    by_virt: HashMap<Vec<u8>, usize>,
    /// Indices of the mounts, longest host path first (reverse mapping).
    by_host: Vec<usize>,
}

/// A file the walk reached.
#[derive(Debug)]
pub(crate) struct Node {
    /// Pinned, `O_PATH` (a final symlink not followed is the link itself).
    pub(crate) fd: OwnedFd,
    /// Its canonical virtual path.
    pub(crate) vpath: Vec<u8>,
    /// It lies in a read-only mount.
    pub(crate) read_only: bool,
    /// The mount it lies in (0: the root).
    pub(crate) mount: usize,
}

/// A directory and a name in it (the final component of a path, not
/// resolved: for creating, removing and renaming).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) dir: Node,
    /// A single component, never empty, `.` or `..`.
    pub(crate) name: Vec<u8>,
    /// The path had a trailing `/`: the name must be a directory.
    pub(crate) slash: bool,
}

impl Entry {
    /// The name's virtual path.
    pub(crate) fn vpath(&self) -> Vec<u8> {
        join(&self.dir.vpath, &self.name)
    }
}

/// Who walks: `/proc/self` in a mounted procfs is this task.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walker {
    pub(crate) tid: i32,
    pub(crate) tgid: i32,
}

/// How to walk.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct How {
    /// Follow a final symlink.
    pub(crate) follow: bool,
    /// The program's `RESOLVE_*` flags (`openat2`).
    pub(crate) resolve: u64,
}

/// One directory of the walk's stack.
struct Level {
    fd: OwnedFd,
    /// Length of the virtual path up to and including this level.
    len: usize,
    read_only: bool,
    mount: usize,
    dev: u64,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_io(e)
}

/// `a/b` (`a` absolute and normalised).
pub(crate) fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(b);
    v
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// `path` made absolute and normalised lexically (`.`, `..` and repeated
/// slashes removed; `..` stops at `/`).
pub(crate) fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in components(path) {
        match c {
            b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Pins the single name `name` in `dir` (`O_PATH`, not followed, never
/// leaving `dir`).
pub(crate) fn open_name(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    openat2(Some(dir), &c, &how)
}

/// Pins a host directory given to the builder.
pub(crate) fn pin_host_dir(path: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: 0,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    openat2(None, &c, &how)
}

impl View {
    /// A view of `mounts`; the first is the root (virtual `/`).
    pub(crate) fn new(mounts: Vec<Mount>) -> View {
        let by_virt = mounts
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, m)| (m.virt.clone(), i))
            .collect();
        let mut by_host: Vec<usize> = (0..mounts.len()).collect();
        by_host.sort_by_key(|&i| std::cmp::Reverse(mounts[i].host.as_os_str().len()));
        View {
            mounts,
            by_virt,
            by_host,
        }
    }

    /// Makes sure every mount point is a directory of the view (what a
    /// listing of its parent shows, and what walks reach): a missing one
    /// is created as an empty directory in its parent, when that parent
    /// is in the root (`EROFS`-like errors otherwise are the caller's to
    /// report).
    pub(crate) fn make_mount_points(&self) -> Result<(), (Vec<u8>, Errno)> {
        let who = Walker {
            tid: std::process::id() as i32,
            tgid: std::process::id() as i32,
        };
        let mut points: Vec<&[u8]> = self.mounts[1..].iter().map(|m| m.virt.as_slice()).collect();
        points.sort_by_key(|p| p.len());
        for point in points {
            let mut prefix = Vec::new();
            for c in components(point) {
                prefix.push(b'/');
                prefix.extend_from_slice(c);
                if self.by_virt.contains_key(&prefix) && prefix != point {
                    continue;
                }
                let entry = self
                    .entry(who, b"/", &prefix, libc::EEXIST)
                    .map_err(|e| (prefix.clone(), e))?;
                match open_name(entry.dir.fd.as_fd(), &entry.name) {
                    Ok(_) => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err((prefix, errno(&e))),
                }
                if entry.dir.mount != 0 {
                    return Err((prefix, Errno::of(libc::EROFS)));
                }
                let name = CString::new(entry.name.clone())
                    .map_err(|_| (prefix.clone(), Errno::of(libc::EINVAL)))?;
                crate::sys::path::mkdirat(Some(entry.dir.fd.as_fd()), &name, 0o755)
                    .map_err(|e| (prefix.clone(), errno(&e)))?;
            }
        }
        Ok(())
    }

    /// The mounts (0: the root).
    pub(crate) fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Whether `vpath` (normalised) is a mount point (or the root).
    pub(crate) fn is_mount_point(&self, vpath: &[u8]) -> bool {
        vpath == b"/" || self.by_virt.contains_key(vpath)
    }

    /// The virtual path of a host path, if the view shows it: beneath the
    /// mount with the longest host path holding it.
    pub(crate) fn virtual_of(&self, host: &Path) -> Option<Vec<u8>> {
        for &i in &self.by_host {
            let m = &self.mounts[i];
            if let Ok(rest) = host.strip_prefix(&m.host) {
                let rest = rest.as_os_str().as_bytes();
                return Some(if rest.is_empty() {
                    m.virt.clone()
                } else {
                    join(&m.virt, rest)
                });
            }
        }
        None
    }

    fn level(&self, mount: usize, len: usize, read_only: bool) -> Result<Level, Errno> {
        let m = &self.mounts[mount];
        let fd = m.fd.try_clone().map_err(|e| errno(&e))?;
        let dev = fstat(fd.as_fd()).map_err(|e| errno(&e))?.dev;
        Ok(Level {
            fd,
            len,
            read_only: read_only || m.read_only,
            mount,
            dev,
        })
    }

    /// Walks `path` from the directory at virtual path `base` (absolute,
    /// canonical: the working directory or a dirfd's place in the view).
    pub(crate) fn walk(
        &self,
        who: Walker,
        base: &[u8],
        path: &[u8],
        how: How,
    ) -> Result<Node, Errno> {
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        if how.resolve == 0 {
            if let Some(done) = self.walk_at_once(base, path, how.follow) {
                return done;
            }
        }
        let mut w = Walk {
            view: self,
            who,
            vpath: b"/".to_vec(),
            stack: vec![self.level(0, 1, false)?],
            floor: 1,
            hops: 0,
        };
        // The base is canonical: walked as given, no floor.
        if path[0] != b'/' || how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
            w.run(
                base,
                How {
                    follow: true,
                    resolve: 0,
                },
                false,
            )?;
        }
        if how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
            w.floor = w.stack.len();
        }
        w.run(path, how, true)?.ok_or(Errno::of(libc::ENOENT))
    }

    /// The common case in one `openat2`: a path without `.` or `..`, and
    /// without symlinks (`RESOLVE_NO_SYMLINKS`; a final one is returned
    /// when not followed), opened beneath the mount its virtual path falls
    /// in (the longest mount point it starts with; no other mount point
    /// lies on its way, or it would be longer). `None`: a symlink, `.` or
    /// `..` is on the way: the component walk decides.
    fn walk_at_once(&self, base: &[u8], path: &[u8], follow: bool) -> Option<Result<Node, Errno>> {
        if components(path).any(|c| c == b"." || c == b"..") {
            return None;
        }
        let full = if path[0] == b'/' {
            normalize(path)
        } else {
            normalize(&join(base, path))
        };
        let mut best = 0;
        for (i, m) in self.mounts.iter().enumerate().skip(1) {
            let under = full.starts_with(&m.virt)
                && (full.len() == m.virt.len() || full[m.virt.len()] == b'/');
            if under && m.virt.len() > self.mounts[best].virt.len() {
                best = i;
            }
        }
        let m = &self.mounts[best];
        let rest = if best == 0 {
            &full[1..]
        } else {
            full.get(m.virt.len() + 1..).unwrap_or(b"")
        };
        if rest.is_empty() {
            return None;
        }
        let mut rest = rest.to_vec();
        if path.last() == Some(&b'/') {
            rest.push(b'/');
        }
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_CLOEXEC | nofollow) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        let c = CString::new(rest).ok()?;
        match openat2(Some(m.fd.as_fd()), &c, &how) {
            Ok(fd) => Some(Ok(Node {
                fd,
                vpath: full,
                read_only: m.read_only,
                mount: best,
            })),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ENAMETOOLONG) => {
                    Some(Err(errno(&e)))
                }
                _ => None,
            },
        }
    }

    /// The directory holding the final name of `path`, and that name (not
    /// resolved). `.` and `..` as the final name are refused with
    /// `dot_errno`.
    pub(crate) fn entry(
        &self,
        who: Walker,
        base: &[u8],
        path: &[u8],
        dot_errno: i32,
    ) -> Result<Entry, Errno> {
        if path.is_empty() {
            return Err(Errno::of(libc::ENOENT));
        }
        let mut end = path.len();
        while end > 0 && path[end - 1] == b'/' {
            end -= 1;
        }
        let slash = end < path.len();
        let body = &path[..end];
        let (dir, name): (&[u8], &[u8]) = match body.iter().rposition(|&b| b == b'/') {
            Some(i) => (if i == 0 { b"/" } else { &body[..i] }, &body[i + 1..]),
            None => (b".", body),
        };
        if name.is_empty() || name == b"." || name == b".." {
            return Err(Errno::of(dot_errno));
        }
        let dir = self.walk(
            who,
            base,
            dir,
            How {
                follow: true,
                resolve: 0,
            },
        )?;
        let st = fstat(dir.fd.as_fd()).map_err(|e| errno(&e))?;
        if !st.is_dir() {
            return Err(Errno::of(libc::ENOTDIR));
        }
        Ok(Entry {
            dir,
            name: name.to_vec(),
            slash,
        })
    }
}

/// A walk in progress.
struct Walk<'v> {
    view: &'v View,
    who: Walker,
    /// Virtual path of the top of the stack.
    vpath: Vec<u8>,
    stack: Vec<Level>,
    /// `..` and absolute symlinks do not go below this depth.
    floor: usize,
    hops: usize,
}

impl Walk<'_> {
    fn top(&self) -> &Level {
        self.stack.last().expect("the root is never popped")
    }

    fn truncate(&mut self, depth: usize) {
        self.stack.truncate(depth);
        let len = self.top().len;
        self.vpath.truncate(len.max(1));
    }

    fn push(&mut self, name: &[u8], fd: OwnedFd, st: &FileStat) {
        let top = self.top();
        let (read_only, mount) = (top.read_only, top.mount);
        if self.vpath != b"/" {
            self.vpath.push(b'/');
        }
        self.vpath.extend_from_slice(name);
        self.stack.push(Level {
            fd,
            len: self.vpath.len(),
            read_only,
            mount,
            dev: st.dev,
        });
    }

    fn node_of_top(&self) -> Result<Node, Errno> {
        let top = self.top();
        Ok(Node {
            fd: top.fd.try_clone().map_err(|e| errno(&e))?,
            vpath: self.vpath.clone(),
            read_only: top.read_only,
            mount: top.mount,
        })
    }

    /// Walks `path` from the top of the stack; `last`: the final component
    /// is the result (else the walk only moves the stack).
    fn run(&mut self, path: &[u8], how: How, last_counts: bool) -> Result<Option<Node>, Errno> {
        let beneath = how.resolve & RESOLVE_BENEATH != 0;
        if path.first() == Some(&b'/') {
            if beneath {
                return Err(Errno::of(libc::EXDEV));
            }
            self.truncate(self.floor);
        }
        let must_dir = path.last() == Some(&b'/');
        let mut queue: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        while let Some(c) = queue.pop_front() {
            let last = queue.is_empty();
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    if self.stack.len() > self.floor {
                        self.truncate(self.stack.len() - 1);
                    } else if beneath {
                        return Err(Errno::of(libc::EXDEV));
                    }
                    continue;
                }
                _ => {}
            }
            let child = join(&self.vpath, &c);
            if let Some(&m) = self.view.by_virt.get(&child) {
                if how.resolve & RESOLVE_NO_XDEV != 0 {
                    return Err(Errno::of(libc::EXDEV));
                }
                let level = self.view.level(m, child.len(), false)?;
                self.vpath = child;
                self.stack.push(level);
                continue;
            }
            let fd = open_name(self.top().fd.as_fd(), &c).map_err(|e| errno(&e))?;
            let st = fstat(fd.as_fd()).map_err(|e| errno(&e))?;
            if how.resolve & RESOLVE_NO_XDEV != 0 && st.dev != self.top().dev {
                return Err(Errno::of(libc::EXDEV));
            }
            if st.is_symlink() && (!last || how.follow || must_dir) {
                if how.resolve & RESOLVE_NO_SYMLINKS != 0 {
                    return Err(Errno::of(libc::ELOOP));
                }
                self.hops += 1;
                if self.hops > MAX_HOPS {
                    return Err(Errno::of(libc::ELOOP));
                }
                let target = self.link_target(&fd, &c)?;
                if target.is_empty() {
                    return Err(Errno::of(libc::ENOENT));
                }
                if target[0] == b'/' {
                    if beneath {
                        return Err(Errno::of(libc::EXDEV));
                    }
                    self.truncate(self.floor);
                }
                for t in components(&target).rev() {
                    queue.push_front(t.to_vec());
                }
                continue;
            }
            if last && last_counts && !(must_dir && st.is_dir()) {
                if must_dir && !st.is_dir() {
                    return Err(Errno::of(libc::ENOTDIR));
                }
                let top = self.top();
                return Ok(Some(Node {
                    fd,
                    vpath: child,
                    read_only: top.read_only,
                    mount: top.mount,
                }));
            }
            if !st.is_dir() {
                return Err(Errno::of(libc::ENOTDIR));
            }
            self.push(&c, fd, &st);
        }
        if last_counts {
            self.node_of_top().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A symlink's target; `self` and `thread-self` of a mounted procfs
    /// name the walking task, not the supervisor.
    fn link_target(&self, fd: &OwnedFd, name: &[u8]) -> Result<Vec<u8>, Errno> {
        if (name == b"self" || name == b"thread-self")
            && fs_type(self.top().fd.as_fd()).is_ok_and(|t| t == PROC_MAGIC)
        {
            let Walker { tid, tgid } = self.who;
            return Ok(if name == b"self" {
                tgid.to_string().into_bytes()
            } else {
                format!("{tgid}/task/{tid}").into_bytes()
            });
        }
        readlinkat(Some(fd.as_fd()), c"").map_err(|e| errno(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// root/{a/b, link -> /a, up -> ../../.., loop -> loop}, and host
    /// directory `m` (with file `f`) mounted read-only at /mnt/m.
    fn view() -> (tempfile::TempDir, View) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), "x").unwrap();
        std::fs::write(t.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink("/a", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        std::fs::create_dir_all(t.path().join("m")).unwrap();
        std::fs::write(t.path().join("m/f"), "x").unwrap();
        let mount = |virt: &[u8], host: PathBuf, read_only| Mount {
            virt: virt.to_vec(),
            fd: pin_host_dir(&host).unwrap(),
            host,
            read_only,
        };
        let v = View::new(vec![
            mount(b"/", root, false),
            mount(b"/mnt/m", t.path().join("m"), true),
        ]);
        v.make_mount_points().unwrap();
        (t, v)
    }

    const WHO: Walker = Walker { tid: 1, tgid: 1 };
    const FOLLOW: How = How {
        follow: true,
        resolve: 0,
    };

    fn walk(v: &View, base: &[u8], path: &[u8]) -> Result<Vec<u8>, i32> {
        v.walk(WHO, base, path, FOLLOW)
            .map(|n| n.vpath)
            .map_err(|e| e.get())
    }

    #[test]
    fn walks_stay_in_the_view() {
        let (t, v) = view();
        assert_eq!(walk(&v, b"/", b"/../../a/b/file").unwrap(), b"/a/b/file");
        assert_eq!(walk(&v, b"/a/b", b"../../../a").unwrap(), b"/a");
        assert_eq!(walk(&v, b"/", b"/link/b").unwrap(), b"/a/b");
        assert_eq!(walk(&v, b"/", b"/a/up/a/b").unwrap(), b"/a/b");
        assert_eq!(walk(&v, b"/", b"/loop"), Err(libc::ELOOP));
        let outside = t.path().join("outside");
        let rel = format!("../../../..{}", outside.display());
        assert_eq!(walk(&v, b"/a", rel.as_bytes()), Err(libc::ENOENT));
        // Beneath: no way above the base.
        let beneath = How {
            follow: true,
            resolve: RESOLVE_BENEATH,
        };
        assert_eq!(
            v.walk(WHO, b"/a", b"../a", beneath)
                .map(|_| ())
                .map_err(|e| e.get()),
            Err(libc::EXDEV)
        );
        let in_root = How {
            follow: true,
            resolve: RESOLVE_IN_ROOT,
        };
        assert_eq!(
            v.walk(WHO, b"/a", b"/b/../../b", in_root).unwrap().vpath,
            b"/a/b"
        );
    }

    #[test]
    fn mounts_are_found_by_virtual_path_and_mapped_back() {
        let (t, v) = view();
        let n = v.walk(WHO, b"/", b"/mnt/m/f", FOLLOW).unwrap();
        assert!(n.read_only);
        assert_eq!(n.mount, 1);
        // The slow walk agrees (a `..` on the way).
        let n = v.walk(WHO, b"/", b"/mnt/../mnt/m/f", FOLLOW).unwrap();
        assert!(n.read_only && n.vpath == b"/mnt/m/f");
        assert_eq!(walk(&v, b"/mnt/m", b"..").unwrap(), b"/mnt");
        let host = std::fs::canonicalize(t.path()).unwrap();
        assert_eq!(v.virtual_of(&host.join("m/f")).unwrap(), b"/mnt/m/f");
        assert_eq!(v.virtual_of(&host.join("root/a")).unwrap(), b"/a");
        assert_eq!(v.virtual_of(&host.join("outside")), None);
        assert!(v.is_mount_point(b"/mnt/m") && !v.is_mount_point(b"/mnt"));
        // The mount point was made in the root.
        assert!(host.join("root/mnt/m").is_dir());
        let e = v.entry(WHO, b"/", b"/mnt/m/new", libc::EEXIST).unwrap();
        assert!(e.dir.read_only && e.name == b"new" && e.vpath() == b"/mnt/m/new");
        assert_eq!(
            v.entry(WHO, b"/", b"/a/..", libc::EBUSY)
                .map(|_| ())
                .map_err(|e| e.get()),
            Err(libc::EBUSY)
        );
    }

    #[test]
    fn normalises() {
        assert_eq!(normalize(b"/a/../../b/./c//"), b"/b/c");
        assert_eq!(normalize(b".."), b"/");
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/a", b"x"), b"/a/x");
    }
}
