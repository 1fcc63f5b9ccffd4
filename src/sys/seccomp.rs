//! Seccomp user notification: the UAPI structs and the listener ioctls.
//!
//! Layouts follow `include/uapi/linux/seccomp.h`. At start the supervisor
//! compares them with what the kernel reports through
//! `SECCOMP_GET_NOTIF_SIZES` ([`notif_sizes`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_long};

/// `struct seccomp_data`: the trapped call as the filter saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompData {
    /// System call number (architecture specific).
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the calling convention.
    pub arch: u32,
    /// Instruction pointer at the time of the call.
    pub instruction_pointer: u64,
    /// The six raw arguments.
    pub args: [u64; 6],
}

/// `struct seccomp_notif`: one pending notification.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompNotif {
    /// Cookie identifying this notification; valid until answered.
    pub id: u64,
    /// Thread id of the trapped task (in the supervisor's pid namespace).
    pub pid: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// The trapped call.
    pub data: SeccompData,
}

/// `struct seccomp_notif_resp`: the answer to one notification.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompNotifResp {
    /// The notification answered.
    pub id: u64,
    /// Return value when `error` is zero.
    pub val: i64,
    /// Negated errno, or zero.
    pub error: i32,
    /// `SECCOMP_USER_NOTIF_FLAG_CONTINUE` or zero.
    pub flags: u32,
}

/// `struct seccomp_notif_addfd`: put a supervisor fd into the trapped task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeccompNotifAddfd {
    /// The notification the fd is added for.
    pub id: u64,
    /// `SECCOMP_ADDFD_FLAG_*`.
    pub flags: u32,
    /// The supervisor's fd.
    pub srcfd: u32,
    /// The fd number in the task, with `SECCOMP_ADDFD_FLAG_SETFD`; else 0.
    pub newfd: u32,
    /// `O_CLOEXEC` or zero.
    pub newfd_flags: u32,
}

/// `struct seccomp_notif_sizes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifSizes {
    /// `sizeof(struct seccomp_notif)` in the kernel.
    pub notif: u16,
    /// `sizeof(struct seccomp_notif_resp)` in the kernel.
    pub resp: u16,
    /// `sizeof(struct seccomp_data)` in the kernel.
    pub data: u16,
}

/// Answer: let the call run in the kernel as if it had not been trapped.
pub const USER_NOTIF_FLAG_CONTINUE: u32 = 1;
/// ADDFD: install at `newfd` exactly.
pub const ADDFD_FLAG_SETFD: u32 = 1;
/// ADDFD: add the fd and answer the call with its number, atomically.
pub const ADDFD_FLAG_SEND: u32 = 2;
/// SET_FLAGS: wake the supervisor and the trapped task on the current CPU.
pub const USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// `seccomp(2)` operation: install a filter.
pub const SET_MODE_FILTER: u32 = 1;
/// `seccomp(2)` operation: ask for the notification struct sizes.
pub const GET_NOTIF_SIZES: u32 = 3;
/// `seccomp(2)` operation: ask whether an action is supported.
pub const GET_ACTION_AVAIL: u32 = 2;
/// Filter flag: return a notification listener fd.
pub const FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
/// Filter flag: a trapped task waiting for its answer ignores all but fatal signals.
pub const FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;
/// Filter return value: notify the listener.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const SECCOMP_IOC_MAGIC: u64 = b'!' as u64;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (SECCOMP_IOC_MAGIC << 8) | nr
}

const IOCTL_RECV: u64 = ioc(IOC_READ | IOC_WRITE, 0, std::mem::size_of::<SeccompNotif>());
const IOCTL_SEND: u64 = ioc(
    IOC_READ | IOC_WRITE,
    1,
    std::mem::size_of::<SeccompNotifResp>(),
);
const IOCTL_ID_VALID: u64 = ioc(IOC_WRITE, 2, std::mem::size_of::<u64>());
const IOCTL_ADDFD: u64 = ioc(IOC_WRITE, 3, std::mem::size_of::<SeccompNotifAddfd>());
const IOCTL_SET_FLAGS: u64 = ioc(IOC_WRITE, 4, std::mem::size_of::<u64>());

/// Asks the kernel for its notification struct sizes (`SECCOMP_GET_NOTIF_SIZES`).
pub fn notif_sizes() -> io::Result<NotifSizes> {
    let mut sizes = NotifSizes::default();
    // SAFETY: GET_NOTIF_SIZES writes exactly one `struct seccomp_notif_sizes`
    // (three u16) to the pointer, which points at a live, writable value.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            GET_NOTIF_SIZES as libc::c_ulong,
            0 as libc::c_ulong,
            &mut sizes as *mut NotifSizes,
        )
    };
    cvt_long(ret)?;
    Ok(sizes)
}

/// Checks that the kernel's structs are no larger than ours, so RECV never
/// writes past the buffer and SEND is read whole.
pub fn check_sizes() -> io::Result<NotifSizes> {
    // Asked once per process (the running kernel does not change; a
    // failure is asked again).
    static SIZES: std::sync::OnceLock<NotifSizes> = std::sync::OnceLock::new();
    let sizes = match SIZES.get() {
        Some(s) => *s,
        None => {
            let s = notif_sizes()?;
            *SIZES.get_or_init(|| s)
        }
    };
    let ours = (
        std::mem::size_of::<SeccompNotif>(),
        std::mem::size_of::<SeccompNotifResp>(),
        std::mem::size_of::<SeccompData>(),
    );
    if usize::from(sizes.notif) > ours.0
        || usize::from(sizes.resp) > ours.1
        || usize::from(sizes.data) > ours.2
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "kernel notification structs ({}, {}, {} bytes) are larger than this build's ({}, {}, {})",
                sizes.notif, sizes.resp, sizes.data, ours.0, ours.1, ours.2
            ),
        ));
    }
    Ok(sizes)
}

/// Asks whether the kernel knows the filter return action `action`.
pub fn action_available(action: u32) -> io::Result<()> {
    let act = action;
    // SAFETY: GET_ACTION_AVAIL only reads one u32 from the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            GET_ACTION_AVAIL as libc::c_ulong,
            0 as libc::c_ulong,
            &act as *const u32,
        )
    };
    cvt_long(ret).map(drop)
}

/// Receives one notification (`SECCOMP_IOCTL_NOTIF_RECV`).
///
/// Blocks until one is pending even on a non-blocking fd: call it only
/// after `poll(2)` said one is pending (or to block on purpose).
pub fn recv(listener: BorrowedFd<'_>) -> io::Result<SeccompNotif> {
    // The kernel requires the buffer to be zeroed.
    let mut notif = SeccompNotif::default();
    // SAFETY: RECV writes one `struct seccomp_notif` into `notif`, whose
    // size was checked against the kernel's by `check_sizes`.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            IOCTL_RECV as _,
            &mut notif as *mut SeccompNotif,
        )
    };
    cvt(ret)?;
    Ok(notif)
}

/// Sends the answer for one notification (`SECCOMP_IOCTL_NOTIF_SEND`).
///
/// `ENOENT` means the notification is gone (the task died or was interrupted).
pub fn send(listener: BorrowedFd<'_>, resp: &SeccompNotifResp) -> io::Result<()> {
    // SAFETY: SEND reads one `struct seccomp_notif_resp` from `resp`.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            IOCTL_SEND as _,
            resp as *const SeccompNotifResp,
        )
    };
    cvt(ret).map(drop)
}

/// Checks that notification `id` is still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`).
pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    // SAFETY: ID_VALID reads one u64 from the pointer.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), IOCTL_ID_VALID as _, &id as *const u64) };
    cvt(ret).map(drop)
}

/// Installs `srcfd` in the trapped task (`SECCOMP_IOCTL_NOTIF_ADDFD`) and
/// returns the fd number it got there.
pub fn addfd(listener: BorrowedFd<'_>, req: &SeccompNotifAddfd) -> io::Result<i32> {
    // SAFETY: ADDFD reads one `struct seccomp_notif_addfd` from `req`; the
    // source fd is only duplicated by the kernel, not consumed.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            IOCTL_ADDFD as _,
            req as *const SeccompNotifAddfd,
        )
    };
    cvt(ret)
}

/// Sets listener flags (`SECCOMP_IOCTL_NOTIF_SET_FLAGS`).
///
/// The flags are passed **by value** as the third argument, as the kernel
/// expects; a pointer would be rejected with `EINVAL`.
pub fn set_flags(listener: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    // SAFETY: SET_FLAGS takes its argument by value; no memory is accessed.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            IOCTL_SET_FLAGS as _,
            flags as libc::c_ulong,
        )
    };
    cvt(ret).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`, which a filter (and a Landlock domain)
/// needs without `CAP_SYS_ADMIN`: 0, or `-errno`.
///
/// Raw: it leaves `errno` alone and allocates nothing, so it is safe in a
/// `CLONE_VM` child and between fork and exec.
pub(crate) fn set_no_new_privs_raw() -> isize {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes only integers.
    unsafe {
        super::raw::syscall6(
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as usize, 1, 0, 0, 0, 0],
        )
    }
}

/// What [`install_listener_raw`] did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawInstall {
    /// The listener's fd, or the `-errno` of the install.
    pub(crate) listener: isize,
    /// The `-errno` of the attempt with `WAIT_KILLABLE_RECV` (0: it went in
    /// with that flag; also 0 when it was not asked for).
    pub(crate) killable_error: isize,
}

/// Installs `prog` on the calling thread with a new listener (`no_new_privs`
/// must be set). With `killable`, asks for `WAIT_KILLABLE_RECV` first and
/// falls back to `NEW_LISTENER` alone on `EINVAL` (kernels before 5.19).
///
/// Raw, like [`set_no_new_privs_raw`]: safe in a `CLONE_VM` child and
/// between fork and exec.
pub(crate) fn install_listener_raw(prog: &libc::sock_fprog, killable: bool) -> RawInstall {
    let install = |flags: u32| {
        // SAFETY: the kernel copies the program from `prog` during the
        // call; `prog` and the instructions it points to are borrowed for
        // the call.
        unsafe {
            super::raw::syscall6(
                libc::SYS_seccomp,
                [
                    SET_MODE_FILTER as usize,
                    flags as usize,
                    prog as *const libc::sock_fprog as usize,
                    0,
                    0,
                    0,
                ],
            )
        }
    };
    if killable {
        let listener = install(FILTER_FLAG_NEW_LISTENER | FILTER_FLAG_WAIT_KILLABLE_RECV);
        if listener != -(libc::EINVAL as isize) {
            return RawInstall {
                listener,
                killable_error: 0,
            };
        }
        return RawInstall {
            listener: install(FILTER_FLAG_NEW_LISTENER),
            killable_error: listener,
        };
    }
    RawInstall {
        listener: install(FILTER_FLAG_NEW_LISTENER),
        killable_error: 0,
    }
}
