//! The anonymous-memory limit (`max_memory`), checked from outside with
//! small C programs: exit statuses and what the programs print.

mod common;

use std::os::unix::process::ExitStatusExt;

use unotify::{Command, Sandbox, Stdio};

const PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024L * 1024L)

static void touch(char *p, long len) {
    for (long i = 0; i < len; i += 4096) p[i] = 1;
}
"#;

fn program(name: &str, body: &str) -> std::path::PathBuf {
    common::build_c(name, &format!("{PRELUDE}\n{body}"), &[])
}

use common::run_piped as run;

/// malloc(argv[1] MiB), touching every page.
const ALLOC: &str = r#"
int main(int argc, char **argv) {
    long len = atol(argv[1]) * MIB;
    char *p = malloc(len);
    if (!p) { printf("malloc failed\n"); return 1; }
    touch(p, len);
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn allocation_over_the_limit_is_killed() {
    let exe = program("alloc", ALLOC);
    let sandbox = Sandbox::builder().max_memory(64 << 20).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["256"]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?} {out:?}");
    assert_eq!(out, "");
}

#[test]
fn allocation_within_the_limit_succeeds() {
    let exe = program("alloc", ALLOC);
    let sandbox = Sandbox::builder().max_memory(512 << 20).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &["128"]);
    assert!(status.success(), "{status:?}");
    assert_eq!(out, "ok\n");
}

/// Maps, touches and unmaps 48 MiB ten times; then grows the heap by
/// 40 MiB with sbrk, touches it, shrinks it back, twice.
const FREE_AND_AGAIN: &str = r#"
int main(void) {
    for (int i = 0; i < 10; i++) {
        char *p = mmap(NULL, 48 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { printf("mmap %d: %s\n", i, strerror(errno)); return 1; }
        touch(p, 48 * MIB);
        munmap(p, 48 * MIB);
    }
    for (int i = 0; i < 2; i++) {
        char *p = sbrk(40 * MIB);
        if (p == (void *)-1) { printf("sbrk %d: %s\n", i, strerror(errno)); return 1; }
        touch(p, 40 * MIB);
        sbrk(-40 * MIB);
    }
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn memory_freed_can_be_allocated_again() {
    let exe = program("free_and_again", FREE_AND_AGAIN);
    let sandbox = Sandbox::builder().max_memory(64 << 20).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert!(status.success(), "{status:?} {out:?}");
    assert_eq!(out, "ok\n");
}

/// Private writable mappings of /dev/zero are anonymous memory too.
const DEV_ZERO: &str = r#"
int main(void) {
    int fd = open("/dev/zero", O_RDWR);
    char *p = mmap(NULL, 256 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return 1;
    touch(p, 256 * MIB);
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn private_file_mappings_are_charged() {
    let exe = program("dev_zero", DEV_ZERO);
    let sandbox = Sandbox::builder().max_memory(64 << 20).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?} {out:?}");
}

/// Tries to launder its footprint: unmaps a read-only shared file mapping
/// (never charged) to get credit, then allocates again while the first
/// anonymous region is still in use.
const LAUNDER: &str = r#"
int main(void) {
    int fd = memfd_create("big", 0);
    ftruncate(fd, 48 * MIB);
    char *f = mmap(NULL, 48 * MIB, PROT_READ, MAP_SHARED, fd, 0);
    char *a = mmap(NULL, 40 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (f == MAP_FAILED || a == MAP_FAILED) return 1;
    touch(a, 40 * MIB);
    munmap(f, 48 * MIB);
    printf("laundered\n");
    fflush(stdout);
    char *b = mmap(NULL, 40 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) return 1;
    touch(b, 40 * MIB);
    printf("escaped\n");
    return 0;
}
"#;

#[test]
fn credits_cannot_launder_a_footprint() {
    let exe = program("launder", LAUNDER);
    let sandbox = Sandbox::builder().max_memory(64 << 20).build().unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert_eq!(out, "laundered\n");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// A child maps 40 MiB of shared anonymous memory (invisible to statm's
/// data count) and exits; the parent then steers the next pid onto the
/// same number (ns_last_pid) and the new child maps 40 MiB too. Under a
/// 64 MiB limit that works only if the new process starts with a clean
/// ledger. Prints whether the pid was reused and how the child ended.
const PID_REUSE: &str = r#"
static void use_40m(void) {
    char *p = mmap(NULL, 40 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) _exit(1);
    touch(p, 40 * MIB);
}
int main(void) {
    pid_t a = fork();
    if (a == 0) { use_40m(); _exit(0); }
    int st;
    if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("first child failed\n");
        return 1;
    }
    for (int attempt = 0; attempt < 200; attempt++) {
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
        if (fd < 0) { printf("ns_last_pid: %s\n", strerror(errno)); return 1; }
        dprintf(fd, "%d", a - 1);
        close(fd);
        pid_t b = fork();
        if (b == 0) {
            if (getpid() != a) _exit(99);
            use_40m();
            _exit(0);
        }
        if (b < 0) { printf("fork: %s\n", strerror(errno)); return 1; }
        waitpid(b, &st, 0);
        if (b != a) continue;  /* another process took the pid: again */
        if (WIFSIGNALED(st)) printf("reused, killed by %d\n", WTERMSIG(st));
        else printf("reused, exit %d\n", WEXITSTATUS(st));
        return 0;
    }
    printf("pid never reused\n");
    return 1;
}
"#;

#[test]
fn a_reused_pid_starts_with_a_clean_ledger() {
    let exe = program("pid_reuse", PID_REUSE);
    // Writing ns_last_pid needs CAP_CHECKPOINT_RESTORE (or SYS_ADMIN),
    // which the sandbox drops unless told to keep them.
    let sandbox = Sandbox::builder()
        .max_memory(64 << 20)
        .keep_caps(true)
        .build()
        .unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert_eq!(out, "reused, exit 0\n");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_child_over_the_limit_is_killed_and_its_memory_credited() {
    // The parent survives its child's death; the child's charge is
    // released when it exits, so a second child can use the same room at
    // once (the parent forks right after reaping the first).
    let exe = program(
        "child_over",
        r#"
int main(void) {
    for (int i = 0; i < 2; i++) {
        pid_t p = fork();
        if (p == 0) {
            char *m = mmap(NULL, 40 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) _exit(1);
            touch(m, 40 * MIB);
            if (i == 0)  /* over the limit: killed here */
                m = mmap(NULL, 40 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        printf("%s %d\n", WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        fflush(stdout);
    }
    return 0;
}
"#,
    );
    // The syscall accounting (no cgroup) refuses the reservation itself; a
    // memory cgroup bounds only what is used, and the second 40 MiB is
    // never touched.
    let sandbox = Sandbox::builder()
        .max_memory(64 << 20)
        .cgroups(false)
        .build()
        .unwrap();
    let (out, status) = run(&sandbox, &exe, &[]);
    assert!(status.success(), "{status:?}");
    assert_eq!(out, "signal 9\nexit 0\n");
}

/// Five children each map 8 MiB and exit; the parent reaps them, says
/// "done" and waits for a byte.
const CHILDREN_MAP: &str = r#"
int main(void) {
    for (int i = 0; i < 5; i++) {
        pid_t p = fork();
        if (p == 0) {
            char *m = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) _exit(1);
            touch(m, 8 * MIB);
            _exit(0);
        }
        waitpid(p, NULL, 0);
    }
    printf("done\n");
    fflush(stdout);
    char c;
    return read(0, &c, 1) == 1 ? 0 : 1;
}
"#;

#[test]
fn exits_leave_the_index_and_release_their_memory() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::{Duration, Instant};

    let exe = program("children_map", CHILDREN_MAP);
    // The ledger of the syscall accounting (a memory cgroup keeps none).
    let sandbox = Sandbox::builder()
        .max_memory(1 << 30)
        .cgroups(false)
        .build()
        .unwrap();
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::Piped).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd).unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "done\n");
    let handle = child.supervisor().unwrap();
    // Each child was registered when it first mapped memory; its pidfd's
    // readiness (not the 2 s sweep) removes it and credits its 8 MiB.
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        let ps = handle.process_stats().unwrap();
        if ps.tracked_tasks == 1 && ps.memory < 8 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{ps:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Grows its heap by 8 MiB with sbrk, touches it, then execs itself with
/// one step fewer: every image has a break of its own, placed at random.
const EXEC_CHAIN: &str = r#"
int main(int argc, char **argv) {
    int left = atoi(argv[1]);
    char *p = sbrk(8 * MIB);
    if (p == (void *)-1) { printf("sbrk: %s\n", strerror(errno)); return 1; }
    touch(p, 8 * MIB);
    if (left == 0) { printf("ok\n"); return 0; }
    char next[16];
    snprintf(next, sizeof next, "%d", left - 1);
    execl("/proc/self/exe", argv[0], next, (char *)NULL);
    printf("exec: %s\n", strerror(errno));
    return 1;
}
"#;

#[test]
fn a_new_image_has_a_new_break_for_the_accounting() {
    // The break of the image before an exec is not the new one's: charged
    // from it, the new heap's growth is garbage (killed, or not charged).
    let exe = program("exec_chain", EXEC_CHAIN);
    let sandbox = Sandbox::builder()
        .max_memory(64 << 20)
        .cgroups(false)
        .build()
        .unwrap();
    let (out, status) = run(&sandbox, &exe, &["20"]);
    assert_eq!(out, "ok\n", "{status:?}");
    assert!(status.success(), "{status:?}");
}
