//! Attacks on the memory and process limits and on containment, run under
//! the `unotify` command as a user would: each program counts, from
//! inside, what it managed to hold, and the test asserts the bound.
//!
//! - memory (`-m 64M`): touch 256 MiB through SysV shm, a `/dev/shm` file,
//!   a memfd, `mmap(PROT_NONE)` + `mprotect`, `munmap` of an unmapped hole,
//!   and fork copy-on-write;
//! - processes (`-P 5`): double-forked `setsid` processes, alive at once
//!   and after `unotify` exits;
//! - the supervisor killed with `SIGKILL`: nothing of the sandbox survives.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{stderr_of as stderr, unotify};

/// Touches memory in one of several ways, in 1 MiB steps, from a worker
/// process (and, for `fork`, its children); each process counts the MiB
/// it touched in a shared slot. The main process waits until every worker
/// is done or dead, then prints `touched T held H`: T is the sum over all
/// workers, H over the workers still alive.
const MEMORY_ATTACK: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define SLOTS 8

struct slot { volatile int pid; volatile int mib; volatile int done; };
static struct slot *slots;

static void touch(int s, char *p, long mib) {
    for (long m = 0; m < mib; m++) {
        for (long i = 0; i < MIB; i += 4096) p[m * MIB + i] = 1;
        __atomic_add_fetch(&slots[s].mib, 1, __ATOMIC_SEQ_CST);
    }
}

static void hold(int s) {
    slots[s].done = 1;
    for (;;) pause();
}

static char *shared_file(int fd, long len) {
    if (fd < 0 || ftruncate(fd, len) != 0) { perror("file"); _exit(2); }
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); _exit(2); }
    return p;
}

static void worker(const char *mode) {
    slots[0].pid = getpid();
    long len = 256 * MIB;
    if (!strcmp(mode, "shm")) {
        int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
        if (id < 0) { perror("shmget"); _exit(2); }
        char *p = shmat(id, NULL, 0);
        shmctl(id, IPC_RMID, NULL);  /* gone once detached (or dead) */
        if (p == (void *)-1) { perror("shmat"); _exit(2); }
        touch(0, p, 256);
    } else if (!strcmp(mode, "devshm")) {
        char name[64];
        snprintf(name, sizeof name, "/dev/shm/unotify-attack-%d", getpid());
        int fd = open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        unlink(name);
        touch(0, shared_file(fd, len), 256);
    } else if (!strcmp(mode, "memfd")) {
        touch(0, shared_file(memfd_create("attack", 0), len), 256);
    } else if (!strcmp(mode, "protnone")) {
        char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(p, len, PROT_READ | PROT_WRITE) != 0) {
            perror("protnone"); _exit(2);
        }
        touch(0, p, 256);
    } else if (!strcmp(mode, "hole")) {
        /* A hole far below where mmap places things: nothing is there. */
        char *hole = (char *)0x100000000000L;
        for (int i = 0; i < 8; i++) {
            munmap(hole, 64 * MIB);
            /* Shared: the kernel's count of private memory misses it. */
            char *p = mmap(NULL, 32 * MIB, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) { perror("mmap"); _exit(2); }
            touch(0, p, 32);
        }
    } else if (!strcmp(mode, "fork")) {
        /* 48 MiB touched here, then 5 children each write every page of
           it (copy-on-write). */
        char *p = mmap(NULL, 48 * MIB, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); _exit(2); }
        touch(0, p, 48);
        for (int c = 1; c <= 5; c++) {
            pid_t k = fork();
            if (k == 0) {
                slots[c].pid = getpid();
                touch(c, p, 48);
                hold(c);
            }
            if (k > 0) slots[c].pid = k;  /* also if it dies before it says */
            if (k < 0) slots[c].done = 1;
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        _exit(2);
    }
    hold(0);
}

static int gone(int pid) {
    int fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return 1;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, 0);
    close(fd);
    return r > 0;
}

int main(int argc, char **argv) {
    slots = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int workers = !strcmp(argv[1], "fork") ? 6 : 1;
    pid_t w = fork();
    if (w == 0) { worker(argv[1]); _exit(0); }
    if (w < 0) { perror("fork"); return 2; }
    /* Up to 60 s for every worker to be done or dead. */
    for (int tick = 0; tick < 6000; tick++) {
        int settled = 0;
        int holder_gone = gone(w);
        for (int i = 0; i < workers; i++) {
            /* A child the dead holder never forked is settled too. */
            if (slots[i].done || (i == 0 ? holder_gone
                                         : slots[i].pid ? gone(slots[i].pid) : holder_gone))
                settled++;
        }
        if (settled == workers) break;
        usleep(10000);
    }
    usleep(100000);
    long touched = 0, held = 0;
    for (int i = 0; i < workers; i++) {
        touched += slots[i].mib;
        if (slots[i].pid && !gone(slots[i].pid)) held += slots[i].mib;
    }
    printf("touched %ld held %ld\n", touched, held);
    fflush(stdout);
    kill(-getpgrp(), SIGKILL);
    return 0;
}
"#;

fn memory_attack() -> PathBuf {
    common::build_c("memory_attack", MEMORY_ATTACK, &[])
}

/// Runs the memory attack `mode` under `-m 64M` (plus `extra` options);
/// returns (touched, held) in MiB.
fn run_memory_attack(mode: &str, extra: &[&str]) -> (u64, u64) {
    let exe = memory_attack();
    let _dog = common::watchdog(Duration::from_secs(120), "the memory attack");
    let mut args = vec!["run", "-m", "64M"];
    args.extend_from_slice(extra);
    args.push("--");
    let exe = exe.to_str().unwrap();
    args.extend_from_slice(&[exe, mode]);
    let out = unotify().args(&args).output().expect("start unotify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("touched "))
        .unwrap_or_else(|| panic!("{mode}: no report; stdout {text:?} stderr {}", stderr(&out)));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// Runs the memory attack `mode` under `max_memory(64M)` without cgroups
/// (the syscall accounting); returns (touched, held) in MiB.
fn run_memory_attack_accounting(mode: &str) -> (u64, u64) {
    let exe = memory_attack();
    let _dog = common::watchdog(Duration::from_secs(120), "the memory attack");
    let sandbox = unotify::Sandbox::builder()
        .max_memory(64 << 20)
        .cgroups(false)
        .build()
        .unwrap();
    let (text, _) = common::run_piped(&sandbox, &exe, &[mode]);
    let line = text
        .lines()
        .find(|l| l.starts_with("touched "))
        .unwrap_or_else(|| panic!("{mode}: no report; stdout {text:?}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// 64 MiB, and room for what the program and its libraries use besides.
const MEMORY_BOUND_MIB: u64 = 64 + 16;

fn assert_memory_bound(mode: &str, extra: &[&str]) {
    let (touched, held) = if extra == ["accounting"] {
        run_memory_attack_accounting(mode)
    } else {
        run_memory_attack(mode, extra)
    };
    eprintln!("{mode} {extra:?}: touched {touched} MiB, held {held} MiB at the end");
    // Shared memory outlives its toucher: what was touched at all counts.
    // Private memory of a killed child is freed: what is held counts.
    let measured = if mode == "fork" { held } else { touched };
    assert!(
        measured <= MEMORY_BOUND_MIB,
        "{mode} {extra:?}: {measured} MiB held under -m 64M (touched {touched}, held {held})"
    );
}

#[test]
fn memory_through_sysv_shm_is_bounded() {
    assert_memory_bound("shm", &[]);
}

#[test]
fn memory_through_a_dev_shm_file_is_bounded() {
    assert_memory_bound("devshm", &[]);
}

#[test]
fn memory_through_a_memfd_is_bounded() {
    assert_memory_bound("memfd", &[]);
}

#[test]
fn memory_through_prot_none_and_mprotect_is_bounded() {
    assert_memory_bound("protnone", &[]);
}

#[test]
fn memory_after_unmapping_a_hole_is_bounded() {
    assert_memory_bound("hole", &[]);
}

#[test]
fn memory_through_fork_copy_on_write_is_bounded() {
    assert_memory_bound("fork", &[]);
}

/// The same attacks where no cgroup is used: the supervisor's accounting
/// charges every call that can make memory writable, and credits nothing
/// it did not charge.
#[test]
fn memory_attacks_are_bounded_by_the_accounting_too() {
    for mode in ["shm", "devshm", "memfd", "protnone", "hole", "fork"] {
        assert_memory_bound(mode, &["accounting"]);
    }
}

/// Double-forks `n` processes that each call `setsid`, record their pid in
/// DIR and sleep; after a settling pause, prints `alive N` (how many of
/// them live at once) and exits, leaving them behind.
const DOUBLE_FORK: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int alive(int pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    int n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[2] != 'Z' && p[2] != 'X';
}

int main(int argc, char **argv) {
    const char *dir = argv[1];
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        pid_t a = fork();
        if (a == 0) {
            setsid();
            pid_t b = fork();
            if (b == 0) {
                char path[512];
                snprintf(path, sizeof path, "%s/%d", dir, getpid());
                close(creat(path, 0600));
                close(0); close(1); close(2);
                sleep(100);
                _exit(0);
            }
            _exit(0);
        }
        if (a > 0) waitpid(a, NULL, 0);
    }
    usleep(300000);
    int count = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (atoi(e->d_name) > 0 && alive(atoi(e->d_name))) count++;
    printf("alive %d\n", count);
    fflush(stdout);
    return 0;
}
"#;

/// The pids recorded in `dir` whose processes are still alive (not
/// zombies).
fn survivors(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
            if !matches!(state, Some('Z') | Some('X')) {
                out.push(pid);
            }
        }
    }
    out
}

fn kill_all(pids: &[i32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(|p| p.to_string()))
        .status();
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = common::artefact_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settle_until_gone(dir: &Path, within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let left = survivors(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cgroup directories `unotify-<pid>-*` of process `pid` left under
/// /sys/fs/cgroup (a few levels deep).
fn leftover_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("unotify-{pid}-");
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(e.path());
            } else if depth < 4 {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

#[test]
fn a_failed_spawn_leaves_no_cgroup() {
    let mut cmd = unotify();
    cmd.args(["run", "-m", "64M", "-P", "5", "--", "/nonexistent/program"]);
    let child = cmd.spawn().expect("start unotify");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(leftover_cgroups(pid), Vec::<PathBuf>::new());
}

#[test]
fn setsid_processes_die_with_the_sandbox_without_a_limit() {
    let exe = common::build_c("double_fork", DOUBLE_FORK, &[]);
    let dir = fresh_dir("double-fork-nolimit");
    let _dog = common::watchdog(Duration::from_secs(60), "the double-fork attack");
    let out = unotify()
        .args(["run", "--"])
        .arg(&exe)
        .arg(&dir)
        .arg("5")
        .output()
        .expect("start unotify");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("alive 5"));
    let left = settle_until_gone(&dir, Duration::from_millis(500));
    kill_all(&left);
    eprintln!("no limit: {} setsid processes left after exit", left.len());
    assert!(left.is_empty(), "{} outlived unotify: {left:?}", left.len());
}

#[test]
fn double_forked_processes_count_and_die_with_the_sandbox() {
    let exe = common::build_c("double_fork", DOUBLE_FORK, &[]);
    let dir = fresh_dir("double-fork");
    let _dog = common::watchdog(Duration::from_secs(60), "the double-fork attack");
    let out = unotify()
        .args(["run", "-P", "5", "--"])
        .arg(&exe)
        .arg(&dir)
        .arg("30")
        .output()
        .expect("start unotify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let alive: u32 = text
        .trim()
        .strip_prefix("alive ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no report: {text:?}, stderr {}", stderr(&out)));
    // Whatever the kernel still has to tear down gets a moment.
    let left = settle_until_gone(&dir, Duration::from_millis(500));
    kill_all(&left);
    eprintln!(
        "-P 5: {alive} double-forked alive at once, {} after exit",
        left.len()
    );
    assert!(
        alive <= 4,
        "{alive} double-forked processes alive at once under -P 5"
    );
    assert!(left.is_empty(), "{} outlived unotify: {left:?}", left.len());
}

#[test]
fn nothing_survives_a_killed_supervisor() {
    let exe = common::build_c("double_fork", DOUBLE_FORK, &[]);
    let dir = fresh_dir("killed-supervisor");
    let _dog = common::watchdog(Duration::from_secs(60), "the killed-supervisor test");
    // The program double-forks 3 sleepers and then sleeps itself.
    let mut sup = unotify()
        .args(["run", "--", "sh", "-c", "\"$0\" \"$1\" 3; exec sleep 100"])
        .arg(&exe)
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start unotify");
    let deadline = Instant::now() + Duration::from_secs(20);
    while survivors(&dir).len() < 3 {
        assert!(Instant::now() < deadline, "the sleepers did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(400));
    // The program itself (sleep 100), found as the supervisor's child.
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", sup.id(), sup.id()))
            .unwrap_or_default();
    let mut tracked: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let sup_pid = sup.id();
    sup.kill().unwrap();
    sup.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // The watchdog removed the cgroups too.
    assert_eq!(leftover_cgroups(sup_pid), Vec::<PathBuf>::new());
    let mut left = survivors(&dir);
    tracked.retain(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
    });
    left.extend(tracked);
    kill_all(&left);
    eprintln!("supervisor killed: {} left after 2 s", left.len());
    assert!(
        left.is_empty(),
        "{} outlived a killed supervisor: {left:?}",
        left.len()
    );
}

/// A root program tries to leave its cgroups (its pid into every
/// `cgroup.procs` of every cgroup mount, the roots first) and to raise
/// their limits (its own v1 `memory.limit_in_bytes` and `pids.max`);
/// prints how many writes went through.
const CGROUP_ESCAPE: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int tries, through;

static void try_write(const char *path, const char *what) {
    tries++;
    int fd = open(path, O_WRONLY);
    if (fd < 0) return;
    if (write(fd, what, strlen(what)) == (ssize_t)strlen(what)) through++;
    close(fd);
}

int main(int argc, char **argv) {
    char pid[32], line[4096], path[4096];
    snprintf(pid, sizeof pid, "%d\n", getpid());
    FILE *m = fopen("/proc/self/mountinfo", "r");
    if (!m) return 2;
    while (fgets(line, sizeof line, m)) {
        char *sep = strstr(line, " - ");
        if (!sep || (strncmp(sep + 3, "cgroup ", 7) && strncmp(sep + 3, "cgroup2 ", 8))) continue;
        char point[2048];
        if (sscanf(line, "%*s %*s %*s %*s %2047s", point) != 1) continue;
        snprintf(path, sizeof path, "%s/cgroup.procs", point);
        try_write(path, pid);
        snprintf(path, sizeof path, "%s/tasks", point);
        try_write(path, pid);
        /* A cgroup of its own in the host's hierarchy (left behind, and
         * counted against the host's cgroup ids). */
        snprintf(path, sizeof path, "%s/unotify-escape-%d", point, getpid());
        tries++;
        if (mkdir(path, 0755) == 0) {
            through++;
            rmdir(path);
        }
    }
    fclose(m);
    /* A host cgroup removed (argv[1], empty). */
    if (argc > 1) {
        tries++;
        if (rmdir(argv[1]) == 0) through++;
    }
    /* Its own cgroups' limits (v1 paths here: "N:ctrl:/path"). */
    FILE *c = fopen("/proc/self/cgroup", "r");
    if (!c) return 2;
    while (fgets(line, sizeof line, c)) {
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        if (!strncmp(a + 1, "memory:", 7)) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", b + 1);
            try_write(path, "-1\n");
        }
        if (!strncmp(a + 1, "pids:", 5)) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/pids%s/pids.max", b + 1);
            try_write(path, "max\n");
        }
    }
    fclose(c);
    printf("tries %d through %d\n", tries, through);
    return 0;
}
"#;

/// A root program cannot write into a cgroup file system: it would leave
/// its sandbox's cgroups (and then outlive it, or escape its limits) or
/// raise their limits. Held by the Landlock domain, and by the on-behalf
/// open under path denial (the supervisor's own opens are outside the
/// domain).
#[test]
fn a_root_program_cannot_leave_or_widen_its_cgroups() {
    let exe = common::build_c("cgroup_escape", CGROUP_ESCAPE, &[]);
    let _dog = common::watchdog(Duration::from_secs(60), "the cgroup escape");
    // An empty cgroup of the host's, for the program to remove (removed
    // here at the end, whatever happens).
    struct Victim(PathBuf);
    impl Drop for Victim {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let victim = [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(|m| Path::new(m).join(format!("unotify-victim-{}", std::process::id())))
    .find(|v| std::fs::create_dir(v).is_ok())
    .map(Victim)
    .expect("make a cgroup to remove");
    let victim = &victim.0;
    for extra in [&[][..], &["--deny-path", "/etc/shadow"][..]] {
        let mut args = vec!["run", "-m", "64M", "-P", "32"];
        args.extend_from_slice(extra);
        args.push("--");
        args.push(exe.to_str().unwrap());
        args.push(victim.to_str().unwrap());
        let out = unotify().args(&args).output().expect("start unotify");
        let _ = std::fs::create_dir(victim);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("cgroup escape {extra:?}: {text}");
        let n: Vec<u32> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(n.len(), 2, "no report: {text:?} {}", stderr(&out));
        assert!(n[0] >= 4, "too few cgroup files tried: {text}");
        assert_eq!(n[1], 0, "{extra:?}: writes went through: {text}");
    }
}

/// `tcp_buffers CAP PAIRS`: makes up to PAIRS loopback TCP connections and
/// writes into each (never reading) until the kernel takes no more, or CAP
/// MiB are queued in all; prints `queued N` (MiB).
const TCP_BUFFERS: &str = r#"
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long cap = atol(argv[1]) << 20, total = 0;
    int pairs = atoi(argv[2]);
    struct rlimit rl = { 4096, 4096 };
    setrlimit(RLIMIT_NOFILE, &rl);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4096) || getsockname(l, (void *)&a, &al)) {
        perror("listen");
        return 2;
    }
    static char buf[1 << 16];
    memset(buf, 'z', sizeof buf);
    for (int i = 0; i < pairs && total < cap; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (void *)&a, sizeof a)) break;
        int r = accept(l, 0, 0);
        if (r < 0) break;
        int big = 1 << 30;
        setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        fcntl(s, F_SETFL, O_NONBLOCK);
        while (total < cap) {
            ssize_t n = write(s, buf, sizeof buf);
            if (n <= 0) break;
            total += n;
        }
    }
    printf("queued %ld\n", total >> 20);
    return 0;
}
"#;

/// Kernel memory in TCP socket buffers counts under `-m`: cgroup v1 counts
/// them only with `memory.kmem.tcp.limit_in_bytes` written (512 MiB were
/// held under `-m 64M` before). A program killed for it got nothing either.
#[test]
fn memory_in_tcp_socket_buffers_is_bounded() {
    let exe = common::build_c("tcp_buffers", TCP_BUFFERS, &[]);
    let _dog = common::watchdog(Duration::from_secs(120), "the TCP buffer attack");
    let out = unotify()
        .args([
            "run",
            "-m",
            "64M",
            "--",
            exe.to_str().unwrap(),
            "256",
            "400",
        ])
        .output()
        .expect("start unotify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let queued: u64 = match text.lines().find_map(|l| l.strip_prefix("queued ")) {
        Some(n) => n.trim().parse().unwrap(),
        None => {
            assert_eq!(out.status.code(), Some(137), "{text:?} {}", stderr(&out));
            0
        }
    };
    eprintln!("queued {queued} MiB in TCP buffers under -m 64M");
    assert!(
        queued <= MEMORY_BOUND_MIB,
        "{queued} MiB held in TCP socket buffers under -m 64M"
    );
}
