//! Installs generated filters in forked children and checks what the kernel
//! makes of them.
//!
//! Each test hands a filter and a list of calls to
//! [`run_filtered`](unotify::sys::filtered_calls::run_filtered): its child
//! sets `PR_SET_NO_NEW_PRIVS`, installs the filter with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER`, closes the listener (so notified calls
//! fail with `ENOSYS`), makes the calls with raw system calls only (no
//! allocation, no locks: the parent may be multi-threaded), writes the
//! outcomes to a pipe and exits. The parent asserts on them.

use std::ffi::{CStr, CString};

use unotify::arch::Arch;
use unotify::filter::{ArgCheck, Filter, FilterBuilder, SyscallAction};
use unotify::sys::filtered_calls::{run_filtered, Arg, Call, CallsOutcome};

/// `"/"` as a C string.
const ROOT: &CStr = c"/";

fn nr(name: &str) -> u32 {
    unotify::syscalls::number(Arch::native(), name).unwrap()
}

/// System call `nr` with `args` (the missing ones are zero).
fn call<'a>(nr: u32, args: &'a [Arg<'a>]) -> Call<'a> {
    Call { nr, args }
}

/// A plain argument value, passed as a full `long`.
fn val(v: impl Into<i64>) -> Arg<'static> {
    Arg::Val(v.into())
}

/// Runs `calls` in a child with `filter` installed; panics if the filter
/// could not be installed.
fn sandboxed(filter: &Filter, calls: &[Call<'_>]) -> CallsOutcome {
    let outcome = run_filtered(filter.instructions(), calls).unwrap();
    if let CallsOutcome::SetupFailed(e) = outcome {
        panic!("installing the filter failed with errno {}", -e);
    }
    outcome
}

/// The outcomes of the calls a finished child made: the return value, or
/// `-errno`, one per call.
fn done(outcome: CallsOutcome) -> Vec<i64> {
    match outcome {
        CallsOutcome::Done(r) => r,
        other => panic!("child did not finish: {other:?}"),
    }
}

fn eq(e: i32) -> i64 {
    -i64::from(e)
}

/// The real user id, as `getuid` would return it: the first field of the
/// `Uid:` line of `/proc/self/status`.
fn real_uid() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .expect("no Uid: line in /proc/self/status")
        .parse()
        .unwrap()
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

    let at = val(libc::AT_FDCWD);
    let r = done(sandboxed(
        &f,
        &[
            call(nr_const::MKDIRAT, &[at, Arg::Str(&path), val(0o700)]),
            call(nr_const::OPENAT, &[at, Arg::Str(ROOT), val(libc::O_RDONLY)]),
            call(nr_const::GETPPID, &[]),
            call(nr_const::GETPID, &[]),
            call(nr_const::GETUID, &[]),
        ],
    ));
    assert_eq!(r[0], eq(libc::EPERM), "mkdirat");
    assert_eq!(r[1], eq(libc::ENOTSUP), "openat");
    assert_eq!(r[2], eq(libc::ENOSYS), "notified getppid, listener closed");
    assert!(r[3] > 0, "getpid: {}", r[3]);
    assert_eq!(r[4], real_uid(), "getuid");
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

    let (inet, unix) = (val(libc::AF_INET), val(libc::AF_UNIX));
    let (stream, dgram) = (val(libc::SOCK_STREAM), val(libc::SOCK_DGRAM));
    let r = done(sandboxed(
        &f,
        &[
            call(nr_const::SOCKET, &[inet, dgram]),
            call(
                nr_const::SOCKET,
                &[inet, val(libc::SOCK_DGRAM | libc::SOCK_CLOEXEC)],
            ),
            call(nr_const::SOCKET, &[unix, stream]),
            // Closes the socket just made (a failed call's -errno would make
            // this fail with EBADF, but that is caught on r[2] first).
            call(nr_const::CLOSE, &[Arg::Result(2)]),
            call(nr_const::SOCKET, &[unix, dgram]),
            call(nr_const::SOCKET, &[inet, stream]),
            // The kernel truncates the domain to an int, but the filter
            // compares all 64 bits: with a high bit set this is not AF_INET
            // to it.
            call(
                nr_const::SOCKET,
                &[val((1 << 32) | i64::from(libc::AF_INET)), dgram],
            ),
        ],
    ));
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
    let mut calls = Vec::new();
    for i in probes {
        calls.push(call(FAKE_BASE + 2 * i, &[]));
        calls.push(call(FAKE_BASE + 2 * i + 1, &[]));
    }
    let mkdir_args = [val(libc::AT_FDCWD), Arg::Str(ROOT), val(0)];
    calls.extend([
        call(nr_const::MKDIRAT, &mkdir_args),
        call(nr_const::GETPPID, &[]),
        call(nr_const::GETPID, &[]),
        call(FAKE_BASE - 1, &[]),
    ]);
    let r = done(sandboxed(f, &calls));
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
    let outcome = sandboxed(&f, &[call(FAKE_BASE + 1, &[]), call(FAKE_BASE, &[])]);
    assert_eq!(outcome, CallsOutcome::Signaled(libc::SIGSYS));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_kill() {
    let f = FilterBuilder::new(Arch::X86_64).build().unwrap();
    let outcome = sandboxed(
        &f,
        &[call(unotify::arch::X32_SYSCALL_BIT | nr_const::GETPID, &[])],
    );
    assert_eq!(outcome, CallsOutcome::Signaled(libc::SIGSYS));
}
