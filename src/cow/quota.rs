//! The cap on what the upper layer holds (`--max-disk`): bytes the
//! program's writes add to files of the upper tree are charged before the
//! write, and a charge past the cap is counted again exactly (the files
//! the upper tree holds alone, by their blocks) before it fails with
//! `ENOSPC`.
//!
//! A file without a name holds its blocks as long as anything holds it
//! (unlinked while open, or `O_TMPFILE`): an fd, an `O_PATH` fd, a
//! mapping, an fd in flight in a unix socket. The walk of the tree does
//! not see it, so every file written is remembered (inode → the end its
//! writes reached), and the exact count adds those no longer in the tree
//! that are still alive. Which, by the file's handle
//! (`name_to_handle_at`), taken when it loses a name on the program's
//! behalf ([`Quota::removing`], under a lock that no other change of a
//! name passes) or is written without one: `open_by_handle_at` opens it
//! exactly as long as its inode lives (and its blocks with it), whoever
//! holds it, and fails `ESTALE` once it is freed. A directory removed
//! while something holds it (an fd, a working directory) is counted so
//! too, by its size. Where handles cannot be
//! opened (a file system without them, a supervisor without
//! `CAP_DAC_READ_SEARCH`), or a file has no handle, the count falls back
//! to a scan of the processes' fds (`stat` of `/proc/<pid>/fd/N`) and
//! mappings (the inode `/proc/<pid>/maps` shows), which sees no fd in
//! flight; a process of the supervisor's user whose fds cannot be read
//! (not dumpable) then makes every such file count.
//!
//! A charge is in flight from the moment it is granted until its call is
//! made ([`Quota::settle`]) or has failed ([`Quota::refund`]: given back,
//! nothing was added). The exact count walks the tree and `/proc`, and
//! adds the charges in flight (their calls may have written nothing yet):
//! it runs at most once per [`RECOUNT_EVERY`] for refused charges, unless
//! space may have been freed since the last one ([`Quota::freed`]: a
//! removal, a rename, a truncation; or a file without a name known by its
//! handle is gone, its last fd closed), so a program writing in a loop at
//! the cap does not make the supervisor walk the tree at each call.
//!
//! A file's growth is charged against the end already charged for it (the
//! `written` map; at first sight, the size it has then, which the start's
//! count, a copy-up or a charge took in), not against its size: a byte
//! within the size but past what was charged (a hole a write far past the
//! end left) is charged when it is written. The exact count sets each
//! file's charged end to the size it counted.
//!
//! The cap is on what the program adds: what each entry of the tree (a
//! directory, a symlink made from DIR's) took at the start is its base,
//! by inode, and an entry counts only what it holds past its base; a
//! start entry removed counts nothing, and frees nothing of the cap.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::sys::handle::{self, FileHandle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a refused charge is refused without counting again, when no
/// space was freed on the program's behalf since the last count and no
/// file without a name known by its handle is gone (where handles cannot
/// be opened, space an fd's close or a process's exit frees is seen after
/// at most this long).
pub(crate) const RECOUNT_EVERY: Duration = Duration::from_millis(500);

/// The unit a file takes space in: a write of one byte into an empty
/// file takes a whole block (4 KiB on ext4, xfs, btrfs and tmpfs on
/// x86_64), so growth is charged, and files counted, in whole blocks.
const BLOCK: u64 = 4096;

/// `n` rounded up to whole blocks.
fn in_blocks(n: u64) -> u64 {
    n.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// What a file growing from `size` to `end` bytes is charged: the blocks
/// it comes to take (never less than the bytes; a sparse file is charged
/// as if written, and counted by its blocks at the next exact count).
pub(crate) fn growth(size: u64, end: u64) -> u64 {
    in_blocks(end).saturating_sub(in_blocks(size))
}

/// The cap and what is charged against it.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Bytes the upper tree may hold.
    cap: u64,
    /// Bytes charged since the last exact count (an upper bound of what
    /// the tree holds).
    used: AtomicU64,
    /// Bytes charged whose calls are not made yet (settled or refunded):
    /// the exact count adds them, as it cannot see them on disk.
    in_flight: AtomicU64,
    /// Bytes ever granted (never decreases): what an exact count adds for
    /// the calls granted, made and settled while it walked the tree (it
    /// may have read their files before the write).
    granted: AtomicU64,
    /// Removals and truncations made since the start (space they may
    /// have freed is seen by the next refused charge).
    frees: AtomicU64,
    /// The exact count's turn: when the last one ran, and `frees` then.
    /// Held while counting; a refund takes it so that it never subtracts
    /// from a count made while it was taken back.
    counting: parking_lot::Mutex<Option<(Instant, u64)>>,
    /// The device of the upper tree.
    dev: u64,
    /// Files written or seen (inode → the end charged for them since the
    /// last exact count, or their size then, and their handle once they
    /// may be without a name): what a growth is charged from, and the
    /// exact count's files without a name.
    written: parking_lot::Mutex<HashMap<u64, Written>>,
    /// The upper tree's file system, open (not `O_PATH`) for
    /// `open_by_handle_at`; `None` when a handle could not be opened
    /// there at the start (then files without a name are found by a scan
    /// of `/proc`).
    mount: Option<OwnedFd>,
    /// Held by a change of a name of the upper tree made for the program
    /// (a removal, a rename), from the look at what the name holds to the
    /// change: the file found is the file that loses the name.
    names: parking_lot::Mutex<()>,
    /// Locks taken, by inode, around a charge and the call that makes it
    /// (`cow::writes`): calls on one file are charged in the order made.
    files: [parking_lot::Mutex<()>; 64],
    /// What each entry of the tree held at the start (its directories and
    /// symlinks, made from DIR's), by inode: the bytes and the entry's
    /// birth time (an inode number reused by a new entry is not the
    /// start's). The cap is on what the program adds.
    base: Base,
}

/// Entries of the tree at the start: inode → (bytes, birth time).
type Base = HashMap<u64, (u64, Option<SystemTime>)>;

/// What the quota knows of a file: the end charged for it, and its
/// handle, taken when it lost a name (or was written without one).
#[derive(Debug)]
struct Written {
    end: u64,
    handle: Option<FileHandle>,
}

impl Written {
    fn at(end: u64) -> Written {
        Written { end, handle: None }
    }
}

use crate::paths::Charged;

/// A file of the upper tree a call grows: its inode, its size now, and the
/// end the call reaches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Growth {
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) end: u64,
}

impl Quota {
    /// The cap on what is added to `upper` as it is now (its files
    /// `shared` with the lower tree count for nothing).
    pub(crate) fn new(cap: u64, dev: u64, upper: &Path, shared: &dyn Fn(u64) -> bool) -> Quota {
        let mut base = Base::new();
        usage(
            upper,
            shared,
            &mut HashMap::new(),
            &mut true,
            &mut |ino, m, bytes| {
                base.insert(ino, (bytes, m.created().ok()));
                0
            },
        );
        Quota {
            cap,
            used: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            counting: parking_lot::Mutex::new(None),
            dev,
            written: parking_lot::Mutex::new(HashMap::new()),
            mount: handles_open(upper),
            names: parking_lot::Mutex::new(()),
            files: std::array::from_fn(|_| parking_lot::Mutex::new(())),
            base,
        }
    }

    /// The file `fd` (`st` its `fstat`) may be without a name (it has
    /// none, or is about to lose one): its handle is kept, so that the
    /// exact count knows when it is freed. It counts at least its size.
    pub(crate) fn nameless(&self, fd: BorrowedFd<'_>, st: &crate::sys::path::FileStat) {
        if self.mount.is_none() {
            return;
        }
        // None: the scan of `/proc` decides for this file.
        let h = handle::of(fd)
            .inspect_err(|e| log::debug!("--max-disk: no handle for inode {}: {e}", st.ino))
            .ok();
        let mut w = self.written.lock();
        let e = w.entry(st.ino).or_insert_with(|| Written::at(st.size));
        // At least its size now (a directory grows by names, not charges).
        e.end = e.end.max(st.size);
        e.handle = h;
    }

    /// What a new name for the file `fd` (`st` its `fstat`) adds to the
    /// tree: its blocks if it has no name and the quota does not count it
    /// (nothing if it does: it is counted while it lives, named or not).
    pub(crate) fn naming(&self, fd: BorrowedFd<'_>, st: &crate::sys::path::FileStat) -> u64 {
        if st.nlink != 0 || !st.is_file() {
            return 0;
        }
        let known = self.written.lock().contains_key(&st.ino);
        self.nameless(fd, st);
        if known {
            0
        } else {
            in_blocks(st.size)
        }
    }

    /// Makes the change `change` of the name `name` in the pinned
    /// directory `dir` (its removal, or a rename over it), after the file
    /// it names, if one of the tree's, is known by its handle: it may be
    /// left without a name. No other such change runs meanwhile, so the
    /// file looked at is the file that loses the name.
    pub(crate) fn removing<T>(
        &self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        dev: u64,
        change: impl FnOnce() -> T,
    ) -> T {
        let _names = self.names.lock();
        if self.mount.is_some() {
            let how = crate::sys::fs::OpenHow {
                flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                mode: 0,
                resolve: crate::sys::fs::RESOLVE_BENEATH,
            };
            if let Ok(fd) = crate::sys::fs::openat2(Some(dir), name, &how) {
                if let Ok(st) = crate::sys::path::fstat(fd.as_fd()) {
                    if (st.is_file() || st.is_dir()) && st.dev == dev {
                        self.nameless(fd.as_fd(), &st);
                    }
                }
            }
        }
        change()
    }

    /// Charges `n` bytes, or fails with `ENOSPC` past the cap. The charge
    /// is in flight until settled or refunded.
    pub(crate) fn charge(&self, n: u64) -> io::Result<Charged> {
        // In flight first: a count that reads `used` after the add below
        // reads this too (SeqCst both: the count loads them in the other
        // order under `counting`).
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        let before = self.used.fetch_add(n, Ordering::SeqCst);
        if before.saturating_add(n) <= self.cap {
            // After in flight (SeqCst): pairs with the exact count's
            // loads, granted before in flight.
            self.granted.fetch_add(n, Ordering::SeqCst);
            return Ok(Charged {
                bytes: n,
                file: None,
            });
        }
        self.used.fetch_sub(n, Ordering::SeqCst);
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// The call charged `c` was made: it is no longer in flight, and the
    /// file it grew is charged up to its end (unless an exact count set a
    /// lower end meanwhile: the bytes between stay to be charged).
    pub(crate) fn settle(&self, c: Charged) {
        self.in_flight.fetch_sub(c.bytes, Ordering::SeqCst);
        if let Some((ino, from, end)) = c.file {
            let mut w = self.written.lock();
            let e = w.entry(ino).or_insert_with(|| Written::at(from));
            if e.end >= from {
                e.end = e.end.max(end);
            }
        }
    }

    /// Gives back a charge whose call failed (nothing was added).
    pub(crate) fn refund(&self, c: Charged) {
        let _turn = self.counting.lock();
        self.in_flight.fetch_sub(c.bytes, Ordering::SeqCst);
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(c.bytes))
            });
    }

    /// The lock of the file `ino`, held around the charge of a call on it
    /// and the call.
    pub(crate) fn lock_file(&self, ino: u64) -> parking_lot::MutexGuard<'_, ()> {
        self.files[(ino % 64) as usize].lock()
    }

    /// Charges the growth of file `g.ino` to `g.end` bytes, from the end
    /// already charged for it (at first sight: its size `g.size`), after
    /// an exact count if needed (see [`charge_counted`](Self::charge_counted)).
    pub(crate) fn charge_file(
        &self,
        g: Growth,
        upper: &Path,
        shared: &dyn Fn(u64) -> bool,
    ) -> io::Result<Charged> {
        let from = self
            .written
            .lock()
            .entry(g.ino)
            .or_insert_with(|| Written::at(g.size))
            .end;
        let n = growth(from, g.end);
        let mut c = if n == 0 {
            Charged::default()
        } else {
            self.charge_counted(n, upper, shared)?
        };
        c.file = Some((g.ino, from, g.end));
        Ok(c)
    }

    /// Space may have been freed (a removal, a rename over a file, a
    /// truncation): the next refused charge counts again.
    pub(crate) fn freed(&self) {
        self.frees.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a file known by its handle was freed since the last exact
    /// count (which drops the files it finds freed): its last holder let
    /// go without a trapped call (an fd closed, a process gone), so the
    /// count would find room. One `open_by_handle_at` per such file.
    fn nameless_freed(&self) -> bool {
        let Some(m) = &self.mount else {
            return false;
        };
        self.written
            .lock()
            .values()
            .any(|e| e.handle.as_ref().is_some_and(|h| !alive(m.as_fd(), h)))
    }

    /// Charges `n` bytes (a file's growth, a new name or node, extended
    /// attributes) after counting `upper` again exactly (its directories,
    /// symlinks and files that are not `shared` with the lower tree, less
    /// what it held at the start, the files without a name still held,
    /// and the charges in flight), or fails with `ENOSPC`. The count is
    /// skipped (`ENOSPC`) within [`RECOUNT_EVERY`] of the last one when
    /// nothing was freed since (no removal or truncation, no file without
    /// a name known by its handle gone).
    pub(crate) fn charge_counted(
        &self,
        n: u64,
        upper: &Path,
        shared: &dyn Fn(u64) -> bool,
    ) -> io::Result<Charged> {
        if let Ok(c) = self.charge(n) {
            return Ok(c);
        }
        let mut turn = self.counting.lock();
        // Another call counted while this one waited for its turn.
        if let Ok(c) = self.charge(n) {
            return Ok(c);
        }
        let frees = self.frees.load(Ordering::Relaxed);
        // Within the wait, only if nothing may have been freed: no removal
        // or truncation, and no file without a name freed without a trapped
        // call (its last fd closed: a program's temporary file).
        if turn.is_some_and(|(at, seen)| seen == frees && at.elapsed() < RECOUNT_EVERY)
            && !self.nameless_freed()
        {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        // A call in flight during the walk, or granted and made while
        // it walked, may or may not be seen by it: its charge is added
        // (counted twice at most). SeqCst: pairs with the adds in
        // `charge` (in flight, then granted): a grant before `granted0`
        // is in flight at `in_flight0` unless settled, made before the
        // walk (so seen by it).
        let granted0 = self.granted.load(Ordering::SeqCst);
        let in_flight0 = self.in_flight.load(Ordering::SeqCst);
        let mut seen = HashMap::new();
        let mut whole = true;
        // Each entry past what it held at the start (a start entry
        // removed frees nothing of the cap).
        let mut exact = usage(
            upper,
            shared,
            &mut seen,
            &mut whole,
            &mut |ino, m, bytes| match self.base.get(&ino) {
                Some((b, born)) if *born == m.created().ok() => bytes.saturating_sub(*b),
                _ => bytes,
            },
        );
        if !whole {
            // A part of the tree that could not be read (a path too long
            // for the walk's names, say) would count as empty: the charge
            // is refused rather than granted from a short count.
            *turn = Some((Instant::now(), frees));
            log::debug!("--max-disk: the upper tree could not be counted whole; refusing");
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        // The scan of `/proc` only for files without a name that have no
        // handle (or where handles cannot be opened).
        let scan = self.mount.is_none()
            || self
                .written
                .lock()
                .iter()
                .any(|(ino, e)| e.handle.is_none() && !seen.contains_key(ino));
        let held = if scan {
            held_files(self.dev, false)
        } else {
            Some(HashSet::new())
        };
        {
            let mut w = self.written.lock();
            w.retain(|ino, e| {
                if let Some(size) = seen.get(ino) {
                    e.end = *size;
                    // A handle of a file freed, whose inode number a file
                    // with a name took since: it no longer names this one
                    // (which gets its own if it loses its name).
                    if let (Some(h), Some(m)) = (&e.handle, &self.mount) {
                        if !alive(m.as_fd(), h) {
                            e.handle = None;
                        }
                    }
                    return true;
                }
                let keep = match (&e.handle, &self.mount) {
                    (Some(h), Some(m)) => alive(m.as_fd(), h),
                    _ => held.as_ref().is_none_or(|h| h.contains(ino)),
                };
                if keep {
                    exact = exact.saturating_add(in_blocks(e.end));
                }
                keep
            });
            for (ino, size) in &seen {
                w.entry(*ino).or_insert_with(|| Written::at(*size));
            }
        }
        let granted1 = self.granted.load(Ordering::SeqCst);
        let in_flight = in_flight0.saturating_add(granted1.saturating_sub(granted0));
        self.used
            .store(exact.saturating_add(in_flight), Ordering::SeqCst);
        // A charge granted between the load and the store had its add to
        // `used` replaced: added again (twice at most, if its add came
        // after the store).
        let slipped = self.granted.load(Ordering::SeqCst).saturating_sub(granted1);
        self.used.fetch_add(slipped, Ordering::SeqCst);
        *turn = Some((Instant::now(), frees));
        log::debug!(
            "--max-disk: the upper tree counted again: {exact} bytes, {in_flight} more in flight"
        );
        drop(turn);
        self.charge(n)
    }
}

/// The inodes on device `dev` that some process holds by an fd, and the
/// inodes of any device it maps (this process too unless `others_only`); `None` when a process
/// of this user could not be looked at (then any file may be held).
pub(crate) fn held_files(dev: u64, others_only: bool) -> Option<HashSet<u64>> {
    let me = crate::sys::process::euid();
    let own = std::process::id().to_string();
    let mut held = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return None;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if others_only && pid == own {
            continue;
        }
        let base = Path::new("/proc").join(pid);
        let fds = match std::fs::read_dir(base.join("fd")) {
            Ok(fds) => fds,
            // Gone meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            // Another user's (not the program's), or one of ours that
            // cannot be looked at: then any file may be held. Whose, by
            // its uids, not `/proc/<pid>`'s owner: a process that made
            // itself non-dumpable shows a root-owned directory (and an
            // unreadable `fd/`), which must not hide its files. Unknown:
            // ours. (Read only here: most `fd/`s that can be read are
            // ours, and reading every `status` made a fifth of the scan's cost.)
            Err(_) => match crate::sys::procfs::read_text(&format!("/proc/{pid}/status")) {
                Ok(st) if !uid_is(&st, me) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                _ => return None,
            },
        };
        let holds = |fds: std::fs::ReadDir, held: &mut HashSet<u64>| {
            for fd in fds.flatten() {
                if let Ok(m) = std::fs::metadata(fd.path()) {
                    if m.dev() == dev && m.is_file() {
                        held.insert(m.ino());
                    }
                }
            }
        };
        holds(fds, &mut held);
        // A thread with a table of its own (made without `CLONE_FILES`, or
        // after `unshare(CLONE_FILES)`) holds what `fd/` (the leader's
        // table) may not show: a file the leader closed and unlinked.
        if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
            for t in tasks.flatten() {
                let tid = t.file_name();
                let Some(tid) = tid.to_str().filter(|t| *t != pid) else {
                    continue;
                };
                let shared = tid
                    .parse()
                    .ok()
                    .and_then(|t| crate::sys::pidfd::same_fd_table(pid.parse().ok()?, t).ok());
                if shared == Some(true) {
                    continue;
                }
                match std::fs::read_dir(t.path().join("fd")) {
                    Ok(fds) => holds(fds, &mut held),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    // Cannot tell what it holds: any file may be held.
                    Err(_) => return None,
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(base.join("maps")) {
            // start-end perms offset major:minor inode path. A mapping's
            // device is its file system's own (`s_dev`), which is not
            // `stat`'s `st_dev` on a btrfs subvolume or an overlay: the
            // inode number alone decides (a file of another file system
            // with the same number counts as held: copied, or kept
            // counted, never the reverse).
            for m in crate::sys::procfs::mappings(&maps).flatten() {
                if m.ino != 0 {
                    held.insert(m.ino);
                }
            }
        }
    }
    Some(held)
}

/// Whether one of the uids of a process's `status` text `st` is `uid`
/// (no `Uid:` line: yes).
fn uid_is(st: &str, uid: u32) -> bool {
    crate::sys::procfs::status_field(st, "Uid:").is_none_or(|v| {
        v.split_ascii_whitespace()
            .any(|u| u.parse::<u32>() == Ok(uid))
    })
}

/// Whether the file of handle `h` still lives (its inode, and its blocks),
/// on the file system `mount`: `open_by_handle_at` fails `ESTALE` once it
/// is freed. Any other failure: alive (counted). With the supervisor's
/// capabilities (`CAP_DAC_READ_SEARCH`), not the task's a call runs with.
fn alive(mount: BorrowedFd<'_>, h: &FileHandle) -> bool {
    match crate::paths::as_supervisor(|| handle::open(mount, h)) {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(libc::ESTALE) => false,
        Err(e) => {
            log::debug!("--max-disk: a file without a name could not be looked at ({e}): counted");
            true
        }
    }
}

/// The upper tree `upper` open for `open_by_handle_at`, if a handle of it
/// opens (the file system makes handles, and the supervisor may open them:
/// `CAP_DAC_READ_SEARCH`).
fn handles_open(upper: &Path) -> Option<OwnedFd> {
    let dir = std::fs::File::open(upper).ok()?;
    let fd = OwnedFd::from(dir);
    match handle::of(fd.as_fd()).and_then(|h| handle::open(fd.as_fd(), &h)) {
        Ok(_) => Some(fd),
        Err(e) => {
            log::debug!(
                "--max-disk: file handles cannot be opened in the layer ({e}): files without a name are found by a scan of /proc"
            );
            None
        }
    }
}

/// The bytes `dir` and what is under it take, files that are shared
/// left out, each entry (its inode, metadata and bytes) as `count` says;
/// `seen` gets each file and directory counted and its size.
fn usage(
    dir: &Path,
    shared: &dyn Fn(u64) -> bool,
    seen: &mut HashMap<u64, u64>,
    whole: &mut bool,
    count: &mut dyn FnMut(u64, &std::fs::Metadata, u64) -> u64,
) -> u64 {
    // Gone meanwhile (removed: nothing to count); any other failure
    // leaves the count short, which `whole` tells.
    let mut short = |e: &io::Error| {
        if e.kind() != io::ErrorKind::NotFound {
            *whole = false;
        }
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            short(&e);
            return 0;
        }
    };
    // A directory is seen too: one removed that something still holds
    // (an fd, a working directory) is a file without a name.
    let mut total = std::fs::symlink_metadata(dir).map_or(0, |m| {
        seen.insert(m.ino(), m.len());
        count(m.ino(), &m, m.blocks() * 512)
    });
    let mut entries = Vec::new();
    for e in rd {
        match e.and_then(|e| e.metadata().map(|m| (e.path(), m))) {
            Ok(em) => entries.push(em),
            Err(e) => short(&e),
        }
    }
    for (path, m) in entries {
        if m.is_dir() {
            total = total.saturating_add(usage(&path, shared, seen, whole, count));
        } else if !shared(m.ino()) && seen.insert(m.ino(), m.len()).is_none() {
            let bytes = in_blocks(m.len()).max(m.blocks() * 512);
            total = total.saturating_add(count(m.ino(), &m, bytes));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty upper tree in a fresh directory.
    fn upper(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("unotify-quota-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_exact_count_keeps_the_charges_in_flight() {
        // Review (hole 3): the exact count stored what it found on disk,
        // dropping the charges of calls granted but not made yet: 768 KiB
        // in flight, a count, and 512 KiB more was granted under a 1 MiB
        // cap (1.25x; about 1.5x with concurrent writers).
        let dir = upper("in-flight");
        let dev = std::fs::metadata(&dir).unwrap().dev();
        let q = Quota::new(1 << 20, dev, &dir, &|_| false);
        let pending = q.charge(768 << 10).unwrap();
        q.freed();
        let later = q.charge_counted(512 << 10, &dir, &|_| false);
        assert!(later.is_err(), "granted past the cap");
        q.settle(pending);
        // Settled, it stays charged; refunded, it is given back.
        assert!(q.charge(512 << 10).is_err());
        let small = q.charge(128 << 10).unwrap();
        q.refund(small);
        assert!(q.charge(256 << 10).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_start_directory_removed_frees_nothing() {
        // Red team rt11 M3: the start's bytes were one total subtracted
        // from the count, so removing DIR's directories made room.
        let dir = upper("start-dirs");
        for i in 0..64 {
            std::fs::create_dir(dir.join(format!("d{i}"))).unwrap();
        }
        let dev = std::fs::metadata(&dir).unwrap().dev();
        let q = Quota::new(64 << 10, dev, &dir, &|_| false);
        for i in 0..64 {
            std::fs::remove_dir(dir.join(format!("d{i}"))).unwrap();
        }
        q.freed();
        // 64 directories of 4 KiB were removed: still only the cap.
        assert!(q.charge_counted(128 << 10, &dir, &|_| false).is_err());
        assert!(q.charge_counted(60 << 10, &dir, &|_| false).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_without_a_name_counts_while_held() {
        let dir = upper("nameless");
        let dev = std::fs::metadata(&dir).unwrap().dev();
        let q = Quota::new(1 << 20, dev, &dir, &|_| false);
        // By its handle (as root), or by the scan of `/proc`, which sees
        // this process's own fd.
        let path = dir.join("f");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(768 << 10).unwrap();
        let st = crate::sys::path::fstat(f.as_fd()).unwrap();
        let g = Growth {
            ino: st.ino,
            size: 0,
            end: 768 << 10,
        };
        q.settle(q.charge_file(g, &dir, &|_| false).unwrap());
        let dirfd = std::fs::File::open(&dir).unwrap();
        q.removing(dirfd.as_fd(), c"f", dev, || std::fs::remove_file(&path))
            .unwrap();
        q.freed();
        // Held by `f`, without a name: counted.
        assert!(q.charge_counted(512 << 10, &dir, &|_| false).is_err());
        // Closed: freed, and seen so.
        drop(f);
        q.freed();
        assert!(q.charge_counted(512 << 10, &dir, &|_| false).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_is_charged_past_the_end_charged_not_its_size() {
        // Review (hole 2): growth was charged from the size seen, so bytes
        // within a size a far write made (a hole) were never charged.
        let dir = upper("charged-end");
        let dev = std::fs::metadata(&dir).unwrap().dev();
        let q = Quota::new(64 << 20, dev, &dir, &|_| false);
        let g = |size, end| Growth { ino: 7, size, end };
        let c = q.charge_file(g(0, 4096), &dir, &|_| false).unwrap();
        assert_eq!(c.bytes, 4096);
        q.settle(c);
        // The size is now 40 MiB (a hole): filling it is charged.
        let c = q
            .charge_file(g(40 << 20, 8 << 20), &dir, &|_| false)
            .unwrap();
        assert_eq!(c.bytes, (8 << 20) - 4096);
        q.settle(c);
        // Within what was charged: nothing more.
        let c = q
            .charge_file(g(40 << 20, 4 << 20), &dir, &|_| false)
            .unwrap();
        assert_eq!(c.bytes, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
