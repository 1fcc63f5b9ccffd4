//! Attacks on the policy callback's verdicts and on the audit record: a
//! denying verdict holds for every call that changes a file by path, and
//! for every destination of a `sendmmsg`; a record names what was decided
//! and performed, not what a second thread wrote there afterwards.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use unotify::net::NetPolicy;
use unotify::policy::{PolicyContext, SyscallCategory, SyscallEvent, Verdict};
use unotify::Sandbox;

/// In directory argv[1] (holding `victim`, `gone` and `dir`), `ROUNDS`
/// times: creat, truncate, mkdir, mknod, rename, link, symlink, unlink,
/// rmdir, chmod, chown, utimes, setxattr; prints how many succeeded.
const FILE_OPS_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>
#define ROUNDS 50
int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1])) return 2;
    int ok = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int fd = creat("victim", 0644);
        if (fd >= 0) { ok++; close(fd); }
        ok += truncate("victim", 0) == 0;
        ok += mkdir("newdir", 0755) == 0;
        ok += mknod("fifo", S_IFIFO | 0644, 0) == 0;
        ok += rename("victim", "moved") == 0;
        ok += link("victim", "hard") == 0;
        ok += symlink("victim", "soft") == 0;
        ok += unlink("gone") == 0;
        ok += rmdir("dir") == 0;
        ok += chmod("victim", 0600) == 0;
        ok += chown("victim", 1, 1) == 0;
        ok += utimes("victim", NULL) == 0;
        ok += setxattr("victim", "user.x", "1", 1, 0) == 0;
    }
    printf("%d\n", ok);
    return 0;
}
"#;

#[test]
fn a_denying_verdict_holds_for_every_call_that_changes_a_file_by_path() {
    let _dog = common::watchdog(
        Duration::from_secs(120),
        "file ops under a denying callback",
    );
    let exe = common::build_c("policy_file_ops", FILE_OPS_C, &["-static"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("victim"), "precious").unwrap();
    std::fs::write(dir.path().join("gone"), "").unwrap();
    std::fs::create_dir(dir.path().join("dir")).unwrap();
    let (seen, unheld) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, u) = (Arc::clone(&seen), Arc::clone(&unheld));
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.category != SyscallCategory::File {
                return Verdict::Allow;
            }
            s.fetch_add(1, Ordering::Relaxed);
            if !ev.held {
                u.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::DenyWith(libc::EACCES)
        })
        .build()
        .unwrap();
    let lines = common::run_ok(&sandbox, &exe, &[dir.path().to_str().unwrap()]);
    let succeeded: usize = lines[0].trim().parse().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        succeeded, 0,
        "calls that succeeded past a deny; left: {left:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim"))
            .ok()
            .as_deref(),
        Some("precious"),
        "the victim was changed"
    );
    assert!(
        seen.load(Ordering::Relaxed) >= 13 * 50,
        "the callback was told of each call"
    );
    assert_eq!(unheld.load(Ordering::Relaxed), 0, "file calls not held");
    let mut left = left;
    left.sort();
    assert_eq!(left, ["dir", "gone", "victim"]);
}

/// `ROUNDS` times, one `sendmmsg` of two datagrams: to 127.0.0.1:argv[1],
/// then to 127.0.0.1:argv[2]; prints how many messages were sent.
const MMSG_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#define ROUNDS 200
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in d[2];
    for (int k = 0; k < 2; k++) {
        memset(&d[k], 0, sizeof d[k]);
        d[k].sin_family = AF_INET;
        d[k].sin_port = htons(atoi(argv[1 + k]));
        d[k].sin_addr.s_addr = htonl(0x7f000001);
    }
    int sent = 0;
    for (int i = 0; i < ROUNDS; i++) {
        struct iovec io[2] = {{&i, 4}, {&i, 4}};
        struct mmsghdr m[2];
        memset(m, 0, sizeof m);
        for (int k = 0; k < 2; k++) {
            m[k].msg_hdr.msg_name = &d[k];
            m[k].msg_hdr.msg_namelen = sizeof d[k];
            m[k].msg_hdr.msg_iov = &io[k];
            m[k].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(s, m, 2, 0);
        if (r > 0) sent += r;
        if ((i & 31) == 0) usleep(1000);
    }
    printf("%d\n", sent);
    return 0;
}
"#;

fn udp_rx() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 16];
    std::iter::from_fn(|| s.recv(&mut buf).ok()).count()
}

/// JSON records of an audit log.
fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("an audit record is JSON"))
        .collect()
}

#[test]
fn sendmmsg_asks_the_callback_for_each_destination() {
    let _dog = common::watchdog(Duration::from_secs(120), "sendmmsg under a callback");
    let exe = common::build_c("policy_mmsg", MMSG_C, &[]);
    let (allowed, pa) = udp_rx();
    let (denied, pd) = udp_rx();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let sandbox = Sandbox::builder()
        .policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.port == Some(pd) {
                Verdict::DenyWith(libc::EACCES)
            } else {
                Verdict::Allow
            }
        })
        .audit(&log)
        .build()
        .unwrap();
    let lines = common::run_ok(&sandbox, &exe, &[&pa.to_string(), &pd.to_string()]);
    std::thread::sleep(Duration::from_millis(100));
    let (to_allowed, to_denied) = (drain(&allowed), drain(&denied));
    assert_eq!(to_denied, 0, "datagrams at the denied port ({lines:?})");
    assert!(
        to_allowed > 0,
        "nothing reached the allowed port ({lines:?})"
    );
    // The record names both destinations the call was decided on.
    let both = format!("127.0.0.1:{pa} 127.0.0.1:{pd}");
    let named = records(&log)
        .iter()
        .filter(|r| r["syscall"] == "sendmmsg" && r["destination"] == both.as_str())
        .count();
    assert!(named > 0, "no sendmmsg record names {both}");
}

/// Thread B flips one byte of the path between `<dir>/t/secret` (denied)
/// and `<dir>/u/secret`; thread A opens it `ROUNDS` times and prints how
/// often the kernel opened each file.
const PATH_FLIP_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#define ROUNDS 50000
static char path[4096];
static size_t at;
static volatile int stop;
static void *flip(void *x) {
    (void)x;
    volatile char *c = &path[at];
    while (!stop) { *c = 't'; *c = 'u'; }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    snprintf(path, sizeof path, "%s/u/secret", argv[1]);
    at = strlen(argv[1]) + 1;
    pthread_t t;
    pthread_create(&t, 0, flip, 0);
    int tt = 0, uu = 0;
    for (int i = 0; i < ROUNDS; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        char l[4096] = {0}, p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        readlink(p, l, sizeof l - 1);
        if (strstr(l, "/t/secret")) tt++; else uu++;
        close(fd);
    }
    stop = 1;
    pthread_join(t, 0);
    printf("%d %d\n", tt, uu);
    return 0;
}
"#;

#[test]
fn an_audit_record_names_the_path_decided_not_one_rewritten_later() {
    let _dog = common::watchdog(Duration::from_secs(120), "audit path race");
    let exe = common::build_c("audit_path_flip", PATH_FLIP_C, &["-pthread"]);
    let dir = tempfile::tempdir().unwrap();
    for d in ["t", "u"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
        std::fs::write(dir.path().join(d).join("secret"), d).unwrap();
    }
    let denied = dir.path().join("t/secret");
    let log = dir.path().join("audit.jsonl");
    let sandbox = Sandbox::builder()
        .deny_path(&denied)
        .audit(&log)
        .build()
        .unwrap();
    let lines = common::run_ok(&sandbox, &exe, &[dir.path().to_str().unwrap()]);
    let opened_denied: usize = lines[0].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(opened_denied, 0, "the kernel opened the denied file");
    let denied = denied.to_str().unwrap();
    let all = records(&log);
    let performed = |path: &str| {
        all.iter()
            .filter(|r| r["path"] == path && r["outcome"] == "performed")
            .count()
    };
    let forged = performed(denied);
    let real = performed(&format!("{}/u/secret", dir.path().display()));
    assert!(real > 0, "no open of the allowed file recorded ({lines:?})");
    assert_eq!(
        forged, 0,
        "records of the denied path performed ({real} real)"
    );
}

/// Thread B flips the destination port between argv[1] (allowed) and
/// argv[2] (denied); thread A sends `ROUNDS` datagrams to it.
const PORT_FLIP_C: &str = r#"
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#define ROUNDS 20000
static struct sockaddr_in dst;
static unsigned short pa, pb;
static volatile int stop;
static void *flip(void *x) {
    (void)x;
    volatile unsigned short *p = &dst.sin_port;
    while (!stop) { *p = pa; *p = pb; }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    pa = htons(atoi(argv[1]));
    pb = htons(atoi(argv[2]));
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    dst.sin_family = AF_INET;
    dst.sin_addr.s_addr = htonl(0x7f000001);
    dst.sin_port = pa;
    pthread_t t;
    pthread_create(&t, 0, flip, 0);
    int ok = 0;
    for (int i = 0; i < ROUNDS; i++) {
        ok += sendto(s, &i, 4, 0, (void *)&dst, sizeof dst) == 4;
        if ((i & 255) == 0) usleep(1000);
    }
    stop = 1;
    pthread_join(t, 0);
    printf("%d\n", ok);
    return 0;
}
"#;

#[test]
fn an_audit_record_names_the_destination_decided_not_one_rewritten_later() {
    let _dog = common::watchdog(Duration::from_secs(120), "audit destination race");
    let exe = common::build_c("audit_port_flip", PORT_FLIP_C, &["-pthread"]);
    let (allowed, pa) = udp_rx();
    let (denied, pd) = udp_rx();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let rule = [format!("udp://127.0.0.1:{pa}")];
    let sandbox = Sandbox::builder()
        .network(NetPolicy::from_specs(&rule, &[], &[]).unwrap())
        .audit(&log)
        .build()
        .unwrap();
    let lines = common::run_ok(&sandbox, &exe, &[&pa.to_string(), &pd.to_string()]);
    std::thread::sleep(Duration::from_millis(100));
    let (_, to_denied) = (drain(&allowed), drain(&denied));
    assert_eq!(to_denied, 0, "datagrams at the denied port");
    let all = records(&log);
    let performed = |port: u16| {
        all.iter()
            .filter(|r| r["syscall"] == "sendto" && r["outcome"] == "performed")
            .filter(|r| r["port"] == port)
            .count()
    };
    let (real, forged) = (performed(pa), performed(pd));
    assert!(real > 0, "no send to the allowed port recorded ({lines:?})");
    assert_eq!(
        forged, 0,
        "sends to the denied port recorded performed ({real} real)"
    );
}

/// The start of the C programs below: `at(port)`, a loopback address;
/// `report_connect()` writes `Y` to `out` if a connect to `port` works,
/// else `N`; `bind_any()` binds a TCP socket (the callbacks here restrict
/// the binder to no network).
macro_rules! connect_c {
    () => {
        r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static int port, out;
static struct sockaddr_in at(int p) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(p);
    sa.sin_addr.s_addr = htonl(0x7f000001);
    return sa;
}
static void report_connect(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = at(port);
    char c = connect(s, (struct sockaddr *)&sa, sizeof sa) == 0 ? 'Y' : 'N';
    write(out, &c, 1);
}
static void bind_any(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = at(0);
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    close(s);
}
"#
    };
}

/// A non-blocking loopback listener and its port.
fn loopback_listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    (l, port)
}

/// The connections `l` has queued.
fn accepted(l: &std::net::TcpListener) -> usize {
    std::iter::from_fn(|| l.accept().ok()).count()
}

/// `builder` with a callback that restricts each process that binds a
/// socket to no network.
fn restricting_binders(builder: unotify::SandboxBuilder) -> Sandbox {
    builder
        .policy_fn(|ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            if ev.syscall == "bind" {
                cx.restrict_process_network(ev.pid, &[]);
            }
            Verdict::Allow
        })
        .build()
        .unwrap()
}

/// `ROUNDS` (argv[3]) rounds. Each: the root forks X, which binds a TCP
/// socket if argv[4] is `b` (and is restricted) and gets out of its
/// restriction through a process it creates, connecting to
/// 127.0.0.1:argv[1]:
/// - `double`: X forks M, M forks G and exits at once, X exits after M;
///   G waits until M is gone, then connects;
/// - `exit`: X forks C and exits at once; C connects at once (racing
///   X's exit);
/// - `late`: as `exit`, but C waits until X is gone;
/// - `parent`: X makes C with `clone(CLONE_PARENT)` (C is the root's
///   child, a sibling of X, not X's) and exits; C waits until X is gone,
///   then connects;
/// - `untraced`: the same with `clone(CLONE_UNTRACED)`, which reports no
///   creation event to a tracer;
/// - `clone3`: the same with `clone3` (falling back to `fork` on `ENOSYS`,
///   as the C library does);
/// - `vfork`: X vforks C, which connects before it exits;
/// - `thread`: a new thread of X connects.
///
/// The root prints how many connected, of how many answered.
const ORPHAN_CONNECT_C: &str = concat!(
    connect_c!(),
    r#"
/* Connects (once `gone`, if not 0, has exited and been reaped), reports,
   exits. */
static void connect_and_report(pid_t gone) {
    if (gone) {
        for (int i = 0; i < 2000 && kill(gone, 0) == 0; i++) usleep(1000);
    }
    report_connect();
    _exit(0);
}
static void *thread_connects(void *x) {
    (void)x;
    connect_and_report(0);
    return 0;
}
/* A process made by `how`; 0 in it, its pid or -1 in the caller. */
static long make(const char *how) {
    if (!strcmp(how, "parent")) return syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (!strcmp(how, "untraced")) return syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    return r < 0 && errno == ENOSYS ? fork() : r;
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    port = atoi(argv[1]);
    const char *mode = argv[2];
    int rounds = atoi(argv[3]), restrict_it = argv[4][0] == 'b';
    int p[2];
    if (pipe(p)) return 3;
    out = p[1];
    int yes = 0, answered = 0;
    for (int i = 0; i < rounds; i++) {
        pid_t x = fork();
        if (x < 0) { perror("fork"); return 4; }
        if (x == 0) {
            close(p[0]);
            if (restrict_it) bind_any();
            pid_t me = getpid();
            if (!strcmp(mode, "double")) {
                pid_t m = fork();
                if (m == 0) {
                    pid_t mid = getpid();
                    if (fork() == 0) connect_and_report(mid);
                    _exit(0);
                }
                waitpid(m, 0, 0);
                _exit(0);
            }
            if (!strcmp(mode, "vfork")) {
                if (vfork() == 0) connect_and_report(0);
                _exit(0);
            }
            if (!strcmp(mode, "thread")) {
                pthread_t t;
                pthread_create(&t, 0, thread_connects, 0);
                pthread_join(t, 0);
                _exit(0);
            }
            if (!strcmp(mode, "exit") || !strcmp(mode, "late")) {
                if (fork() == 0) connect_and_report(strcmp(mode, "late") ? 0 : me);
                _exit(0);
            }
            long c = make(mode);
            if (c == 0) connect_and_report(me);
            if (c < 0) { char n = 'N'; write(out, &n, 1); }
            _exit(0);
        }
        waitpid(x, 0, 0);
        struct pollfd pf = {p[0], POLLIN, 0};
        char c;
        if (poll(&pf, 1, 5000) == 1 && read(p[0], &c, 1) == 1) {
            answered++;
            yes += c == 'Y';
        }
    }
    printf("%d %d\n", yes, answered);
    return 0;
}
"#
);

/// Attack: a process under `restrict_process_network` gets out of it
/// through a process it creates that reaches the network only once its
/// creator has exited (given to a reaper, it has no restricted ancestor
/// left): a double fork, a fork whose parent exits at once (its child
/// connecting at once, or once orphaned), a `clone` that makes it its
/// creator's sibling or untraceable, `clone3`, `vfork`, a thread. Each
/// connect must be refused; the same program without the restriction
/// connects every time.
#[test]
fn restrict_process_network_is_not_escaped_by_an_orphan() {
    let _dog = common::watchdog(Duration::from_secs(240), "orphans of a restricted process");
    let exe = common::build_c("policy_orphan_connect", ORPHAN_CONNECT_C, &["-pthread"]);
    let (listener, port) = loopback_listener();
    let sandbox = restricting_binders(Sandbox::builder());
    const ROUNDS: usize = 20;
    let rounds = ROUNDS.to_string();
    let modes = [
        "double", "exit", "late", "parent", "untraced", "clone3", "vfork", "thread",
    ];
    for mode in modes {
        let free = common::run_ok(&sandbox, &exe, &[&port, mode, &rounds, "-"]);
        assert_eq!(
            free,
            [format!("{ROUNDS} {ROUNDS}")],
            "{mode}: without a restriction every connect goes through"
        );
        assert_eq!(accepted(&listener), ROUNDS);
        let lines = common::run_ok(&sandbox, &exe, &[&port, mode, &rounds, "b"]);
        let (escaped, answered) = lines[0].split_once(' ').unwrap();
        let escaped: usize = escaped.parse().unwrap();
        assert_eq!(
            answered, rounds,
            "{mode}: every orphan reported ({lines:?})"
        );
        assert_eq!(escaped, 0, "{mode}: connects that escaped the restriction");
        assert_eq!(
            accepted(&listener),
            0,
            "{mode}: connections that reached the host"
        );
    }
}

/// Binds a socket if argv[2] is `b` (and is restricted), prints "ready",
/// waits for a byte, then 4 threads each make a process (raw `clone`)
/// that connects to 127.0.0.1:argv[1] and reports; prints how many
/// connected and how many forks worked.
const THREADS_FORK_C: &str = concat!(
    connect_c!(),
    r#"
static int forked;
static void *body(void *arg) {
    pid_t p = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (p == 0) {
        report_connect();
        _exit(0);
    }
    if (p > 0 && waitpid(p, NULL, 0) == p) __atomic_add_fetch(&forked, 1, __ATOMIC_SEQ_CST);
    return arg;
}
int main(int argc, char **argv) {
    int p[2];
    if (argc < 3 || pipe(p)) return 2;
    port = atoi(argv[1]);
    out = p[1];
    if (argv[2][0] == 'b') bind_any();
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1) return 3;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, body, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    close(out);
    int connected = 0;
    while (read(p[0], &c, 1) == 1) connected += c == 'Y';
    printf("connected=%d forked=%d\n", connected, forked);
    return 0;
}
"#
);

/// `THREADS_FORK_C` under `sandbox`, restricted or not, with stdin and
/// stdout piped; `between` runs once it said "ready" (its stdin and the
/// child at hand) and returns what it saw; then the program is let finish.
/// Returns its last line and what `between` returned.
fn threads_fork<T>(
    sandbox: &Sandbox,
    port: &str,
    restricted: bool,
    between: impl FnOnce(&mut unotify::Child) -> T,
) -> (String, T) {
    use std::io::{BufRead, BufReader, Read};
    let exe = common::build_c("policy_threads_fork", THREADS_FORK_C, &["-pthread"]);
    let mut cmd = unotify::Command::new(&exe);
    cmd.args([port, if restricted { "b" } else { "-" }])
        .stdin(unotify::Stdio::Piped)
        .stdout(unotify::Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let seen = between(&mut child);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    (rest, seen)
}

/// Attack: a restricted process's forks held by `pause` were answered by
/// `resume` untraced, so their children were not restricted. They are
/// refused (`EAGAIN`) now; an unrestricted process's are held and let
/// through as before.
#[test]
fn a_restricted_process_forks_held_by_pause_are_refused() {
    use std::io::Write;
    let _dog = common::watchdog(Duration::from_secs(120), "forks held by pause");
    let (listener, port) = loopback_listener();
    let sandbox = restricting_binders(Sandbox::builder().track_processes());
    let paused = |child: &mut unotify::Child| {
        let handle = child.supervisor().unwrap();
        handle.pause().unwrap();
        // Stopped: give it the go byte and continue it behind the pause's
        // back, so that its forks come while the sandbox is paused.
        child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
        unotify::sys::process::kill(child.pid() as i32, libc::SIGCONT).expect("SIGCONT");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while handle.held().len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let held = handle.held().len();
        handle.resume().unwrap();
        held
    };
    assert_eq!(
        threads_fork(&sandbox, &port, false, paused),
        ("connected=4 forked=4\n".to_owned(), 4),
        "an unrestricted process's forks are held, then let through"
    );
    let (restricted, _) = threads_fork(&sandbox, &port, true, paused);
    assert!(
        restricted.starts_with("connected=0 "),
        "children of held forks of a restricted process connected ({restricted:?})"
    );
    assert_eq!(accepted(&listener), 4);
}

/// Attack: a restricted process's fork that a handler held was let
/// through untraced when released, its child free. It is refused (`EPERM`)
/// now; an unrestricted process's is held and let through as before.
#[test]
fn a_restricted_process_forks_a_handler_holds_are_refused() {
    use std::io::Write;
    let _dog = common::watchdog(Duration::from_secs(120), "forks held by a handler");
    let (listener, port) = loopback_listener();
    let sandbox = restricting_binders(
        Sandbox::builder().handle("clone", |_: &unotify::HandlerCtx<'_>| {
            unotify::NotifAction::Hold
        }),
    );
    // Every held call (the threads' clones too) is released, until the
    // program is done.
    let released = |child: &mut unotify::Child| {
        let handle = child.supervisor().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let releaser = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for call in handle.held() {
                        handle.release(call.id, unotify::NotifAction::Continue);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
        (stop, releaser)
    };
    let run = |restricted| {
        let (out, (stop, releaser)) = threads_fork(&sandbox, &port, restricted, released);
        stop.store(true, Ordering::Relaxed);
        releaser.join().unwrap();
        out
    };
    assert_eq!(
        run(false),
        "connected=4 forked=4\n",
        "an unrestricted process's forks are held, then let through"
    );
    assert_eq!(
        run(true),
        "connected=0 forked=0\n",
        "held forks of a restricted process"
    );
    assert_eq!(accepted(&listener), 4);
}

/// A restricted process (argv[2] `b`: it binds) whose thread A forks
/// `ROUNDS` (argv[1]) times while its thread B `posix_spawn`s `/bin/true`
/// as often (a `vfork` child whose exec argv safety freezes with every
/// thread of its parent, A included); prints how many of each failed with
/// `EPERM`, and how many failed otherwise.
const FORK_WHILE_SPAWN_C: &str = concat!(
    connect_c!(),
    r#"
#include <spawn.h>
extern char **environ;
static int rounds, fork_eperm, fork_other, spawn_eperm, spawn_other;
static void *forker(void *x) {
    (void)x;
    for (int i = 0; i < rounds; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0) { if (errno == EPERM) fork_eperm++; else fork_other++; continue; }
        waitpid(p, 0, 0);
    }
    return 0;
}
static void *spawner(void *x) {
    (void)x;
    char *args[] = {"true", 0};
    for (int i = 0; i < rounds; i++) {
        pid_t p;
        int r = posix_spawn(&p, "/bin/true", 0, 0, args, environ);
        if (r) { if (r == EPERM) spawn_eperm++; else spawn_other++; continue; }
        waitpid(p, 0, 0);
    }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    rounds = atoi(argv[1]);
    if (argv[2][0] == 'b') bind_any();
    pthread_t a, b;
    pthread_create(&a, 0, forker, 0);
    pthread_create(&b, 0, spawner, 0);
    pthread_join(a, 0);
    pthread_join(b, 0);
    printf("fork_eperm=%d spawn_eperm=%d other=%d\n", fork_eperm, spawn_eperm, fork_other + spawn_other);
    return 0;
}
"#
);

/// Conflict: a restricted process's forks are traced for their creation
/// events while argv safety freezes its threads for the execs of its
/// `posix_spawn` children (which share its memory). Both go through the
/// one ptrace owner: neither is refused because the other holds the
/// thread (before, the worker tracing the fork and the ptrace thread
/// fought over it: `EPERM` for one of the two).
#[test]
fn a_restricted_process_forks_while_its_other_thread_spawns() {
    let _dog = common::watchdog(Duration::from_secs(180), "forks beside spawns");
    let exe = common::build_c("policy_fork_while_spawn", FORK_WHILE_SPAWN_C, &["-pthread"]);
    let sandbox = restricting_binders(Sandbox::builder());
    const ROUNDS: &str = "300";
    for restricted in ["-", "b"] {
        let lines = common::run_ok(&sandbox, &exe, &[ROUNDS, restricted]);
        assert_eq!(
            lines,
            ["fork_eperm=0 spawn_eperm=0 other=0"],
            "restricted: {restricted}: calls refused because of the other thread's"
        );
    }
}

/// A restricted process (argv[2] `b`: it binds) that `ROUNDS` (argv[1])
/// times makes a `clone` the kernel refuses after the supervisor let it
/// through (`CLONE_SIGHAND` without `CLONE_VM`: `EINVAL`, no creation
/// event) and forks at once; prints how many forks failed with `EPERM`,
/// and how many failed otherwise.
const FORK_AFTER_FAILED_C: &str = concat!(
    connect_c!(),
    r#"
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int rounds = atoi(argv[1]), eperm = 0, other = 0;
    if (argv[2][0] == 'b') bind_any();
    for (int i = 0; i < rounds; i++) {
        if (syscall(SYS_clone, CLONE_SIGHAND | SIGCHLD, 0, 0, 0, 0) != -1 || errno != EINVAL) other++;
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0) { if (errno == EPERM) eperm++; else other++; continue; }
        waitpid(p, 0, 0);
    }
    printf("eperm=%d other=%d\n", eperm, other);
    return 0;
}
"#
);

/// A restricted thread's fork right after one the kernel refused (no
/// creation event): the failed one's trace ends at the thread's next
/// call (before, the worker still tracing the failed one, for 2 ms, made
/// the next one's trace fail: `EPERM`).
#[test]
fn a_restricted_process_forks_right_after_a_failed_fork() {
    let _dog = common::watchdog(Duration::from_secs(120), "forks after failed ones");
    let exe = common::build_c("policy_fork_after_failed", FORK_AFTER_FAILED_C, &[]);
    let sandbox = restricting_binders(Sandbox::builder());
    for restricted in ["-", "b"] {
        let lines = common::run_ok(&sandbox, &exe, &["200", restricted]);
        assert_eq!(
            lines,
            ["eperm=0 other=0"],
            "restricted: {restricted}: forks refused after a failed one"
        );
    }
}
