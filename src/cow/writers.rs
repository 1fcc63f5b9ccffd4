//! Under `--max-disk`, no file of the upper tree enters the program with a
//! writable open file description. Owns the registry of the writable
//! descriptions the supervisor keeps instead; called by the layer's open
//! hook ([`Writers::seal`]), the write family and the clones
//! ([`Writers::find`]), `fcntl(F_GETFL)` (`handlers`) and the quota's
//! exact count ([`Writers::sweep`]).
//!
//! Why: a write whose fd is not a file of the layer (a pipe, `/dev/null`)
//! is let through (`CONTINUE`); a second thread that `dup2`s a writable fd
//! of the layer onto that number between the supervisor's look and the
//! kernel's write made the kernel write the layer, uncharged, as often as
//! it liked. Now every fd of a layer file the program holds is read-only
//! (`O_RDONLY`; for an `O_WRONLY` open, access mode 3, which neither reads
//! nor writes), so such a write fails in the kernel (`EBADF`), as does an
//! `io_submit` write or any other write the supervisor does not see. The
//! kernel enforces it: nothing is decided on what the program can change.
//!
//! How: an open for writing is still made on the program's behalf with its
//! flags and rights (the permission check, `O_TRUNC`, creation); that
//! description is kept here, and the program is given a read-only
//! description of the same file (its `O_APPEND`, `O_NONBLOCK`, `O_DIRECT`,
//! `O_NOATIME` and sync flags kept), opened by the supervisor (a file the
//! program made with mode 0444, as git does, stays writable through what
//! was kept). The write family, made for the program anyway, looks its fd
//! up here by description (`kcmp`) and writes through the kept one at the
//! program's own position and flags; a read-only fd of the layer not found
//! here gets the kernel's answer for it (`EBADF`). `F_GETFL` answers the
//! access mode the program asked for.
//!
//! An entry lives while a process holds its description: an open past
//! twice the entries left by the last sweep, and every exact count of the
//! quota, drop those no process holds (a scan of `/proc/<pid>/fd`, which
//! cannot see one in flight in a unix socket: written after it arrives,
//! that fd gets `EBADF`), and so does an exec of the file for its own
//! entries (a kept writable description would make it fail `ETXTBSY`
//! where bare Linux runs a file written and closed). An entry's kept fd
//! holds an unlinked file's blocks only until then.

use crate::action::Errno;
use crate::handler::StillWaiting;
use crate::sys::fs::{same_description, set_status_flags};
use crate::sys::net::status_flags;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The fewest entries an open sweeps at.
const SWEEP_FLOOR: usize = 64;

/// The flags of the program's open its read-only description keeps.
const KEPT: i32 = libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DIRECT
    | libc::O_NOATIME
    | libc::O_DSYNC
    | libc::O_SYNC;

/// A file of the upper tree the program opened for writing.
struct Entry {
    /// The description the program was given (a duplicate: what its fds
    /// are compared with).
    given: OwnedFd,
    /// The writable description the supervisor writes through.
    kept: Arc<OwnedFd>,
    /// The access mode the program asked for (`O_WRONLY` or `O_RDWR`).
    access: i32,
    /// The open call it answers: kept without a holder while that call
    /// waits (its answer, which gives the description, is not sent yet).
    call: StillWaiting,
}

/// The writable side of a program's fd of a layer file.
#[derive(Debug, Clone)]
pub(crate) struct Writable {
    /// The description to write through (no `O_APPEND`, unless the file
    /// is append-only).
    pub(crate) fd: Arc<OwnedFd>,
    /// The access mode the program asked for.
    pub(crate) access: i32,
}

/// The registry, by inode of the upper device.
pub(crate) struct Writers {
    /// The upper tree's device.
    dev: u64,
    /// Entries by inode.
    by_ino: parking_lot::Mutex<HashMap<u64, Vec<Entry>>>,
    /// The number of entries at which the next open sweeps first.
    sweep_at: AtomicUsize,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Writers {
    /// An empty registry for files of device `dev`.
    pub(crate) fn new(dev: u64) -> Writers {
        Writers {
            dev,
            by_ino: parking_lot::Mutex::new(HashMap::new()),
            sweep_at: AtomicUsize::new(SWEEP_FLOOR),
        }
    }

    /// The description to give the program for `fd`, a regular file of
    /// the upper tree (inode `ino`) opened writable for it with its flags:
    /// a read-only one (access mode 3 for `O_WRONLY`); `fd` is kept. `call`
    /// is the open it answers.
    /// `EACCES` if the supervisor cannot open it so (a non-root supervisor
    /// and a file its user may not read).
    pub(crate) fn seal(&self, fd: OwnedFd, ino: u64, call: StillWaiting) -> Result<OwnedFd, Errno> {
        let io = |e: std::io::Error| Errno::from_io(&e);
        let flags = status_flags(fd.as_fd()).map_err(io)?;
        let access = flags & libc::O_ACCMODE;
        let rest = (flags & KEPT) | libc::O_NOCTTY | crate::paths::KERNEL_O_LARGEFILE;
        let open = |mode: i32| crate::paths::reopen_fd(fd.as_fd(), mode | rest);
        let given = match access {
            libc::O_WRONLY => open(libc::O_ACCMODE).or_else(|_| open(libc::O_RDONLY)),
            _ => open(libc::O_RDONLY),
        }
        .map_err(|e| {
            log::debug!("--max-disk: cannot open a read-only stand-in of a layer file ({e})");
            Errno::of(libc::EACCES)
        })?;
        // The supervisor writes at explicit offsets; an append-only inode
        // refuses to lose the flag (and is written at its end).
        let _ = set_status_flags(fd.as_fd(), flags & !libc::O_APPEND);
        let entry = Entry {
            given: given.try_clone().map_err(io)?,
            kept: Arc::new(fd),
            access,
            call,
        };
        if self.len() >= self.sweep_at.load(Ordering::Relaxed) {
            self.sweep();
        }
        self.by_ino.lock().entry(ino).or_default().push(entry);
        Ok(given)
    }

    /// The writable side of `fd` (our duplicate of a program's fd of the
    /// file `ino`), if the program opened it for writing.
    pub(crate) fn find(&self, fd: BorrowedFd<'_>, ino: u64) -> Option<Writable> {
        let own = std::process::id() as i32;
        let map = self.by_ino.lock();
        map.get(&ino)?
            .iter()
            .find(|e| same_description(own, fd.as_raw_fd(), e.given.as_fd()).unwrap_or(false))
            .map(|e| Writable {
                fd: Arc::clone(&e.kept),
                access: e.access,
            })
    }

    /// The entries held.
    fn len(&self) -> usize {
        self.by_ino.lock().values().map(Vec::len).sum()
    }

    /// Drops the entries no process holds (but the supervisor) whose open
    /// was answered; keeps all if a process of ours cannot be looked at.
    pub(crate) fn sweep(&self) {
        self.sweep_of(None);
    }

    /// Before the file `ino` is executed: drops its entries no process
    /// holds, whose kept writable description would make the exec fail
    /// with `ETXTBSY` (a file written, closed, then run: a build's
    /// linker output).
    pub(crate) fn release(&self, ino: u64) {
        if self.by_ino.lock().contains_key(&ino) {
            self.sweep_of(Some(ino));
        }
    }

    /// [`sweep`](Self::sweep) of the entries of inode `only`, or of all.
    fn sweep_of(&self, only: Option<u64>) {
        let mut map = self.by_ino.lock();
        let looked = |ino: &u64| only.is_none_or(|o| o == *ino);
        // Asked before the scan: an open answered after this is seen by it.
        let waiting: std::collections::HashSet<(u64, usize)> = map
            .iter()
            .filter(|(ino, _)| looked(ino))
            .flat_map(|(ino, es)| es.iter().enumerate().map(move |(i, e)| (*ino, i, e)))
            .filter(|(_, _, e)| e.call.check())
            .map(|(ino, i, _)| (ino, i))
            .collect();
        if map.is_empty() {
            return;
        }
        let Some(held) = self.holders(&map, only) else {
            return;
        };
        map.retain(|ino, entries| {
            if !looked(ino) {
                return true;
            }
            let mut i = 0;
            entries.retain(|_| {
                let keep = held.contains(&(*ino, i)) || waiting.contains(&(*ino, i));
                i += 1;
                keep
            });
            !entries.is_empty()
        });
        let left: usize = map.values().map(Vec::len).sum();
        if only.is_none() {
            self.sweep_at
                .store((2 * left).max(SWEEP_FLOOR), Ordering::Relaxed);
        }
        log::debug!("--max-disk: {left} writable layer files still held");
    }

    /// The entries (inode, index; of inode `only` if given) some other
    /// process holds by an fd; `None` if a process of this user could not
    /// be looked at.
    fn holders(
        &self,
        map: &HashMap<u64, Vec<Entry>>,
        only: Option<u64>,
    ) -> Option<std::collections::HashSet<(u64, usize)>> {
        let own = std::process::id().to_string();
        let me = crate::sys::process::euid();
        let mut held = std::collections::HashSet::new();
        for p in std::fs::read_dir("/proc").ok()?.flatten() {
            let name = p.file_name();
            let Some(pid) = name.to_str().filter(|n| *n != own) else {
                continue;
            };
            let Ok(pid_no) = pid.parse::<i32>() else {
                continue;
            };
            let fds = match std::fs::read_dir(p.path().join("fd")) {
                Ok(fds) => fds,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                // Another user's (not the program's) or unreadable: the
                // program's processes are the supervisor's user's.
                Err(_) if !super::quota::is_own_process(pid, me) => continue,
                Err(_) => return None,
            };
            for fd in fds.flatten() {
                let Ok(m) = std::fs::metadata(fd.path()) else {
                    continue;
                };
                let ours = m.dev() == self.dev && only.is_none_or(|o| o == m.ino());
                let (Some(entries), true) = (map.get(&m.ino()), ours) else {
                    continue;
                };
                let Some(no) = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                for (i, e) in entries.iter().enumerate() {
                    if same_description(pid_no, no, e.given.as_fd()).unwrap_or(true) {
                        held.insert((m.ino(), i));
                    }
                }
            }
        }
        Some(held)
    }
}
