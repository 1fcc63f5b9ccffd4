//! Isolation from the host: from inside the sandbox, nothing may signal,
//! ptrace, read or write the memory of, take fds from, or reach the
//! abstract unix sockets of a process outside it: the supervisor (the
//! library's host, or `unotify run`), another host process, from the
//! program itself or from a double-forked grandchild in a new session.

mod common;

use std::collections::BTreeMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::PathBuf;
use std::time::Duration;

use common::{build_c, run_piped, run_unotify, stderr_of, stdout_of, watchdog};
use unotify::{Error, Sandbox};

fn attack_program() -> PathBuf {
    build_c("isolation_attack", include_str!("isolation_attack.c"), &[])
}

/// An abstract unix socket listening outside the sandbox. Each has a name
/// of its own: a child another test forks meanwhile holds a copy of the
/// listener until it execs, and with it the name.
fn abstract_listener(tag: &str) -> (UnixListener, String) {
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("unotify-isolation-{}-{tag}-{n}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    (UnixListener::bind_addr(&addr).unwrap(), name)
}

/// A host process outside the sandbox, killed when dropped.
struct HostProcess(std::process::Child);

impl HostProcess {
    fn sleep() -> HostProcess {
        HostProcess(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `NAME N` lines of the attack program, up to `done`.
fn counts(out: &str) -> BTreeMap<String, u32> {
    assert!(
        out.lines().any(|l| l == "done"),
        "attack did not finish:\n{out}"
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

/// Every attack got nothing through (and the target was there to attack).
fn assert_nothing_reaches(out: &str, what: &str) {
    let c = counts(out);
    eprintln!("{what}: {c:?}");
    assert!(c["sanity_pidfd_open"] > 0, "{what}: target not seen: {c:?}");
    let through: Vec<_> = c
        .iter()
        .filter(|(k, v)| !k.starts_with("sanity") && **v > 0)
        .collect();
    assert!(through.is_empty(), "{what}: got through: {through:?}");
}

fn library_attack(target: &str, tag: &str, grandchild: bool) -> String {
    let _dog = watchdog(Duration::from_secs(60), "the isolation attack");
    let (_listener, name) = abstract_listener(tag);
    let sandbox = Sandbox::builder().build().expect("build");
    let mut args = vec![target, name.as_str()];
    if grandchild {
        args.push("grandchild");
    }
    let (out, status) = run_piped(&sandbox, &attack_program(), &args);
    assert_eq!(status.code(), Some(0), "{out}");
    out
}

fn cli_attack(extra: &[&str], target: &str, tag: &str, grandchild: bool) -> std::process::Output {
    let _dog = watchdog(Duration::from_secs(60), "the isolation attack");
    let (_listener, name) = abstract_listener(tag);
    let exe = attack_program();
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", exe.to_str().unwrap(), target, name.as_str()]);
    if grandchild {
        args.push("grandchild");
    }
    run_unotify(&args)
}

fn cli_attack_ok(target: &str, tag: &str, grandchild: bool) -> String {
    let out = cli_attack(&[], target, tag, grandchild);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    stdout_of(&out)
}

#[test]
fn library_host_is_out_of_reach() {
    let me = std::process::id().to_string();
    let out = library_attack(&me, "lib-host", false);
    assert_nothing_reaches(&out, "library, the host");
}

#[test]
fn library_host_is_out_of_reach_of_a_grandchild() {
    let me = std::process::id().to_string();
    let out = library_attack(&me, "lib-grandchild", true);
    assert_nothing_reaches(&out, "library, the host, from a grandchild");
}

#[test]
fn library_other_host_process_is_out_of_reach() {
    let host = HostProcess::sleep();
    let out = library_attack(&host.pid(), "lib-other", false);
    assert_nothing_reaches(&out, "library, another host process");
}

#[test]
fn unotify_is_out_of_reach() {
    let out = cli_attack_ok("ppid", "cli-parent", false);
    assert_nothing_reaches(&out, "unotify run, unotify itself");
}

#[test]
fn unotify_is_out_of_reach_of_a_grandchild() {
    let out = cli_attack_ok("ppid", "cli-grandchild", true);
    assert_nothing_reaches(&out, "unotify run, unotify, from a grandchild");
}

#[test]
fn unotify_other_host_process_is_out_of_reach() {
    let host = HostProcess::sleep();
    let out = cli_attack_ok(&host.pid(), "cli-other", false);
    assert_nothing_reaches(&out, "unotify run, another host process");
    let out = cli_attack_ok(&host.pid(), "cli-other-gc", true);
    assert_nothing_reaches(&out, "unotify run, another host process, from a grandchild");
}

/// Another sandbox of the same host is outside this one.
#[test]
fn library_other_sandbox_is_out_of_reach() {
    let other = Sandbox::builder().build().expect("build");
    let mut sibling = other
        .spawn(unotify::Command::new("sleep").arg("60"))
        .expect("spawn the other sandbox");
    let out = library_attack(&sibling.pid().to_string(), "lib-sibling", false);
    sibling.kill().unwrap();
    sibling.wait().unwrap();
    assert_nothing_reaches(&out, "library, another sandbox");
}

/// As a user without privileges: unotify, non-dumpable, still takes its
/// child's listener, and stays out of reach.
#[test]
fn unotify_as_an_unprivileged_user() {
    let _dog = watchdog(Duration::from_secs(60), "the isolation attack");
    let (_listener, name) = abstract_listener("cli-nobody");
    let exe = attack_program();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .args(["run", "--"])
        .arg(&exe)
        .args(["ppid", name.as_str()])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    assert_nothing_reaches(&stdout_of(&out), "unotify run as nobody, unotify itself");
}

/// The complete escape: steal unotify's listener, stop unotify, answer
/// CONTINUE to an open of a denied file.
#[test]
fn a_stolen_listener_cannot_open_a_denied_file() {
    let _dog = watchdog(Duration::from_secs(60), "the escape attempt");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret\n").unwrap();
    let exe = build_c(
        "isolation_escape",
        include_str!("isolation_escape.c"),
        &["-pthread"],
    );
    let out = run_unotify(&[
        "run",
        "--deny-path",
        dir.path().to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        secret.to_str().unwrap(),
    ]);
    let text = stdout_of(&out);
    eprintln!("escape: {text}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(text.contains("listener 0"), "{text}");
    assert!(text.contains("escaped 0"), "{text}");
    assert!(!text.contains("the secret"), "{text}");
}

/// Below Landlock ABI 6 the library refuses to build, unless told to
/// accept the weaker isolation; then the domain still forbids ptrace-like
/// access, but signals reach out.
#[test]
fn library_refuses_weak_isolation_unless_accepted() {
    for cap in [5, 0] {
        match Sandbox::builder().landlock_abi_cap(cap).build() {
            Err(e @ Error::WeakIsolation { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("allow_weak_isolation(true)"), "{msg}");
                assert!(msg.contains("--allow-weak-isolation"), "{msg}");
            }
            Err(e) => panic!("ABI {cap}: unexpected error {e}"),
            Ok(_) => panic!("ABI {cap}: built without accepting weak isolation"),
        }
    }
    let host = HostProcess::sleep();
    let (_listener, name) = abstract_listener("lib-weak");
    // ABI 5: a domain without scoping.
    let sandbox = Sandbox::builder()
        .landlock_abi_cap(5)
        .allow_weak_isolation(true)
        .build()
        .expect("build");
    let (out, _) = run_piped(&sandbox, &attack_program(), &[&host.pid(), &name]);
    let c = counts(&out);
    eprintln!("library, ABI 5 accepted: {c:?}");
    for k in [
        "pidfd_getfd",
        "ptrace_seize",
        "ptrace_attach",
        "process_vm_readv",
        "process_vm_writev",
        "proc_mem_rdwr",
    ] {
        assert_eq!(c[k], 0, "{k}: {c:?}");
    }
    assert!(c["kill_0"] > 0, "signals should reach out at ABI 5: {c:?}");
    assert!(c["abstract_connect"] > 0, "{c:?}");
    // No Landlock: only the filter's refusals hold (capabilities kept: the
    // default drop alone already keeps ptrace-like access from a host
    // that has capabilities the program lacks).
    let sandbox = Sandbox::builder()
        .landlock_abi_cap(0)
        .keep_caps(true)
        .allow_weak_isolation(true)
        .build()
        .expect("build");
    let (out, _) = run_piped(&sandbox, &attack_program(), &[&host.pid(), &name]);
    let c = counts(&out);
    eprintln!("library, no Landlock accepted: {c:?}");
    assert_eq!(c["pidfd_getfd"], 0, "{c:?}");
    assert_eq!(c["process_vm_writev"], 0, "{c:?}");
    assert!(c["process_vm_readv"] > 0, "{c:?}");
}

#[test]
fn unotify_refuses_weak_isolation_unless_accepted() {
    let host = HostProcess::sleep();
    let out = cli_attack(
        &["--test-landlock-abi-cap", "5"],
        &host.pid(),
        "cli-weak1",
        false,
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.starts_with("unotify: "), "{err}");
    assert!(err.contains("ABI 5"), "{err}");
    assert!(err.contains("--allow-weak-isolation"), "{err}");
    assert!(out.stdout.is_empty());

    let out = cli_attack(
        &["--test-landlock-abi-cap", "5", "--allow-weak-isolation"],
        &host.pid(),
        "cli-weak2",
        false,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    let c = counts(&stdout_of(&out));
    eprintln!("unotify run, ABI 5 accepted: {c:?}");
    assert_eq!(c["ptrace_attach"], 0, "{c:?}");
    assert_eq!(c["pidfd_getfd"], 0, "{c:?}");
    assert!(c["kill_0"] > 0, "{c:?}");
}

#[test]
fn check_reports_the_isolation() {
    let out = run_unotify(&["check"]);
    let text = stdout_of(&out);
    assert!(text.contains("Landlock: yes (ABI "), "{text}");
    assert!(
        text.contains("isolation from the host: yes (Landlock ABI "),
        "{text}"
    );
}

/// Under a network policy the supervisor makes unix connects on the
/// program's behalf, from outside the sandbox's Landlock domain: a host's
/// abstract socket must stay out of reach all the same (deny list, and an
/// allow list with `unix:*`), unless an allow rule names it.
#[test]
fn unotify_with_a_network_policy_keeps_host_abstract_sockets_out_of_reach() {
    for extra in [
        &["--net-deny", "10.0.0.0/8"][..],
        &["--net-allow", "unix:*", "--net-allow", "127.0.0.1:1"][..],
    ] {
        let out = cli_attack(extra, "ppid", "cli-net", false);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        assert_nothing_reaches(&stdout_of(&out), &format!("unotify run {extra:?}"));
    }
    // Named by an allow rule: the user's explicit choice reaches it.
    let (_listener, name) = abstract_listener("cli-net-named");
    let exe = attack_program();
    let rule = format!("unix:@{name}");
    let out = run_unotify(&[
        "run",
        "--net-allow",
        &rule,
        "--",
        exe.to_str().unwrap(),
        "ppid",
        name.as_str(),
    ]);
    let c = counts(&stdout_of(&out));
    assert!(
        c["abstract_connect"] > 0,
        "an allowed name was refused: {c:?}"
    );
}

/// System V shared memory is a kernel object no process owns: a segment a
/// program leaves behind would outlive the sandbox, memory and all, and be
/// the host's to find by its key. As root each program has an IPC
/// namespace of its own; its processes still share segments among them.
#[test]
fn system_v_segments_do_not_outlive_the_sandbox() {
    let src = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    key_t key = (key_t)strtol(v[1], 0, 0);
    int made = 0, shared = 0;
    for (int i = 0; i < 3; i++) {
        int id = shmget(key + i, 1 << 20, IPC_CREAT | 0600);
        if (id < 0) continue;
        made++;
        char *p = shmat(id, 0, 0);
        if (p == (void *)-1) continue;
        pid_t k = fork();
        if (k == 0) { char *q = shmat(shmget(key + i, 0, 0), 0, 0); strcpy(q, "seen"); _exit(0); }
        waitpid(k, 0, 0);
        if (strcmp(p, "seen") == 0) shared++;
        memset(p, 1, 1 << 20);
    }
    printf("made %d shared %d\n", made, shared);
    return 0;
}
"#;
    let exe = build_c("sysv_leftovers", src, &[]);
    let key: i32 = 0x7500_0000 | (std::process::id() as i32 & 0xff_ff00);
    let sandbox = Sandbox::builder().build().expect("build");
    let (out, status) = run_piped(&sandbox, &exe, &[&key.to_string()]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(out.trim(), "made 3 shared 3", "{out}");
    // Looked up (and removed) from the host, by key.
    let check = build_c(
        "sysv_lookup",
        r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/shm.h>
int main(int c, char **v) {
    key_t key = (key_t)strtol(v[1], 0, 0);
    int left = 0;
    for (int i = 0; i < 3; i++) {
        int id = shmget(key + i, 0, 0);
        if (id >= 0) { left++; shmctl(id, IPC_RMID, 0); }
    }
    printf("%d\n", left);
    return 0;
}
"#,
        &[],
    );
    let host = std::process::Command::new(&check)
        .arg(key.to_string())
        .output()
        .expect("run the host's lookup");
    let left = String::from_utf8_lossy(&host.stdout).trim().to_owned();
    assert_eq!(left, "0", "segments left on the host");
}

/// The files through which a write changes the host (sysctls, sysfs, a host
/// process's /proc files) cannot be opened for writing, whether the open is
/// the kernel's (Landlock) or made on the program's behalf (path denial),
/// with or without the sandbox's cgroups.
#[test]
fn host_control_files_are_out_of_reach() {
    let host = HostProcess::sleep();
    for extra in [
        &["--deny-path", "/etc/shadow"][..],
        &["--leave-daemons"][..],
        &["--exec-deny", "rm"][..],
    ] {
        let out = cli_attack(extra, &host.pid(), "control", false);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        assert_nothing_reaches(&stdout_of(&out), &format!("unotify run {extra:?}"));
    }
}

/// `lease FILE`: tries a read lease, a write lease, and a read lease with
/// high bits set above the 32-bit command (`syscall`, as the kernel reads
/// `unsigned int`), each on its own read-only open of FILE; prints
/// `leases N` (how many were taken) and `errno E` of the last refusal.
const LEASE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int taken = 0, err = 0;
    for (int i = 0; i < 3; i++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) { perror("open"); return 2; }
        long cmd = F_SETLEASE;
        if (i == 2) cmd |= 1L << 32;
        long r = syscall(SYS_fcntl, fd, cmd, i == 1 ? F_WRLCK : F_RDLCK);
        if (r == 0) { taken++; syscall(SYS_fcntl, fd, F_SETLEASE, F_UNLCK); }
        else err = errno;
        close(fd);
    }
    printf("leases %d\nerrno %d\ndone\n", taken, err);
    return 0;
}
"#;

/// Review: a sandboxed program could take a lease on a host file it may
/// read (a root program owns every root file: `CAP_LEASE` is not even
/// needed): each host process that then opens it for writing (read
/// lease), or at all (write lease), waits out the lease-break time, 45 s
/// by default. `fcntl(F_SETLEASE)` is refused (`EACCES`) in every
/// sandbox, whatever the high bits of the command. Before: 3 of 3 leases
/// taken; after, 0.
#[test]
fn a_lease_on_a_host_file_is_refused() {
    let _w = watchdog(Duration::from_secs(60), "leases");
    let exe = build_c("isolation_lease", LEASE_C, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host-file");
    std::fs::write(&file, "host\n").expect("write");
    let out = run_unotify(&["run", "--", &exe.to_string_lossy(), &file.to_string_lossy()]);
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}{}", stderr_of(&out));
    let c = counts(&text);
    assert_eq!(
        c.get("leases"),
        Some(&0),
        "leases taken on a host file: {text}"
    );
    assert_eq!(c.get("errno"), Some(&(libc::EACCES as u32)), "{text}");
}
