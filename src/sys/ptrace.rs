//! Thin `ptrace(2)` wrappers. A task may only be driven by the thread that
//! seized it; callers keep to that rule.

use std::io;

use super::cvt_long;

/// Options for [`seize`]: report fork, vfork and clone creations.
pub const TRACE_CREATION: u32 =
    (libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK | libc::PTRACE_O_TRACECLONE) as u32;
/// Option: report exec.
pub const TRACE_EXEC: u32 = libc::PTRACE_O_TRACEEXEC as u32;
/// Option: kill the tracee if the tracer exits.
pub const EXIT_KILL: u32 = libc::PTRACE_O_EXITKILL as u32;

fn request(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: the requests used through this helper take integers (or, for
    // GETEVENTMSG, a pointer to a live u64 passed as `data` by the caller).
    cvt_long(unsafe { libc::ptrace(req, tid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

/// `PTRACE_SEIZE` with `options`; the task keeps running.
pub fn seize(tid: i32, options: u32) -> io::Result<()> {
    request(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

/// `PTRACE_INTERRUPT`: stop a seized task.
pub fn interrupt(tid: i32) -> io::Result<()> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_CONT`, delivering `sig` (0 for none).
pub fn cont(tid: i32, sig: i32) -> io::Result<()> {
    request(libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
pub fn detach(tid: i32, sig: i32) -> io::Result<()> {
    request(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

/// `PTRACE_SETOPTIONS`.
pub fn set_options(tid: i32, options: u32) -> io::Result<()> {
    request(libc::PTRACE_SETOPTIONS, tid, 0, options as usize).map(drop)
}

/// `PTRACE_GETEVENTMSG`: e.g. the new pid after a fork event.
pub fn event_msg(tid: i32) -> io::Result<u64> {
    let mut msg: u64 = 0;
    // SAFETY: GETEVENTMSG writes one unsigned long to `data`, which points
    // at `msg`, alive for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut msg as *mut u64 as *mut libc::c_void,
        )
    })?;
    Ok(msg)
}
