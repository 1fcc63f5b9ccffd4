//! The denied set: paths by name and by file identity.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use std::sync::Arc;

use parking_lot::RwLock;

use crate::sys::fs::{openat2, OpenHow, RESOLVE_NO_MAGICLINKS};
use crate::sys::path::{fstat, FileStat};

/// Identity of a file: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl From<&FileStat> for FileId {
    fn from(st: &FileStat) -> FileId {
        FileId {
            dev: st.dev,
            ino: st.ino,
        }
    }
}

/// How many entries of a denied directory are scanned for files with
/// several hard links (whose other names may lie outside the directory).
const DIR_SCAN_LIMIT: usize = 100_000;
/// Deepest directory walk (ancestors, scans).
const MAX_DEPTH: usize = 256;

#[derive(Debug)]
struct Entry {
    /// The path as given, made absolute and normalised lexically.
    given: PathBuf,
    /// `given` and, when different, its canonical form (symlinks resolved).
    forms: Vec<PathBuf>,
    /// Identity of what `given` resolved to when it was denied.
    id: Option<FileId>,
    /// Whether it was a directory then.
    is_dir: bool,
    /// For a directory: files beneath it with more than one hard link.
    linked: Vec<FileId>,
    /// For a directory: the roots of the mounts at or beneath it whose
    /// file system is shown elsewhere too, and of those other mounts (see
    /// [`mount_aliases`]); denied as ancestors, like the directory.
    mounted: Vec<FileId>,
    /// Given at build time: [`DeniedPaths::allow`] cannot remove it.
    fixed: bool,
}

/// The set of denied paths of a sandbox, shared and changeable while it
/// runs.
///
/// Each denied path is kept both as a normalised absolute path (and its
/// canonical form) and, when it exists, by the identity (`st_dev`,
/// `st_ino`) of what it resolves to, so hard links and symlinks to it are
/// denied too. A denied directory denies everything beneath it (by path,
/// by the identity of the directory as an ancestor, and by the identity of
/// the files beneath it that have other hard links, scanned when it is
/// denied).
///
/// Paths given to [`SandboxBuilder::deny_path`](crate::SandboxBuilder::deny_path)
/// are fixed; [`deny`](Self::deny) adds paths at run time, which
/// [`allow`](Self::allow) can remove again.
#[derive(Debug, Default)]
pub struct DeniedPaths {
    entries: Arc<RwLock<Vec<Entry>>>,
    /// A sandbox's file system allow lists: the calls path denial makes on
    /// the program's behalf (outside its Landlock domain) are held to them
    /// too ([`with_lists`](Self::with_lists)).
    lists: Option<Arc<FsLists>>,
    /// A copy-on-write view: its lower tree is never written on the
    /// program's behalf ([`with_layer`](Self::with_layer)).
    layer: Option<Arc<dyn super::Layered>>,
    /// Read-only opens of paths outside the layer run without the
    /// supervisor ([`with_untrapped_reads`](Self::with_untrapped_reads)).
    untrapped_reads: bool,
    /// When a read-only open runs without the supervisor because nothing
    /// is decided by path ([`with_free_reads`](Self::with_free_reads)).
    free_reads: FreeReads,
    /// The kernel backstop: opens beneath its rules run without the
    /// supervisor ([`with_backstop`](Self::with_backstop)).
    backstop: Option<Arc<super::backstop::Backstop>>,
}

std::thread_local! {
    /// This thread's checks that found a denied file, and the file the
    /// latest one found (when known), for the events a handler reports
    /// (`hit_mark` before its checks, again after). Per thread, because a
    /// call's checks all run on the worker that handles it: another
    /// worker's hit at the same moment is not this call's.
    static HITS: std::cell::RefCell<(u64, Option<PathBuf>)> =
        const { std::cell::RefCell::new((0, None)) };
}

/// When a read-only open (`open`/`openat` without [`NOT_READ_ONLY`]
/// flags) needs no on-behalf open: nothing but the set decides opens by
/// path (no allow lists, layer, virtual files or chroot), so an empty set
/// decides nothing, and such an open cannot write (the only reason argv
/// safety has path denial when nothing is denied).
///
/// [`NOT_READ_ONLY`]: super::onbehalf_open::NOT_READ_ONLY
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FreeReads {
    /// Always performed on the program's behalf.
    #[default]
    Never,
    /// Always let run: the set is empty and nothing fills it later
    /// (argv safety alone; the filter does not even trap them, see
    /// `PathScope::WriteOpens`: this is for one another rule traps).
    Always,
    /// Let run while the set is empty, as the set is before the policy
    /// callback is asked (the on-behalf route checks in the same order:
    /// a path the callback denies applies from the next call on): the
    /// set of a sandbox whose only denials come from its policy callback.
    WhileEmpty,
}

/// The file system allow lists of a sandbox, canonical (`fs_read`,
/// `fs_write` and the system set), as the calls made on the program's
/// behalf check them: by the path of the pinned file, as Landlock does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FsLists {
    /// Readable (and executable) beneath.
    pub(crate) read: Vec<PathBuf>,
    /// Writable (and readable) beneath.
    pub(crate) write: Vec<PathBuf>,
}

impl FsLists {
    /// Whether `path` may be read (lies beneath a read or write path).
    pub(crate) fn readable(&self, path: &Path) -> bool {
        self.writable(path) || self.read.iter().any(|r| path.starts_with(r))
    }

    /// Whether `path` may be written (lies beneath a write path).
    pub(crate) fn writable(&self, path: &Path) -> bool {
        self.write.iter().any(|w| path.starts_with(w))
    }
}

/// Makes `path` absolute (against the supervisor's current directory) and
/// removes `.`, `..` and repeated separators without touching the file
/// system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let abs;
    let path = if path.is_absolute() {
        path
    } else {
        abs = std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path);
        &abs
    };
    normalize_abs(path)
}

/// Lexical normalisation of an absolute path.
pub(crate) fn normalize_abs(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The canonical form of `path`: of the path itself when it exists, else
/// of its longest existing ancestor followed by the rest.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(path) {
        return c;
    }
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    while let Some(name) = cur.file_name().map(|n| n.to_owned()) {
        rest.push(name);
        cur.pop();
        if let Ok(mut c) = std::fs::canonicalize(&cur) {
            for n in rest.iter().rev() {
                c.push(n);
            }
            return c;
        }
    }
    path.to_path_buf()
}

fn open_path(path: &Path, flags: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64 | flags,
        mode: 0,
        resolve: RESOLVE_NO_MAGICLINKS,
    };
    openat2(None, &c, &how)
}

/// Opens `name` beneath `dir` as `O_PATH` without following a final symlink.
fn open_child(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, extra: i32) -> io::Result<OwnedFd> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW | extra) as u64,
        mode: 0,
        resolve: RESOLVE_NO_MAGICLINKS,
    };
    openat2(Some(dir), &c, &how)
}

/// Files with more than one hard link beneath the directory `dir`.
fn scan_linked(
    dir: BorrowedFd<'_>,
    path: &Path,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<FileId>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(read) = std::fs::read_dir(path) else {
        return;
    };
    for ent in read.flatten() {
        if *budget == 0 {
            log::warn!("denied directory {}: stopped scanning for hard links after {DIR_SCAN_LIMIT} entries", path.display());
            return;
        }
        *budget -= 1;
        let name = ent.file_name();
        let Ok(fd) = open_child(dir, &name, 0) else {
            continue;
        };
        let Ok(st) = fstat(fd.as_fd()) else {
            continue;
        };
        if st.is_dir() {
            scan_linked(fd.as_fd(), &path.join(&name), depth + 1, budget, out);
        } else if st.nlink > 1 {
            out.push(FileId::from(&st));
        }
    }
}

impl Entry {
    fn new(path: &Path, fixed: bool) -> Entry {
        let given = normalize(path);
        let mut forms = vec![given.clone()];
        let canon = canonical(&given);
        if canon != given {
            forms.push(canon);
        }
        let mut id = None;
        let mut is_dir = false;
        let mut linked = Vec::new();
        let mut mounted = Vec::new();
        if let Ok(fd) = open_path(&given, 0) {
            if let Ok(st) = fstat(fd.as_fd()) {
                id = Some(FileId::from(&st));
                is_dir = st.is_dir();
                if is_dir {
                    // The directory fd may be O_PATH; list it by its canonical path.
                    let mut budget = DIR_SCAN_LIMIT;
                    let dir_path = forms.last().cloned().unwrap_or_else(|| given.clone());
                    scan_linked(fd.as_fd(), &dir_path, 0, &mut budget, &mut linked);
                    for (alias, is_dir) in mount_aliases(&dir_path) {
                        // A file mounted over a name beneath the directory
                        // is one of its files with another name.
                        if is_dir {
                            mounted.push(alias);
                        } else {
                            linked.push(alias);
                        }
                    }
                }
            }
        }
        Entry {
            given,
            forms,
            id,
            is_dir,
            linked,
            mounted,
            fixed,
        }
    }
}

impl DeniedPaths {
    /// An empty set.
    pub fn new() -> DeniedPaths {
        DeniedPaths::default()
    }

    /// The same denied set (shared: a change to either is seen by both),
    /// also refusing what `lists` does not allow.
    pub(crate) fn with_lists(&self, lists: FsLists) -> DeniedPaths {
        DeniedPaths {
            entries: Arc::clone(&self.entries),
            lists: Some(Arc::new(lists)),
            layer: self.layer.clone(),
            untrapped_reads: false,
            free_reads: FreeReads::Never,
            backstop: None,
        }
    }

    /// The same set (shared), also refusing every write into the lower
    /// tree of `layer`.
    pub(crate) fn with_layer(&self, layer: Arc<dyn super::Layered>) -> DeniedPaths {
        DeniedPaths {
            entries: Arc::clone(&self.entries),
            lists: self.lists.clone(),
            layer: Some(layer),
            untrapped_reads: false,
            free_reads: FreeReads::Never,
            backstop: None,
        }
    }

    /// The same set, letting a read-only open of a path outside the
    /// layer run as the kernel resolves it (the supervisor neither opens
    /// nor checks it). For a set that holds nothing but the layer's own
    /// storage, in a sandbox where no other feature decides opens by
    /// path (no policy, no virtual files, no allow lists).
    pub(crate) fn with_untrapped_reads(mut self) -> DeniedPaths {
        self.untrapped_reads = self.layer.is_some();
        self
    }

    /// The same set (shared), letting read-only opens run as the kernel
    /// resolves them when `when` says ([`FreeReads`]). For a set in a
    /// sandbox where nothing else decides opens by path (no allow lists,
    /// virtual files, layer or chroot); `Always` for an empty one that
    /// nothing fills later (fixed, no policy callback, not shared).
    pub(crate) fn with_free_reads(&self, when: FreeReads) -> DeniedPaths {
        let free = self.layer.is_none() && self.lists.is_none() && self.backstop.is_none();
        DeniedPaths {
            entries: Arc::clone(&self.entries),
            lists: self.lists.clone(),
            layer: self.layer.clone(),
            untrapped_reads: self.untrapped_reads,
            free_reads: if free { when } else { FreeReads::Never },
            backstop: self.backstop.clone(),
        }
    }

    /// When read-only opens need no on-behalf open ([`FreeReads`]).
    pub(crate) fn free_reads(&self) -> FreeReads {
        self.free_reads
    }

    /// The same set (shared), whose opens beneath the rules of the
    /// program's Landlock domain run as the kernel resolves them (see
    /// `backstop`).
    pub(crate) fn with_backstop(&self, backstop: Arc<super::backstop::Backstop>) -> DeniedPaths {
        DeniedPaths {
            entries: Arc::clone(&self.entries),
            lists: self.lists.clone(),
            layer: self.layer.clone(),
            untrapped_reads: self.untrapped_reads,
            free_reads: self.free_reads,
            backstop: Some(backstop),
        }
    }

    /// Whether an open of `path` by task `tid` runs without the
    /// supervisor, its target beneath the rules of the kernel backstop.
    pub(crate) fn backstop_covers(&self, tid: u32, dirfd: i32, path: &[u8], flags: i32) -> bool {
        self.backstop
            .as_ref()
            .is_some_and(|b| b.covers(tid, dirfd, path, flags))
    }

    /// Whether a removal (`unlink`, `rmdir`) of `path` by task `tid` runs
    /// without the supervisor, its parent beneath the rules of the kernel
    /// backstop.
    pub(crate) fn backstop_covers_removal(&self, tid: u32, dirfd: i32, path: &[u8]) -> bool {
        self.backstop
            .as_ref()
            .is_some_and(|b| b.covers_removal(tid, dirfd, path))
    }

    /// Whether the kernel backstop holds this set (execs need no check).
    pub(crate) fn has_backstop(&self) -> bool {
        self.backstop.is_some()
    }

    /// Whether a read-only open of the absolute `path` runs without the
    /// supervisor (see [`with_untrapped_reads`](Self::with_untrapped_reads)).
    pub(crate) fn read_runs_untouched(&self, path: &[u8]) -> bool {
        self.free_reads == FreeReads::Always
            || (self.untrapped_reads
                && self.layer.as_ref().is_some_and(|l| l.reads_untouched(path)))
    }

    /// The copy-on-write view the set is held to, if any.
    pub(crate) fn layer(&self) -> Option<&Arc<dyn super::Layered>> {
        self.layer.as_ref()
    }

    /// Whether the file `fd` may not be written: denied, or outside the
    /// write allow list.
    pub(crate) fn check_fd_write(&self, fd: BorrowedFd<'_>) -> bool {
        self.check_fd(fd) || self.not_writable(fd)
    }

    /// Whether the file `fd` lies outside the write allow list, if there
    /// is one. A file without a path (a pipe, a socket, an anonymous
    /// inode or memfd, reached through `/proc/<pid>/fd`) is not held to
    /// the lists, as Landlock does not hold it.
    pub(crate) fn not_writable(&self, fd: BorrowedFd<'_>) -> bool {
        if self
            .layer
            .as_ref()
            .is_some_and(|l| l.is_lower(fd) || l.is_private(fd))
        {
            return true;
        }
        self.lists
            .as_ref()
            .is_some_and(|l| fd_path(fd).is_some_and(|p| !l.writable(&p)))
    }

    /// Denies `path` from now on (relative paths are taken from the
    /// supervisor's current directory). Its identity is recorded now, if it
    /// exists; a symlink is followed, so its target is denied too. A
    /// directory is scanned now for files with other hard links. Returns
    /// `false` if it was already denied.
    pub fn deny(&self, path: impl AsRef<Path>) -> bool {
        self.add(path.as_ref(), false)
    }

    /// Denies `path` for good: [`allow`](Self::allow) cannot remove it.
    pub(crate) fn deny_fixed(&self, path: &Path) -> bool {
        self.add(path, true)
    }

    fn add(&self, path: &Path, fixed: bool) -> bool {
        let entry = Entry::new(path, fixed);
        let mut entries = self.entries.write();
        if let Some(e) = entries.iter_mut().find(|e| e.given == entry.given) {
            if fixed && !e.fixed {
                *e = entry;
                return true;
            }
            return false;
        }
        log::debug!(
            "path denied: {} (identity {:?})",
            entry.given.display(),
            entry.id
        );
        entries.push(entry);
        true
    }

    /// Removes `path` if it was denied with [`deny`](Self::deny). Paths
    /// given when the sandbox was built stay denied. Returns whether the
    /// path was removed.
    pub fn allow(&self, path: impl AsRef<Path>) -> bool {
        let given = normalize(path.as_ref());
        let mut entries = self.entries.write();
        let before = entries.len();
        entries.retain(|e| e.fixed || e.given != given);
        before != entries.len()
    }

    /// The denied paths, as given (absolute, normalised).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries
            .read()
            .iter()
            .map(|e| e.given.clone())
            .collect()
    }

    /// Whether no path is denied.
    pub fn is_empty(&self) -> bool {
        self.entries.read().is_empty()
    }

    /// Whether `path`, resolved now by the supervisor (following symlinks),
    /// is denied: by name, by identity, or because it lies beneath a denied
    /// directory.
    pub fn is_denied(&self, path: impl AsRef<Path>) -> bool {
        let path = normalize(path.as_ref());
        match open_path(&path, 0) {
            Ok(fd) => self.check_fd(fd.as_fd()),
            Err(_) => self.name_denied(&canonical(&path)),
        }
    }

    /// Whether the absolute `path` is a denied path or lies beneath one, by
    /// name only.
    pub(crate) fn name_denied(&self, path: &Path) -> bool {
        let hit = self
            .entries
            .read()
            .iter()
            .any(|e| e.forms.iter().any(|f| path.starts_with(f)));
        if hit {
            self.record_hit(Some(path.to_path_buf()));
        }
        hit
    }

    /// Counts a check (on this thread) that found `path` denied.
    fn record_hit(&self, path: Option<PathBuf>) {
        HITS.with_borrow_mut(|(n, last)| {
            *n += 1;
            *last = path;
        });
    }

    /// The count of this thread's checks that found a denied file.
    pub(crate) fn hit_mark(&self) -> u64 {
        HITS.with_borrow(|(n, _)| *n)
    }

    /// The file this thread's latest such check found, when known.
    pub(crate) fn last_hit(&self) -> Option<PathBuf> {
        HITS.with_borrow(|(_, last)| last.clone())
    }

    /// The rule that refused `path` (a file this set's checks found), as
    /// the command line names it: `deny-path /etc/shadow` (the entry it
    /// lies beneath), or `fs-read allow list` / `fs-write allow list` when
    /// no denied path holds it.
    pub(crate) fn rule_for(&self, path: Option<&Path>) -> String {
        if let Some(p) = path {
            let entries = self.entries.read();
            if let Some(e) = entries
                .iter()
                .find(|e| e.forms.iter().any(|f| p.starts_with(f)))
            {
                return format!("deny-path {}", crate::shown::path(&e.given));
            }
            if let Some(lists) = &self.lists {
                if lists.readable(p) {
                    return "fs-write allow list".to_owned();
                }
                return "fs-read allow list".to_owned();
            }
        }
        "deny-path".to_owned()
    }

    /// Whether a denied path lies strictly beneath the absolute `path`
    /// (renaming or removing `path` would move or remove it).
    pub(crate) fn has_denied_beneath(&self, path: &Path) -> bool {
        self.entries
            .read()
            .iter()
            .any(|e| e.forms.iter().any(|f| f != path && f.starts_with(path)))
    }

    /// Whether identity `id` is denied (the file itself, or a file with
    /// other hard links beneath a denied directory).
    pub(crate) fn id_denied(&self, id: FileId) -> bool {
        self.entries
            .read()
            .iter()
            .any(|e| e.id == Some(id) || e.linked.contains(&id))
    }

    fn dir_ids(&self) -> Vec<FileId> {
        self.entries
            .read()
            .iter()
            .filter(|e| e.is_dir)
            .flat_map(|e| e.id.into_iter().chain(e.mounted.iter().copied()))
            .collect()
    }

    /// Whether the file `fd` (any kind of fd, `O_PATH` included) is denied:
    /// by identity, by its path as the kernel reports it, or because one of
    /// its ancestor directories is a denied directory.
    pub(crate) fn check_fd(&self, fd: BorrowedFd<'_>) -> bool {
        match fstat(fd) {
            Ok(st) => self.check_fd_with(fd, &st),
            Err(e) => {
                log::warn!("fstat of a pinned file failed: {e}; treating it as denied");
                self.record_hit(None);
                true
            }
        }
    }

    /// [`check_fd`](Self::check_fd) with the file's `fstat` already made.
    pub(crate) fn check_fd_with(&self, fd: BorrowedFd<'_>, st: &FileStat) -> bool {
        let hit = self.check_fd_quietly(fd, st);
        if hit {
            self.record_hit(fd_path(fd));
        }
        hit
    }

    /// [`check_fd_with`](Self::check_fd_with), not counted.
    fn check_fd_quietly(&self, fd: BorrowedFd<'_>, st: &FileStat) -> bool {
        // A placeholder of a copy-on-write view is denied when the lower
        // file it stands for is (its bytes are that file's).
        if let Some(origin) = self.layer.as_ref().and_then(|l| l.origin(fd, st)) {
            match origin.and_then(|o| {
                fstat(o.as_fd())
                    .map(|ost| (o, ost))
                    .map_err(|e| crate::action::Errno::from_io(&e))
            }) {
                Ok((o, ost)) if !self.check_fd_quietly(o.as_fd(), &ost) => {}
                _ => return true,
            }
        }
        let st = *st;
        if self.id_denied(FileId::from(&st)) {
            return true;
        }
        let link = fd_path(fd);
        if let (Some(l), Some(p)) = (&self.lists, &link) {
            if !l.readable(p) {
                return true;
            }
        }
        if let Some(p) = &link {
            if self.name_denied(p) {
                return true;
            }
        }
        let dirs = self.dir_ids();
        if dirs.is_empty() {
            return false;
        }
        // Walk up the ancestors by identity (catches other mounts of a
        // denied directory).
        let start = if st.is_dir() {
            open_child(fd, std::ffi::OsStr::new(".."), libc::O_DIRECTORY)
        } else {
            match link.as_deref().and_then(Path::parent) {
                Some(parent) => open_path(parent, libc::O_DIRECTORY as u64),
                None => return false,
            }
        };
        let Ok(mut cur) = start else {
            return false;
        };
        for _ in 0..MAX_DEPTH {
            let Ok(cst) = fstat(cur.as_fd()) else {
                return false;
            };
            let cid = FileId::from(&cst);
            if dirs.contains(&cid) {
                return true;
            }
            let Ok(parent) = open_child(cur.as_fd(), std::ffi::OsStr::new(".."), libc::O_DIRECTORY)
            else {
                return false;
            };
            match fstat(parent.as_fd()) {
                Ok(pst) if FileId::from(&pst) == cid => return false,
                Ok(_) => cur = parent,
                Err(_) => return false,
            }
        }
        false
    }
}

/// The directories through which a file beneath the denied directory
/// `dir` (canonical) is reached by another route than `dir`, which the
/// walk up by identity from such a file would not meet: the root of each
/// mount at or beneath `dir` whose file system is also mounted elsewhere,
/// and the root of each of those other mounts that shows a part of it (a
/// bind mount of a subdirectory). A mount beneath `dir` that another mount
/// shows whole (or shows a directory above) is met at its own root. As for
/// hard links, the other route is denied: a tree beneath `dir` is denied
/// wherever else it is shown. Mounts the supervisor cannot see are not
/// known (mountinfo unreadable: logged). Each with whether it is a
/// directory (a file mounted over a file: its identity is the file's).
fn mount_aliases(dir: &Path) -> Vec<(FileId, bool)> {
    let text = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => {
            log::warn!(
                "mounts beneath the denied directory {} not known (mountinfo: {e})",
                dir.display()
            );
            return Vec::new();
        }
    };
    let mounts = crate::sys::mountinfo::parse(&text);
    let id_of = |p: &Path| {
        open_path(p, 0)
            .and_then(|fd| fstat(fd.as_fd()))
            .ok()
            .map(|st| (FileId::from(&st), st.is_dir()))
    };
    let mut ids = Vec::new();
    for (sub, other) in shown_elsewhere(&mounts, dir) {
        // Another mount of a part of it: its root is met by no walk up
        // from its files to `dir`.
        if other.root.starts_with(&sub.root) {
            ids.extend(id_of(&other.point));
        }
        ids.extend(id_of(&sub.point));
    }
    ids.sort_unstable_by_key(|(i, _)| (i.dev, i.ino));
    ids.dedup();
    ids
}

/// The mounts at or beneath `dir` whose file system another mount, not
/// beneath `dir`, shows too (a part of it, all of it, or more: the other
/// mount's root at, beneath or above theirs), each with that other
/// mount: the routes to the files beneath `dir` that do not go through
/// `dir`. Path denial's identity walk denies them ([`mount_aliases`]);
/// its kernel backstop does not hold over them (`backstop`).
pub(crate) fn shown_elsewhere<'a>(
    mounts: &'a [crate::sys::mountinfo::Mount],
    dir: &Path,
) -> Vec<(
    &'a crate::sys::mountinfo::Mount,
    &'a crate::sys::mountinfo::Mount,
)> {
    let mut pairs = Vec::new();
    for sub in mounts.iter().filter(|m| m.point.starts_with(dir)) {
        for m in mounts {
            if m.dev != sub.dev || m.point.starts_with(dir) {
                continue;
            }
            if m.root.starts_with(&sub.root) || sub.root.starts_with(&m.root) {
                pairs.push((sub, m));
            }
        }
    }
    pairs
}

/// The path of the file behind our fd `fd`, as `/proc/self/fd` shows it
/// (absolute, symlinks resolved), if it is a path.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> Option<PathBuf> {
    let p = std::fs::read_link(crate::sys::procfs::fd_link(fd.as_fd())).ok()?;
    p.is_absolute().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical() {
        assert_eq!(
            normalize_abs(Path::new("/a/./b/../c//d/")),
            Path::new("/a/c/d")
        );
        assert_eq!(normalize_abs(Path::new("/../..")), Path::new("/"));
    }

    #[test]
    fn allow_removes_only_runtime_paths() {
        let d = DeniedPaths::new();
        assert!(d.deny_fixed(Path::new("/nonexistent/fixed")));
        assert!(d.deny("/nonexistent/runtime"));
        assert!(!d.deny("/nonexistent/runtime/../runtime"));
        assert!(!d.allow("/nonexistent/fixed"));
        assert!(d.allow("/nonexistent/runtime"));
        assert_eq!(d.paths(), vec![PathBuf::from("/nonexistent/fixed")]);
        assert!(d.is_denied("/nonexistent/fixed/beneath"));
        assert!(!d.is_denied("/nonexistent/runtime"));
    }
}
