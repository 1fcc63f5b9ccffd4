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

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The device of the upper tree.
    dev: u64,
    /// Files written (inode → the end their writes reached), for the
    /// exact count's files without a name.
    written: parking_lot::Mutex<HashMap<u64, u64>>,
    /// What the tree held at the start (its directories and symlinks, made
    /// from DIR's): the cap is on what the program adds.
    base: u64,
}

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
            dev,
            written: parking_lot::Mutex::new(HashMap::new()),
            base: usage(upper, shared, &mut HashSet::new()),
        }
    }

    /// Charges `n` bytes, or fails with `ENOSPC` past the cap.
    pub(crate) fn charge(&self, n: u64) -> io::Result<()> {
        // Relaxed: a counter; the cap is a bound, not a synchronisation.
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) <= self.cap {
            return Ok(());
        }
        self.used.fetch_sub(n, Ordering::Relaxed);
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    /// Charges `n` bytes (of `file`'s growth, if any: a new name or
    /// node, or extended attributes, otherwise) after counting `upper`
    /// again exactly (its directories, symlinks and files that are not
    /// `shared` with the lower tree, less what it held at the start, and
    /// the files without a name still held), or fails with `ENOSPC`.
    pub(crate) fn charge_counted(
        &self,
        n: u64,
        file: Option<Growth>,
        upper: &Path,
        shared: &dyn Fn(u64) -> bool,
    ) -> io::Result<()> {
        if let Some(file) = file {
            let mut w = self.written.lock();
            let end = w.entry(file.ino).or_insert(0);
            *end = (*end).max(file.end);
        }
        if self.charge(n).is_ok() {
            return Ok(());
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
            for line in maps.lines() {
                let ino = line.split_ascii_whitespace().nth(4);
                if let Some(ino) = ino.and_then(|i| i.parse::<u64>().ok()) {
                    if ino != 0 {
                        held.insert(ino);
                    }
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
