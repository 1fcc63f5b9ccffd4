//! The cap on what the upper layer holds (`--max-disk`): bytes the
//! program's writes add to files of the upper tree are charged before the
//! write, and a charge past the cap is counted again exactly (the files
//! the upper tree holds alone, by their blocks) before it fails with
//! `ENOSPC`.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The cap and what is charged against it.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Bytes the upper tree may hold.
    cap: u64,
    /// Bytes charged since the last exact count (an upper bound of what
    /// the tree holds).
    used: AtomicU64,
}

impl Quota {
    pub(crate) fn new(cap: u64) -> Quota {
        Quota {
            cap,
            used: AtomicU64::new(0),
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

    /// Charges `n` bytes after counting `upper` again exactly (its files
    /// that are not `shared` with the lower tree), or fails with `ENOSPC`.
    pub(crate) fn charge_counted(
        &self,
        n: u64,
        upper: &Path,
        shared: &dyn Fn(u64) -> bool,
    ) -> io::Result<()> {
        if self.charge(n).is_ok() {
            return Ok(());
        }
        let mut seen = HashSet::new();
        let exact = usage(upper, shared, &mut seen);
        self.used.store(exact, Ordering::Relaxed);
        self.charge(n)
    }
}

/// The bytes the files under `dir` take that are not shared.
fn usage(dir: &Path, shared: &dyn Fn(u64) -> bool, seen: &mut HashSet<u64>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += usage(&e.path(), shared, seen);
        } else if !shared(m.ino()) && seen.insert(m.ino()) {
            total += m.len().max(m.blocks() * 512);
        }
    }
    total
}
