//! Running a list of system calls under a seccomp filter, in a forked child.
//!
//! [`run_filtered`] forks a child that sets `no_new_privs`, installs the
//! filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, closes the listener (so
//! every notified call fails with `ENOSYS`), makes the [`Call`]s in order,
//! reports their results on a pipe and exits. This is what tests need to
//! see what the kernel makes of a generated filter without writing
//! `unsafe` code of their own.
//!
//! The calls are data, not code: the parent may be multi-threaded, so the
//! child must not allocate, lock or unwind. Everything it touches (the
//! program, the calls flattened to plain integers, the result buffer) is
//! prepared before the fork, and it makes only raw system calls (the
//! crate's errno-free wrappers, which return `-errno`).
//!
//! The calls run in the child's own address space, a copy of the caller's:
//! whatever they do to memory (a pointer argument given as a plain value
//! may point anywhere) stays there, and at worst spoils the child's report
//! or kills it, which the parent sees.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::process::{self, WaitStatus};
use super::raw::syscall6;

/// Most calls one [`run_filtered`] makes: the report (one `i64` per call
/// plus a header) must fit in `PIPE_BUF`, so that the child's single write
/// to the empty pipe is whole and never blocks.
pub const MAX_CALLS: usize = 256;

/// Most arguments of one [`Call`].
pub const MAX_ARGS: usize = 6;

/// One argument of a [`Call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    /// This value, passed as a full register (`long`).
    Val(i64),
    /// A pointer to this NUL-terminated string.
    Str(&'a CStr),
    /// What the call with this index (an earlier one in the same list)
    /// returned: its value, or `-errno`.
    Result(usize),
}

/// One system call for [`run_filtered`] to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call<'a> {
    /// The system call number, in the native calling convention (which may
    /// carry flag bits such as x32's).
    pub nr: u32,
    /// Up to [`MAX_ARGS`] arguments; the missing ones are zero.
    pub args: &'a [Arg<'a>],
}

/// How the child of [`run_filtered`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallsOutcome {
    /// It made every call: what each returned, its value or `-errno`.
    Done(Vec<i64>),
    /// Setting `no_new_privs` or installing the filter failed with this
    /// `-errno`; no call was made.
    SetupFailed(i64),
    /// It was killed by this signal (a filter's kill action, for instance).
    Signaled(i32),
}

/// A call flattened to plain integers: all the child reads of it.
#[derive(Clone, Copy, Default)]
struct RawCall {
    nr: usize,
    /// Argument values; for those taken from results, ignored.
    args: [usize; MAX_ARGS],
    /// Per argument: 0 for a value in `args`, `i + 1` for the result of
    /// call `i`.
    from: [usize; MAX_ARGS],
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn flatten(calls: &[Call<'_>]) -> io::Result<Vec<RawCall>> {
    if calls.len() > MAX_CALLS {
        return Err(invalid("too many calls"));
    }
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            if call.args.len() > MAX_ARGS {
                return Err(invalid("more than six arguments"));
            }
            let mut raw = RawCall {
                nr: call.nr as usize,
                ..RawCall::default()
            };
            for (k, arg) in call.args.iter().enumerate() {
                match *arg {
                    // Sign-extended, like a `long` argument.
                    Arg::Val(v) => raw.args[k] = v as usize,
                    Arg::Str(s) => raw.args[k] = s.as_ptr() as usize,
                    Arg::Result(j) if j < i => raw.from[k] = j + 1,
                    Arg::Result(_) => {
                        return Err(invalid("a result argument must name an earlier call"));
                    }
                }
            }
            Ok(raw)
        })
        .collect()
}

/// Forks a child that installs `filter` and makes `calls` in order (see the
/// [module documentation](self)), and reports how it went.
///
/// The filter must let `write` and `exit_group` run, or the child cannot
/// report or exit.
///
/// # Errors
/// `InvalidInput` for a filter longer than `u16::MAX` instructions, more
/// than [`MAX_CALLS`] calls, more than [`MAX_ARGS`] arguments or a result
/// argument naming the same or a later call; the error of `pipe2`, `fork` or
/// `waitpid`; `UnexpectedEof` or `InvalidData` if the child exited without
/// a complete report.
pub fn run_filtered(filter: &[libc::sock_filter], calls: &[Call<'_>]) -> io::Result<CallsOutcome> {
    let len = u16::try_from(filter.len()).map_err(|_| invalid("filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    let plan = flatten(calls)?;
    // Slot 0: 0 once the filter is installed, else the setup's -errno.
    let mut report = vec![0i64; 1 + plan.len()];
    let report_len = std::mem::size_of_val(report.as_slice());

    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array. Non-blocking: the child's
    // write fits the empty pipe, and the parent reads only once the child is
    // gone (see below).
    super::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: the child runs only `child_main`, which makes raw system calls
    // on data prepared above and ends in exit_group: no allocation, lock or
    // unwinding that another thread of the parent could have left in a bad
    // state.
    let pid = super::cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: we are the child of the fork above.
        unsafe { child_main(&prog, &plan, &mut report, write_end.as_raw_fd()) }
    }
    drop(write_end);

    let code = match process::waitpid(pid, 0)? {
        Some((_, WaitStatus::Exited(code))) => code,
        Some((_, WaitStatus::Signaled(sig))) => return Ok(CallsOutcome::Signaled(sig)),
        other => {
            return Err(io::Error::other(format!(
                "unexpected wait status of the child: {other:?}"
            )))
        }
    };
    // The child is gone, so whatever it wrote is in the pipe. Do not wait for
    // EOF: children that other threads fork meanwhile may hold the write end.
    let mut bytes = vec![0u8; report_len];
    let mut file = File::from(read_end);
    let got = loop {
        match file.read(&mut bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
            Err(e) => return Err(e),
        }
    };
    let mut words = bytes[..got].chunks_exact(8).map(|w| {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        i64::from_ne_bytes(a)
    });
    match words.next() {
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the child exited with code {code} without reporting"),
        )),
        Some(setup) if setup < 0 => Ok(CallsOutcome::SetupFailed(setup)),
        Some(_) if got != report_len || code != 0 => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the child exited with code {code} after a report of {got} bytes"),
        )),
        Some(_) => Ok(CallsOutcome::Done(words.collect())),
    }
}

/// Exit code of a child whose setup failed.
const SETUP_FAILED: usize = 1;

/// The child: set up, make the calls, report, exit.
///
/// # Safety
/// Only in the child of `fork`, with everything prepared before the fork.
unsafe fn child_main(
    prog: &libc::sock_fprog,
    plan: &[RawCall],
    report: &mut [i64],
    report_fd: RawFd,
) -> ! {
    let setup = install(prog);
    if let Some(slot) = report.first_mut() {
        *slot = setup as i64;
    }
    if setup >= 0 {
        let results = report.get_mut(1..).unwrap_or_default();
        for (i, call) in plan.iter().enumerate() {
            let mut args = call.args;
            for (arg, &from) in args.iter_mut().zip(&call.from) {
                if from > 0 {
                    *arg = results.get(from - 1).map_or(0, |&r| r as usize);
                }
            }
            // SAFETY: the caller's calls run in this child's own address
            // space (see the module documentation); `Str` arguments point at
            // NUL-terminated strings, copied here by the fork.
            let ret = unsafe { syscall6(call.nr as libc::c_long, args) };
            if let Some(slot) = results.get_mut(i) {
                *slot = ret as i64;
            }
        }
    }
    let bytes = std::mem::size_of_val(report);
    loop {
        // SAFETY: writes the live report buffer, `bytes` long, to the pipe.
        let n = unsafe {
            syscall6(
                libc::SYS_write,
                [report_fd as usize, report.as_ptr() as usize, bytes, 0, 0, 0],
            )
        };
        if n != -(libc::EINTR as isize) {
            break;
        }
    }
    let code = if setup >= 0 { 0 } else { SETUP_FAILED };
    loop {
        // SAFETY: exit_group takes an integer and does not return; should a
        // filter make it fail, exit ends this single-threaded child as well.
        unsafe {
            syscall6(libc::SYS_exit_group, [code, 0, 0, 0, 0, 0]);
            syscall6(libc::SYS_exit, [code, 0, 0, 0, 0, 0]);
        }
    }
}

/// Sets `no_new_privs`, installs `prog` with a new listener and closes the
/// listener. Returns 0, or the `-errno` of the failed step.
fn install(prog: &libc::sock_fprog) -> isize {
    let ret = super::seccomp::set_no_new_privs_raw();
    if ret < 0 {
        return ret;
    }
    let listener = super::seccomp::install_listener_raw(prog, false).listener;
    if listener < 0 {
        return listener;
    }
    // SAFETY: closes the listener the kernel just gave us, which nothing
    // else refers to.
    unsafe { syscall6(libc::SYS_close, [listener as usize, 0, 0, 0, 0, 0]) };
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// Fails getppid with EPERM, notifies getuid, allows the rest (no
    /// architecture check: good enough for a test on the native one).
    fn filter() -> Vec<libc::sock_filter> {
        vec![
            insn(LD_W_ABS, 0, 0, 0),
            insn(JEQ_K, 2, 0, libc::SYS_getppid as u32),
            insn(JEQ_K, 2, 0, libc::SYS_getuid as u32),
            insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            insn(RET_K, 0, 0, super::super::seccomp::RET_USER_NOTIF),
        ]
    }

    #[test]
    fn runs_calls_in_order_with_results_and_strings() {
        let nr = |n: libc::c_long| n as u32;
        let calls = [
            Call {
                nr: nr(libc::SYS_getppid),
                args: &[],
            },
            Call {
                nr: nr(libc::SYS_getuid),
                args: &[],
            },
            Call {
                nr: nr(libc::SYS_openat),
                args: &[
                    Arg::Val(libc::AT_FDCWD.into()),
                    Arg::Str(c"/"),
                    Arg::Val((libc::O_RDONLY | libc::O_CLOEXEC).into()),
                ],
            },
            // The fd opened above, not some other (stdin has no FD_CLOEXEC).
            Call {
                nr: nr(libc::SYS_fcntl),
                args: &[Arg::Result(2), Arg::Val(libc::F_GETFD.into())],
            },
            Call {
                nr: nr(libc::SYS_close),
                args: &[Arg::Result(2)],
            },
            Call {
                nr: nr(libc::SYS_close),
                args: &[Arg::Result(2)],
            },
        ];
        let r = match run_filtered(&filter(), &calls).unwrap() {
            CallsOutcome::Done(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], -i64::from(libc::EPERM), "getppid");
        assert_eq!(r[1], -i64::from(libc::ENOSYS), "notified getuid");
        assert!(r[2] > 2, "openat: {}", r[2]);
        assert_eq!(
            r[3],
            i64::from(libc::FD_CLOEXEC),
            "F_GETFD of the opened fd"
        );
        assert_eq!(r[4], 0, "close");
        assert_eq!(r[5], -i64::from(libc::EBADF), "second close");
    }

    #[test]
    fn rejects_bad_calls_before_forking() {
        let ahead = [Call {
            nr: libc::SYS_close as u32,
            args: &[Arg::Result(0)],
        }];
        let err = run_filtered(&filter(), &ahead).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let many = [Call {
            nr: libc::SYS_getpid as u32,
            args: &[Arg::Val(0); MAX_ARGS + 1],
        }];
        let err = run_filtered(&filter(), &many).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn reports_a_failed_setup() {
        // An empty program is invalid.
        let outcome = run_filtered(&[], &[]).unwrap();
        assert_eq!(outcome, CallsOutcome::SetupFailed(-i64::from(libc::EINVAL)));
    }
}
