//! Start of the sandboxed program: clone, hand-shake, exec.
//!
//! The child is cloned with `CLONE_VM` and a stack of its own, like
//! `posix_spawn` does, but without `CLONE_VFORK`: the parent runs on while
//! the child installs its filter and waits. Sharing the memory spares the
//! copy of the parent's page tables at clone, the copy-on-write faults of
//! the parent's threads afterwards and the teardown of that copy at exec,
//! all of which grow with the host's memory. What the child may do in the
//! meantime is described in the `spawn_child` module (private).
//!
//! Hand-shake with the parent, after the child installed its filter:
//! 1. the child stores its listener's fd number in a shared page and wakes
//!    the parent with a futex (no pipe write, since `write` may be trapped and
//!    no supervisor runs yet);
//! 2. the parent takes the listener with `pidfd_getfd`, writes one byte to
//!    the *go* pipe ([`ForkedChild::go`]) and starts the supervisor;
//! 3. the child closes its listener copy, marks every fd from 3 up
//!    close-on-exec and execs; if every candidate fails it writes the errno
//!    to the close-on-exec *error* pipe and exits. The parent reads that pipe
//!    to its end ([`ForkedChild::exec_outcome`]): the end means the child
//!    exec'd or died, and no longer uses the parent's memory.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::cvt;
use super::raw::{clone3_with_entry, CloneArgs};
use super::spawn_child::{
    child_entry, ChildArgs, SharedPage, STATE_FAILED, STATE_PENDING, STATE_READY,
};

pub use super::spawn_child::ChildStep;

/// What the child does between clone and exec, prepared in the parent.
pub struct ExecPlan {
    /// Paths to try in order (the PATH search, done in the parent).
    pub candidates: Vec<CString>,
    /// `argv` strings.
    pub argv: Vec<CString>,
    /// `envp` strings (`KEY=VALUE`).
    pub envp: Vec<CString>,
    /// Directory to change to.
    pub cwd: Option<CString>,
    /// `RLIMIT_NOFILE` to set (soft and hard) before exec.
    pub nofile: Option<libc::rlimit64>,
    /// Sets `RLIMIT_CORE` to 0 (soft and hard) before exec.
    pub no_core: bool,
    /// Sets `RLIMIT_FSIZE` to 0 (soft and hard) before exec: the kernel
    /// refuses every write and growth the program makes itself into a
    /// regular file of an ordinary file system (`--max-disk`).
    pub no_file_writes: bool,
    /// Gives the child an IPC namespace of its own (`CLONE_NEWIPC`; needs
    /// `CAP_SYS_ADMIN`): its System V objects and POSIX message queues go
    /// with its last process.
    pub new_ipc: bool,
    /// An overlay the child mounts in a mount namespace of its own before
    /// it changes to [`cwd`](Self::cwd) and drops its capabilities (see
    /// [`overlay`](super::overlay)).
    pub overlay: Option<super::overlay::OverlayMount>,
    /// fds to place on 0, 1, 2 (`None`: inherit).
    pub stdio: [Option<RawFd>; 3],
    /// A Landlock ruleset the child enforces on itself after
    /// `no_new_privs` and before the filter, then closes (the parent keeps
    /// it open until [`fork_child`] returns). Above the standard fds.
    pub landlock_ruleset: Option<RawFd>,
    /// The seccomp filter.
    pub filter: Vec<libc::sock_filter>,
    /// Capabilities the program keeps (`None`: all it would have); see
    /// [`caps::drop_in_child`](super::caps).
    pub keep_caps: Option<u64>,
    /// The signals the child execs with blocked (kernel mask: bit `n - 1`
    /// for signal `n`).
    pub blocked_signals: u64,
    /// The signals the child execs ignoring (same encoding), set after
    /// the reset of the others (see `spawn_child`).
    pub ignored_signals: u64,
    /// Make the child's process group the terminal's foreground group when
    /// it inherits a terminal on stdin from a foreground parent.
    pub foreground: bool,
    /// A cgroup v2 directory to start the child in (`CLONE_INTO_CGROUP`),
    /// which spares the move into it, and its wait for an RCU grace period
    /// (about 10 ms here). Where the kernel refuses, the child starts
    /// where its parent is ([`ForkedChild::in_cgroup`] says which).
    pub cgroup: Option<RawFd>,
}

/// The child's stack: mapped with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

/// Plenty for the child's few frames (it calls nothing but the kernel).
const STACK_SIZE: usize = 256 * 1024;

impl Stack {
    fn new() -> io::Result<Stack> {
        let len = STACK_SIZE + super::page_size();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // The lowest page is the guard: an overflow faults instead of
        // writing into the parent's memory.
        // SAFETY: the first page of the mapping made above.
        cvt(unsafe { libc::mprotect(base, super::page_size(), libc::PROT_NONE) })?;
        Ok(stack)
    }

    /// The initial stack pointer (stacks grow down).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which the child's first
        // push moves below.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Stack::new`, unmapped once.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// What a child runs on besides the parent's memory: its stack and the
/// hand-shake page.
struct ChildMemory {
    stack: Stack,
    page: *mut SharedPage,
}

// SAFETY: the page and the stack are plain mappings owned by this value;
// no child uses them while it is moved (see `SPARE`).
unsafe impl Send for ChildMemory {}

impl ChildMemory {
    fn new() -> io::Result<ChildMemory> {
        // SAFETY: an anonymous shared mapping of one page; checked for failure below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                super::page_size(),
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
        match Stack::new() {
            Ok(stack) => Ok(ChildMemory { stack, page }),
            Err(e) => {
                // SAFETY: unmapping the page mapped above, once.
                unsafe { libc::munmap(page.cast(), super::page_size()) };
                Err(e)
            }
        }
    }

    /// The spare left by an earlier spawn, or a new one; its hand-shake
    /// words at their start.
    fn take() -> io::Result<ChildMemory> {
        let spare = SPARE.lock().take();
        let mem = match spare {
            Some(mem) => mem,
            None => ChildMemory::new()?,
        };
        // SAFETY: mapped for the lifetime of `mem`; no child uses it.
        let page = unsafe { &*mem.page };
        page.state.store(STATE_PENDING, Ordering::Relaxed);
        page.value.store(0, Ordering::Relaxed);
        page.step.store(0, Ordering::Relaxed);
        Ok(mem)
    }

    /// Kept for the next spawn (one spare), once no child runs on it:
    /// unmapping it in a process whose other threads run costs a TLB
    /// shoot-down on their CPUs, on every spawn's path.
    fn give_back(self) {
        let mut spare = SPARE.lock();
        if spare.is_none() {
            *spare = Some(self);
        }
    }
}

impl Drop for ChildMemory {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `new`, unmapped once, here.
        unsafe { libc::munmap(self.page.cast(), super::page_size()) };
    }
}

/// One child's memory left by a spawn whose child has exec'd or died.
static SPARE: parking_lot::Mutex<Option<ChildMemory>> = parking_lot::Mutex::new(None);

/// A cloned child waiting for its go.
pub struct ForkedChild {
    pid: i32,
    pidfd: OwnedFd,
    page: *mut SharedPage,
    go: Option<OwnedFd>,
    err: OwnedFd,
    /// What the child reads and the memory it runs on: kept until it has
    /// exec'd or died (`gone`).
    child: Option<(Box<ChildArgs>, ChildMemory)>,
    /// The child no longer runs in our memory.
    gone: bool,
    /// The child started in the plan's cgroup.
    in_cgroup: bool,
}

// SAFETY: the shared page is only accessed through atomics; the page, the
// stack and the child's arguments are owned by this value and freed in Drop
// once the child no longer uses them, so moving it between threads is fine.
unsafe impl Send for ForkedChild {}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if !self.gone {
            // The child may still run in our memory (an error path of the
            // caller, or a panic): end it, and free nothing before it is dead.
            let _ = super::pidfd::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let mut pfd = libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // A pidfd is readable once its process has exited.
            let dead = loop {
                // SAFETY: poll on one live pollfd.
                if unsafe { libc::poll(&mut pfd, 1, -1) } >= 0 {
                    break true;
                }
                if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break false;
                }
            };
            if !dead {
                // It may still run on its memory: never free or reuse that.
                if let Some((args, memory)) = self.child.take() {
                    std::mem::forget((args, memory));
                }
            }
        }
        // The child no longer runs (exec'd, or dead): its memory can serve
        // the next one.
        if let Some((args, memory)) = self.child.take() {
            drop(args);
            memory.give_back();
        }
    }
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
pub(super) fn lift_above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
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

/// Starts the child; it runs `plan` up to the filter and waits for
/// [`ForkedChild::go`].
pub fn fork_child(plan: ExecPlan) -> io::Result<ForkedChild> {
    let len =
        u16::try_from(plan.filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let (go_r, go_w) = pipe_above_stdio()?;
    let (err_r, err_w) = pipe_above_stdio()?;
    let memory = ChildMemory::take()?;
    let page = memory.page;
    let mut args = Box::new(ChildArgs {
        argv: ptr_array(&plan.argv),
        envp: ptr_array(&plan.envp),
        prog: libc::sock_fprog {
            len,
            filter: std::ptr::null_mut(),
        },
        plan,
        // SAFETY: getpid takes no arguments.
        parent: unsafe { libc::getpid() },
        page,
        go: go_r.as_raw_fd(),
        err: err_w.as_raw_fd(),
        handlers_cleared: false,
    });
    // The instructions stay where they are when the plan moves (heap).
    args.prog.filter = args.plan.filter.as_mut_ptr();
    let arg_ptr = (&*args as *const ChildArgs)
        .cast_mut()
        .cast::<libc::c_void>();

    // The child starts with every signal blocked: no handler of ours may
    // run in it before it has reset them (see `spawn_child`).
    // SAFETY: an all-ones sigset_t is a valid full set.
    let full: libc::sigset_t = unsafe {
        let mut s = std::mem::zeroed();
        libc::sigfillset(&mut s);
        s
    };
    // SAFETY: an all-zero sigset_t is a valid empty set, overwritten below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: reads and writes live sigsets.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &full, &mut old) };
    let mut pidfd: libc::c_int = -1;
    let mut in_cgroup = false;
    let mut pid = -1;
    let mut clone_err = io::Error::from_raw_os_error(libc::ENOSYS);
    if let Some(cg) = args.plan.cgroup {
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        // The kernel gives the child the default action for every signal
        // this process handles (ignored ones stay ignored), sparing it a
        // query per signal (Linux 5.5; clone3 with CLONE_INTO_CGROUP needs
        // 5.7).
        const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
        args.handlers_cleared = true;
        let ca = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_PIDFD) as u64
                | CLONE_INTO_CGROUP
                | CLONE_CLEAR_SIGHAND,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: memory.stack.base as u64,
            stack_size: memory.stack.len as u64,
            cgroup: cg as u64,
            ..CloneArgs::default()
        };
        // SAFETY: as for `clone` below: the child runs `child_entry` on
        // `stack` with `args`, kept alive by the returned ForkedChild.
        let r = unsafe { clone3_with_entry(&ca, child_entry, arg_ptr) };
        if r >= 0 {
            pid = r as i32;
            in_cgroup = true;
        } else {
            clone_err = io::Error::from_raw_os_error(-r as i32);
        }
    }
    if !in_cgroup {
        // (No child runs on `args` now: clone3 failed or was not tried.)
        args.handlers_cleared = false;
        // SAFETY: the child runs `child_entry` on `stack` with `args`, both
        // kept alive by the returned ForkedChild until the child has exec'd
        // or died; CLONE_PIDFD stores a pidfd in `pidfd`.
        pid = unsafe {
            libc::clone(
                child_entry,
                memory.stack.top(),
                libc::CLONE_VM | libc::CLONE_PIDFD | libc::SIGCHLD,
                arg_ptr,
                &mut pidfd as *mut libc::c_int,
            )
        };
        if pid < 0 {
            clone_err = io::Error::last_os_error();
        }
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        // No child ran on it.
        memory.give_back();
        return Err(clone_err);
    }
    // SAFETY: CLONE_PIDFD created this fd for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(go_r);
    drop(err_w);
    Ok(ForkedChild {
        pid,
        pidfd,
        page,
        go: Some(go_w),
        err: err_r,
        child: Some((args, memory)),
        gone: false,
        in_cgroup,
    })
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the word atomically and sleeps at most `ts`;
    // spurious returns are handled by the caller's loop. (Not private: the
    // word is in a shared mapping.)
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

    /// Whether the child started in the plan's cgroup.
    pub fn in_cgroup(&self) -> bool {
        self.in_cgroup
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
                        3 => ChildStep::Isolation,
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

    #[cfg(feature = "internals")]
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

    /// Waits until the released child has exec'd (`Ok`) or failed to. Reads
    /// the error pipe to its end, which comes once the child has exec'd or
    /// exited: from then on it no longer runs in this process's memory.
    pub fn exec_outcome(&mut self) -> Result<(), StartFailure> {
        let mut buf = [0u8; 4];
        let mut got = 0;
        let ended = loop {
            let mut chunk = [0u8; 4];
            // SAFETY: reads at most 4 bytes into a live buffer.
            let n = unsafe { libc::read(self.err.as_raw_fd(), chunk.as_mut_ptr().cast(), 4) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break false;
            }
            if n == 0 {
                break true;
            }
            for &b in &chunk[..n as usize] {
                if got < buf.len() {
                    buf[got] = b;
                }
                got += 1;
            }
        };
        if ended {
            self.gone = true;
        }
        match (ended, got) {
            (true, 0) => Ok(()),
            (true, 4) => Err(StartFailure::Child(
                ChildStep::Exec,
                io::Error::from_raw_os_error(i32::from_ne_bytes(buf)),
            )),
            _ => Err(StartFailure::Vanished),
        }
    }

    /// A pidfd of the child.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    #[cfg(feature = "internals")]
    /// Drops the go pipe without releasing: the child exits without exec'ing.
    pub fn abort(&mut self) {
        self.go = None;
    }
}
