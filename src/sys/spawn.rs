//! Fork and exec of the sandboxed program.
//!
//! The host may be multi-threaded, so between `fork` and `exec` the child
//! only makes raw, async-signal-safe system calls on data prepared before the
//! fork: no allocation, no locks, no `std` I/O.
//!
//! Hand-shake with the parent, after the child installed its filter:
//! 1. the child stores its listener's fd number in a shared page and wakes
//!    the parent with a futex (no pipe write, since `write` may be trapped and
//!    no supervisor runs yet);
//! 2. the parent takes the listener with `pidfd_getfd`, starts the
//!    supervisor and writes one byte to the *go* pipe;
//! 3. the child closes its listener copy, marks every fd from 3 up
//!    close-on-exec and execs; if every candidate fails it writes the errno
//!    to the close-on-exec *error* pipe, which the parent reads (EOF = exec
//!    succeeded).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::cvt;
use super::fs::{close_range_raw, CLOSE_RANGE_CLOEXEC};
use super::seccomp::{
    install_filter_raw, FILTER_FLAG_NEW_LISTENER, FILTER_FLAG_WAIT_KILLABLE_RECV,
};

/// What the child does between fork and exec, prepared in the parent.
pub struct ExecPlan {
    /// Paths to try in order (the PATH search, done in the parent).
    pub candidates: Vec<CString>,
    /// `argv` strings.
    pub argv: Vec<CString>,
    /// `envp` strings (`KEY=VALUE`).
    pub envp: Vec<CString>,
    /// Directory to change to.
    pub cwd: Option<CString>,
    /// fds to place on 0, 1, 2 (`None`: inherit).
    pub stdio: [Option<RawFd>; 3],
    /// The seccomp filter.
    pub filter: Vec<libc::sock_filter>,
    /// Make the child's process group the terminal's foreground group when
    /// it inherits a terminal on stdin from a foreground parent.
    pub foreground: bool,
}

/// Where the child failed before or at exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    /// Parent-death signal, process group, stdio or working directory.
    Prepare,
    /// `no_new_privs` or the seccomp filter.
    Filter,
    /// Every exec candidate failed.
    Exec,
}

const STATE_PENDING: u32 = 0;
const STATE_READY: u32 = 1;
const STATE_FAILED: u32 = 2;

/// The page shared by parent and child during the hand-shake.
#[repr(C)]
struct SharedPage {
    state: AtomicU32,
    value: AtomicU32,
    step: AtomicU32,
}

/// A forked child waiting for its go.
pub struct ForkedChild {
    pid: i32,
    page: *mut SharedPage,
    go: Option<OwnedFd>,
    err: OwnedFd,
}

// SAFETY: the shared page is only accessed through atomics, and the pointer is
// owned by this value (unmapped in Drop), so moving it between threads is fine.
unsafe impl Send for ForkedChild {}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        // SAFETY: `page` was mapped by `fork_child` with this size and is
        // unmapped exactly once, here.
        unsafe { libc::munmap(self.page.cast(), page_size()) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes an integer.
    let sz = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(sz).unwrap_or(4096)
}

fn pipe_above_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((lift_above_stdio(r)?, lift_above_stdio(w)?))
}

/// Moves an fd to a number >= 3 so that the child's stdio set-up cannot clobber it.
fn lift_above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a valid fd to the lowest number >= 3.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn ptr_array(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Forks the child; it runs `plan` up to the filter and waits for [`ForkedChild::release`].
pub fn fork_child(plan: &ExecPlan) -> io::Result<ForkedChild> {
    let argv = ptr_array(&plan.argv);
    let envp = ptr_array(&plan.envp);
    let prog = libc::sock_fprog {
        len: u16::try_from(plan.filter.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: plan.filter.as_ptr() as *mut libc::sock_filter,
    };
    let (go_r, go_w) = pipe_above_stdio()?;
    let (err_r, err_w) = pipe_above_stdio()?;
    // SAFETY: an anonymous shared mapping of one page; checked for failure below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page_size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let page = page.cast::<SharedPage>();
    // SAFETY: getpid takes no arguments.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no preconditions; the child below makes only
    // async-signal-safe calls on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: unmapping the page mapped above, once.
        unsafe { libc::munmap(page.cast(), page_size()) };
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: we are the child of a fork; see `child_main`.
        unsafe {
            child_main(
                plan,
                &argv,
                &envp,
                &prog,
                parent,
                &*page,
                go_r.as_raw_fd(),
                err_w.as_raw_fd(),
            )
        }
    }
    drop(go_r);
    drop(err_w);
    Ok(ForkedChild {
        pid,
        page,
        go: Some(go_w),
        err: err_r,
    })
}

/// Reports a failure through the shared page and exits. Async-signal-safe.
fn fail_early(page: &SharedPage, step: ChildStep, errno: i32) -> ! {
    page.value.store(errno as u32, Ordering::Relaxed);
    page.step.store(step as u32, Ordering::Relaxed);
    page.state.store(STATE_FAILED, Ordering::Release);
    futex_wake(&page.state);
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(125) }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The child between fork and exec.
///
/// # Safety
/// Must only be called in the child of `fork`, with pointers from `fork_child`.
#[allow(clippy::too_many_arguments)]
unsafe fn child_main(
    plan: &ExecPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    prog: &libc::sock_fprog,
    parent: i32,
    page: &SharedPage,
    go: RawFd,
    err: RawFd,
) -> ! {
    // Is the program to get the terminal? Only if it inherits it on stdin
    // and our group is the one in the foreground now.
    let take_tty = plan.foreground
        && plan.stdio[0].is_none()
        && libc::isatty(0) == 1
        && libc::tcgetpgrp(0) == libc::getpgrp();

    if libc::setpgid(0, 0) < 0 {
        fail_early(page, ChildStep::Prepare, errno());
    }
    let mut set: libc::sigset_t = std::mem::zeroed();
    if take_tty {
        // tcsetpgrp from a background group raises SIGTTOU unless blocked.
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::tcsetpgrp(0, libc::getpid());
    }
    // Default signal handling, as a freshly exec'd program expects.
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) < 0
    {
        fail_early(page, ChildStep::Prepare, errno());
    }
    if libc::getppid() != parent {
        // The parent died before the death signal was armed.
        libc::_exit(125);
    }
    for (target, src) in plan.stdio.iter().enumerate() {
        if let Some(fd) = *src {
            let target = target as RawFd;
            let ok = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, target) >= 0
            };
            if !ok {
                fail_early(page, ChildStep::Prepare, errno());
            }
        }
    }
    if let Some(dir) = &plan.cwd {
        if libc::chdir(dir.as_ptr()) < 0 {
            fail_early(page, ChildStep::Prepare, errno());
        }
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        fail_early(page, ChildStep::Filter, errno());
    }
    let mut listener = install_filter_raw(
        prog,
        FILTER_FLAG_NEW_LISTENER | FILTER_FLAG_WAIT_KILLABLE_RECV,
    );
    if listener == -(libc::EINVAL as libc::c_long) {
        listener = install_filter_raw(prog, FILTER_FLAG_NEW_LISTENER);
    }
    if listener < 0 {
        fail_early(page, ChildStep::Filter, -listener as i32);
    }
    page.value.store(listener as u32, Ordering::Relaxed);
    page.state.store(STATE_READY, Ordering::Release);
    futex_wake(&page.state);

    // From here on, trapped calls are answered by the running supervisor.
    let mut byte = 0u8;
    loop {
        let n = libc::read(go, (&mut byte as *mut u8).cast(), 1);
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // The parent gave up: never run the program unsupervised.
        libc::_exit(125);
    }
    libc::close(listener as RawFd);
    libc::close(go);
    close_range_raw(3, u32::MAX, CLOSE_RANGE_CLOEXEC);

    // Like execvp: a missing candidate moves on; EACCES is remembered in
    // case nothing else is found; any other failure is final.
    let mut reported = libc::ENOENT;
    for cand in &plan.candidates {
        libc::execve(cand.as_ptr(), argv.as_ptr(), envp.as_ptr());
        match errno() {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => reported = libc::EACCES,
            e => {
                reported = e;
                break;
            }
        }
    }
    let bytes = reported.to_ne_bytes();
    libc::write(err, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(127)
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a word of a shared mapping; the kernel only uses
    // the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the word atomically and sleeps at most `ts`;
    // spurious returns are handled by the caller's loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// How the child's start ended.
#[derive(Debug)]
pub enum StartFailure {
    /// The child failed at `step` with this errno.
    Child(ChildStep, io::Error),
    /// The child died or did not answer.
    Vanished,
}

impl ForkedChild {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the child installed its filter; returns the listener's fd
    /// number in the child.
    pub fn listener_fd(&self, timeout: Duration) -> Result<RawFd, StartFailure> {
        // SAFETY: `page` is mapped for the lifetime of `self`.
        let page = unsafe { &*self.page };
        let deadline = Instant::now() + timeout;
        loop {
            match page.state.load(Ordering::Acquire) {
                STATE_READY => return Ok(page.value.load(Ordering::Relaxed) as RawFd),
                STATE_FAILED => {
                    let errno = page.value.load(Ordering::Relaxed) as i32;
                    let step = match page.step.load(Ordering::Relaxed) {
                        0 => ChildStep::Prepare,
                        1 => ChildStep::Filter,
                        _ => ChildStep::Exec,
                    };
                    return Err(StartFailure::Child(
                        step,
                        io::Error::from_raw_os_error(errno),
                    ));
                }
                _ => {}
            }
            if Instant::now() >= deadline || !super::process::is_alive(self.pid) {
                return Err(StartFailure::Vanished);
            }
            futex_wait(&page.state, STATE_PENDING, Duration::from_millis(5));
        }
    }

    /// Lets the child exec and reports whether the exec succeeded:
    /// [`go`](Self::go) then [`exec_outcome`](Self::exec_outcome).
    pub fn release(&mut self) -> Result<(), StartFailure> {
        self.go()?;
        self.exec_outcome()
    }

    /// Lets the child go on to exec, without waiting for it. Work done
    /// between this and [`exec_outcome`](Self::exec_outcome) overlaps with
    /// the child's exec.
    pub fn go(&mut self) -> Result<(), StartFailure> {
        let go = self.go.take().ok_or(StartFailure::Vanished)?;
        let byte = [1u8];
        // SAFETY: writes one byte from a live buffer to a pipe we own.
        let n = super::retry_eintr(|| {
            cvt(unsafe { libc::write(go.as_raw_fd(), byte.as_ptr().cast(), 1) } as i32)
        });
        drop(go);
        if n.is_err() {
            return Err(StartFailure::Vanished);
        }
        Ok(())
    }

    /// Waits until the released child has exec'd (`Ok`) or failed to.
    pub fn exec_outcome(&mut self) -> Result<(), StartFailure> {
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: reads into the unfilled tail of a live buffer.
            let n = unsafe {
                libc::read(
                    self.err.as_raw_fd(),
                    buf[got..].as_mut_ptr().cast(),
                    buf.len() - got,
                )
            };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(StartFailure::Vanished);
            }
            if n == 0 {
                break;
            }
            got += n as usize;
        }
        match got {
            0 => Ok(()),
            4 => Err(StartFailure::Child(
                ChildStep::Exec,
                io::Error::from_raw_os_error(i32::from_ne_bytes(buf)),
            )),
            _ => Err(StartFailure::Vanished),
        }
    }

    /// Drops the go pipe without releasing: the child exits without exec'ing.
    pub fn abort(&mut self) {
        self.go = None;
    }
}
