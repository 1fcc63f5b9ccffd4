//! Installs generated filters in forked children and checks what the kernel
//! makes of them.
//!
//! Each child sets `PR_SET_NO_NEW_PRIVS`, installs the filter with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER`, closes the listener (so notified calls
//! fail with `ENOSYS`), makes its calls with raw libc functions only (no
//! allocation, no locks: the parent may be multi-threaded), writes the
//! outcomes to a pipe and exits. The parent asserts on them.

use std::ffi::CString;

use libc::c_long;
use unotify::arch::Arch;
use unotify::filter::{ArgCheck, Filter, FilterBuilder, SyscallAction};

/// Outcomes of the calls a child makes: the return value, or `-errno`.
type Results = [i64; 16];

/// How a sandboxed child ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Exited normally after reporting its results.
    Done(Results),
    /// Killed by this signal.
    Signaled(i32),
}

const SETUP_FAILED: i32 = 101;

/// `"/"` as a C string.
const ROOT: &[u8] = b"/\0";

fn errno() -> i64 {
    // SAFETY: `__errno_location` returns a valid pointer to the calling
    // thread's errno.
    i64::from(unsafe { *libc::__errno_location() })
}

/// Encodes a raw return value: itself on success, `-errno` on failure.
fn outcome(ret: c_long) -> i64 {
    if ret == -1 {
        -errno()
    } else {
        ret
    }
}

fn nr(name: &str) -> u32 {
    unotify::syscalls::number(Arch::native(), name).unwrap()
}

/// `syscall(nr, a, b, c)` with every argument passed as a full `long`.
fn raw(nr: u32, a: c_long, b: c_long, c: c_long) -> i64 {
    // SAFETY: callers pass arguments that are valid for the call made (or
    // calls the filter is expected to stop before the kernel runs them).
    outcome(unsafe { libc::syscall(c_long::from(nr), a, b, c) })
}

/// Runs `body` in a child with `filter` installed.
fn sandboxed<F: FnOnce(&mut Results)>(filter: &Filter, body: F) -> Outcome {
    let prog = filter.as_sock_fprog();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [rfd, wfd] = fds;

    // SAFETY: the child only makes async-signal-safe libc calls (and runs
    // `body`, which does the same) before `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        const ONE: c_long = 1;
        const ZERO: c_long = 0;
        let mut results: Results = [0; 16];
        // SAFETY: plain system calls on valid arguments; `prog` points at the
        // parent's (copied) filter, which stays alive in this address space.
        let code = unsafe {
            libc::close(rfd);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, ONE, ZERO, ZERO, ZERO) != 0 {
                results[0] = -errno();
                SETUP_FAILED
            } else {
                let listener = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER as c_long,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as c_long,
                    &prog as *const libc::sock_fprog,
                );
                if listener < 0 {
                    results[0] = -errno();
                    SETUP_FAILED
                } else {
                    libc::close(listener as i32);
                    body(&mut results);
                    0
                }
            }
        };
        // SAFETY: writes the fixed-size buffer to our pipe and exits without
        // running any destructors or atexit handlers.
        unsafe {
            libc::write(wfd, results.as_ptr().cast(), std::mem::size_of::<Results>());
            libc::_exit(code);
        }
    }

    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wfd) };
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let mut results: Results = [0; 16];
    // The child has exited, so whatever it wrote (at most one pipe buffer's
    // worth, written atomically) is already there; do not wait for EOF, which
    // children of concurrently running tests could delay.
    // SAFETY: reads into a buffer of exactly the given size.
    let got = unsafe {
        libc::fcntl(rfd, libc::F_SETFL, libc::O_NONBLOCK);
        let n = libc::read(
            rfd,
            results.as_mut_ptr().cast(),
            std::mem::size_of::<Results>(),
        );
        libc::close(rfd);
        n
    };
    if libc::WIFSIGNALED(status) {
        return Outcome::Signaled(libc::WTERMSIG(status));
    }
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    let code = libc::WEXITSTATUS(status);
    assert_eq!(
        got,
        std::mem::size_of::<Results>() as isize,
        "child reported nothing"
    );
    assert_ne!(
        code, SETUP_FAILED,
        "installing the filter failed with errno {}",
        -results[0]
    );
    assert_eq!(code, 0);
    Outcome::Done(results)
}

fn done(outcome: Outcome) -> Results {
    match outcome {
        Outcome::Done(r) => r,
        other => panic!("child did not finish: {other:?}"),
    }
}

fn eq(e: i32) -> i64 {
    -i64::from(e)
}

#[test]
fn deny_notify_and_allow() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(
        dir.path()
            .join("never")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut b = FilterBuilder::new(Arch::native());
    b.deny(nr("mkdirat"), libc::EPERM)
        .unwrap()
        .deny(nr("openat"), libc::ENOTSUP)
        .unwrap()
        .notify(nr("getppid"))
        .unwrap();
    let f = b.build().unwrap();

    let r = done(sandboxed(&f, |r| {
        let at = libc::AT_FDCWD as c_long;
        r[0] = raw(nr_const::MKDIRAT, at, path.as_ptr() as c_long, 0o700);
        r[1] = raw(
            nr_const::OPENAT,
            at,
            ROOT.as_ptr() as c_long,
            libc::O_RDONLY as c_long,
        );
        r[2] = raw(nr_const::GETPPID, 0, 0, 0);
        r[3] = raw(nr_const::GETPID, 0, 0, 0);
        r[4] = raw(nr_const::GETUID, 0, 0, 0);
    }));
    assert_eq!(r[0], eq(libc::EPERM), "mkdirat");
    assert_eq!(r[1], eq(libc::ENOTSUP), "openat");
    assert_eq!(r[2], eq(libc::ENOSYS), "notified getppid, listener closed");
    assert!(r[3] > 0, "getpid: {}", r[3]);
    // SAFETY: getuid cannot fail.
    assert_eq!(r[4], i64::from(unsafe { libc::getuid() }), "getuid");
    assert!(!dir.path().join("never").exists());
}

/// Syscall numbers as plain constants, usable in the child without lookups.
mod nr_const {
    pub const MKDIRAT: u32 = libc::SYS_mkdirat as u32;
    pub const OPENAT: u32 = libc::SYS_openat as u32;
    pub const GETPPID: u32 = libc::SYS_getppid as u32;
    pub const GETPID: u32 = libc::SYS_getpid as u32;
    pub const GETUID: u32 = libc::SYS_getuid as u32;
    pub const SOCKET: u32 = libc::SYS_socket as u32;
    pub const CLOSE: u32 = libc::SYS_close as u32;
}

#[test]
fn constants_match_tables() {
    assert_eq!(nr("mkdirat"), nr_const::MKDIRAT);
    assert_eq!(nr("openat"), nr_const::OPENAT);
    assert_eq!(nr("getppid"), nr_const::GETPPID);
    assert_eq!(nr("getpid"), nr_const::GETPID);
    assert_eq!(nr("getuid"), nr_const::GETUID);
    assert_eq!(nr("socket"), nr_const::SOCKET);
    assert_eq!(nr("close"), nr_const::CLOSE);
}

#[test]
fn conditional_socket_rule() {
    let af_inet = libc::AF_INET as u64;
    let af_unix = libc::AF_UNIX as u64;
    let mut b = FilterBuilder::new(Arch::native());
    b.rule(
        nr("socket"),
        vec![
            (
                // The socket type with SOCK_NONBLOCK / SOCK_CLOEXEC masked off.
                vec![
                    ArgCheck::equals(0, af_inet),
                    ArgCheck::new(1, 0xf, libc::SOCK_DGRAM as u64),
                ],
                SyscallAction::Errno(libc::EACCES as u16),
            ),
            (vec![ArgCheck::equals(0, af_unix)], SyscallAction::Allow),
        ],
        SyscallAction::Notify,
    )
    .unwrap();
    let f = b.build().unwrap();

    let r = done(sandboxed(&f, |r| {
        let sock = |domain: i32, ty: i32| raw(nr_const::SOCKET, domain as c_long, ty as c_long, 0);
        r[0] = sock(libc::AF_INET, libc::SOCK_DGRAM);
        r[1] = sock(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC);
        r[2] = sock(libc::AF_UNIX, libc::SOCK_STREAM);
        if r[2] >= 0 {
            r[3] = raw(nr_const::CLOSE, r[2] as c_long, 0, 0);
        }
        r[4] = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
        r[5] = sock(libc::AF_INET, libc::SOCK_STREAM);
        // The kernel truncates the domain to an int, but the filter compares
        // all 64 bits: with a high bit set this is not AF_INET to it.
        r[6] = raw(
            nr_const::SOCKET,
            (1 << 32) | libc::AF_INET as c_long,
            libc::SOCK_DGRAM as c_long,
            0,
        );
    }));
    assert_eq!(r[0], eq(libc::EACCES), "socket(AF_INET, SOCK_DGRAM)");
    assert_eq!(
        r[1],
        eq(libc::EACCES),
        "socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC)"
    );
    assert!(r[2] >= 0, "socket(AF_UNIX, SOCK_STREAM): {}", r[2]);
    assert_eq!(r[3], 0, "close");
    assert!(r[4] >= 0, "socket(AF_UNIX, SOCK_DGRAM): {}", r[4]);
    assert_eq!(
        r[5],
        eq(libc::ENOSYS),
        "socket(AF_INET, SOCK_STREAM) is notified"
    );
    assert_eq!(
        r[6],
        eq(libc::ENOSYS),
        "socket(AF_INET | 1 << 32, SOCK_DGRAM) is notified"
    );
}

/// Numbers no kernel assigns: unlisted, they fail with ENOSYS; listed, they
/// fail with the errno of their rule.
const FAKE_BASE: u32 = 1000;

fn fake_errno(i: u32) -> i32 {
    1 + (i % 120) as i32
}

/// A filter with `n` isolated deny rules on fake numbers (so nothing merges
/// and the decision tree is as large as it gets) plus real rules.
fn big_filter(n: u32) -> Filter {
    let mut b = FilterBuilder::new(Arch::native());
    for i in 0..n {
        b.deny(FAKE_BASE + 2 * i, fake_errno(i)).unwrap();
    }
    b.deny(nr("mkdirat"), libc::EROFS)
        .unwrap()
        .notify(nr("getppid"))
        .unwrap();
    b.build().unwrap()
}

fn check_big_filter(n: u32, f: &Filter) {
    let probes = [0, 1, n / 3, n / 2, n - 2, n - 1];
    let r = done(sandboxed(f, |r| {
        for (k, i) in probes.iter().enumerate() {
            r[2 * k] = raw(FAKE_BASE + 2 * i, 0, 0, 0);
            r[2 * k + 1] = raw(FAKE_BASE + 2 * i + 1, 0, 0, 0);
        }
        r[12] = raw(
            nr_const::MKDIRAT,
            libc::AT_FDCWD as c_long,
            ROOT.as_ptr() as c_long,
            0,
        );
        r[13] = raw(nr_const::GETPPID, 0, 0, 0);
        r[14] = raw(nr_const::GETPID, 0, 0, 0);
        r[15] = raw(FAKE_BASE - 1, 0, 0, 0);
    }));
    for (k, i) in probes.iter().enumerate() {
        assert_eq!(r[2 * k], eq(fake_errno(*i)), "denied fake syscall {i}");
        assert_eq!(r[2 * k + 1], eq(libc::ENOSYS), "unlisted fake syscall {i}");
    }
    assert_eq!(r[12], eq(libc::EROFS), "mkdirat");
    assert_eq!(r[13], eq(libc::ENOSYS), "getppid");
    assert!(r[14] > 0, "getpid: {}", r[14]);
    assert_eq!(r[15], eq(libc::ENOSYS), "unlisted");
}

#[test]
fn large_filter_300_rules() {
    let f = big_filter(300);
    assert!(f.len() > 1000, "{} instructions", f.len());
    check_big_filter(300, &f);
}

#[test]
fn filter_near_the_limit() {
    let f = big_filter(1000);
    assert!(f.len() > 3900, "{} instructions", f.len());
    check_big_filter(1000, &f);
}

#[test]
fn kill_action_kills() {
    let mut b = FilterBuilder::new(Arch::native());
    b.rule(FAKE_BASE, vec![], SyscallAction::KillProcess)
        .unwrap();
    let f = b.build().unwrap();
    let outcome = sandboxed(&f, |r| {
        r[0] = raw(FAKE_BASE + 1, 0, 0, 0);
        r[1] = raw(FAKE_BASE, 0, 0, 0);
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_kill() {
    let f = FilterBuilder::new(Arch::X86_64).build().unwrap();
    let outcome = sandboxed(&f, |r| {
        r[0] = raw(unotify::arch::X32_SYSCALL_BIT | nr_const::GETPID, 0, 0, 0);
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}
