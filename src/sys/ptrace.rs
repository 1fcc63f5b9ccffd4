//! Thin `ptrace(2)` wrappers. A task may only be driven by the thread that
//! seized it; callers keep to that rule.

use std::io;

use super::cvt_long;

/// Option: report exec.
pub const TRACE_EXEC: u32 = libc::PTRACE_O_TRACEEXEC as u32;
/// Options: report each new task (`fork`, `vfork`, `clone`), which starts
/// attached to the same tracer, stopped before its first instruction.
pub const TRACE_CREATION: u32 =
    (libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK | libc::PTRACE_O_TRACECLONE) as u32;
/// Option: kill the tracee if its tracer (thread) exits.
pub const EXIT_KILL: u32 = libc::PTRACE_O_EXITKILL as u32;

fn request(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: the requests used through this helper take integers only.
    cvt_long(unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    })
}

/// `PTRACE_SEIZE` with `options`; the task keeps running.
pub fn seize(tid: i32, options: u32) -> io::Result<()> {
    request(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}

/// `PTRACE_INTERRUPT`: stop a seized task.
pub fn interrupt(tid: i32) -> io::Result<()> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// `PTRACE_SINGLESTEP`: run one instruction of a stopped tracee, then stop
/// it with `SIGTRAP`.
pub fn single_step(tid: i32) -> io::Result<()> {
    request(libc::PTRACE_SINGLESTEP, tid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
pub fn detach(tid: i32, sig: i32) -> io::Result<()> {
    request(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

/// `PTRACE_GETEVENTMSG`: after a creation event, the new task's id.
pub fn event_msg(tid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: GETEVENTMSG writes one unsigned long at `data`, which points
    // to `msg`, alive and writable for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            (&mut msg as *mut libc::c_ulong).cast::<libc::c_void>(),
        )
    })?;
    Ok(msg as u64)
}

/// `PTRACE_EVENT_*` numbers as reported in bits 16..24 of a wait status:
/// an exec.
pub const EVENT_EXEC: i32 = libc::PTRACE_EVENT_EXEC;
/// See [`EVENT_EXEC`]: a `fork`.
pub const EVENT_FORK: i32 = libc::PTRACE_EVENT_FORK;
/// See [`EVENT_EXEC`]: a `vfork` (or `clone` with `CLONE_VFORK`).
pub const EVENT_VFORK: i32 = libc::PTRACE_EVENT_VFORK;
/// See [`EVENT_EXEC`]: a `clone` whose exit signal is not `SIGCHLD`.
pub const EVENT_CLONE: i32 = libc::PTRACE_EVENT_CLONE;
/// See [`EVENT_EXEC`]: a `PTRACE_INTERRUPT` or group stop.
pub const EVENT_STOP: i32 = libc::PTRACE_EVENT_STOP;

/// What [`wait_tracee`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceeState {
    /// Exited or was killed (reaped, unless peeked with `keep_exit`).
    Gone,
    /// A `PTRACE_EVENT_*` stop other than [`EVENT_STOP`].
    Event(i32),
    /// An interrupt or group stop (`PTRACE_EVENT_STOP`); nothing to deliver.
    Trapped,
    /// A signal-delivery stop: the signal is to be delivered on resume.
    Signal(i32),
}

/// Decodes a raw wait status of a seized task.
pub fn decode_status(status: i32) -> TraceeState {
    if !libc::WIFSTOPPED(status) {
        return TraceeState::Gone;
    }
    let event = (status >> 16) & 0xff;
    match event {
        0 => TraceeState::Signal(libc::WSTOPSIG(status)),
        EVENT_STOP => TraceeState::Trapped,
        e => TraceeState::Event(e),
    }
}

/// Waits for a state change of `tid`, a task traced by the calling thread
/// (`__WALL | __WNOTHREAD`: never another thread's tracee or child).
/// `Ok(None)`: nothing yet (`nohang`). `ECHILD` (not ours, reaped already,
/// or a thread whose id an exec replaced by its process id) is an error.
///
/// With `keep_exit`, an exit is only peeked at (`WNOWAIT`), so that the
/// task's real parent (e.g. [`Child::wait`](crate::Child::wait) for the
/// sandbox's first process, which is our own child) still gets it.
pub fn wait_tracee(tid: i32, nohang: bool, keep_exit: bool) -> io::Result<Option<TraceeState>> {
    let mut flags = libc::__WALL | libc::__WNOTHREAD;
    if nohang {
        flags |= libc::WNOHANG;
    }
    if keep_exit {
        match peek(tid, flags | libc::WEXITED | libc::WSTOPPED)? {
            None => return Ok(None),
            Some(Peeked::Exited) => return Ok(Some(TraceeState::Gone)),
            // A stop: consume it below (it is there, so no blocking).
            Some(Peeked::Other) => flags |= libc::WNOHANG,
        }
    }
    let mut status = 0;
    // SAFETY: waitpid writes one int to `status`, alive for the call.
    let ret = super::retry_eintr(|| super::cvt(unsafe { libc::waitpid(tid, &mut status, flags) }));
    match ret {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(decode_status(status))),
        Err(e) => Err(e),
    }
}

/// A tracee of the calling thread in a ptrace stop, if one is reported
/// (`waitid(P_ALL, WSTOPPED | WNOWAIT | __WNOTHREAD)`; the stop is left to
/// take by its id): never another thread's tracee, and never a real
/// child's job-control stop or exit. `ECHILD`: it has none.
pub fn trapped_tracee() -> io::Result<Option<i32>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL | libc::__WNOTHREAD;
    // SAFETY: waitid writes one siginfo_t into `info`, alive for the call;
    // WNOWAIT leaves the state change reportable.
    super::retry_eintr(|| super::cvt(unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) }))?;
    // SAFETY: si_pid is valid to read on a siginfo filled by waitid (zero
    // when WNOHANG found nothing).
    let pid = unsafe { info.si_pid() };
    if pid == 0 || info.si_code != libc::CLD_TRAPPED {
        return Ok(None);
    }
    Ok(Some(pid))
}

/// What [`peek`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// Exited, killed or dumped core (still waitable).
    Exited,
    /// Stopped, trapped or continued (still reported).
    Other,
}

/// `waitid(P_PID, pid, flags | WNOWAIT)`: looks at a pending state change
/// without consuming it. `Ok(None)`: nothing (with `WNOHANG` in `flags`).
pub fn peek(pid: i32, flags: i32) -> io::Result<Option<Peeked>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t into `info`, alive for the call;
    // WNOWAIT leaves the state change reportable.
    super::retry_eintr(|| {
        super::cvt(unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                flags | libc::WNOWAIT,
            )
        })
    })?;
    // SAFETY: si_pid is valid to read on a siginfo filled by waitid (zero
    // when WNOHANG found nothing).
    if unsafe { info.si_pid() } == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED => Peeked::Exited,
        _ => Peeked::Other,
    }))
}

/// `kcmp(a, b, KCMP_VM, 0, 0)`: whether two tasks share one address space.
pub fn same_vm(a: i32, b: i32) -> io::Result<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: KCMP_VM compares two tasks' memory descriptors; it takes no
    // pointers.
    let r = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::c_long,
            b as libc::c_long,
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    })?;
    Ok(r == 0)
}

/// The general registers of a stopped tracee (x86_64).
#[cfg(target_arch = "x86_64")]
pub type Regs = libc::user_regs_struct;

/// `PTRACE_GETREGS` of `tid`, a tracee of the calling thread in a ptrace
/// stop.
#[cfg(target_arch = "x86_64")]
pub fn get_regs(tid: i32) -> io::Result<Regs> {
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes one user_regs_struct at `data`, which
    // points to `regs`, alive and writable for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            (&mut regs as *mut Regs).cast::<libc::c_void>(),
        )
    })?;
    Ok(regs)
}

/// `PTRACE_SETREGS` of `tid`, a tracee of the calling thread in a ptrace
/// stop.
#[cfg(target_arch = "x86_64")]
pub fn set_regs(tid: i32, regs: &Regs) -> io::Result<()> {
    // SAFETY: PTRACE_SETREGS reads one user_regs_struct at `data`, which
    // points to `regs`, alive for the call; the kernel validates the values.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            (regs as *const Regs).cast_mut().cast::<libc::c_void>(),
        )
    })
    .map(drop)
}

/// The `siginfo_t` of the signal (or trap) that stopped a tracee.
pub type SigInfo = libc::siginfo_t;

/// `PTRACE_GETSIGINFO` of `tid`, a tracee of the calling thread in a
/// ptrace stop.
pub fn get_siginfo(tid: i32) -> io::Result<SigInfo> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: SigInfo = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETSIGINFO writes one siginfo_t at `data`, which
    // points to `info`, alive and writable for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            (&mut info as *mut SigInfo).cast::<libc::c_void>(),
        )
    })?;
    Ok(info)
}

/// `PTRACE_SETSIGINFO` of `tid`: the siginfo of the signal delivered when
/// it leaves its signal-delivery stop with that signal.
pub fn set_siginfo(tid: i32, info: &SigInfo) -> io::Result<()> {
    // SAFETY: PTRACE_SETSIGINFO reads one siginfo_t at `data`, which points
    // to `info`, alive for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGINFO,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            (info as *const SigInfo).cast_mut().cast::<libc::c_void>(),
        )
    })
    .map(drop)
}

/// `PTRACE_GETSIGMASK` of a stopped tracee: its blocked signals (bit
/// `n - 1` for signal `n`).
pub fn get_sigmask(tid: i32) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: PTRACE_GETSIGMASK writes `addr` (8) bytes at `data`, which
    // points to `mask`, 8 bytes alive and writable for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            (&mut mask as *mut u64).cast::<libc::c_void>(),
        )
    })?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK` of a stopped tracee (`SIGKILL` and `SIGSTOP`
/// stay unblocked whatever `mask` says).
pub fn set_sigmask(tid: i32, mask: u64) -> io::Result<()> {
    // SAFETY: PTRACE_SETSIGMASK reads `addr` (8) bytes at `data`, which
    // points to `mask`, alive for the call.
    cvt_long(unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid,
            std::mem::size_of::<u64>() as *mut libc::c_void,
            (&mask as *const u64).cast_mut().cast::<libc::c_void>(),
        )
    })
    .map(drop)
}
