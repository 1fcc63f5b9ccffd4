//! Capabilities: the set a sandboxed program keeps, and the calling
//! thread's own sets.
//!
//! Capabilities are per thread. The spawned child drops what the program
//! does not keep (see `spawn_child`, raw calls); a supervisor thread acting
//! on the program's behalf lowers its own effective set to the program's
//! for the time of the call ([`ThreadCaps`]). Called by the path handlers
//! and the spawn code; calls only the kernel.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// Capability numbers (`linux/capability.h`).
pub mod cap {
    /// Change file ownership.
    pub const CHOWN: u32 = 0;
    /// Bypass file read, write and execute permission checks.
    pub const DAC_OVERRIDE: u32 = 1;
    /// Act as the owner of any file for permission changes and the like.
    pub const FOWNER: u32 = 3;
    /// Keep set-user/group-id bits on files written or chowned.
    pub const FSETID: u32 = 4;
    /// Signal processes of other users.
    pub const KILL: u32 = 5;
    /// Change group ids.
    pub const SETGID: u32 = 6;
    /// Change user ids.
    pub const SETUID: u32 = 7;
    /// Change capability sets (the bounding set among them).
    pub const SETPCAP: u32 = 8;
    /// Bind ports below 1024.
    pub const NET_BIND_SERVICE: u32 = 10;
}

/// The capabilities a sandboxed program keeps by default: what a root
/// program needs to own, read, write and hand out its files, switch to
/// another user and signal its own workers, and serve on a low port.
/// Everything else goes, among them `SYS_ADMIN` (mounts, namespaces, and
/// much more), `SYS_PTRACE`, `SYS_MODULE`, `SYS_RAWIO`, `MKNOD` (device
/// nodes would reach disks past path denial), `DAC_READ_SEARCH`
/// (`open_by_handle_at`; `DAC_OVERRIDE` covers reading), `SYS_CHROOT`,
/// `SETPCAP`, `SETFCAP` (file capabilities for programs run outside),
/// `NET_ADMIN`, `NET_RAW` (raw and packet sockets), `BPF`, `PERFMON`,
/// `SYS_TIME`, `SYS_BOOT`, `SYS_RESOURCE` (raising limits past the hard
/// ones), `SYS_NICE`, `IPC_LOCK`, `IPC_OWNER`, `LINUX_IMMUTABLE`,
/// `MAC_*`, `AUDIT_*`, `SYSLOG`, `LEASE`, `WAKE_ALARM`, `BLOCK_SUSPEND`,
/// `CHECKPOINT_RESTORE`.
pub const SANDBOX_KEEP: u64 = bit(cap::CHOWN)
    | bit(cap::DAC_OVERRIDE)
    | bit(cap::FOWNER)
    | bit(cap::FSETID)
    | bit(cap::KILL)
    | bit(cap::SETGID)
    | bit(cap::SETUID)
    | bit(cap::NET_BIND_SERVICE);

/// The mask of one capability.
pub const fn bit(cap: u32) -> u64 {
    1 << cap
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The three capability sets of a thread, as 64-bit masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSets {
    /// Used in permission checks.
    pub effective: u64,
    /// The limit of `effective`.
    pub permitted: u64,
    /// Kept across exec (with file inheritable capabilities).
    pub inheritable: u64,
}

/// The calling thread's capability sets.
pub fn current() -> io::Result<CapSets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` for version 3 into a live array.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    super::cvt_long(r)?;
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

std::thread_local! {
    /// The calling thread's sets as this module last read or set them.
    /// Only this module changes a supervisor thread's capabilities, so the
    /// value stays true and a lowering costs no `capget`. A handler that
    /// changed its worker's capabilities itself would make it stale: that
    /// is not allowed (handlers run on shared worker threads).
    static KNOWN: std::cell::Cell<Option<CapSets>> = const { std::cell::Cell::new(None) };
}

/// The calling thread's sets: as last read or set here, else read.
fn known() -> io::Result<CapSets> {
    if let Some(sets) = KNOWN.get() {
        return Ok(sets);
    }
    let sets = current()?;
    KNOWN.set(Some(sets));
    Ok(sets)
}

/// Sets the calling thread's (only its) capability sets.
pub fn set_current(sets: &CapSets) -> io::Result<()> {
    // Unknown until it succeeds (a partial failure is read again).
    KNOWN.set(None);
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [0, 1].map(|w| Data {
        effective: e[w],
        permitted: p[w],
        inheritable: i[w],
    });
    // SAFETY: capset reads a header and two `Data` from live memory.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    super::cvt_long(r)?;
    KNOWN.set(Some(*sets));
    Ok(())
}

/// The calling thread's effective set, lowered for as long as this lives:
/// the supervisor acting with a task's rights. Dropping it restores the
/// sets it was made from. Not `Send`: capabilities belong to the thread.
#[derive(Debug)]
pub struct ThreadCaps {
    saved: CapSets,
    _thread_bound: std::marker::PhantomData<*const ()>,
}

impl ThreadCaps {
    /// Sets the calling thread's effective set to `effective`, which must
    /// lie within its permitted set (`EPERM` otherwise), until the guard
    /// is dropped. `None` when it already is `effective` (nothing to
    /// restore).
    pub fn set_effective(effective: u64) -> io::Result<Option<ThreadCaps>> {
        let saved = known()?;
        if saved.effective == effective {
            return Ok(None);
        }
        if effective & !saved.permitted != 0 {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        set_current(&CapSets { effective, ..saved })?;
        Ok(Some(ThreadCaps {
            saved,
            _thread_bound: std::marker::PhantomData,
        }))
    }
}

impl Drop for ThreadCaps {
    fn drop(&mut self) {
        // Raising the effective set within the unchanged permitted set
        // cannot fail; if it ever did, this thread would act with fewer
        // rights than the supervisor's, never more.
        if let Err(e) = set_current(&self.saved) {
            log::error!("cannot restore this thread's capabilities: {e}");
        }
    }
}

/// In the spawned child, before `no_new_privs` and exec: drops from the
/// bounding set every capability not in `keep`, clears the ambient set,
/// and masks the effective, permitted and inheritable sets with `keep`.
/// Returns 0 or `-errno`. Without `CAP_SETPCAP` the bounding set cannot be
/// lowered and is left: under `no_new_privs` an exec never gains a
/// capability outside the permitted set, which is lowered here.
///
/// # Safety
/// Only in the spawned child (raw calls: it shares the parent's memory).
pub(super) unsafe fn drop_in_child(keep: u64) -> isize {
    use super::raw::syscall;
    let prctl = |args: &[usize]| {
        // SAFETY: these prctl operations take integers only.
        unsafe { syscall(libc::SYS_prctl, args) }
    };
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` for version 3 into a live local.
    let r = unsafe {
        syscall(
            libc::SYS_capget,
            &[
                &mut header as *mut Header as usize,
                data.as_mut_ptr() as usize,
            ],
        )
    };
    if r < 0 {
        return r;
    }
    // Only with CAP_SETPCAP does a drop succeed (without it every one
    // fails EPERM, and the bounding set stays). Then each capability not
    // kept is dropped without reading the set first: dropping one the set
    // lacks changes nothing, and the first EINVAL is past the kernel's
    // last capability (two system calls fewer per capability than a read
    // before each drop).
    if data[0].effective & (1 << cap::SETPCAP) != 0 {
        for cap in 0..64usize {
            if keep & (1 << cap) != 0 {
                continue;
            }
            let r = prctl(&[libc::PR_CAPBSET_DROP as usize, cap]);
            if r == -(libc::EINVAL as isize) {
                break;
            }
            if r < 0 && r != -(libc::EPERM as isize) {
                return r;
            }
        }
    }
    let r = prctl(&[
        libc::PR_CAP_AMBIENT as usize,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as usize,
        0,
        0,
        0,
    ]);
    if r < 0 && r != -(libc::EINVAL as isize) {
        return r;
    }
    for (w, d) in data.iter_mut().enumerate() {
        let k = (keep >> (32 * w)) as u32;
        d.effective &= k;
        d.permitted &= k;
        d.inheritable &= k;
    }
    // SAFETY: capset reads a header and two `Data` from live locals.
    unsafe {
        syscall(
            libc::SYS_capset,
            &[&mut header as *mut Header as usize, data.as_ptr() as usize],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_is_per_thread_and_restored() {
        let before = current().unwrap();
        std::thread::spawn(move || {
            let target = before.effective & SANDBOX_KEEP;
            {
                let guard = ThreadCaps::set_effective(target).unwrap();
                assert_eq!(guard.is_some(), target != before.effective);
                assert_eq!(current().unwrap().effective, target);
                // Raised back inside (the supervisor's own rights for one
                // step), then lowered again: the remembered sets follow.
                {
                    let raised = ThreadCaps::set_effective(before.effective).unwrap();
                    assert_eq!(raised.is_some(), target != before.effective);
                    assert_eq!(current().unwrap(), before);
                }
                assert_eq!(current().unwrap().effective, target);
            }
            assert_eq!(current().unwrap(), before);
            assert!(
                ThreadCaps::set_effective(before.permitted | 1 << 62).is_err()
                    || before.permitted & 1 << 62 != 0
            );
        })
        .join()
        .unwrap();
        assert_eq!(current().unwrap(), before);
    }
}
