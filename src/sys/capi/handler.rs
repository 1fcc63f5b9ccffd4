//! C handlers: the notification and action structs, the adapter that runs
//! a C callback as a [`Handler`] on the worker threads, deferred callbacks,
//! and the `unotify_ctx_*` accessors a callback uses on its trapped task.

use std::ffi::{c_int, c_void};

use super::error::{guard, Fail, UNOTIFY_E_FAULT, UNOTIFY_E_GONE, UNOTIFY_E_TOO_LONG};
use crate::action::NotifAction;
use crate::handler::{Handler, HandlerCtx, MemoryError};
use crate::notification::Notification;
use crate::sys::capi_raw::{self, HostPtr};

/// `unotify_notif`: the trapped call, as the kernel reported it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UnotifyNotif {
    /// Notification id (unique while the call is pending).
    pub id: u64,
    /// Thread id of the trapped task.
    pub pid: u32,
    /// System call number.
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// Padding, zero.
    pub reserved: u32,
    /// Instruction pointer at the call.
    pub instruction_pointer: u64,
    /// The six raw arguments.
    pub args: [u64; 6],
}

impl From<&Notification> for UnotifyNotif {
    fn from(n: &Notification) -> Self {
        UnotifyNotif {
            id: n.id,
            pid: n.pid,
            nr: n.nr,
            arch: n.arch,
            reserved: 0,
            instruction_pointer: n.instruction_pointer,
            args: n.args,
        }
    }
}

/// Let the call run (or let the next handler decide).
pub const UNOTIFY_CONTINUE: c_int = 0;
/// Fail the call with `errno_value`.
pub const UNOTIFY_ERRNO: c_int = 1;
/// Return `value` without running the call.
pub const UNOTIFY_RETURN: c_int = 2;
/// Install `fd` in the task and return its number.
pub const UNOTIFY_INJECT_FD: c_int = 3;
/// Send `signal` to the task's process (answer `ENOMEM`).
pub const UNOTIFY_KILL_TASK: c_int = 4;
/// Send `signal` to the whole sandbox (answer `ENOMEM`).
pub const UNOTIFY_KILL_GROUP: c_int = 5;
/// Decide later: `defer_fn` runs on the deferral pool.
pub const UNOTIFY_DEFER: c_int = 6;
/// Do not answer now: `unotify_supervisor_release` answers later.
pub const UNOTIFY_HOLD: c_int = 7;
/// Install `fd` in the task at exactly `target_fd`, then let the call run.
pub const UNOTIFY_INJECT_FD_AT: c_int = 8;

/// `unotify_defer_fn`: a deferred decision, run once on the deferral pool.
pub type DeferFn = Option<
    extern "C" fn(user: *mut c_void, n: *const UnotifyNotif, out: *mut UnotifyAction) -> c_int,
>;
/// `unotify_free_fn`: releases a `user` pointer.
pub type FreeFn = Option<extern "C" fn(user: *mut c_void)>;
/// `unotify_handler_fn`: decides one trapped call on a worker thread.
pub type HandlerFn = Option<
    extern "C" fn(
        user: *mut c_void,
        n: *const UnotifyNotif,
        cx: *mut UnotifyCtx,
        out: *mut UnotifyAction,
    ) -> c_int,
>;

/// `unotify_action`: what a callback answers (`kind` picks the fields).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UnotifyAction {
    /// One of `UNOTIFY_CONTINUE` ... `UNOTIFY_INJECT_FD_AT`.
    pub kind: c_int,
    /// The errno for `UNOTIFY_ERRNO`.
    pub errno_value: c_int,
    /// The return value for `UNOTIFY_RETURN`.
    pub value: i64,
    /// The fd for `UNOTIFY_INJECT_FD` and `UNOTIFY_INJECT_FD_AT` (given up
    /// to the library).
    pub fd: c_int,
    /// `O_CLOEXEC` or 0, for the injections.
    pub fd_flags: u32,
    /// The signal for the kill actions.
    pub signal: c_int,
    /// The fd number in the task for `UNOTIFY_INJECT_FD_AT` (in what was
    /// padding before `defer_fn`: the struct's size is unchanged).
    pub target_fd: c_int,
    /// For `UNOTIFY_DEFER`: the deferred decision.
    pub defer_fn: DeferFn,
    /// For `UNOTIFY_DEFER`: called once with `defer_user` after `defer_fn`
    /// ran, or instead of it if it never runs (may be null).
    pub defer_free: FreeFn,
    /// For `UNOTIFY_DEFER`: the deferred decision's data.
    pub defer_user: *mut c_void,
}

impl UnotifyAction {
    pub(crate) fn continue_() -> Self {
        UnotifyAction {
            kind: UNOTIFY_CONTINUE,
            errno_value: 0,
            value: 0,
            fd: -1,
            fd_flags: 0,
            signal: 0,
            target_fd: -1,
            defer_fn: None,
            defer_free: None,
            defer_user: std::ptr::null_mut(),
        }
    }
}

/// `unotify_ctx`: the trapped task, valid during one handler call on the
/// worker thread running it (a `HandlerCtx` borrowed for that call).
pub type UnotifyCtx = HandlerCtx<'static>;

/// A C callback as a [`Handler`].
pub(crate) struct CHandler {
    f: extern "C" fn(
        *mut c_void,
        *const UnotifyNotif,
        *mut UnotifyCtx,
        *mut UnotifyAction,
    ) -> c_int,
    user: HostPtr,
}

impl CHandler {
    pub(crate) fn new(f: HandlerFn, user: *mut c_void) -> Option<Self> {
        Some(CHandler {
            f: f?,
            user: HostPtr(user),
        })
    }
}

impl Handler for CHandler {
    fn handle(&self, cx: &HandlerCtx<'_>) -> NotifAction {
        let notif = UnotifyNotif::from(cx.notification());
        let mut out = UnotifyAction::continue_();
        // Lifetimes erased for C; the accessors use it only during this call.
        let cx_ptr = cx as *const HandlerCtx<'_> as *const UnotifyCtx as *mut UnotifyCtx;
        let rc = (self.f)(self.user.0, &notif, cx_ptr, &mut out);
        if rc != 0 {
            log::debug!("C handler returned {rc} for {}: EPERM", notif.nr);
            discard(&out);
            return NotifAction::Errno(libc::EPERM);
        }
        to_action(out, &notif, true)
    }
}

/// A deferred C decision; `defer_free` runs exactly once, when it drops.
struct DeferCall {
    f: extern "C" fn(*mut c_void, *const UnotifyNotif, *mut UnotifyAction) -> c_int,
    free: FreeFn,
    user: HostPtr,
    notif: UnotifyNotif,
}

impl DeferCall {
    fn run(self) -> NotifAction {
        let mut out = UnotifyAction::continue_();
        let rc = (self.f)(self.user.0, &self.notif, &mut out);
        if rc != 0 {
            discard(&out);
            return NotifAction::Errno(libc::EPERM);
        }
        to_action(out, &self.notif, false)
    }
}

impl Drop for DeferCall {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            free(self.user.0);
        }
    }
}

/// Releases what an answer that will not be used hands over: the fd of
/// `UNOTIFY_INJECT_FD` (closed), the `defer_user` of `UNOTIFY_DEFER`
/// (given to `defer_free`).
pub(crate) fn discard(out: &UnotifyAction) {
    match out.kind {
        UNOTIFY_INJECT_FD | UNOTIFY_INJECT_FD_AT => drop(capi_raw::take_fd(out.fd)),
        UNOTIFY_DEFER => {
            if let Some(free) = out.defer_free {
                free(out.defer_user);
            }
        }
        _ => {}
    }
}

/// Turns a C answer into an action; anything malformed fails closed
/// (`EPERM`). Only a handler's answer (`may_defer`) may defer or hold; a
/// deferred one that does is answered `EIO`.
pub(crate) fn to_action(out: UnotifyAction, notif: &UnotifyNotif, may_defer: bool) -> NotifAction {
    match out.kind {
        UNOTIFY_HOLD if !may_defer => NotifAction::Errno(libc::EIO),
        UNOTIFY_HOLD => NotifAction::Hold,
        UNOTIFY_CONTINUE => NotifAction::Continue,
        UNOTIFY_ERRNO => NotifAction::Errno(out.errno_value),
        UNOTIFY_RETURN => NotifAction::ReturnValue(out.value),
        UNOTIFY_INJECT_FD => match capi_raw::take_fd(out.fd) {
            Some(fd) => NotifAction::InjectFdSend {
                fd,
                newfd_flags: out.fd_flags,
            },
            None => NotifAction::Errno(libc::EACCES),
        },
        UNOTIFY_INJECT_FD_AT => match capi_raw::take_fd(out.fd) {
            Some(fd) if out.target_fd >= 0 => NotifAction::InjectFd {
                fd,
                target: out.target_fd,
                newfd_flags: out.fd_flags,
            },
            // A negative target: malformed (the fd is closed on drop).
            Some(_) => NotifAction::Errno(libc::EPERM),
            None => NotifAction::Errno(libc::EACCES),
        },
        UNOTIFY_KILL_TASK => NotifAction::KillTask { signal: out.signal },
        UNOTIFY_KILL_GROUP => NotifAction::KillGroup { signal: out.signal },
        UNOTIFY_DEFER if !may_defer => {
            discard(&out);
            NotifAction::Errno(libc::EIO)
        }
        UNOTIFY_DEFER => {
            let Some(f) = out.defer_fn else {
                discard(&out);
                return NotifAction::Errno(libc::EPERM);
            };
            let call = DeferCall {
                f,
                free: out.defer_free,
                user: HostPtr(out.defer_user),
                notif: *notif,
            };
            NotifAction::defer(move || call.run())
        }
        other => {
            log::warn!("C handler answered unknown action kind {other}: EPERM");
            NotifAction::Errno(libc::EPERM)
        }
    }
}

fn memory_fail(e: MemoryError) -> Fail {
    let code = match e {
        MemoryError::Gone => UNOTIFY_E_GONE,
        MemoryError::Fault(_) => UNOTIFY_E_FAULT,
        MemoryError::TooLong => UNOTIFY_E_TOO_LONG,
    };
    Fail::new(code, e.to_string())
}

fn ctx<'a>(cx: *mut UnotifyCtx) -> Result<&'a UnotifyCtx, Fail> {
    capi_raw::handle(cx).ok_or_else(|| Fail::invalid("null unotify_ctx"))
}

/// Copies the NUL-terminated string at `addr` in the trapped task into
/// `buf` (`cap` bytes, NUL included); its length goes to `*len` if not null.
#[no_mangle]
pub extern "C" fn unotify_ctx_read_cstr(
    cx: *mut UnotifyCtx,
    addr: u64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let cx = ctx(cx)?;
        let buf = capi_raw::bytes_mut(buf, cap).ok_or_else(|| Fail::invalid("null buffer"))?;
        if buf.is_empty() {
            return Err(Fail::invalid("a buffer of 0 bytes has no room for the NUL"));
        }
        let s = cx.read_cstr(addr, buf.len() - 1).map_err(memory_fail)?;
        buf[..s.len()].copy_from_slice(&s);
        buf[s.len()] = 0;
        capi_raw::put(len, s.len());
        Ok(())
    })
}

/// Copies exactly `len` bytes at `addr` in the trapped task into `buf`.
#[no_mangle]
pub extern "C" fn unotify_ctx_read_mem(
    cx: *mut UnotifyCtx,
    addr: u64,
    buf: *mut u8,
    len: usize,
) -> c_int {
    guard(|| {
        let cx = ctx(cx)?;
        let buf = capi_raw::bytes_mut(buf, len).ok_or_else(|| Fail::invalid("null buffer"))?;
        cx.read_mem_into(addr, buf).map_err(memory_fail)
    })
}

/// Writes the `len` bytes at `data` to `addr` in the trapped task.
#[no_mangle]
pub extern "C" fn unotify_ctx_write_mem(
    cx: *mut UnotifyCtx,
    addr: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        let cx = ctx(cx)?;
        let data = capi_raw::bytes(data, len).ok_or_else(|| Fail::invalid("null data"))?;
        cx.write_mem(addr, data).map_err(memory_fail)
    })
}

/// Duplicates the trapped task's fd `fd` into the host: `*out_fd` is a new
/// close-on-exec fd the caller owns.
#[no_mangle]
pub extern "C" fn unotify_ctx_dup_fd(cx: *mut UnotifyCtx, fd: c_int, out_fd: *mut c_int) -> c_int {
    guard(|| {
        let cx = ctx(cx)?;
        if out_fd.is_null() {
            return Err(Fail::invalid("null out_fd"));
        }
        let owned = cx.dup_fd(fd).map_err(|e| {
            if cx.id_valid() {
                Fail::io("duplicate the task's fd", e)
            } else {
                Fail::new(UNOTIFY_E_GONE, "the trapped call is no longer pending")
            }
        })?;
        capi_raw::put(out_fd, std::os::fd::IntoRawFd::into_raw_fd(owned));
        Ok(())
    })
}

/// A handle on the supervisor running this handler: `*out` is a new
/// `unotify_supervisor` the caller frees.
#[no_mangle]
pub extern "C" fn unotify_ctx_supervisor(
    cx: *mut UnotifyCtx,
    out: *mut *mut super::supervisor::UnotifySupervisor,
) -> c_int {
    guard(|| {
        let cx = ctx(cx)?;
        if out.is_null() {
            return Err(Fail::invalid("null out"));
        }
        let s = super::supervisor::UnotifySupervisor::new(cx.supervisor());
        capi_raw::put(out, capi_raw::into_handle(s));
        Ok(())
    })
}

/// Whether the trapped call is still pending: `UNOTIFY_OK` or `UNOTIFY_E_GONE`.
#[no_mangle]
pub extern "C" fn unotify_ctx_id_valid(cx: *mut UnotifyCtx) -> c_int {
    guard(|| {
        if ctx(cx)?.id_valid() {
            Ok(())
        } else {
            Err(Fail::new(
                UNOTIFY_E_GONE,
                "the trapped call is no longer pending",
            ))
        }
    })
}
