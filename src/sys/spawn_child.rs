//! The child's side of [`spawn`](super::spawn): what runs between `clone`
//! and `exec`.
//!
//! The child is cloned with `CLONE_VM`: it runs on a stack of its own but
//! in the parent's memory, beside the parent's threads. So it makes only
//! raw system calls ([`super::raw`], which leave the shared `errno` alone),
//! reads only what the parent prepared and keeps unchanged until the child
//! has exec'd or died ([`ChildArgs`]), writes only the shared hand-shake
//! words, and never allocates, locks, panics or returns.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::raw::syscall;
use super::spawn::ExecPlan;

/// The child has not reached the hand-shake yet.
pub(super) const STATE_PENDING: u32 = 0;
/// The child installed its filter; `value` is its listener's fd number.
pub(super) const STATE_READY: u32 = 1;
/// The child failed at `step` with errno `value`, and exits.
pub(super) const STATE_FAILED: u32 = 2;

/// Where the child failed before or at exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    /// Parent-death signal, process group, stdio or working directory.
    Prepare,
    /// Capabilities, `no_new_privs` or the seccomp filter.
    Filter,
    /// Every exec candidate failed.
    Exec,
    /// Entering the Landlock domain (`landlock_restrict_self`).
    Isolation,
}

/// The words parent and child share during the hand-shake (a shared
/// mapping: the futex calls do not use the process-private flag).
#[repr(C)]
pub(super) struct SharedPage {
    pub(super) state: AtomicU32,
    pub(super) value: AtomicU32,
    pub(super) step: AtomicU32,
}

/// Everything the child reads, owned by the parent's
/// [`ForkedChild`](super::spawn::ForkedChild) until the child has exec'd
/// or died.
pub(super) struct ChildArgs {
    pub(super) plan: ExecPlan,
    pub(super) argv: Vec<*const libc::c_char>,
    pub(super) envp: Vec<*const libc::c_char>,
    pub(super) prog: libc::sock_fprog,
    pub(super) parent: i32,
    pub(super) page: *const SharedPage,
    pub(super) go: RawFd,
    pub(super) err: RawFd,
    /// The clone gave the child the default action for every handled
    /// signal (`CLONE_CLEAR_SIGHAND`): only `SIGPIPE` is left to reset.
    pub(super) handlers_cleared: bool,
}

const KERNEL_SIGSET_SIZE: usize = 8;
/// Generous for the kernel's `struct sigaction` on every architecture:
/// handler, flags, restorer, mask.
type KernelSigaction = [u64; 4];

const CLOSE_RANGE_CLOEXEC: usize = 1 << 2;

/// The clone's entry point. Only [`fork_child`](super::spawn::fork_child)
/// passes it to `clone`, with `arg` pointing to a [`ChildArgs`] that stays
/// alive and unchanged until this `CLONE_VM` child has exec'd or died.
pub(super) extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `fork_child` keeps the ChildArgs alive (see above).
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: per this function's contract.
    unsafe { child_main(args) }
}

fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { syscall(libc::SYS_exit_group, &[code as usize]) };
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of a live word as a key.
    unsafe {
        syscall(
            libc::SYS_futex,
            &[
                word.as_ptr() as usize,
                libc::FUTEX_WAKE as usize,
                i32::MAX as usize,
            ],
        )
    };
}

/// Sets the child's own limit `resource` (soft and hard) to `limit`, or
/// fails the spawn.
fn set_limit(page: &SharedPage, resource: libc::__rlimit_resource_t, limit: &libc::rlimit64) {
    let limit: *const libc::rlimit64 = limit;
    // SAFETY: prlimit64 reads one rlimit64 the caller keeps alive for the
    // call; the old value is not asked for (null).
    let r = unsafe {
        syscall(
            libc::SYS_prlimit64,
            &[0, resource as usize, limit as usize, 0],
        )
    };
    if r < 0 {
        fail_early(page, ChildStep::Prepare, r);
    }
}

/// Reports a failure through the shared page and exits.
fn fail_early(page: &SharedPage, step: ChildStep, err: isize) -> ! {
    page.value.store((-err) as u32, Ordering::Relaxed);
    page.step.store(step as u32, Ordering::Relaxed);
    page.state.store(STATE_FAILED, Ordering::Release);
    futex_wake(&page.state);
    exit(125)
}

/// Whether fd 0 is a terminal whose foreground group is ours.
///
/// # Safety
/// Only in the child.
unsafe fn stdin_is_our_foreground_tty() -> bool {
    let mut termios = [0u8; 128];
    // SAFETY: TCGETS writes at most the kernel's termios (well under 128 bytes).
    if unsafe {
        syscall(
            libc::SYS_ioctl,
            &[0, libc::TCGETS as usize, termios.as_mut_ptr() as usize],
        )
    } < 0
    {
        return false;
    }
    let mut fg: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t.
    if unsafe {
        syscall(
            libc::SYS_ioctl,
            &[0, libc::TIOCGPGRP as usize, &mut fg as *mut _ as usize],
        )
    } < 0
    {
        return false;
    }
    // SAFETY: getpgid(0) takes an integer.
    let ours = unsafe { syscall(libc::SYS_getpgid, &[0]) };
    ours >= 0 && ours == fg as isize
}

/// Every signal with a handler goes back to the default action (the
/// handler is the parent's code, which must not run here), and `SIGPIPE`
/// too (ignored by Rust programs, expected by the exec'd one), as
/// `std::process::Command` does; then the signals of `ignored` are
/// ignored (what the caller's own caller ignored, [`ExecPlan`]), and the
/// mask becomes `blocked` (empty unless the caller says). Signals are
/// blocked on entry (the parent cloned with all of them blocked).
/// `handlers_cleared`: the clone reset the handlers already
/// (`CLONE_CLEAR_SIGHAND`), leaving ignored signals ignored.
///
/// # Safety
/// Only in the child.
unsafe fn reset_signals(handlers_cleared: bool, ignored: u64, blocked: u64) {
    let dfl: KernelSigaction = [0; 4];
    let set_default = |sig: usize| {
        // SAFETY: installs the default action from a live, zeroed struct.
        unsafe {
            syscall(
                libc::SYS_rt_sigaction,
                &[sig, dfl.as_ptr() as usize, 0, KERNEL_SIGSET_SIZE],
            )
        }
    };
    if handlers_cleared {
        set_default(libc::SIGPIPE as usize);
    } else {
        for sig in 1..=64usize {
            if sig == libc::SIGKILL as usize || sig == libc::SIGSTOP as usize {
                continue;
            }
            let mut old: KernelSigaction = [0; 4];
            // SAFETY: reads one kernel sigaction into a large enough buffer.
            let r = unsafe {
                syscall(
                    libc::SYS_rt_sigaction,
                    &[sig, 0, old.as_mut_ptr() as usize, KERNEL_SIGSET_SIZE],
                )
            };
            let handler = old[0] as usize;
            let keep = handler == libc::SIG_DFL
                || (handler == libc::SIG_IGN && sig != libc::SIGPIPE as usize);
            if r == 0 && !keep {
                set_default(sig);
            }
        }
    }
    let ign: KernelSigaction = [libc::SIG_IGN as u64, 0, 0, 0];
    for sig in (1..=64usize).filter(|s| ignored & 1 << (s - 1) != 0) {
        // SAFETY: installs "ignore" from a live struct (no handler, so
        // no restorer). (SIGKILL and SIGSTOP are not in the set.)
        unsafe {
            syscall(
                libc::SYS_rt_sigaction,
                &[sig, ign.as_ptr() as usize, 0, KERNEL_SIGSET_SIZE],
            )
        };
    }
    // SAFETY: sets the mask from a live 8-byte set.
    unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as usize,
                &blocked as *const u64 as usize,
                0,
                KERNEL_SIGSET_SIZE,
            ],
        )
    };
}

/// The child between clone and exec.
///
/// # Safety
/// Only in a `CLONE_VM` child, with `args` alive until it execs or dies.
unsafe fn child_main(args: &ChildArgs) -> ! {
    let plan = &args.plan;
    // SAFETY: the page is mapped for as long as `args` lives.
    let page = unsafe { &*args.page };

    // Is the program to get the terminal? Only if it inherits it on stdin
    // and our group is the one in the foreground now.
    // SAFETY: in the child.
    let take_tty =
        plan.foreground && plan.stdio[0].is_none() && unsafe { stdin_is_our_foreground_tty() };
    // SAFETY: setpgid takes integers.
    let r = unsafe { syscall(libc::SYS_setpgid, &[0, 0]) };
    if r < 0 {
        fail_early(page, ChildStep::Prepare, r);
    }
    if take_tty {
        // SAFETY: getpid takes no arguments.
        let me = unsafe { syscall(libc::SYS_getpid, &[]) } as libc::pid_t;
        // SAFETY: TIOCSPGRP reads one pid_t. (SIGTTOU is blocked.)
        unsafe {
            syscall(
                libc::SYS_ioctl,
                &[0, libc::TIOCSPGRP as usize, &me as *const _ as usize],
            )
        };
    }
    // SAFETY: in the child.
    unsafe {
        reset_signals(
            args.handlers_cleared,
            plan.ignored_signals,
            plan.blocked_signals,
        )
    };
    // SAFETY: prctl takes integers.
    let r = unsafe {
        syscall(
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize],
        )
    };
    if r < 0 {
        fail_early(page, ChildStep::Prepare, r);
    }
    // SAFETY: getppid takes no arguments.
    if unsafe { syscall(libc::SYS_getppid, &[]) } != args.parent as isize {
        // The parent died before the death signal was armed.
        exit(125);
    }
    for (target, src) in plan.stdio.iter().enumerate() {
        if let Some(fd) = *src {
            // SAFETY: fcntl and dup3 take integers.
            let r = unsafe {
                if fd as usize == target {
                    syscall(libc::SYS_fcntl, &[fd as usize, libc::F_SETFD as usize, 0])
                } else {
                    syscall(libc::SYS_dup3, &[fd as usize, target, 0])
                }
            };
            if r < 0 {
                fail_early(page, ChildStep::Prepare, r);
            }
        }
    }
    if let Some(overlay) = &plan.overlay {
        // Before the working directory is taken: a directory beneath the
        // overlay's target is the overlay's only when reached after it.
        // SAFETY: in the child; `plan` lives until it exec'd.
        let r = unsafe { super::overlay::enter_raw(overlay) };
        if r < 0 {
            fail_early(page, ChildStep::Prepare, r);
        }
    }
    if let Some(dir) = &plan.cwd {
        // SAFETY: chdir reads a NUL-terminated string owned by `args`.
        let r = unsafe { syscall(libc::SYS_chdir, &[dir.as_ptr() as usize]) };
        if r < 0 {
            fail_early(page, ChildStep::Prepare, r);
        }
    }
    // Before the capabilities are dropped: raising a hard limit may need
    // CAP_SYS_RESOURCE.
    if let Some(limit) = &plan.nofile {
        set_limit(page, libc::RLIMIT_NOFILE, limit);
    }
    if plan.new_ipc {
        // SAFETY: unshare takes a flag word.
        let r = unsafe { syscall(libc::SYS_unshare, &[libc::CLONE_NEWIPC as usize]) };
        if r < 0 {
            fail_early(page, ChildStep::Prepare, r);
        }
    }
    if plan.no_core {
        let zero = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        set_limit(page, libc::RLIMIT_CORE, &zero);
    }
    if plan.no_file_writes {
        let zero = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        set_limit(page, libc::RLIMIT_FSIZE, &zero);
    }
    if let Some(keep) = plan.keep_caps {
        // SAFETY: in the child.
        let r = unsafe { super::caps::drop_in_child(keep) };
        if r < 0 {
            fail_early(page, ChildStep::Filter, r);
        }
    }
    let r = super::seccomp::set_no_new_privs_raw();
    if r < 0 {
        fail_early(page, ChildStep::Filter, r);
    }
    if let Some(ruleset) = plan.landlock_ruleset {
        // From here on nothing outside the sandbox can be traced, signalled
        // or reached through an abstract socket (see `crate::isolation`).
        // SAFETY: a raw call taking an fd (no_new_privs is set above).
        let r = unsafe { super::landlock::restrict_self_raw(ruleset) };
        if r < 0 {
            fail_early(page, ChildStep::Isolation, r);
        }
        // SAFETY: close takes an integer; the fd is this child's copy.
        unsafe { syscall(libc::SYS_close, &[ruleset as usize]) };
    }
    // The program is owned by `args`, alive until the child exec'd.
    let listener = super::seccomp::install_listener_raw(&args.prog, true).listener;
    if listener < 0 {
        fail_early(page, ChildStep::Filter, listener);
    }
    page.value.store(listener as u32, Ordering::Relaxed);
    page.state.store(STATE_READY, Ordering::Release);
    futex_wake(&page.state);

    // From here on, trapped calls wait for the supervisor.
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a live local.
        let n = unsafe {
            syscall(
                libc::SYS_read,
                &[args.go as usize, &mut byte as *mut u8 as usize, 1],
            )
        };
        if n == 1 {
            break;
        }
        if n == -(libc::EINTR as isize) {
            continue;
        }
        // The parent gave up: never run the program unsupervised.
        exit(125);
    }
    // SAFETY: close and close_range take integers.
    unsafe {
        syscall(libc::SYS_close, &[listener as usize]);
        syscall(libc::SYS_close, &[args.go as usize]);
        syscall(
            libc::SYS_close_range,
            &[3, u32::MAX as usize, CLOSE_RANGE_CLOEXEC],
        );
    }

    // Like execvp: a missing candidate moves on; EACCES is remembered in
    // case nothing else is found; any other failure is final.
    let mut reported = libc::ENOENT;
    for cand in &plan.candidates {
        // SAFETY: execve reads NUL-terminated strings and NULL-terminated
        // pointer arrays, all owned by `args`.
        let r = unsafe {
            syscall(
                libc::SYS_execve,
                &[
                    cand.as_ptr() as usize,
                    args.argv.as_ptr() as usize,
                    args.envp.as_ptr() as usize,
                ],
            )
        };
        match (-r) as i32 {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => reported = libc::EACCES,
            e => {
                reported = e;
                break;
            }
        }
    }
    let bytes = reported.to_ne_bytes();
    // SAFETY: writes four bytes from a live local.
    unsafe {
        syscall(
            libc::SYS_write,
            &[args.err as usize, bytes.as_ptr() as usize, bytes.len()],
        )
    };
    exit(127)
}
