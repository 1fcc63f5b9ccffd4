//! A rootfs with its own ELF loader (`unotify run --chroot DIR`): the
//! interpreter a program names (`PT_INTERP`) is the view's file at that
//! path, not the host's. The rootfs here has its own `/lib64` with a copy
//! of the host's loader (another file than the host's at that path) and a
//! loader at a path only the view has; the toolchain is mounted. Real
//! programs run in it (a shell, a `#!` script, make of a C project,
//! python), and an attack swaps the interpreter path with a thread while
//! a program whose `PT_INTERP` names, on the host, a program outside the
//! view is run in a bounded loop: the outside program never runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The host's ELF loader, as the kernel finds it.
fn host_loader() -> PathBuf {
    std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").expect("the host's x86_64 loader")
}

/// A rootfs whose `/lib64/ld-linux-x86-64.so.2` and
/// `/opt/ld/ld-view.so.2` are copies of the host's loader; `/usr`, `/bin`,
/// `/sbin`, `/lib` and `/dev` mounted read-only, `/proc` too.
struct Rootfs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn rootfs() -> Rootfs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    for d in [
        "tmp",
        "proc",
        "work",
        "etc/alternatives",
        "dev",
        "lib64",
        "opt/ld",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(host_loader(), root.join("lib64/ld-linux-x86-64.so.2")).expect("copy");
    std::fs::copy(host_loader(), root.join("opt/ld/ld-view.so.2")).expect("copy");
    Rootfs { _tmp: tmp, root }
}

fn cli(r: &Rootfs) -> Vec<String> {
    let mut v = vec![
        "run".to_owned(),
        "--chroot".into(),
        r.root.display().to_string(),
    ];
    for m in ["/usr", "/bin", "/sbin", "/lib", "/etc/alternatives"] {
        if Path::new(m).is_dir() {
            v.extend(["--mount".into(), format!("{m}:{m}:ro")]);
        }
    }
    v.extend(["--mount".into(), "/dev:/dev:ro".into()]);
    v.extend(["--mount".into(), "/proc:/proc:ro".into()]);
    v
}

/// `unotify run` in the view `r`, with the flags `extra`, of `cmd`.
fn in_view(r: &Rootfs, extra: &[String], cmd: &[&str]) -> std::process::Command {
    let mut c = common::unotify();
    c.args(cli(r)).args(extra).arg("--").args(cmd);
    c
}

/// The stdout of a run that exited 0, printed after `label`.
fn succeeded(out: &std::process::Output, label: &str) -> String {
    let text = common::stdout_of(out);
    println!("{label}{text}");
    assert!(
        out.status.success(),
        "{label}{text}{}",
        common::stderr_of(out)
    );
    text
}

/// Prints what it sees of itself; `again` execs `/proc/self/exe`.
const SELF_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        char *a[] = {"renamed", "from-exe", 0};
        execv("/proc/self/exe", a);
        perror("execv");
        return 1;
    }
    char exe[512] = {0};
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) strcpy(exe, "?");
    printf("%s argv0=%s execfn=%s exe=%s\n", argc > 1 ? argv[1] : "-", argv[0],
           (const char *)getauxval(AT_EXECFN), exe);
    return 0;
}
"#;

fn place(r: &Rootfs, from: &Path, to: &str) {
    let dest = r.root.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).expect("mkdir");
    std::fs::copy(from, &dest).expect("copy into the rootfs");
}

/// Writes `bytes` as the executable `/work/NAME` of the rootfs.
fn work_exe(r: &Rootfs, name: &str, bytes: &[u8]) {
    let p = r.root.join("work").join(name);
    std::fs::write(&p, bytes).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A static program of the rootfs that prints [`OUTSIDE`], as `/work/NAME`.
fn marker_exe(r: &Rootfs, name: &str) {
    let marker = common::marker_program("chroot_loader_outside", OUTSIDE);
    work_exe(r, name, &std::fs::read(marker).expect("read"));
}

#[test]
fn programs_run_with_the_views_own_loader() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "own loader");
    let r = rootfs();
    // Linked against the host's loader path, which is the rootfs's copy.
    place(
        &r,
        &common::build_c("loader_self", SELF_C, &[]),
        "/work/prog",
    );
    // A loader only the view has.
    let only = common::build_c(
        "loader_self_view_only",
        SELF_C,
        &["-Wl,--dynamic-linker=/opt/ld/ld-view.so.2"],
    );
    place(&r, &only, "/opt/bin/viewld");
    let script = r.root.join("work/script");
    std::fs::write(&script, "#!/bin/sh\necho \"script $0 [$1]\"\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let proj = r.root.join("work/proj");
    common::c_project(&proj, 4);
    let cmd = "cd /work && ./prog a && ./prog again && ./script 'x y' && /opt/bin/viewld b \
               && PATH=/opt/bin:$PATH viewld c \
               && (cd proj && make -j4 >/dev/null && ./prog) \
               && python3 -c \"import subprocess; print(subprocess.run(['/work/prog', 'py'], capture_output=True, text=True).stdout.strip())\"";
    let out = in_view(&r, &[], &["/bin/sh", "-c", cmd])
        .output()
        .expect("start unotify");
    assert_eq!(common::stderr_of(&out), "", "the programs printed errors");
    assert_eq!(
        common::stdout_of(&out),
        format!(
            "a argv0=./prog execfn=./prog exe=/work/prog\n\
             from-exe argv0=renamed execfn=/proc/self/exe exe=/work/prog\n\
             script ./script [x y]\n\
             b argv0=/opt/bin/viewld execfn=/opt/bin/viewld exe=/opt/bin/viewld\n\
             c argv0=viewld execfn=/opt/bin/viewld exe=/opt/bin/viewld\n\
             sum={}\n\
             py argv0=/work/prog execfn=/work/prog exe=/work/prog\n",
            common::c_project_sum(4)
        )
    );
    assert!(out.status.success());
}

/// The mark of the program that stands for a file outside the view (it
/// runs as an ELF interpreter as well).
const OUTSIDE: &str = "OUTSIDE-LOADER-RAN";

/// In the view: `argv[1]` the directory holding the interpreter `ld.so`
/// (a copy of the loader kept as `ld.real`), `argv[2]` the program naming
/// it, `argv[3]` the rounds. A thread swaps `ld.so` between the loader and
/// symlinks that reach, on the host, the outside program; the main thread
/// runs the program and counts what ran.
const ATTACK_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static const char *dir;
static volatile int stop;
static void *swapper(void *arg) {
    char so[512], t1[512], t2[512], real[512], abs_link[600];
    (void)arg;
    snprintf(so, sizeof so, "%s/ld.so", dir);
    snprintf(t1, sizeof t1, "%s/t1", dir);
    snprintf(t2, sizeof t2, "%s/t2", dir);
    snprintf(real, sizeof real, "%s/ld.real", dir);
    /* On the host this names the outside program; `..` past the root. */
    snprintf(abs_link, sizeof abs_link, "/../../../..%s/marker", dir);
    for (unsigned i = 0; !stop; i++) {
        unlink(t1);
        if (symlink(i % 2 ? abs_link : "marker", t1) == 0) rename(t1, so);
        unlink(t2);
        if (link(real, t2) == 0) rename(t2, so);
    }
    return 0;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    dir = argv[1];
    int n = atoi(argv[3]), outside = 0, ran = 0, refused = 0;
    pthread_t t;
    if (pthread_create(&t, 0, swapper, 0)) return 2;
    for (int i = 0; i < n; i++) {
        char b[256];
        int st;
        if (run_child(argv[2], b, &st)) return 2;
        if (strstr(b, "OUTSIDE-LOADER-RAN")) outside++;
        else if (strstr(b, "PROGRAM-RAN")) ran++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 100) refused++;
    }
    stop = 1;
    pthread_join(t, 0);
    printf("outside %d\nran %d\nrefused %d\n", outside, ran, refused);
    return 0;
}
"#;

/// The count `name N` in the attack's report.
fn count(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

#[test]
fn an_interpreter_path_swapped_by_a_thread_never_loads_a_host_file() {
    let _w = common::watchdog(std::time::Duration::from_secs(180), "loader swap attack");
    let r = rootfs();
    // The interpreter's path: on the host the outside program, in the view
    // the loader (swapped by the attack).
    let host_dir = common::artefact_dir().join("chroot_loader_attack");
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    let outside = common::marker_program("chroot_loader_outside", OUTSIDE);
    for name in ["ld.so", "marker"] {
        let at = host_dir.join(name);
        if !at.exists() {
            let tmp = host_dir.join(format!("{name}.{}", std::process::id()));
            std::fs::copy(&outside, &tmp).expect("copy");
            std::fs::rename(&tmp, &at).expect("rename");
        }
    }
    let flag = format!("-Wl,--dynamic-linker={}/ld.so", host_dir.display());
    let prog = common::build_c(
        "chroot_loader_prog",
        "#include <stdio.h>\nint main(void) { puts(\"PROGRAM-RAN\"); return 0; }\n",
        &[&flag],
    );
    // Bare, the kernel loads the outside program.
    let bare = std::process::Command::new(&prog).output().expect("run");
    assert!(common::stdout_of(&bare).contains(OUTSIDE));
    let view_dir = r.root.join(host_dir.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&view_dir).expect("mkdir");
    std::fs::copy(host_loader(), view_dir.join("ld.so")).expect("copy");
    std::fs::copy(host_loader(), view_dir.join("ld.real")).expect("copy");
    place(&r, &prog, "/work/prog");
    place(
        &r,
        &common::build_c(
            "chroot_loader_attack",
            &format!("{}{ATTACK_C}", common::RUN_CHILD_C),
            &["-pthread"],
        ),
        "/work/attack",
    );
    let d = host_dir.display().to_string();
    let out = in_view(&r, &[], &["/work/attack", &d, "/work/prog", "150"])
        .output()
        .expect("start unotify");
    let text = succeeded(&out, "");
    assert_eq!(
        count(&text, "outside"),
        0,
        "the host's file was loaded: {text}"
    );
    assert!(
        count(&text, "ran") > 0,
        "the view's loader never ran: {text}"
    );
}

/// In the view: execs each of `argv[3..]` (files the kernel cannot load)
/// and `argv[2]` (a program it holds open for writing: `ETXTBSY`, which
/// the kernel finds only when it opens the file) `argv[1]` times and
/// counts the fds it has after each failure beyond those it had before.
const FAILED_EXEC_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static int open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) != -1;
    return n;
}
int main(int argc, char **argv) {
    int busy = open(argv[2], O_WRONLY);
    if (busy < 0) return 2;
    int rounds = atoi(argv[1]), before = open_fds(), leaked = 0, enoexec = 0, txtbsy = 0;
    for (int i = 0; i < rounds; i++) {
        for (int f = 2; f < argc; f++) {
            char *a[] = {argv[f], 0};
            execv(argv[f], a);
            enoexec += errno == ENOEXEC;
            txtbsy += errno == ETXTBSY;
            int now = open_fds();
            if (now > before) leaked += now - before;
        }
    }
    printf("leaked %d\nenoexec %d\ntxtbsy %d\n", leaked, enoexec, txtbsy);
    return 0;
}
"#;

#[test]
fn an_exec_the_kernel_refuses_leaves_no_fd_in_the_program() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "failed exec fds");
    let r = rootfs();
    place(
        &r,
        &common::build_c("chroot_failed_exec", FAILED_EXEC_C, &[]),
        "/work/failed",
    );
    // Neither ELF nor `#!` (a shell runs it itself: its fd table must
    // stay as it was).
    work_exe(&r, "garbage", b"echo no-hash-bang-line\n");
    // An ELF file for another machine.
    let mut elf = std::fs::read(host_loader()).expect("read");
    elf[0x12] = 0x28; // EM_ARM
    elf[0x13] = 0;
    work_exe(&r, "other-machine", &elf);
    // A static program (the view's loader would open a dynamic one for
    // reading only): the kernel refuses it while it is open for writing.
    marker_exe(&r, "busy");
    let cmd = "/work/failed 25 /work/busy /work/garbage /work/other-machine && /work/garbage";
    let out = in_view(&r, &[], &["/bin/sh", "-c", cmd])
        .output()
        .expect("start unotify");
    let text = succeeded(&out, "");
    assert_eq!(count(&text, "enoexec"), 50, "{text}");
    assert_eq!(count(&text, "txtbsy"), 25, "{text}");
    assert_eq!(count(&text, "leaked"), 0, "fds left open: {text}");
    assert!(text.ends_with("no-hash-bang-line\n"), "{text}");
}

/// In the view: a child execs `argv[2]` (a program held open for writing:
/// `ETXTBSY`, each a re-issued exec whose added fd is closed after its
/// failure) until a sibling has hit it `argv[1]` times with `argv[3]`
/// (`trap`: `kill(SIGTRAP)`, counted by the child's handler; `stop`:
/// `SIGSTOP`, seen by the parent's `waitpid(WUNTRACED)`, which continues
/// it), each time waiting up to 5 s for it to be seen (the `SIGTRAP`
/// handler set before the child is forked, so no trap can come before it).
/// Reports the signals never seen, the fds the child has after a failure
/// beyond those it had before, and the signal that killed the child
/// (`killed`: 0 if none; the sibling stops waiting then).
const SIGNALLED_EXEC_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int *shared; /* traps, stops, done, leaked, lost, other, execs, killed */
static void on_trap(int s) { (void)s; __atomic_add_fetch(&shared[0], 1, __ATOMIC_SEQ_CST); }
static int open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) != -1;
    return n;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 2;
    int busy = open(argv[2], O_WRONLY), rounds = atoi(argv[1]);
    int stop = strcmp(argv[3], "stop") == 0;
    if (busy < 0) return 2;
    /* Before the fork: the child has its handler before `s` can hit it
       (a trap sent first would kill it, and `s` wait for it in vain). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trap;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTRAP, &sa, 0);
    pid_t c = fork();
    if (c == 0) {
        int before = open_fds(), leaked = 0, other = 0;
        while (!shared[2]) {
            char *a[] = {argv[2], 0};
            execv(argv[2], a);
            other += errno != ETXTBSY;
            shared[6]++;
            int now = open_fds();
            if (now > before) leaked += now - before, before = now;
        }
        shared[3] = leaked;
        shared[5] = other;
        _exit(0);
    }
    pid_t s = fork();
    if (s == 0) {
        int idx = stop ? 1 : 0, lost = 0;
        for (int i = 0; i < rounds; i++) {
            usleep((i * 7919) % 1500);
            int seen = __atomic_load_n(&shared[idx], __ATOMIC_SEQ_CST);
            kill(c, stop ? SIGSTOP : SIGTRAP);
            int t = 0;
            while (__atomic_load_n(&shared[idx], __ATOMIC_SEQ_CST) == seen && t < 25000 && !shared[7])
                usleep(200), t++;
            lost += t == 25000;
            if (shared[7]) break; /* the child is gone: nothing comes any more */
        }
        shared[4] = lost;
        shared[2] = 1;
        _exit(0);
    }
    for (;;) {
        int st;
        if (waitpid(c, &st, WUNTRACED) < 0) break;
        if (!WIFSTOPPED(st)) {
            __atomic_store_n(&shared[7], WIFSIGNALED(st) ? WTERMSIG(st) : 0, __ATOMIC_SEQ_CST);
            break;
        }
        __atomic_add_fetch(&shared[1], 1, __ATOMIC_SEQ_CST);
        kill(c, SIGCONT);
    }
    waitpid(s, 0, 0);
    printf("lost %d\nleaked %d\nother %d\nexecs %d\nkilled %d\n", shared[4], shared[3], shared[5], shared[6],
           shared[7]);
    return 0;
}
"#;

/// A stop or a `SIGTRAP` sent by a process that comes while the fd added
/// for a re-issued exec that failed is closed (the task made to run
/// `close`, one step) is kept, and the close is made all the same: a
/// sibling signals a child that execs a file the kernel refuses
/// (`ETXTBSY`) in a bounded loop; no signal is lost, no fd left.
#[test]
fn redteam_signals_during_the_close_after_a_failed_reissue_are_kept() {
    let _w = common::watchdog(std::time::Duration::from_secs(240), "signalled close");
    let r = rootfs();
    place(
        &r,
        &common::build_c("chroot_signalled_exec", SIGNALLED_EXEC_C, &[]),
        "/work/signalled",
    );
    marker_exe(&r, "busy");
    for mode in ["trap", "stop"] {
        let out = in_view(&r, &[], &["/work/signalled", "60", "/work/busy", mode])
            .output()
            .expect("start unotify");
        let text = succeeded(&out, &format!("{mode}: "));
        assert_eq!(count(&text, "other"), 0, "{mode}: {text}");
        assert_eq!(count(&text, "lost"), 0, "{mode}: signals lost: {text}");
        assert_eq!(count(&text, "leaked"), 0, "{mode}: fds left open: {text}");
        assert_eq!(
            count(&text, "killed"),
            0,
            "{mode}: the child was killed: {text}"
        );
    }
}

/// In the view: a child `E` execs `argv[2]` (a program it holds open for
/// writing: `ETXTBSY`, each a re-issued exec whose added fd is closed
/// after its failure, by one step of `E` running `close`) until a process
/// `S` has sent it `argv[1]` `SIGTRAP`s, by turns with `kill` and with
/// `tgkill` (each aimed at the moment `E` leaves a traced stop, as when
/// its close is stepped, and waited for until `E`'s handler saw it, up to
/// 5 s), while a thread of
/// this process keeps sending `E` `SIGSTOP` and `SIGCONT`, and `O`, a
/// process sharing `E`'s fd table (`CLONE_FILES`: the exec freeze stops
/// the tasks sharing `E`'s memory, not its files), keeps taking the lowest
/// free fd number (`dup` of a file whose offset is 4242) and checks it
/// still holds that file: a close made twice takes it from under `O`. `E`
/// makes its system calls slow to enter (stacked classic BPF filters that
/// allow everything, as any program may install), which widens the window
/// in which a signal comes while the close runs. Reports the fds taken
/// from `O` (`stolen`), the `SIGTRAP`s made by the kernel that `E` got
/// (`ktraps`), `S`'s traps never seen (`lost`: sent by `kill`;
/// `tlost`: by `tgkill`), execs that failed
/// otherwise than `ETXTBSY` (`other`).
const DOUBLE_CLOSE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
/* done, stolen, ktraps, other, execs, dups, utraps, lost, tlost, e gone */
static volatile int *shared;
static pid_t e;
static void on_trap(int s, siginfo_t *si, void *u) {
    (void)s, (void)u;
    __atomic_add_fetch(&shared[si->si_code > 0 ? 2 : 6], 1, __ATOMIC_SEQ_CST);
}
static void *stopper(void *arg) {
    (void)arg;
    unsigned r = 1;
    while (!__atomic_load_n(&shared[0], __ATOMIC_SEQ_CST)) {
        r = r * 1103515245 + 12345;
        usleep(200 + (r >> 16) % 800);
        kill(e, SIGSTOP);
        usleep(20 + (r >> 8) % 60);
        kill(e, SIGCONT);
    }
    return 0;
}
static char state(int fd) {
    char b[512];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    if (n <= 0) return 0;
    b[n] = 0;
    char *p = strrchr(b, ')');
    return p && p[1] ? p[2] : 0;
}
static void slow_syscalls(void) {
    static struct sock_filter f[4000];
    for (int i = 0; i < 3999; i++) f[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
    f[3999] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog p = {4000, f};
    for (int i = 0; i < 7; i++)
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p) != 0) _exit(3);
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 2;
    int rounds = atoi(argv[1]);
    /* Before the fork: `E` has its handler before `S` can hit it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGTRAP, &sa, 0);
    e = fork();
    if (e == 0) {
        int busy = open(argv[2], O_WRONLY);
        int base = open("/tmp/double-close-mark", O_RDWR | O_CREAT, 0600);
        if (busy < 0 || base < 0 || lseek(base, 4242, SEEK_SET) != 4242) _exit(2);
        pid_t o = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        if (o == 0) {
            while (!__atomic_load_n(&shared[0], __ATOMIC_SEQ_CST)) {
                int n = dup(base);
                if (n < 0) continue;
                shared[5]++;
                int ok = 1;
                for (int k = 0; k < 20 && ok; k++) ok = lseek(n, 0, SEEK_CUR) == 4242;
                if (!ok) {
                    /* closed under us (and maybe reused): not ours to close */
                    __atomic_add_fetch(&shared[1], 1, __ATOMIC_SEQ_CST);
                    continue;
                }
                close(n);
            }
            _exit(0);
        }
        slow_syscalls();
        while (!__atomic_load_n(&shared[0], __ATOMIC_SEQ_CST)) {
            char *a[] = {argv[2], 0};
            execv(argv[2], a);
            shared[3] += errno != ETXTBSY;
            shared[4]++;
        }
        waitpid(o, 0, 0);
        _exit(0);
    }
    pid_t s = fork();
    if (s == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", e);
        int fd = open(path, O_RDONLY);
        if (fd < 0) _exit(2);
        int lost = 0, tlost = 0;
        for (int i = 0; i < rounds; i++) {
            int spins = 0;
            while (state(fd) != 't' && spins < 200000) spins++;
            while (state(fd) == 't' && spins < 400000) spins++;
            int seen = __atomic_load_n(&shared[6], __ATOMIC_SEQ_CST);
            if (i & 1)
                syscall(SYS_tgkill, e, e, SIGTRAP);
            else
                kill(e, SIGTRAP);
            int t = 0;
            while (__atomic_load_n(&shared[6], __ATOMIC_SEQ_CST) == seen && t < 25000 && !shared[9])
                usleep(200), t++;
            if (t == 25000) {
                if (i & 1) tlost++; else lost++;
            }
            if (shared[9]) break; /* E is gone (its status says how) */
        }
        shared[7] = lost;
        shared[8] = tlost;
        __atomic_store_n(&shared[0], 1, __ATOMIC_SEQ_CST);
        _exit(0);
    }
    pthread_t t;
    pthread_create(&t, 0, stopper, 0);
    int st = 0;
    waitpid(e, &st, 0);
    __atomic_store_n(&shared[9], 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&shared[0], 1, __ATOMIC_SEQ_CST);
    waitpid(s, 0, 0);
    pthread_join(t, 0);
    printf("status %d\nstolen %d\nktraps %d\nlost %d\ntlost %d\nother %d\nexecs %d\ndups %d\n",
           st, shared[1], shared[2], shared[7], shared[8], shared[3], shared[4], shared[5]);
    return 0;
}
"#;

/// A close made after a failed re-issued exec runs exactly once, the trap
/// of its step is never delivered, and a signal sent to the process while
/// it is stepped is (see [`DOUBLE_CLOSE_C`]): no fd of the process sharing
/// the table is closed under it, no `SIGTRAP` made by the kernel reaches
/// the program, none sent by `kill` is lost, every exec fails `ETXTBSY`,
/// the program is not killed. (A `SIGTRAP` a thread aims at the task with
/// `tgkill` while the step's trap is pending is merged with it by the
/// kernel, standard signals do not queue, and goes with it: `tlost` is
/// reported, not checked; README, chroot limits.)
#[test]
fn redteam_a_close_stepped_through_signals_and_stops_runs_once() {
    let _w = common::watchdog(std::time::Duration::from_secs(240), "double close");
    let r = rootfs();
    place(
        &r,
        &common::build_c("chroot_double_close", DOUBLE_CLOSE_C, &["-pthread"]),
        "/work/double",
    );
    marker_exe(&r, "busy");
    let out = in_view(&r, &[], &["/work/double", "200", "/work/busy"])
        .output()
        .expect("start unotify");
    let text = succeeded(&out, "");
    assert_eq!(count(&text, "status"), 0, "E was killed: {text}");
    assert_eq!(count(&text, "other"), 0, "{text}");
    assert_eq!(count(&text, "stolen"), 0, "fds closed twice: {text}");
    assert_eq!(count(&text, "ktraps"), 0, "step traps delivered: {text}");
    assert_eq!(count(&text, "lost"), 0, "signals lost: {text}");
}

/// In the view: execs the script `argv[2]` (re-issued: the kernel's `#!`
/// step is made by the supervisor, whose argv is written on the caller's
/// stack) `argv[1]` times by a raw `execve` made with its stack pointer
/// near the start of a one-page mapping: the rewrite finds no room and
/// is not made, after the script's fd was added. Counts the fds it has
/// after each failure beyond those it had before, and execs that did not
/// fail `EACCES`.
const NO_ROOM_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
extern char **environ;
static int open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) != -1;
    return n;
}
static long execve_on(void *sp, const char *path, char *const argv[], char *const envp[]) {
    long ret;
    __asm__ volatile("mov %%rsp, %%r12\n\tmov %[sp], %%rsp\n\tsyscall\n\tmov %%r12, %%rsp"
                     : "=a"(ret)
                     : "0"(59L), "D"(path), "S"(argv), "d"(envp), [sp] "r"(sp)
                     : "rcx", "r11", "r12", "memory");
    return ret;
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    char *page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 2;
    int rounds = atoi(argv[1]), before = open_fds(), leaked = 0, other = 0;
    sigset_t all, old;
    sigfillset(&all);
    for (int i = 0; i < rounds; i++) {
        char *a[] = {argv[2], 0};
        sigprocmask(SIG_SETMASK, &all, &old);
        long r = execve_on(page + 64, argv[2], a, environ);
        sigprocmask(SIG_SETMASK, &old, 0);
        other += r != -EACCES;
        int now = open_fds();
        if (now > before) leaked += now - before, before = now;
    }
    printf("leaked %d\nother %d\n", leaked, other);
    return 0;
}
"#;

/// A re-issue whose rewrite cannot be made after its file was added (no
/// room for the script's argv below the caller's stack pointer) leaves no
/// fd in the program: it is closed at the stop where the rewrite failed,
/// and the exec fails `EACCES`. The script then runs as usual.
#[test]
fn redteam_a_rewrite_that_fails_leaves_no_fd_in_the_program() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "no room");
    let r = rootfs();
    place(
        &r,
        &common::build_c("chroot_no_room", NO_ROOM_C, &[]),
        "/work/noroom",
    );
    work_exe(&r, "noroom-script", b"#!/bin/sh\necho script-ran\n");
    let cmd = "/work/noroom 20 /work/noroom-script && /work/noroom-script";
    let out = in_view(&r, &[], &["/bin/sh", "-c", cmd])
        .output()
        .expect("start unotify");
    let text = succeeded(&out, "");
    assert_eq!(count(&text, "other"), 0, "{text}");
    assert_eq!(count(&text, "leaked"), 0, "fds left open: {text}");
    assert!(text.ends_with("script-ran\n"), "{text}");
}

/// A view with `/work/ok` and `/work/held` (static markers) and
/// [`FAILED_EXEC_C`], static, run from its host path, mounted there (its
/// own exec is let through as it is, not re-issued): the view, the
/// `--mount` flags and the program's path.
fn reissue_view() -> (Rootfs, [String; 2], String) {
    let r = rootfs();
    let failed = common::build_c("chroot_failed_exec", FAILED_EXEC_C, &["-static"]);
    let dir = failed.parent().expect("dir").display().to_string();
    let mount = ["--mount".to_owned(), format!("{dir}:{dir}:ro")];
    marker_exe(&r, "ok");
    marker_exe(&r, "held");
    (r, mount, failed.display().to_string())
}

/// Failures of the re-issue made on purpose (`UNOTIFY_TEST_FAULT`, only
/// in this crate's test builds: `src/freeze/fault.rs`): the tracer
/// refusing the re-issue of a seized caller (`reissue-busy`), and a
/// failure after the file was added (`reissue-after-addfd`). Each exec of
/// a program of the view fails `EACCES` and leaves no fd in the program;
/// without the fault the program runs.
#[test]
fn a_reissue_that_fails_leaves_no_fd_in_the_program() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "reissue faults");
    let (r, mount, exe) = reissue_view();
    for fault in ["reissue-busy", "reissue-after-addfd"] {
        let out = in_view(&r, &mount, &[&exe, "20", "/work/held", "/work/ok"])
            .env("UNOTIFY_TEST_FAULT", fault)
            .output()
            .expect("start unotify");
        let text = succeeded(&out, &format!("{fault}: "));
        assert_eq!(count(&text, "leaked"), 0, "{fault}: fds left open: {text}");
        // Neither exec ran: both failed (EACCES), none ETXTBSY or ENOEXEC.
        assert_eq!(count(&text, "txtbsy"), 0, "{fault}: {text}");
        assert_eq!(count(&text, "enoexec"), 0, "{fault}: {text}");
    }
    let out = in_view(&r, &[], &["/work/ok"])
        .output()
        .expect("start unotify");
    assert!(
        common::stdout_of(&out).contains(OUTSIDE),
        "{}",
        common::stderr_of(&out)
    );
}

/// Review: a re-issue whose worker stopped waiting (and answered the call
/// `EACCES`) was still carried out when the tracer came to it: the
/// caller seized again, its files added, its rewrite set for a later
/// stop. A worker that gives up now does so before the tracer takes the
/// request, which then leaves it (`reissue-late`: the worker waits 50 ms,
/// the tracer comes 300 ms late). And a re-issued exec refused by the
/// supervisor itself (its freeze failing: `reissued-freeze-fails`) left
/// the fd added for it open in the program; it is closed at the call's
/// return. Each exec fails, nothing is left open, nothing is taken late.
#[test]
fn a_reissue_given_up_or_refused_leaves_nothing_behind() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "late reissue");
    let (r, mount, exe) = reissue_view();
    for fault in ["reissue-late", "reissued-freeze-fails"] {
        let out = in_view(&r, &mount, &[&exe, "10", "/work/held", "/work/ok"])
            .env("UNOTIFY_TEST_FAULT", fault)
            .env("RUST_LOG", "unotify=debug")
            .output()
            .expect("start unotify");
        let text = common::stdout_of(&out);
        let log = common::stderr_of(&out);
        let taken = log.matches("re-issue taken").count();
        let left = log.matches("gave up on is not made").count();
        println!("{fault}: {text} re-issues taken: {taken}, left: {left}");
        assert!(out.status.success(), "{fault}: {text}{log}");
        assert_eq!(count(&text, "leaked"), 0, "{fault}: fds left open: {text}");
        if fault == "reissue-late" {
            // The tracer came to some of them (20 execs of 50 ms against
            // 300 ms each) and left them.
            assert_eq!(taken, 0, "re-issues taken after their worker gave up");
            assert!(left > 0, "the tracer never came late: {log}");
        }
    }
}

/// Review: once the tracer had taken a re-issue, its worker waited for
/// the outcome without a bound: a tracer that stalled there (a task in
/// an odd stop, the thread blocked) held the worker and the call for
/// ever. The worker now waits as long as for a freeze, then kills the
/// caller before it answers (the tracer's late outcome is dropped: what
/// it added to the task dies with it). `reissue-stall`: the tracer stalls
/// 600 ms after taking, the worker waits 100 ms. Before: the stalled exec
/// went on and ran the program (1 of 1); after, 0: its caller is killed.
#[test]
fn a_reissue_the_tracer_stalls_on_kills_its_caller() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "stalled reissue");
    let (r, mount, exe) = reissue_view();
    let out = in_view(&r, &mount, &[&exe, "1", "/work/held", "/work/ok"])
        .env("UNOTIFY_TEST_FAULT", "reissue-stall")
        .output()
        .expect("start unotify");
    let text = common::stdout_of(&out);
    let log = common::stderr_of(&out);
    println!("{text}{log}");
    let ran = text.matches(OUTSIDE).count();
    assert_eq!(ran, 0, "a stalled re-issue ran its program: {text}{log}");
    assert!(
        log.contains("did not answer within"),
        "the caller was not killed: {log}"
    );
    assert!(!out.status.success(), "{text}{log}");
}
