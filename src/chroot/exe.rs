//! The program a process runs when the view's ELF interpreter runs it.
//!
//! An exec whose loader the kernel would take from the host's root is
//! re-issued as an exec of the view's loader with the program as its
//! argument (see `handlers`, `Op::redirect`): the kernel's executable of
//! the process is then the loader. This table keeps, per process, the
//! program it runs that way, so that `/proc/self/exe` (read, opened or
//! run) is the program, as in the view. Noted when the re-issue is made
//! (pending), taken up when the exec of the loader it re-issued is let
//! through, dropped at any other exec let through; answered only while
//! the process's executable is still that loader. Entries are tied to
//! their process by a pidfd (a recycled process id finds nothing). Used by
//! the chroot handlers; calls `sys`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use parking_lot::Mutex;

use crate::sys::pidfd::{pidfd_open, pidfd_send_signal};

/// Entries kept before dead processes are swept out.
const SWEEP_AT: usize = 128;

pub(crate) use crate::freeze::FileId;

/// What a process runs through the view's loader.
#[derive(Debug)]
pub(crate) struct Program {
    /// The loader, as the kernel's executable of the process.
    pub(crate) loader: FileId,
    /// The program, pinned (`O_PATH`) when the exec was decided.
    pub(crate) file: OwnedFd,
    /// Its place in the view.
    pub(crate) vpath: Vec<u8>,
}

#[derive(Debug)]
struct Entry {
    pidfd: OwnedFd,
    /// Re-issued, its exec not let through yet.
    pending: Option<Program>,
    /// Running.
    running: Option<Program>,
}

/// The table. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Exes {
    map: Mutex<HashMap<i32, Entry>>,
}

fn alive(fd: &OwnedFd) -> bool {
    pidfd_send_signal(fd.as_fd(), 0).is_ok()
}

impl Exes {
    /// Process `tgid`'s exec is re-issued through the loader for `p`.
    pub(crate) fn reissued(&self, tgid: i32, p: Program) {
        let mut map = self.map.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| alive(&e.pidfd));
        }
        if let Some(e) = map.get_mut(&tgid).filter(|e| alive(&e.pidfd)) {
            e.pending = Some(p);
            return;
        }
        match pidfd_open(tgid, 0) {
            Ok(pidfd) => {
                map.insert(
                    tgid,
                    Entry {
                        pidfd,
                        pending: Some(p),
                        running: None,
                    },
                );
            }
            Err(e) => log::debug!("no pidfd for pid {tgid} ({e}); its program is not noted"),
        }
    }

    /// Process `tgid`'s exec of `file` is let through: the program noted
    /// for it if `file` is the loader the re-issue named, else none.
    pub(crate) fn exec_started(&self, tgid: i32, file: FileId) {
        let mut map = self.map.lock();
        let Some(e) = map.get_mut(&tgid) else {
            return;
        };
        let pending = e.pending.take();
        e.running = pending.filter(|p| p.loader == file);
        if e.running.is_none() {
            map.remove(&tgid);
        }
    }

    /// The program process `tgid` runs through the loader, if its
    /// executable `exe` is still that loader: `f` of it.
    pub(crate) fn with_running<R>(
        &self,
        tgid: i32,
        exe: FileId,
        f: impl FnOnce(&Program) -> R,
    ) -> Option<R> {
        let map = self.map.lock();
        let e = map.get(&tgid).filter(|e| alive(&e.pidfd))?;
        e.running.as_ref().filter(|p| p.loader == exe).map(f)
    }
}
