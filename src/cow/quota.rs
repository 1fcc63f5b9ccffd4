//! The cap on what the upper layer holds (`--max-disk`): bytes the
//! program's writes add to files of the upper tree are charged before the
//! write, and a charge past the cap is counted again exactly (the files
//! the upper tree holds alone, by their blocks) before it fails with
//! `ENOSPC`.
//!
//! A file without a name holds its blocks as long as an fd or a mapping
//! holds it (unlinked while open, or `O_TMPFILE`): the walk of the tree
//! does not see it, so every file written is remembered (inode → the end
//! its writes reached), and the exact count adds those no longer in the
//! tree that some process still holds (an fd, by `stat` of
//! `/proc/<pid>/fd/N`, or a mapping, by the inode `/proc/<pid>/maps`
//! shows). A process of the supervisor's user whose fds cannot be read
//! (not dumpable) makes every such file count.
//!
//! A charge for a call made on the program's behalf (a name, a node,
//! extended attributes, a truncation) is given back when the call fails
//! ([`Quota::refund`]), unless an exact count came in between (it did not
//! see what the call never made). The exact count walks the tree and
//! `/proc`: it runs at most once per [`RECOUNT_EVERY`] for refused charges,
//! unless space may have been freed since the last one ([`Quota::freed`]:
//! a removal, a rename, a truncation), so a program writing in a loop at
//! the cap does not make the supervisor walk the tree at each call.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a refused charge is refused without counting again, when no
/// space was freed on the program's behalf since the last count (space an
/// fd's close or a process's exit frees is seen after at most this long).
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
    /// How many exact counts were made: a charge made before the last one
    /// is in it if its call was made, so it is not given back.
    counts: AtomicU64,
    /// Removals and truncations made since the start (space they may
    /// have freed is seen by the next refused charge).
    frees: AtomicU64,
    /// The exact count's turn: when the last one ran, and `frees` then.
    /// Held while counting; a refund takes it so that it never subtracts
    /// from a count that did not include its charge.
    counting: parking_lot::Mutex<Option<(Instant, u64)>>,
    /// The device of the upper tree.
    dev: u64,
    /// Files written (inode → the end their writes reached), for the
    /// exact count's files without a name.
    written: parking_lot::Mutex<HashMap<u64, u64>>,
    /// What the tree held at the start (its directories and symlinks, made
    /// from DIR's): the cap is on what the program adds.
    base: u64,
}

use crate::paths::Charged;

/// A file of the upper tree a write grows: its inode and the end the
/// write reaches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Growth {
    pub(crate) ino: u64,
    pub(crate) end: u64,
}

impl Quota {
    /// The cap on what is added to `upper` as it is now (its files
    /// `shared` with the lower tree count for nothing).
    pub(crate) fn new(cap: u64, dev: u64, upper: &Path, shared: &dyn Fn(u64) -> bool) -> Quota {
        Quota {
            cap,
            used: AtomicU64::new(0),
            counts: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            counting: parking_lot::Mutex::new(None),
            dev,
            written: parking_lot::Mutex::new(HashMap::new()),
            base: usage(upper, shared, &mut HashSet::new()),
        }
    }

    /// Charges `n` bytes, or fails with `ENOSPC` past the cap.
    pub(crate) fn charge(&self, n: u64) -> io::Result<Charged> {
        // Acquire: pairs with the Release of the count's increment, so a
        // count that is not seen here runs after the add below (its store
        // then replaces the add, and the charge is not given back).
        let count = self.counts.load(Ordering::Acquire);
        // Relaxed: a counter; the cap is a bound, not a synchronisation.
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) <= self.cap {
            return Ok(Charged {
                bytes: n,
                counts: count,
            });
        }
        self.used.fetch_sub(n, Ordering::Relaxed);
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// Gives back a charge whose call failed (nothing was added), unless
    /// an exact count ran since (it counted what the tree holds).
    pub(crate) fn refund(&self, c: Charged) {
        let _turn = self.counting.lock();
        if c.bytes == 0 || self.counts.load(Ordering::Relaxed) != c.counts {
            return;
        }
        // Relaxed: under `counting`, which every store of a count holds.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(c.bytes))
            });
    }

    /// Space may have been freed (a removal, a rename over a file, a
    /// truncation): the next refused charge counts again.
    pub(crate) fn freed(&self) {
        self.frees.fetch_add(1, Ordering::Relaxed);
    }

    /// Charges `n` bytes (of `file`'s growth, if any: a new name or
    /// node, or extended attributes, otherwise) after counting `upper`
    /// again exactly (its directories, symlinks and files that are not
    /// `shared` with the lower tree, less what it held at the start, and
    /// the files without a name still held), or fails with `ENOSPC`. The
    /// count is skipped (`ENOSPC`) within [`RECOUNT_EVERY`] of the last
    /// one when nothing was freed since.
    pub(crate) fn charge_counted(
        &self,
        n: u64,
        file: Option<Growth>,
        upper: &Path,
        shared: &dyn Fn(u64) -> bool,
    ) -> io::Result<Charged> {
        if let Some(file) = file {
            let mut w = self.written.lock();
            let end = w.entry(file.ino).or_insert(0);
            *end = (*end).max(file.end);
        }
        if let Ok(c) = self.charge(n) {
            return Ok(c);
        }
        let mut turn = self.counting.lock();
        // Another call counted while this one waited for its turn.
        if let Ok(c) = self.charge(n) {
            return Ok(c);
        }
        let frees = self.frees.load(Ordering::Relaxed);
        if turn.is_some_and(|(at, seen)| seen == frees && at.elapsed() < RECOUNT_EVERY) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let mut seen = HashSet::new();
        let mut exact = usage(upper, shared, &mut seen).saturating_sub(self.base);
        let held = held_files(self.dev, false);
        self.written.lock().retain(|ino, end| {
            if seen.contains(ino) {
                return true;
            }
            let keep = held.as_ref().is_none_or(|h| h.contains(ino));
            if keep {
                exact = exact.saturating_add(*end);
            }
            keep
        });
        self.used.store(exact, Ordering::Relaxed);
        // Release: pairs with the Acquire in `charge`.
        self.counts.fetch_add(1, Ordering::Release);
        *turn = Some((Instant::now(), frees));
        log::debug!("--max-disk: the upper tree counted again: {exact} bytes");
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
        for fd in fds.flatten() {
            if let Ok(m) = std::fs::metadata(fd.path()) {
                if m.dev() == dev && m.is_file() {
                    held.insert(m.ino());
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

/// The bytes `dir` and what is under it take, files that are shared
/// left out.
fn usage(dir: &Path, shared: &dyn Fn(u64) -> bool, seen: &mut HashSet<u64>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = std::fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total = total.saturating_add(usage(&e.path(), shared, seen));
        } else if !shared(m.ino()) && seen.insert(m.ino()) {
            total = total.saturating_add(in_blocks(m.len()).max(m.blocks() * 512));
        }
    }
    total
}
