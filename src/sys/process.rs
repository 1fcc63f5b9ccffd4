//! Process and thread primitives: ids, signals, waiting, CPU placement.

use std::io;

use super::{cvt, cvt_long, retry_eintr};

/// The effective user id of the process.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// The CPU the calling thread is running on, if the kernel says.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes to `set`.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads the set, with an index below its capacity.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins thread `tid` (0 = the caller) to `cpu`.
pub fn pin_to_cpu(tid: i32, cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set when `cpu` is below its capacity,
    // which we check first.
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: see above: `cpu` is in range.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from `set`.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(drop)
}

#[cfg(feature = "internals")]
/// Lets thread `tid` (0: the caller) run on `cpus` (children started
/// afterwards inherit it).
pub fn set_allowed_cpus(tid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= max {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below the set's capacity (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from `set`.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(drop)
}

#[cfg(feature = "internals")]
/// This process's voluntary and involuntary context switches so far
/// (`getrusage(RUSAGE_SELF)`).
pub fn context_switches() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into a live struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

#[cfg(feature = "internals")]
/// CPU time (user + system, in microseconds) used so far by this process,
/// every thread, and by the children it has reaped (`getrusage`).
pub fn cpu_time_with_children_us() -> f64 {
    let used = |who| {
        // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one rusage into a live struct.
        unsafe { libc::getrusage(who, &mut ru) };
        let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        us(ru.ru_utime) + us(ru.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

/// Whether this process is dumpable (`PR_GET_DUMPABLE`): a non-dumpable
/// one cannot be traced, read through `/proc/<pid>/mem` or have its fds
/// taken by a process of the same user without `CAP_SYS_PTRACE`.
pub fn is_dumpable() -> io::Result<bool> {
    // SAFETY: prctl takes integers.
    Ok(cvt(unsafe { libc::prctl(libc::PR_GET_DUMPABLE) })? != 0)
}

/// Makes this process dumpable or not (`PR_SET_DUMPABLE` 1 or 0). The flag
/// belongs to the address space, and an exec resets it.
pub fn set_dumpable(on: bool) -> io::Result<()> {
    // SAFETY: prctl takes integers.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on)) }).map(drop)
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): an
/// orphan among its descendants (a double-forked daemon) becomes its child
/// instead of init's.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl takes integers.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) }).map(drop)
}

/// The processes whose parent is this process: the union of its threads'
/// `children` lists (a child belongs to the thread that made it, an orphan
/// to the thread of a subreaper it was given to), a few reads rather than
/// a scan of every process's `stat`.
pub fn own_children() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for tid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(list) = thread_children(me, tid) else {
            continue;
        };
        out.extend(
            list.split_ascii_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The `children` list of thread `tid` of this process (`me`).
///
/// Another thread's list is read as `/proc/<tid>/task/<tid>/children`,
/// relative to `/proc/<tid>` opened and checked to be a thread of this
/// process (the open directory stays bound to that thread: a tid reused
/// meanwhile by another process gives an error, never its children). Not
/// through `/proc/self/task/<tid>`: once an entry beneath another thread's
/// directory there exists, the reap of this whole process by its parent
/// spins in the kernel (its invalidation of `/proc/<pid>` meets the exiting
/// thread's own) for 2 to 22 ms (37 of 40 runs of `unotify run --
/// /bin/true` in a row here; `tests/startup.rs`).
fn thread_children(me: i32, tid: i32) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if tid == me {
        return super::procfs::read_text(&format!("/proc/self/task/{me}/children"));
    }
    let dir = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{tid}"))?;
    let read_at = |name: &str| -> io::Result<String> {
        let name = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        let how = super::fs::OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            ..Default::default()
        };
        let mut text = String::new();
        std::fs::File::from(super::fs::openat2(
            Some(std::os::fd::AsFd::as_fd(&dir)),
            &name,
            &how,
        )?)
        .read_to_string(&mut text)?;
        Ok(text)
    };
    let tgid = read_at("status")?;
    let tgid = super::procfs::status_field(&tgid, "Tgid:").and_then(|t| t.trim().parse().ok());
    if tgid != Some(me) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    read_at(&format!("task/{tid}/children"))
}

/// Kills (`SIGKILL`) and reaps every child of this process but `keep`,
/// until none is left (the children of one killed become ours in turn,
/// under [`set_child_subreaper`]); at most `rounds` rounds. Returns how
/// many were killed. Only for a launcher that has no other children to
/// wait for, once nothing traces them any more.
///
/// Nothing is done while no child would report its end with `SIGCHLD`:
/// a child cloned to report with no signal (the process's watchdog, which
/// exits with this process, see [`Child`](crate::Child)) is then left
/// alone; an orphan given to this process always reports with `SIGCHLD`.
pub fn kill_own_children(keep: &[i32], rounds: usize) -> usize {
    let mut killed = 0;
    for _ in 0..rounds {
        // Most often there is none: one call says so, where the list
        // below reads a file per thread (on the exit path of every
        // `unotify run`).
        if !has_children() {
            break;
        }
        let children: Vec<i32> = own_children()
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        if children.is_empty() {
            break;
        }
        for &pid in &children {
            if kill(pid, libc::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        for &pid in &children {
            let _ = waitpid_raw(pid, libc::__WALL);
        }
    }
    killed
}

/// Whether this process (any of its threads) has a child, live or a
/// zombie, that reports its end with `SIGCHLD` (every child but one
/// cloned to report with no or another signal): `waitid` without waiting
/// or reaping. `true` when it cannot tell.
pub fn has_children() -> bool {
    // SAFETY: all-zero is a valid siginfo_t, written by waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t; WNOHANG | WNOWAIT: it neither
    // waits nor reaps.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Reaps the children of this process but `keep` that are zombies and
/// that nothing traces (a tracer is told of its tracee's exit first, and
/// reaps it itself). Returns how many were reaped.
pub fn reap_orphan_zombies(keep: &[i32]) -> usize {
    let mut reaped = 0;
    for pid in own_children().into_iter().filter(|p| !keep.contains(p)) {
        let Ok(status) = crate::sys::procfs::read_text(&format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k| crate::sys::procfs::status_field(&status, k);
        let zombie = field("State:").is_some_and(|s| s.starts_with('Z'));
        let untraced = field("TracerPid:").is_some_and(|t| t.trim() == "0");
        if zombie && untraced && matches!(waitpid_raw(pid, libc::WNOHANG), Ok(Some(_))) {
            reaped += 1;
        }
    }
    reaped
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sends `sig` to every process of group `pgid`.
pub fn kill_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: killpg takes two integers; pgid > 1 so it never targets everyone.
    cvt(unsafe { libc::killpg(pgid, sig) }).map(drop)
}

#[cfg(feature = "internals")]
/// How a waited-for process ended, as `waitpid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Stopped (traced) with this raw status.
    Stopped(i32),
    /// Continued.
    Continued,
}

#[cfg(feature = "internals")]
impl WaitStatus {
    fn from_raw(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else if libc::WIFSTOPPED(status) {
            WaitStatus::Stopped(status)
        } else {
            WaitStatus::Continued
        }
    }
}

/// `waitpid(pid, options)` returning the raw status; `Ok(None)` when
/// `WNOHANG` found nothing.
pub fn waitpid_raw(pid: i32, options: i32) -> io::Result<Option<(i32, i32)>> {
    let mut status = 0;
    // SAFETY: waitpid writes one int to `status`, alive for the call.
    let ret = retry_eintr(|| cvt(unsafe { libc::waitpid(pid, &mut status, options) }))?;
    Ok((ret != 0).then_some((ret, status)))
}

#[cfg(feature = "internals")]
/// `waitpid(pid, options)`; `Ok(None)` when `WNOHANG` found nothing.
pub fn waitpid(pid: i32, options: i32) -> io::Result<Option<(i32, WaitStatus)>> {
    Ok(waitpid_raw(pid, options)?.map(|(p, st)| (p, WaitStatus::from_raw(st))))
}

/// Whether process `pid` (our child) still exists and is not a zombie we could reap.
pub fn is_alive(pid: i32) -> bool {
    let mut info: libc::siginfo_t = unsafe_zeroed_siginfo();
    // SAFETY: waitid writes one siginfo_t into `info`; WNOWAIT leaves the
    // child waitable, WNOHANG returns at once.
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is valid to read on a siginfo filled by waitid (zero if none).
    ret == 0 && unsafe { info.si_pid() } == 0
}

fn unsafe_zeroed_siginfo() -> libc::siginfo_t {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `struct sched_attr` (`SCHED_ATTR_SIZE_VER1`, 56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Sets the calling thread's fair-class policy (`SCHED_BATCH` when `batch`,
/// else `SCHED_OTHER`) and its time slice (`sched_setattr` with
/// `sched_runtime`, which Linux 6.12 and later take as the slice of a fair
/// task: the shorter, the earlier its deadline, so the less a waking task
/// preempts it; older kernels ignore it). Keeps the nice value.
pub fn set_fair_slice(batch: bool, slice: std::time::Duration) -> io::Result<()> {
    // SAFETY: getpriority takes integers; errno is cleared first since -1
    // is a valid result.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: if batch {
            libc::SCHED_BATCH as u32
        } else {
            libc::SCHED_OTHER as u32
        },
        nice,
        runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        ..SchedAttr::default()
    };
    // SAFETY: sched_setattr reads `attr.size` bytes from a live struct.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    cvt_long(ret).map(drop)
}

/// Moves thread `tid` (0 = the caller) to `SCHED_BATCH` (`batch`) or back
/// to `SCHED_OTHER`. Both get the same share of CPU time, but waking a
/// `SCHED_BATCH` thread never preempts the task running on its CPU: the
/// waker goes on until it blocks, and a busy CPU makes the wakee wait for
/// the running task's slice to end (up to a scheduler tick).
pub fn set_sched_batch(tid: i32, batch: bool) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if batch {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_setscheduler reads one sched_param from a live value.
    cvt(unsafe { libc::sched_setscheduler(tid, policy, &param) }).map(drop)
}

/// Sleeps while `word` holds `expected` (`FUTEX_WAIT`, process-private).
///
/// Returns `true` when a [`futex_wake`] on `word` woke it, `false` when
/// `word` did not hold `expected` or a signal interrupted the wait.
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) -> bool {
    // SAFETY: FUTEX_WAIT reads the u32 behind a live reference; a null
    // timeout means no deadline.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
    ret == 0
}

/// Wakes up to `n` threads sleeping in [`futex_wait`] on `word`; returns
/// how many it woke.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) -> u32 {
    // SAFETY: FUTEX_WAKE only uses the address of a live u32 as a key.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        )
    };
    u32::try_from(ret).unwrap_or(0)
}

/// The foreground process group of the terminal on stdin, if stdin is one.
pub fn terminal_foreground() -> Option<i32> {
    // SAFETY: isatty and tcgetpgrp take an integer and only query state.
    let pgid = unsafe {
        if libc::isatty(0) != 1 {
            return None;
        }
        libc::tcgetpgrp(0)
    };
    (pgid > 0).then_some(pgid)
}

/// This process's group.
pub fn own_group() -> i32 {
    // SAFETY: getpgrp takes no arguments.
    unsafe { libc::getpgrp() }
}

/// Makes `pgid` the foreground group of the terminal on stdin. Works from a
/// background group too: `SIGTTOU`, which `tcsetpgrp` raises there, is
/// blocked in this thread for the call.
pub fn set_terminal_foreground(pgid: i32) -> io::Result<()> {
    // SAFETY: an all-zero sigset_t is valid; it is initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: SIGTTOU is blocked in this thread around tcsetpgrp, then the
    // old mask is restored; every pointer is to a live local.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let ret = libc::tcsetpgrp(0, pgid);
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if ret < 0 {
            Err(err)
        } else {
            Ok(())
        }
    }
}

/// If the terminal on stdin has process group `pgid` in the foreground,
/// gives the foreground back to this process's group.
pub fn reclaim_terminal(pgid: i32) {
    if terminal_foreground() == Some(pgid) {
        let _ = set_terminal_foreground(own_group());
    }
}

/// Whether process `pid` is stopped by a signal (job control: state `T` in
/// `/proc/PID/stat`; a ptrace stop, `t`, is not).
pub fn is_job_stopped(pid: i32) -> bool {
    super::procfs::Stat::of(pid).is_some_and(|s| s.state == b'T')
}

/// `poll(2)`: waits until one of `fds` has an event or `timeout` has passed
/// (`None`: no limit; rounded up to whole milliseconds). Returns how many
/// fds have events; an interruption is `Err` with `EINTR`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    // SAFETY: poll reads and writes `fds.len()` pollfd structs, all inside
    // the live, exclusively borrowed slice.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) })?;
    Ok(n as usize)
}

/// A thread of this process that waits until it is dropped (tests): its tid
/// stays valid while the value lives.
#[cfg(test)]
pub(crate) struct ParkedThread {
    /// The thread's id.
    pub(crate) tid: i32,
    done: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl ParkedThread {
    pub(crate) fn start() -> ParkedThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = done_rx.recv();
        });
        ParkedThread {
            tid: rx.recv().unwrap(),
            done: Some(done),
            handle: Some(handle),
        }
    }
}

#[cfg(test)]
impl Drop for ParkedThread {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Whether thread `tid` exists and its affinity can be read
/// (`sched_getaffinity`); the CPUs it may run on.
pub fn cpus_of(tid: i32) -> io::Result<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes to `set`.
    cvt(unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    // SAFETY: CPU_COUNT only reads the set.
    Ok(unsafe { libc::CPU_COUNT(&set) } as usize)
}

/// This process's `RLIMIT_NOFILE` before [`raise_open_files_limit`]
/// raised it: what the programs it spawns get back.
static ORIGINAL_NOFILE: std::sync::OnceLock<libc::rlimit64> = std::sync::OnceLock::new();

fn nofile() -> io::Result<libc::rlimit64> {
    own_limit(libc::RLIMIT_NOFILE)
}

/// This process's `RLIMIT_FSIZE` (the largest file it may write or grow
/// a file to; `RLIM_INFINITY`: none).
pub fn file_size_limit() -> io::Result<libc::rlimit64> {
    own_limit(libc::RLIMIT_FSIZE)
}

/// This process's limit `resource`.
fn own_limit(resource: libc::__rlimit_resource_t) -> io::Result<libc::rlimit64> {
    let mut cur = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves writes one rlimit64 into a live local
    // (no new limit: null).
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as libc::c_long,
            resource as libc::c_long,
            std::ptr::null::<libc::rlimit64>(),
            &mut cur as *mut libc::rlimit64,
        )
    };
    cvt_long(r)?;
    Ok(cur)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (or to
/// `fs.nr_open` where the hard limit is above it), and returns the new soft
/// limit. A supervisor holds a few fds per sandboxed process; a program of
/// many processes would otherwise run it out of fds under the usual soft
/// limit of 1024, and its trapped calls would fail. The programs the
/// process spawns afterwards get the limit it had before (soft and hard)
/// back before their exec, unless `Command::max_open_files` sets theirs.
///
/// Not done by the library on its own: a host process may depend on its
/// soft limit (`select` breaks on an fd of 1024 or more); `unotify run`
/// calls it.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let cur = nofile()?;
    ORIGINAL_NOFILE.get_or_init(|| cur);
    if cur.rlim_cur >= cur.rlim_max {
        return Ok(cur.rlim_cur);
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(cur.rlim_max);
    let want = libc::rlimit64 {
        rlim_cur: cur.rlim_max.min(nr_open).max(cur.rlim_cur),
        rlim_max: cur.rlim_max,
    };
    // SAFETY: prlimit64 on ourselves reads one rlimit64 from a live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as libc::c_long,
            libc::RLIMIT_NOFILE as libc::c_long,
            &want as *const libc::rlimit64,
            std::ptr::null_mut::<libc::rlimit64>(),
        )
    };
    cvt_long(r)?;
    Ok(want.rlim_cur)
}

/// The `RLIMIT_NOFILE` this process had before [`raise_open_files_limit`]
/// raised it (`None`: never raised).
pub(crate) fn original_open_files_limit() -> Option<libc::rlimit64> {
    ORIGINAL_NOFILE.get().copied()
}

/// Sets the calling thread's timer slack (how late the kernel may end its
/// timed sleeps, to batch wake-ups; 50 µs by default) to `ns` nanoseconds.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    // SAFETY: prctl with integer arguments; PR_SET_TIMERSLACK changes only
    // the calling thread's slack.
    super::cvt(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_children_counts_every_threads_children() {
        let mut own = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // A child whose parent is another thread of this process.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut c = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            tx.send(c.id() as i32).unwrap();
            let _ = done_rx.recv();
            let _ = c.kill();
            let _ = c.wait();
        });
        let other = rx.recv().unwrap();
        let children = super::own_children();
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        let _ = own.kill();
        let _ = own.wait();
        assert!(children.contains(&(own.id() as i32)), "{children:?}");
        assert!(children.contains(&other), "{children:?}");
    }

    /// `kill_own_children` skips its look only when there is no child:
    /// one made by another thread, and a zombie, are children.
    #[test]
    fn has_children_sees_another_threads_child_and_a_zombie() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            // Exited, not reaped: a zombie until the thread waits.
            let pid = c.id() as i32;
            while !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                || !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            tx.send(()).unwrap();
            let _ = done_rx.recv();
            let _ = c.wait();
        });
        rx.recv().unwrap();
        let seen = super::has_children();
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        assert!(seen, "a zombie child of another thread was not seen");
    }

    #[test]
    fn another_processs_thread_has_no_children_of_ours() {
        // pid 1 is no thread of this process: its children are not ours.
        let me = std::process::id() as i32;
        assert!(super::thread_children(me, 1).is_err());
    }

    #[test]
    fn sets_a_custom_time_slice() {
        // On its own thread: the slice stays with the thread.
        std::thread::spawn(|| {
            super::set_fair_slice(true, std::time::Duration::from_micros(100)).unwrap();
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
            let field = |name: &str| {
                sched
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_owned())
            };
            assert_eq!(
                field("policy").as_deref(),
                Some("3"),
                "SCHED_BATCH\n{sched}"
            );
            // The slice is used from Linux 6.12 on (this machine: 6.18).
            assert_eq!(field("se.slice").as_deref(), Some("100000"), "{sched}");
        })
        .join()
        .unwrap();
    }
}
