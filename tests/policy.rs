//! The policy callback: held calls, verdicts, and every `PolicyContext`
//! method changing behaviour without ever widening the starting policy.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

/// Runs the operations given as arguments, one output line each:
/// `c:IP:PORT` connect; `b:PORT` bind a TCP socket on 127.0.0.1;
/// `o:PATH` open and read; `w:PATH` create or truncate and write; `f:N` fork N children that sleep 300 ms;
/// `m:MIB` map and touch MIB MiB; `p` getppid; `F:OPS` fork a child that
/// runs OPS (`,` separated) and wait for it; `&:OPS` the same without
/// waiting; `s:MS` sleep MS milliseconds.
const OPS_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void op(char *a) {
    if (a[0] == 'c') {
        char ip[64]; int port;
        sscanf(a + 2, "%63[^:]:%d", ip, &port);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET; sa.sin_port = htons(port);
        inet_pton(AF_INET, ip, &sa.sin_addr);
        int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
        printf("c %s %d %d\n", a + 2, r, r ? errno : 0);
        close(s);
    } else if (a[0] == 'b') {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET; sa.sin_port = htons(atoi(a + 2));
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        int r = bind(s, (struct sockaddr *)&sa, sizeof sa);
        printf("b %d %d\n", r, r ? errno : 0);
        close(s);
    } else if (a[0] == 'o') {
        int fd = open(a + 2, O_RDONLY);
        if (fd < 0) { printf("o %s -1 %d\n", a + 2, errno); }
        else { char buf[64] = {0}; int n = read(fd, buf, 63); if (n > 0) buf[n] = 0;
               printf("o %s 0 %s\n", a + 2, buf); close(fd); }
    } else if (a[0] == 'w') {
        int fd = open(a + 2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("w %s -1 %d\n", a + 2, errno); }
        else { write(fd, "new", 3); printf("w %s 0 0\n", a + 2); close(fd); }
    } else if (a[0] == 'f') {
        int n = atoi(a + 2), ok = 0, again = 0, other = 0;
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) { usleep(300000); _exit(0); }
            if (p > 0) ok++; else if (errno == EAGAIN) again++; else other++;
        }
        printf("f ok=%d eagain=%d other=%d\n", ok, again, other);
        while (wait(NULL) > 0) {}
    } else if (a[0] == 'm') {
        size_t n = (size_t)atol(a + 2) << 20;
        char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { printf("m -1 %d\n", errno); }
        else { memset(p, 1, n); printf("m 0 0\n"); }
    } else if (a[0] == 'p') {
        printf("p %ld\n", (long)syscall(SYS_getppid));
    } else if (a[0] == 'F' || a[0] == '&') {
        pid_t p = fork();
        if (p == 0) {
            char *save, *t = strtok_r(a + 2, ",", &save);
            for (; t; t = strtok_r(NULL, ",", &save)) { op(t); fflush(stdout); }
            _exit(0);
        }
        if (a[0] == 'F') waitpid(p, NULL, 0);
    } else if (a[0] == 's') {
        usleep(atoi(a + 2) * 1000);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) op(argv[i]);
    return 0;
}
"#;

fn ops() -> std::path::PathBuf {
    common::build_c("policy_ops", OPS_C, &[])
}

/// Runs the ops program in `sandbox` and returns (status, stdout lines).
fn run_ops(sandbox: &Sandbox, args: &[String]) -> (std::process::ExitStatus, Vec<String>) {
    let _dog = common::watchdog(Duration::from_secs(60), "policy test");
    let mut child = sandbox
        .spawn(Command::new(ops()).args(args).stdout(Stdio::Piped))
        .expect("spawn the ops program");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    (status, out.lines().map(str::to_owned).collect())
}

fn listener(ip: &str) -> (TcpListener, u16) {
    let l = TcpListener::bind((ip, 0)).expect("bind a loopback listener");
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn accepted(l: &TcpListener) -> usize {
    std::iter::from_fn(|| l.accept().ok()).count()
}

fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

/// The hold timeout, both ways a held call meets a callback that does not
/// answer: a call queued for the policy thread behind it is denied after
/// the timeout (the callback would have allowed it), and the call the
/// callback is running for on the caller's worker (it found the callback
/// idle) is denied when the callback returns late, whatever its verdict;
/// the audit records of both say so (`deny`, `refused`), not the late
/// `allow`.
#[test]
fn a_held_call_without_a_verdict_in_time_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (l, port) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .audit(&log)
        .policy_fn(|ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                std::thread::sleep(Duration::from_secs(7));
            }
            Verdict::Allow
        })
        .handle("getppid", |_cx: &HandlerCtx<'_>| {
            NotifAction::ReturnValue(77)
        })
        .build()
        .unwrap();
    // The child connects at 0.2 s (the callback then blocks for 7 s); the
    // parent opens at 0.6 s, queued behind it.
    let (status, lines) = run_ops(
        &sandbox,
        &[
            format!("&:s:200,c:127.0.0.1:{port}"),
            "s:600".into(),
            "o:/dev/null".into(),
            "p".into(),
        ],
    );
    assert_eq!(status.code(), Some(0));
    let eperm = libc::EPERM;
    assert_eq!(
        lines,
        [
            format!("o /dev/null -1 {eperm}"),
            "p 77".into(),
            format!("c 127.0.0.1:{port} -1 {eperm}"),
        ],
        "the queued open and the late connect are denied; the supervisor stays healthy"
    );
    assert_eq!(accepted(&l), 0, "a denied connect must send nothing");
    // Their audit records say what the program got, not the callback's
    // late `allow` (both said `allow`, `failed` before).
    let text = std::fs::read_to_string(&log).unwrap();
    let late: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["syscall"] == "connect" || e["path"] == "/dev/null")
        .collect();
    assert_eq!(late.len(), 2, "audit log:\n{text}");
    let misrecorded = late
        .iter()
        .filter(|e| {
            e["verdict"] != "deny"
                || e["outcome"] != "refused"
                || e["denied"] != true
                || e["errno"] != "EPERM"
                || e["rule"] != "policy callback: no verdict within the hold timeout"
        })
        .count();
    assert_eq!(misrecorded, 0, "records of the late calls:\n{text}");
}

/// Events (not held: answered at once, told later) and held calls reach
/// the callback in the order they came: a held call that finds the
/// callback idle runs it on its worker, but never before an event still
/// queued for the policy thread.
#[test]
fn events_and_held_calls_reach_the_callback_in_order() {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "getppid" {
                // Still queued, or being told, when the open comes.
                std::thread::sleep(Duration::from_millis(2));
            }
            s.lock().push(ev.syscall);
            Verdict::Allow
        })
        .handle("getppid", |_cx: &HandlerCtx<'_>| NotifAction::Continue)
        .build()
        .unwrap();
    const ROUNDS: usize = 40;
    let args: Vec<String> = (0..ROUNDS)
        .flat_map(|_| ["p".to_owned(), "o:/dev/null".to_owned()])
        .collect();
    let (status, lines) = run_ops(&sandbox, &args);
    assert_eq!(status.code(), Some(0));
    assert_eq!(lines.len(), 2 * ROUNDS, "{lines:?}");
    let seen = seen.lock();
    // The loader's opens come before the first getppid.
    let first = seen.iter().position(|s| *s == "getppid").expect("told");
    let ours: Vec<&str> = seen[first..]
        .iter()
        .copied()
        .filter(|s| matches!(*s, "getppid" | "openat"))
        .collect();
    let out_of_order = ours
        .chunks(2)
        .filter(|pair| *pair != ["getppid", "openat"])
        .count();
    assert_eq!(ours.len(), 2 * ROUNDS, "{ours:?}");
    assert_eq!(out_of_order, 0, "{ours:?}");
}

/// A callback that panics denies the call it was asked about (`EPERM`),
/// wherever it ran, and is asked again about the next.
#[test]
fn a_panicking_callback_denies_and_the_next_call_is_asked() {
    let (l, port) = listener("127.0.0.1");
    let asked = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                a.fetch_add(1, Ordering::SeqCst);
                panic!("deliberate panic in a test policy callback");
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let c = format!("c:127.0.0.1:{port}");
    let (status, lines) = run_ops(&sandbox, &[c.clone(), "o:/dev/null".into(), c]);
    assert_eq!(status.code(), Some(0));
    let denied = format!("c 127.0.0.1:{port} -1 {}", libc::EPERM);
    assert_eq!(lines, [denied.clone(), "o /dev/null 0 ".into(), denied]);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(accepted(&l), 0, "a denied connect must send nothing");
}

#[test]
fn a_denying_verdict_comes_before_any_packet() {
    let (l, port) = listener("127.0.0.1");
    let (l2, port2) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .policy_fn(
            move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| match ev.port {
                Some(p) if p == port => Verdict::Deny,
                Some(p) if p == port2 => Verdict::DenyWith(libc::ECONNABORTED),
                _ => Verdict::Allow,
            },
        )
        .build()
        .unwrap();
    let (_, lines) = run_ops(
        &sandbox,
        &[
            format!("c:127.0.0.1:{port}"),
            format!("c:127.0.0.1:{port2}"),
        ],
    );
    assert_eq!(lines[0], format!("c 127.0.0.1:{port} -1 {}", libc::EPERM));
    assert_eq!(
        lines[1],
        format!("c 127.0.0.1:{port2} -1 {}", libc::ECONNABORTED)
    );
    assert_eq!(
        accepted(&l) + accepted(&l2),
        0,
        "nothing may reach a denied listener"
    );
}

#[test]
fn a_verdict_only_tightens() {
    let seen_denied = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&seen_denied);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "bind" && ev.denied {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Verdict::Allow
        })
        .handle("bind", |_cx: &HandlerCtx<'_>| {
            NotifAction::Errno(libc::EADDRINUSE)
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(&sandbox, &["b:0".into()]);
    assert_eq!(
        lines[0],
        format!("b -1 {}", libc::EADDRINUSE),
        "Allow must not undo a denial"
    );
    assert_eq!(
        seen_denied.load(Ordering::SeqCst),
        1,
        "the event says the call was denied"
    );
}

#[test]
fn restrict_and_grant_network_never_exceed_the_starting_policy() {
    let (l1, p1) = listener("127.0.0.1");
    let (l2, p2) = listener("127.0.0.2");
    let start = unotify::net::NetPolicy::from_specs(&["127.0.0.1".to_owned()], &[], &[]).unwrap();
    let first = Arc::new(AtomicUsize::new(0));
    let sandbox = Sandbox::builder()
        .network(start)
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" && first.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.restrict_network(&[]);
                cx.grant_network(&nets(&["127.0.0.0/8"]));
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(
        &sandbox,
        &[
            format!("c:127.0.0.1:{p1}"),
            format!("c:127.0.0.2:{p2}"),
            format!("c:127.0.0.1:{p1}"),
        ],
    );
    assert_eq!(lines[0], format!("c 127.0.0.1:{p1} 0 0"));
    assert_eq!(
        lines[1],
        format!("c 127.0.0.2:{p2} -1 {}", libc::ECONNREFUSED),
        "a grant must not open what the starting policy refuses"
    );
    assert_eq!(lines[2], format!("c 127.0.0.1:{p1} 0 0"));
    assert_eq!(accepted(&l1), 2);
    assert_eq!(accepted(&l2), 0);

    // Restricting to one host leaves the other unreachable from then on.
    let (l3, p3) = listener("127.0.0.1");
    let (l4, p4) = listener("127.0.0.2");
    let first = Arc::new(AtomicUsize::new(0));
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" && first.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.restrict_network(&nets(&["127.0.0.2/32"]));
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(
        &sandbox,
        &[
            format!("c:127.0.0.1:{p3}"),
            format!("c:127.0.0.1:{p3}"),
            format!("c:127.0.0.2:{p4}"),
        ],
    );
    assert_eq!(
        lines[0],
        format!("c 127.0.0.1:{p3} 0 0"),
        "restriction applies from the next call"
    );
    assert_eq!(
        lines[1],
        format!("c 127.0.0.1:{p3} -1 {}", libc::ECONNREFUSED)
    );
    assert_eq!(lines[2], format!("c 127.0.0.2:{p4} 0 0"));
    assert_eq!((accepted(&l3), accepted(&l4)), (1, 1));
}

/// A sandbox whose callback restricts the process of the first connect
/// it is told about to no network at all.
fn restricting_the_first_connecter() -> Sandbox {
    let root = Arc::new(parking_lot::Mutex::new(None::<u32>));
    Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            let mut root = root.lock();
            if ev.syscall == "connect" && root.is_none() {
                *root = Some(ev.pid);
                cx.restrict_process_network(ev.pid, &[]);
            }
            Verdict::Allow
        })
        .build()
        .unwrap()
}

#[test]
fn restrict_process_network_is_keyed_by_process() {
    let (l, p) = listener("127.0.0.1");
    let sandbox = restricting_the_first_connecter();
    let (_, lines) = run_ops(
        &sandbox,
        &[
            format!("c:127.0.0.1:{p}"),
            format!("c:127.0.0.1:{p}"),
            format!("F:c:127.0.0.1:{p}"),
        ],
    );
    assert_eq!(lines[0], format!("c 127.0.0.1:{p} 0 0"));
    assert_eq!(
        lines[1],
        format!("c 127.0.0.1:{p} -1 {}", libc::ECONNREFUSED)
    );
    assert_eq!(
        lines[2],
        format!("c 127.0.0.1:{p} -1 {}", libc::ECONNREFUSED),
        "a child inherits its parent's restriction"
    );
    assert_eq!(accepted(&l), 1);
}

/// A child's restriction is its own (and its children's): its parent
/// stays free.
#[test]
fn restrict_process_network_leaves_the_parent_free() {
    let (l, p) = listener("127.0.0.1");
    let sandbox = restricting_the_first_connecter();
    let c = format!("c:127.0.0.1:{p}");
    let (_, lines) = run_ops(&sandbox, &[format!("F:{c},{c}"), c.clone()]);
    let refused = format!("c 127.0.0.1:{p} -1 {}", libc::ECONNREFUSED);
    let ok = format!("c 127.0.0.1:{p} 0 0");
    assert_eq!(lines, [ok.clone(), refused, ok]);
    assert_eq!(accepted(&l), 2);
}

/// Attack: a restricted process forks children that connect for it.
#[test]
fn restrict_process_network_is_not_escaped_by_fork() {
    let (l, p) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "bind" {
                cx.restrict_process_network(ev.pid, &nets(&["10.0.0.0/8"]));
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let mut ops = vec!["b:0".to_owned()];
    let c = format!("c:127.0.0.1:{p}");
    for _ in 0..20 {
        ops.push(format!("F:{c}"));
        ops.push(format!("F:F:{c}"));
    }
    let (_, lines) = run_ops(&sandbox, &ops);
    let escaped = lines
        .iter()
        .filter(|l| l.ends_with(" 0 0") && l.starts_with("c "))
        .count();
    assert_eq!(escaped, 0, "connects from children of a restricted process");
    assert_eq!(accepted(&l), 0);
}

#[test]
fn restrict_max_processes_only_lowers() {
    let (_l, p) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .policy_fn(|ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                cx.restrict_max_processes(2);
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(
        &sandbox,
        &["f:3".into(), format!("c:127.0.0.1:{p}"), "f:3".into()],
    );
    assert_eq!(
        lines[0], "f ok=3 eagain=0 other=0",
        "no limit before the restriction"
    );
    assert_eq!(
        lines[2], "f ok=1 eagain=2 other=0",
        "root + 1 under a limit of 2"
    );

    let sandbox = Sandbox::builder()
        .max_processes(3)
        .policy_fn(|_ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            cx.restrict_max_processes(100);
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(&sandbox, &[format!("c:127.0.0.1:{p}"), "f:4".into()]);
    assert_eq!(
        lines[1], "f ok=2 eagain=2 other=0",
        "a higher limit is ignored"
    );
}

#[test]
fn restrict_max_memory_only_lowers() {
    let (_l, p) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .max_memory(512 << 20)
        .policy_fn(|ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                cx.restrict_max_memory(64 << 20);
                cx.restrict_max_memory(1 << 40);
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (status, lines) = run_ops(
        &sandbox,
        &["m:128".into(), format!("c:127.0.0.1:{p}"), "m:128".into()],
    );
    assert_eq!(lines[0], "m 0 0", "128 MiB fits the starting 512M");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "over the lowered limit: {lines:?}"
    );
}

#[test]
fn deny_path_at_run_time_and_allow_path_cannot_undo_a_starting_denial() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("fixed");
    let later = dir.path().join("later");
    std::fs::write(&fixed, "fixed-secret").unwrap();
    std::fs::write(&later, "later-content").unwrap();
    let (_l, p) = listener("127.0.0.1");
    let (f2, l2) = (fixed.clone(), later.clone());
    let answers = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let a = Arc::clone(&answers);
    let sandbox = Sandbox::builder()
        .deny_path(&fixed)
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                let denied = cx.deny_path(&l2);
                let undone = cx.allow_path(&f2);
                a.lock().push((denied, undone));
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let path = |p: &Path| format!("o:{}", p.display());
    let (_, lines) = run_ops(
        &sandbox,
        &[
            path(&later),
            path(&fixed),
            format!("c:127.0.0.1:{p}"),
            path(&later),
            path(&fixed),
        ],
    );
    assert_eq!(lines[0], format!("o {} 0 later-content", later.display()));
    assert_eq!(
        lines[1],
        format!("o {} -1 {}", fixed.display(), libc::EACCES)
    );
    assert_eq!(
        lines[3],
        format!("o {} -1 {}", later.display(), libc::EACCES)
    );
    assert_eq!(
        lines[4],
        format!("o {} -1 {}", fixed.display(), libc::EACCES)
    );
    assert_eq!(*answers.lock(), vec![(true, false)]);
}

/// With no path denied and only the callback able to deny one, a
/// read-only open is let run as the kernel resolves it once the callback
/// allowed it (it is still asked). Seen from the program: a path through
/// another process's `/proc/<pid>/root`, which the supervisor's on-behalf
/// open refuses (`ELOOP`), opens as it does bare.
#[test]
fn read_only_opens_with_nothing_denied_are_the_kernels_own() {
    let _dog = common::watchdog(Duration::from_secs(60), "kernel's reads");
    let opens = Arc::new(AtomicUsize::new(0));
    let o = Arc::clone(&opens);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "openat" {
                o.fetch_add(1, Ordering::SeqCst);
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let mut child = sandbox
        .spawn(
            Command::new("/bin/sh")
                .args([
                    "-c",
                    "cat /proc/$$/root/etc/passwd > /dev/null && echo read-ok",
                ])
                .stdout(Stdio::Piped),
        )
        .expect("spawn");
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success(), "{out}");
    assert_eq!(out.trim(), "read-ok");
    assert!(opens.load(Ordering::SeqCst) > 0, "the opens were not held");
}

/// Read-only opens still follow the callback: a path it denies at run
/// time is refused from then on (the on-behalf route again), and a
/// denying verdict fails the open.
#[test]
fn read_only_opens_follow_the_callbacks_denials() {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let other = dir.path().join("other");
    std::fs::write(&later, "later-content").unwrap();
    std::fs::write(&other, "other-content").unwrap();
    let (_l, p) = listener("127.0.0.1");
    let l2 = later.clone();
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                cx.deny_path(&l2);
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let path = |p: &Path| format!("o:{}", p.display());
    let (_, lines) = run_ops(
        &sandbox,
        &[
            path(&later),
            format!("c:127.0.0.1:{p}"),
            path(&later),
            path(&other),
        ],
    );
    assert_eq!(lines[0], format!("o {} 0 later-content", later.display()));
    assert_eq!(
        lines[2],
        format!("o {} -1 {}", later.display(), libc::EACCES)
    );
    assert_eq!(lines[3], format!("o {} 0 other-content", other.display()));
    // A verdict: every open after the connect fails with EXDEV.
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = Arc::clone(&armed);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                a.store(true, Ordering::SeqCst);
            }
            if ev.syscall == "openat" && a.load(Ordering::SeqCst) {
                return Verdict::DenyWith(libc::EXDEV);
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let (_, lines) = run_ops(
        &sandbox,
        &[path(&other), format!("c:127.0.0.1:{p}"), path(&other)],
    );
    assert_eq!(lines[0], format!("o {} 0 other-content", other.display()));
    assert_eq!(
        lines[2],
        format!("o {} -1 {}", other.display(), libc::EXDEV)
    );
}

#[test]
fn audit_log_has_one_json_object_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (_l, p) = listener("127.0.0.1");
    let sandbox = Sandbox::builder()
        .audit(&log)
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.port == Some(p) {
                Verdict::Audit
            } else {
                Verdict::Allow
            }
        })
        .build()
        .unwrap();
    let (status, _) = run_ops(&sandbox, &[format!("c:127.0.0.1:{p}")]);
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}"))
        })
        .collect();
    let connects: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["syscall"] == "connect")
        .collect();
    assert_eq!(connects.len(), 1, "audit log:\n{text}");
    let c = connects[0];
    assert_eq!(c["category"], "network");
    assert_eq!(c["host"], "127.0.0.1");
    assert_eq!(c["port"], u64::from(p));
    assert_eq!(c["denied"], false);
    assert_eq!(c["verdict"], "audit");
    assert!(c["pid"].as_u64().is_some_and(|pid| pid > 1), "{c}");
    assert!(c["parent_pid"].as_u64().is_some(), "{c}");
    for key in [
        "syscall",
        "category",
        "pid",
        "parent_pid",
        "host",
        "port",
        "size",
        "argv",
        "denied",
        "verdict",
    ] {
        assert!(
            events.iter().all(|e| e.get(key).is_some()),
            "{key} missing in some event"
        );
    }
    let execs: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["syscall"] == "execve").collect();
    assert!(
        execs.iter().any(|e| e["argv"][0]
            .as_str()
            .is_some_and(|a| a.ends_with("policy_ops"))
            || e["argv"][0]
                .as_str()
                .is_some_and(|a| a.contains("policy_ops"))),
        "the program's own exec with its argv: {execs:?}"
    );
}

#[test]
fn a_denied_open_truncates_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing");
    let fresh = dir.path().join("fresh");
    std::fs::write(&existing, "keep").unwrap();
    let (_l, p) = listener("127.0.0.1");
    let armed = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&armed);
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.syscall == "connect" {
                a.store(1, Ordering::SeqCst);
            }
            if ev.syscall == "openat" && a.load(Ordering::SeqCst) == 1 {
                Verdict::Deny
            } else {
                Verdict::Allow
            }
        })
        .build()
        .unwrap();
    let w = |p: &Path| format!("w:{}", p.display());
    let (_, lines) = run_ops(
        &sandbox,
        &[format!("c:127.0.0.1:{p}"), w(&existing), w(&fresh)],
    );
    assert_eq!(
        lines[1],
        format!("w {} -1 {}", existing.display(), libc::EPERM)
    );
    assert_eq!(
        lines[2],
        format!("w {} -1 {}", fresh.display(), libc::EPERM)
    );
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "keep",
        "truncated before the verdict"
    );
    assert!(!fresh.exists(), "created before the verdict");
}

/// Arguments and paths that are not UTF-8: the callback gets the exec's
/// argv as its exact bytes (it got `x\u{fffd}` for `x\xff`, the same as for
/// `x\xfe`), and the audit record shows each byte that is not UTF-8 as
/// `\xNN` and a `\` as `\\` (it showed U+FFFD), in valid JSON.
#[test]
fn arguments_and_paths_that_are_not_utf8_reach_the_callback_and_the_record_exactly() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let sandbox = Sandbox::builder()
        .audit(&log)
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if let Some(argv) = &ev.argv {
                s2.lock().extend(argv.iter().map(|a| format!("{a:?}")));
            }
            Verdict::Allow
        })
        .build()
        .unwrap();
    let _dog = common::watchdog(Duration::from_secs(60), "policy test");
    let mut child = sandbox
        .spawn(
            Command::new(ops())
                .arg(OsStr::from_bytes(b"x\xff"))
                .arg(OsStr::from_bytes(b"o:/nonexistent/a\\b\xfe"))
                .stdout(Stdio::Piped),
        )
        .unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let seen = seen.lock().clone();
    let exact = [r#""x\xFF""#, r#""o:/nonexistent/a\\b\xFE""#];
    let missing = exact
        .iter()
        .filter(|a| !seen.iter().any(|s| s == *a))
        .count();
    assert_eq!(missing, 0, "the callback saw {seen:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let exec_shown = events.iter().any(|e| {
        e["syscall"] == "execve"
            && e["argv"][1] == "x\\xff"
            && e["argv"][2] == "o:/nonexistent/a\\\\b\\xfe"
    });
    let open_shown = events
        .iter()
        .any(|e| e["path"] == "/nonexistent/a\\\\b\\xfe" && e["errno"] == "ENOENT");
    assert!(exec_shown && open_shown, "audit log:\n{text}");
}
