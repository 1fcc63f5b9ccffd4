//! The working directory of each process of a chroot, as a virtual path.
//!
//! The supervisor cannot change another process's working directory, and
//! the kernel would resolve a `chdir` path in the host's root. So `chdir`
//! and `fchdir` are answered by the supervisor, which keeps the new
//! directory here, per thread group (threads share it), and every relative
//! path of the process is walked from it; the real working directory stays
//! where the sandbox started. A process seen for the first time starts
//! with its nearest known ancestor's (what it inherited at fork, unless
//! that ancestor changed its own in between), or the sandbox's first
//! directory. An entry is tied
//! to its process by a pidfd, so a recycled process id never finds the
//! entry of a dead process. Used by the chroot handlers; calls `sys`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use parking_lot::Mutex;

use crate::sys::pidfd::{pidfd_open, pidfd_send_signal};

/// Ancestors looked at for an inherited directory.
const MAX_ANCESTORS: usize = 64;
/// Entries kept before dead processes are swept out.
const SWEEP_AT: usize = 128;

/// The table. See the module documentation.
#[derive(Debug)]
pub(crate) struct Cwds {
    /// Where the sandbox's first process starts.
    initial: Vec<u8>,
    map: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<i32, (OwnedFd, Vec<u8>)>,
    /// Sweep when this many entries are reached (doubles with the live
    /// ones, so sweeps stay rare).
    sweep_at: usize,
}

fn alive(fd: &OwnedFd) -> bool {
    pidfd_send_signal(fd.as_fd(), 0).is_ok()
}

fn parent_of(pid: i32) -> Option<i32> {
    let st = crate::sys::procfs::Stat::of(pid)?;
    st.field(4).map(|p| p as i32)
}

impl Cwds {
    pub(crate) fn new(initial: Vec<u8>) -> Cwds {
        Cwds {
            initial,
            map: Mutex::new(Table::default()),
        }
    }

    /// The working directory of process `tgid`.
    pub(crate) fn get(&self, tgid: i32) -> Vec<u8> {
        if let Some(path) = self.peek(tgid) {
            return path;
        }
        // The nearest ancestor with an entry: one without has not changed
        // its directory since its fork (a compiler driver that spawns its
        // linker without using a relative path itself). Its `/proc` reads
        // are made without the table's lock, which every path call takes.
        let mut inherited = None;
        let mut cur = tgid;
        for _ in 0..MAX_ANCESTORS {
            let Some(p) = parent_of(cur).filter(|&p| p > 1) else {
                break;
            };
            if let Some(path) = self.peek(p) {
                inherited = Some(path);
                break;
            }
            cur = p;
        }
        let inherited = inherited.unwrap_or_else(|| self.initial.clone());
        let mut map = self.map.lock();
        // A thread of it may have changed it meanwhile.
        if let Some((fd, path)) = map.entries.get(&tgid) {
            if alive(fd) {
                return path.clone();
            }
        }
        Self::store(&mut map, tgid, inherited.clone());
        inherited
    }

    /// The working directory of process `pid` if it is known (a live
    /// process of the sandbox that used it).
    pub(crate) fn peek(&self, pid: i32) -> Option<Vec<u8>> {
        let map = self.map.lock();
        let (fd, path) = map.entries.get(&pid)?;
        alive(fd).then(|| path.clone())
    }

    /// Process `tgid` changed its working directory to `path`; false if it
    /// cannot be kept (the change is then refused).
    pub(crate) fn set(&self, tgid: i32, path: Vec<u8>) -> bool {
        Self::store(&mut self.map.lock(), tgid, path)
    }

    fn store(map: &mut Table, tgid: i32, path: Vec<u8>) -> bool {
        if map.entries.len() >= map.sweep_at.max(SWEEP_AT) {
            map.entries.retain(|_, (fd, _)| alive(fd));
            map.sweep_at = (map.entries.len() * 2).max(SWEEP_AT);
        }
        match pidfd_open(tgid, 0) {
            Ok(fd) => {
                map.entries.insert(tgid, (fd, path));
                true
            }
            Err(e) => {
                log::debug!("no pidfd for pid {tgid} ({e}); its directory is not kept");
                false
            }
        }
    }
}
