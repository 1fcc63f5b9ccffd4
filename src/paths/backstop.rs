//! The kernel backstop of path denial (Landlock), and the cheap open it
//! allows.
//!
//! Landlock can only allow, so "everything but the denied paths" is a
//! domain that handles every file system right and allows all of them
//! beneath each entry of `/` and of every directory on the way to a denied
//! path, but the entry that leads to it (`DomainPlan::deny_beneath`): for
//! `--deny-path /etc/shadow`, every entry of `/` but `etc`, every entry of
//! `/etc` but `shadow`. The program's domain then refuses the denied paths
//! in the kernel (`EACCES`, the errno path denial uses), by inode along the
//! path the kernel walked, race-free. Then:
//!
//! - an open whose target lies beneath a rule may be answered `CONTINUE`:
//!   a thread or another process that changes the path (a rewritten
//!   string, a swapped symlink) after the supervisor looked can only reach
//!   what the domain refuses anyway (the TOCTOU rule's exception: the
//!   kernel enforces the same decision). Only for flags the program
//!   cannot change (`open`, `openat`: registers): `O_PATH`, which
//!   Landlock does not check, could be swapped into `openat2`'s
//!   `struct open_how` after the look;
//! - `execve` and `execveat` need no path check and no exec freeze for
//!   path denial: Landlock checks `EXECUTE`/`READ_FILE` of the executable,
//!   of `#!` interpreters and of the ELF interpreter (`open_exec`).
//!
//! The catch: an entry made in one of those directories after the domain
//! (a new file in `/etc`; in `$HOME` for `--deny-path ~/.ssh`), and the
//! directories themselves, are beneath no rule, and the domain refuses
//! them. So opens stay trapped and are classified ([`Backstop::covers`]):
//! target beneath a rule → `CONTINUE`; otherwise today's on-behalf open
//! (the supervisor is outside the domain). The classification only has to
//! avoid false refusals, safety comes from the domain: one `newfstatat`
//! of the path (relative paths through `/proc/<tid>/cwd` or
//! `/proc/<tid>/fd/N`), the result compared with the directories on the
//! way, and one `fstat` of each of those directories: once an entry of
//! one of them is made, renamed or removed (its change time moved; the
//! file systems with fine-grained change times after a query give every
//! change a new one, and one changed in the tick of the start counts as
//! changed), every open takes the on-behalf route (exact: never a false
//! refusal, as fast as before).
//!
//! The places the domain keeps from writes (the cgroup file systems; `/proc`
//! and `/sys` for root) are left out of the walk the same way, so the
//! directories on the way to them get no rule either: the domain's walk
//! names them all (`DenyRules::ways`) and they count as on the way. Those
//! whose change times do not follow their entries (`/sys`, `/sys/fs`:
//! sysfs) send every open of a file on their file system on-behalf; a
//! directory on the way that cannot be listed leaves no backstop.
//!
//! Soundness conditions, checked when the sandbox is built (else path
//! denial keeps its on-behalf route for every call, logged at debug):
//! the domain must refuse a superset of what identity-based denial refuses.
//! - No denied file has a hard link elsewhere: a denied non-directory has
//!   one link, and no file beneath a denied directory has more (the scan
//!   must complete). A link the program makes later is refused by `link`
//!   (on-behalf); one the host makes later (in a directory beneath a rule)
//!   is a name the domain allows, so the backstop keeps an `O_PATH` fd of
//!   each denied file and watches its link count with the directories on
//!   the way (`entries_changed`: one `fstat` each): from the first call
//!   after the link, every call takes the on-behalf route, which refuses
//!   the file by identity. The count, not the change time: a write to a
//!   denied file (a log, a database) moves its change time and would
//!   turn the backstop off for nothing; a link always moves the count
//!   (and one that is gone again by the next call was reached by no call
//!   checked after it). Not watched: files beneath a denied directory
//!   (there may be thousands; the on-behalf route, too, knows only the
//!   links there at the start), and a call whose check passed before the
//!   link was made and whose kernel walk comes after (one call in flight:
//!   microseconds).
//! - No other mount shows a denied path or a directory above it at
//!   another place (`/proc/self/mountinfo`: every other mount of the same
//!   file system has a root beside the denied path), nor a part of a mount
//!   beneath a denied path (its inodes would be beneath a rule there).
//!   The program cannot mount while paths are denied (`view`); the host
//!   can (a bind mount of a denied directory beneath a rule): the backstop
//!   keeps `/proc/self/mountinfo` open and `poll`s it at each check (one
//!   call); once the table changed, the mounts are checked again under a
//!   lock (no other call is classified meanwhile), and a failed check
//!   sends every call on-behalf. Same window as for links.
//! - The denied set is fixed (no shared [`DeniedPaths`](super::DeniedPaths),
//!   no policy callback), no allow lists, no chroot, no work directory.
//!
//! - `unlink`, `unlinkat` and `rmdir` whose parent directory lies beneath
//!   a rule are answered `CONTINUE` the same way ([`Backstop::covers_removal`]):
//!   removing is the parent's right, which the domain refuses in the
//!   directories on the way and beneath a denied directory, where every
//!   name path denial keeps from removal lies.
//!
//! What stays as today: the metadata calls (Landlock does not restrict
//! `stat`, `chmod`, `chown`, the times and xattrs), `link`, `rename`,
//! `mkdir`, `mknod`, `symlink`, `truncate` and `bind` (made on the
//! program's behalf, outside the domain), and every removal the
//! classification does not place beneath a rule.
//!
//! Known limit of the route: a program cannot execute a file made after
//! the start directly in a directory on the way to a denied path (or
//! beneath one made there): the domain refuses it (`EACCES`), and no
//! on-behalf exec exists. So the route is taken only where programs
//! rarely do that: every directory on the way but `/` must be a system
//! directory (owned by root, written by nobody else, not a home):
//! `--deny-path /etc/shadow` takes it, `--deny-path /tmp/secret` or
//! `~/.ssh` does not (`git clone x ~/new && ~/new/configure` must work).

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::path::fstatat;

std::thread_local! {
    /// The path of an open being classified, as the supervisor reaches
    /// it (NUL-terminated): one buffer per worker, reused.
    static FULL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What the classification of opens needs: the directories on the way to
/// the denied paths, and whether any of their entries changed.
#[derive(Debug)]
pub(crate) struct Backstop {
    /// `(st_dev, st_ino)` of every directory beneath no rule: on the way
    /// to a denied path, or to a place the domain keeps from writes.
    on_the_way: HashSet<(u64, u64)>,
    /// The file systems (`st_dev`) of the directories on the way to a
    /// write-forbidden place whose change times do not follow their
    /// entries (sysfs): an entry made there later is beneath no rule and
    /// no change would tell, so every file on them takes the on-behalf
    /// route (mounts do not change while paths are denied).
    untracked: HashSet<u64>,
    /// The denied paths and the identities of those that exist: an open
    /// that names one takes the on-behalf route, which reports the
    /// refusal (the domain would refuse it without a word).
    denied: Vec<PathBuf>,
    /// See `denied`.
    denied_ids: HashSet<(u64, u64)>,
    /// Those directories (`O_PATH`) and their change times at the start.
    dirs: Vec<(OwnedFd, (i64, i64))>,
    /// The denied files (not directories) there at the start (`O_PATH`),
    /// each with one link then: a link made later (by the host) gives
    /// one a second name beneath a rule, and raises its count.
    files: Vec<OwnedFd>,
    /// `/proc/self/mountinfo`, open since the start: `poll` reports a
    /// change of the mount table (a bind mount the host makes later of a
    /// denied directory, or of a directory above a denied path, would
    /// show it beneath a rule); then the mounts are checked again, under
    /// the lock, before any call is classified on.
    mounts: parking_lot::Mutex<std::fs::File>,
    /// An entry of one of them changed: every open is made on-behalf.
    changed: AtomicBool,
}

impl Backstop {
    /// The backstop for the canonical `denied` paths, or why it cannot
    /// hold for them. `ways`: the directories the domain gives no rule
    /// ([`DenyRules::ways`](crate::isolation::DenyRules)), those on the way
    /// to the denied paths and to the places kept from writes.
    pub(crate) fn plan(denied: &[PathBuf], ways: &[PathBuf]) -> Result<Backstop, String> {
        let mut on_the_way = HashSet::new();
        let mut denied_ids = HashSet::new();
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in denied {
            if !d.is_absolute() {
                return Err(format!("{} is not absolute", d.display()));
            }
            // No entry leads to `/`: the rules would allow everything.
            if d.parent().is_none() {
                return Err("the root is denied".into());
            }
            if let Ok(m) = std::fs::symlink_metadata(d) {
                use std::os::unix::fs::MetadataExt;
                denied_ids.insert((m.dev(), m.ino()));
                if m.file_type().is_symlink() {
                    return Err(format!("{} is a symbolic link", d.display()));
                }
                if !m.is_dir() && m.nlink() > 1 {
                    return Err(format!("{} has other hard links", d.display()));
                }
                if !m.is_dir() {
                    files.push(open_denied_file(d, (m.dev(), m.ino()))?);
                }
                if m.is_dir() && has_linked(d, &mut 100_000)? {
                    return Err(format!(
                        "a file beneath {} has other hard links",
                        d.display()
                    ));
                }
            }
        }
        // The way to the denied paths, then what else the domain's walk
        // gave no rule (the way to the write-forbidden places: `/sys`,
        // `/sys/fs` and `/sys/fs/cgroup` when the cgroup file systems are).
        let ancestors = denied.iter().flat_map(|d| d.ancestors().skip(1));
        for a in ancestors.chain(ways.iter().map(PathBuf::as_path)) {
            if dirs.iter().any(|x| x == a) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(a) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if let Some(why) = makes_and_runs(a, m.uid(), m.mode()) {
                return Err(format!("{} is {why}", a.display()));
            }
            on_the_way.insert((m.dev(), m.ino()));
            dirs.push(a.to_path_buf());
        }
        let mounts = std::fs::File::open("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        check_mounts(denied)?;
        let mut opened = Vec::new();
        let mut untracked = HashSet::new();
        let mut recent = false;
        for d in &dirs {
            let fd =
                crate::paths::open_trusted_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let kind = crate::sys::path::fs_type(fd.as_fd()).map_err(|e| e.to_string())?;
            if !TRACKED_FS.contains(&kind) {
                if denied.iter().any(|p| p.starts_with(d)) {
                    return Err(format!(
                        "{} is on a file system (magic {kind:#x}) whose directories' change times are not known to follow their entries",
                        d.display()
                    ));
                }
                let st = crate::sys::path::fstat(fd.as_fd()).map_err(|e| e.to_string())?;
                untracked.insert(st.dev);
                continue;
            }
            let (ctime, settled) = settled_ctime(fd.as_fd())?;
            recent |= !settled;
            opened.push((fd, ctime));
        }
        Ok(Backstop {
            on_the_way,
            untracked,
            denied: denied.to_vec(),
            denied_ids,
            dirs: opened,
            files,
            mounts: parking_lot::Mutex::new(mounts),
            changed: AtomicBool::new(recent),
        })
    }

    /// Whether the kernel's open of `path` by task `tid` (relative to
    /// `dirfd`, with `flags`) lands beneath a rule of the domain, so that
    /// `CONTINUE` gives what the on-behalf open would.
    pub(crate) fn covers(&self, tid: u32, dirfd: i32, path: &[u8], flags: i32) -> bool {
        // `O_PATH` opens are not checked by Landlock at all: a file beneath
        // a denied directory would be reached.
        if path.is_empty()
            || flags & libc::O_TMPFILE == libc::O_TMPFILE
            || flags & libc::O_PATH != 0
        {
            return false;
        }
        if self.changed.load(Ordering::Relaxed) {
            return false;
        }
        // `/proc/self` and `/dev/fd`, `/dev/std*` would be the supervisor's
        // (the on-behalf route rewrites them), however spelled.
        let named = |n: &[u8]| path.windows(n.len()).any(|w| w == n);
        if named(b"proc") || named(b"/dev/fd") || named(b"/dev/std") {
            return false;
        }
        if path[0] == b'/' && self.names_denied(path) {
            return false;
        }
        let follow = if flags & libc::O_NOFOLLOW != 0 {
            libc::AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
        // The path as the supervisor reaches it, built in this thread's
        // buffer (no allocation per open once it has grown).
        let verdict = FULL.with_borrow_mut(|full| {
            use std::io::Write;
            full.clear();
            if path[0] != b'/' {
                let _ = if dirfd == libc::AT_FDCWD {
                    write!(full, "/proc/{tid}/cwd/")
                } else {
                    write!(full, "/proc/{tid}/fd/{dirfd}/")
                };
            }
            full.extend_from_slice(path);
            full.push(0);
            match CStr::from_bytes_with_nul(full) {
                Ok(c) => self.classify(c, follow, flags),
                Err(_) => false,
            }
        });
        // After the stat: an entry made on the way before it is seen (its
        // identity would pass as beneath a rule).
        verdict && !self.entries_changed()
    }

    /// Whether the kernel's removal of `path` (`unlink`, `unlinkat`,
    /// `rmdir`) by task `tid`, relative to `dirfd`, is decided by the
    /// domain as path denial would decide it, so that `CONTINUE` gives
    /// what the on-behalf removal would. Removing is a right of the
    /// parent directory (`REMOVE_FILE`, `REMOVE_DIR`): the domain allows
    /// it beneath a rule and refuses it in a directory on the way (where
    /// every denied path, and every directory holding one, has its name)
    /// and beneath a denied directory. So the parent is classified as an
    /// open's target is ([`covers`](Self::covers)); a parent swapped or a
    /// path rewritten after the look only moves the removal to where the
    /// domain decides again. A name the supervisor cannot split (`.`,
    /// `..`, the root) and a denied name (its refusal is reported) keep
    /// the on-behalf route.
    pub(crate) fn covers_removal(&self, tid: u32, dirfd: i32, path: &[u8]) -> bool {
        let mut path = path;
        while path.len() > 1 && path.ends_with(b"/") {
            path = &path[..path.len() - 1];
        }
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(0) => (&b"/"[..], &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b"."[..], path),
        };
        if name.is_empty() || name == b"." || name == b".." {
            return false;
        }
        if path[0] == b'/' && self.names_denied(path) {
            return false;
        }
        self.covers(tid, dirfd, parent, libc::O_DIRECTORY)
    }

    /// Whether the absolute `path` names a denied path or lies beneath
    /// one, lexically. Without `.`, `..` or `//` in it (as nearly every
    /// path is), on its bytes; else on its normal form.
    fn names_denied(&self, path: &[u8]) -> bool {
        let plain = !path.windows(2).any(|w| w == b"/." || w == b"//");
        if plain {
            let path = path.strip_suffix(b"/").unwrap_or(path);
            return self.denied.iter().any(|d| {
                let d = d.as_os_str().as_bytes();
                d == b"/"
                    || path
                        .strip_prefix(d)
                        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
            });
        }
        let norm = super::normalize_abs(Path::new(std::ffi::OsStr::from_bytes(path)));
        self.denied.iter().any(|d| norm.starts_with(d))
    }

    /// [`Backstop::covers`] for the path `c`, resolved by the supervisor.
    fn classify(&self, c: &CStr, follow: i32, flags: i32) -> bool {
        match fstatat(None, c, follow) {
            // A FIFO's open keeps its on-behalf route (the deferral pool
            // and its deadline, as without the backstop).
            Ok(st) if st.is_fifo() => false,
            Ok(st) => self.beneath_rules(&st),
            // Nothing there: the kernel's open fails the same way, unless
            // it creates: then the name must be no dangling symbolic link
            // (the kernel would create its target, anywhere), and its
            // directory beneath a rule.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if flags & libc::O_CREAT == 0 {
                    return true;
                }
                if fstatat(None, c, libc::AT_SYMLINK_NOFOLLOW).is_ok() {
                    return false;
                }
                let bytes = c.to_bytes();
                let Some(slash) = bytes.iter().rposition(|&b| b == b'/') else {
                    return false;
                };
                let dir = if slash == 0 {
                    &b"/"[..]
                } else {
                    &bytes[..slash]
                };
                CString::new(dir)
                    .ok()
                    .and_then(|d| fstatat(None, &d, 0).ok())
                    .is_some_and(|st| st.is_dir() && self.beneath_rules(&st))
            }
            Err(_) => false,
        }
    }

    /// Whether the file `st` is beneath a rule: neither a directory the
    /// domain gives no rule (no entry of those directories changed), nor
    /// on a file system where one does not track its entries, nor denied.
    fn beneath_rules(&self, st: &crate::sys::path::FileStat) -> bool {
        let id = (st.dev, st.ino);
        !self.on_the_way.contains(&id)
            && !self.untracked.contains(&st.dev)
            && !self.denied_ids.contains(&id)
    }

    /// Whether `dir` (a program's home, say) is a directory on the way
    /// to a denied path, other than `/`: a program cannot run a file it
    /// makes there (the module's known limit).
    pub(crate) fn on_the_way(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        dir.parent().is_some()
            && std::fs::metadata(dir).is_ok_and(|m| self.on_the_way.contains(&(m.dev(), m.ino())))
    }

    /// Whether an entry of a directory on the way changed, or a denied
    /// file got another name (then remembered).
    fn entries_changed(&self) -> bool {
        let moved = self.dirs.iter().any(|(fd, ctime)| {
            crate::sys::path::fstat(fd.as_fd()).map_or(true, |st| st.ctime != *ctime)
        }) || self
            .files
            .iter()
            .any(|fd| crate::sys::path::fstat(fd.as_fd()).map_or(true, |st| st.nlink != 1))
            || self.mounts_changed();
        if moved {
            self.changed.store(true, Ordering::Relaxed);
            log::debug!(
                "an entry on the way to a denied path, or a denied file's links, changed: opens made on-behalf from now on"
            );
            return true;
        }
        false
    }

    /// Whether the mount table changed since the last look in a way the
    /// backstop cannot hold over (see `check_mounts`); a change that
    /// leaves the denied paths where they were is only looked at.
    fn mounts_changed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let file = self.mounts.lock();
        let mut fds = [libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        }];
        match crate::sys::process::poll(&mut fds, Some(std::time::Duration::ZERO)) {
            Ok(0) => false,
            Ok(_) => match check_mounts(&self.denied) {
                Ok(()) => false,
                Err(why) => {
                    log::debug!("the mounts changed: {why}");
                    true
                }
            },
            Err(_) => true,
        }
    }
}

/// An `O_PATH` fd of the denied file `path`, which must still be the
/// file `id` (`(st_dev, st_ino)`) seen by the plan.
fn open_denied_file(path: &Path, id: (u64, u64)) -> Result<OwnedFd, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let fd = OwnedFd::from(file);
    let st = crate::sys::path::fstat(fd.as_fd()).map_err(|e| e.to_string())?;
    if (st.dev, st.ino) != id || st.nlink != 1 {
        return Err(format!("{} changed while it was looked at", path.display()));
    }
    Ok(fd)
}

/// Why a program may well make something in the directory `dir` (owned
/// by `uid`, with `mode`) and then run it, which the domain would refuse
/// (see the module's known limit); `None` for a system directory (owned
/// by root, written by nobody else, not a home), where a program making
/// an entry and running it is rare. `/` itself is let through. The home
/// is `/root` and this process's `HOME`, the one a program inherits; a
/// program given another is checked at its spawn
/// ([`Backstop::on_the_way`]).
fn makes_and_runs(dir: &Path, uid: u32, mode: u32) -> Option<&'static str> {
    dir.parent()?;
    if mode & 0o022 != 0 {
        return Some("writable by others (a place for temporary files)");
    }
    if uid != 0 {
        return Some("not a system directory (not owned by root)");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if dir == Path::new("/root") || home.as_deref() == Some(dir) {
        return Some("a home directory");
    }
    None
}

/// The change time of the directory `fd`, once it lies in a past tick of
/// the coarse clock (a change in the current tick could get the same time
/// again on a file system without fine-grained times): waits up to a few
/// ticks; `false` if the directory kept changing.
fn settled_ctime(fd: std::os::fd::BorrowedFd<'_>) -> Result<((i64, i64), bool), String> {
    for _ in 0..20 {
        let st = crate::sys::path::fstat(fd).map_err(|e| e.to_string())?;
        let now = crate::sys::host::clock_gettime(libc::CLOCK_REALTIME_COARSE)
            .map_err(|e| e.to_string())?;
        if st.ctime < now {
            return Ok((st.ctime, true));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let st = crate::sys::path::fstat(fd).map_err(|e| e.to_string())?;
    Ok((st.ctime, false))
}

/// The file systems (`statfs` magic) whose directories get a new change
/// time at every change of their entries: ext2/3/4, xfs, btrfs, tmpfs.
/// (procfs, sysfs and the like make and drop entries without one.)
const TRACKED_FS: [i64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994];

/// Whether a file beneath `dir` has more than one link; an error if the
/// scan ran out of `budget` or could not look somewhere.
fn has_linked(dir: &Path, budget: &mut usize) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt;
    // What cannot be looked at may hold a linked file.
    let unknown =
        |e: std::io::Error| format!("{} cannot be scanned for hard links: {e}", dir.display());
    for ent in std::fs::read_dir(dir).map_err(unknown)? {
        let ent = ent.map_err(unknown)?;
        if *budget == 0 {
            return Err(format!("too many files beneath {}", dir.display()));
        }
        *budget -= 1;
        let m = ent.path().symlink_metadata().map_err(unknown)?;
        if m.is_dir() {
            if has_linked(&ent.path(), budget)? {
                return Ok(true);
            }
        } else if m.nlink() > 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses when another mount of a denied path's file system has a root
/// at, above or beneath the denied path: it would show the path (or what
/// is above it) at another place, beneath rules of the domain.
fn check_mounts(denied: &[PathBuf]) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mounts = crate::sys::mountinfo::parse(&info);
    for d in denied {
        // The mount the denied path is on: the longest mount point above it.
        let Some(own) = mounts
            .iter()
            .filter(|m| d.starts_with(&m.point))
            .max_by_key(|m| m.point.as_os_str().len())
        else {
            return Err(format!("no mount holds {}", d.display()));
        };
        let rel = d.strip_prefix(&own.point).unwrap_or(d);
        let in_fs = own.root.join(rel);
        for m in &mounts {
            if m.dev != own.dev || std::ptr::eq(m, own) {
                continue;
            }
            if in_fs.starts_with(&m.root) || m.root.starts_with(&in_fs) {
                return Err(format!(
                    "{} is also shown at {} (a mount of the same file system)",
                    d.display(),
                    m.point.display()
                ));
            }
        }
        // A mount beneath the denied path whose file system another mount
        // shows too: the rule of the entry leading to that one would allow
        // its files (rules hold inodes, whatever the path).
        if let Some((sub, m)) = super::deny::shown_elsewhere(&mounts, d).first() {
            return Err(format!(
                "{}, beneath {}, is also shown at {} (a mount of the same file system)",
                sub.point.display(),
                d.display(),
                m.point.display()
            ));
        }
    }
    Ok(())
}

/// The backstop for the fixed denied `paths`, its rules added to `domain`;
/// `None` (logged at debug: path denial keeps its on-behalf route) when a
/// soundness condition fails.
pub(crate) fn plan_for(
    paths: &[PathBuf],
    domain: Option<&mut crate::isolation::DomainPlan>,
) -> Option<Backstop> {
    let Some(domain) = domain else {
        log::debug!("no kernel backstop for the denied paths: no Landlock domain");
        return None;
    };
    let mut canonical = Vec::new();
    for p in paths {
        let given = super::normalize_abs(p);
        match std::fs::canonicalize(&given) {
            Ok(c) if c == given => canonical.push(c),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Not there yet: its parent must be canonical.
                let parent_ok = given
                    .parent()
                    .and_then(|d| std::fs::canonicalize(d).ok())
                    .is_some_and(|c| Some(c.as_path()) == given.parent());
                if !parent_ok {
                    log::debug!("no kernel backstop: {} is not canonical", given.display());
                    return None;
                }
                canonical.push(given);
            }
            _ => {
                log::debug!("no kernel backstop: {} is not canonical", given.display());
                return None;
            }
        }
    }
    let planned = match domain.deny_rules(&canonical) {
        Ok(Some(planned)) => planned,
        Ok(None) => {
            log::debug!("no kernel backstop: a denied path meets a write-forbidden place or a directory that cannot be listed");
            return None;
        }
        Err(e) => {
            log::debug!("no kernel backstop: the rules cannot be made: {e}");
            return None;
        }
    };
    // Planned before the domain takes the rules: a backstop refused here
    // leaves the domain as it was.
    let backstop = match Backstop::plan(&canonical, &planned.ways) {
        Ok(b) => b,
        Err(why) => {
            log::debug!("no kernel backstop for the denied paths: {why}");
            return None;
        }
    };
    let rules = domain.adopt(planned);
    log::debug!("kernel backstop for the denied paths: {rules} rules");
    Some(backstop)
}
