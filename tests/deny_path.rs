//! Path denial end to end: a C program tries to reach denied files every
//! way it can (directly, `..`, symlinks, an existing hard link, relative
//! paths, dirfds, `openat2`, rename, link, symlink, exec, unlink) and prints
//! what each call returned; the tests check the printed results and the
//! files from outside.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use unotify::paths::DeniedPaths;
use unotify::{Command, Sandbox, Stdio};

/// `pathops OP ARG... [, OP ARG...]`: runs each operation and prints one
/// line per operation: `ok:<detail>` or `err:<errno>`.
const PATHOPS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

struct how { uint64_t flags, mode, resolve; };

static void report_fd(int fd) {
    if (fd < 0) { printf("err:%d\n", errno); return; }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) { printf("err:read%d\n", errno); close(fd); return; }
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    printf("ok:%s\n", buf);
    close(fd);
}

static void report(int r) {
    if (r < 0) printf("err:%d\n", errno); else printf("ok:\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ) {
        const char *op = argv[i++];
        if (!strcmp(op, "read")) {
            report_fd(open(argv[i++], O_RDONLY | O_CLOEXEC));
        } else if (!strcmp(op, "sysopen")) {
#ifdef SYS_open
            report_fd(syscall(SYS_open, argv[i++], O_RDONLY));
#else
            report_fd(openat(AT_FDCWD, argv[i++], O_RDONLY));
#endif
        } else if (!strcmp(op, "openat2")) {
            struct how h = { O_RDONLY, 0, 0 };
            report_fd(syscall(SYS_openat2, AT_FDCWD, argv[i++], &h, sizeof h));
        } else if (!strcmp(op, "dirread")) {
            int d = open(argv[i++], O_RDONLY | O_DIRECTORY);
            if (d < 0) { printf("err:dir%d\n", errno); i++; continue; }
            report_fd(openat(d, argv[i++], O_RDONLY));
            close(d);
        } else if (!strcmp(op, "opendir")) {
            int d = open(argv[i++], O_RDONLY | O_DIRECTORY);
            report(d);
            if (d >= 0) close(d);
        } else if (!strcmp(op, "chdir")) {
            report(chdir(argv[i++]));
        } else if (!strcmp(op, "rename")) {
            report(rename(argv[i], argv[i + 1])); i += 2;
        } else if (!strcmp(op, "link")) {
            report(link(argv[i], argv[i + 1])); i += 2;
        } else if (!strcmp(op, "symlink")) {
            report(symlink(argv[i], argv[i + 1])); i += 2;
        } else if (!strcmp(op, "fdflags")) {
            /* fd flags and status flags of opens with and without O_CLOEXEC / O_APPEND */
            const char *p = argv[i++];
            int a = open(p, O_RDONLY), b = open(p, O_RDONLY | O_CLOEXEC), c = open(p, O_WRONLY | O_APPEND);
            if (a < 0 || b < 0 || c < 0) { printf("err:%d\n", errno); continue; }
            printf("ok:%d%d%d%d\n", fcntl(a, F_GETFD) & FD_CLOEXEC, fcntl(b, F_GETFD) & FD_CLOEXEC,
                   (fcntl(c, F_GETFL) & O_APPEND) != 0, (fcntl(c, F_GETFL) & O_ACCMODE) == O_WRONLY);
            close(a); close(b); close(c);
        } else if (!strcmp(op, "truncate")) {
            report(truncate(argv[i++], 0));
        } else if (!strcmp(op, "creat")) {
            int fd = creat(argv[i++], 0644);
            report(fd);
            if (fd >= 0) close(fd);
        } else if (!strcmp(op, "unlink")) {
            report(unlink(argv[i++]));
        } else if (!strcmp(op, "write")) {
            int fd = open(argv[i++], O_WRONLY | O_TRUNC);
            if (fd < 0) { printf("err:%d\n", errno); i++; continue; }
            const char *s = argv[i++];
            report(write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1);
            close(fd);
        } else if (!strcmp(op, "create")) {
            /* create PATH MODE(octal) UMASK(octal) TEXT */
            const char *p = argv[i++];
            mode_t mode = strtol(argv[i++], 0, 8);
            umask(strtol(argv[i++], 0, 8));
            int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
            if (fd < 0) { printf("err:%d\n", errno); i++; continue; }
            const char *s = argv[i++];
            report(write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1);
            close(fd);
        } else if (!strcmp(op, "exec")) {
            const char *p = argv[i++];
            pid_t pid = fork();
            if (pid == 0) {
                char *args[] = { (char *)p, NULL };
                char *env[] = { NULL };
                execve(p, args, env);
                _exit(errno);
            }
            int st;
            waitpid(pid, &st, 0);
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) printf("ok:ran\n");
            else printf("err:%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        } else if (!strcmp(op, "wait")) {
            /* wait for a line on stdin */
            char c;
            while (read(0, &c, 1) == 1 && c != '\n') {}
            printf("ok:\n");
        } else {
            printf("bad op %s\n", op);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
"#;

fn pathops() -> PathBuf {
    common::build_c("pathops", PATHOPS_C, &[])
}

/// A directory tree for the tests:
/// `secret` (denied), `public`, `sub/`, `other/hardlink` (a hard link to
/// `secret` made before the sandbox starts), `abs_link` and `sub/rel_link`
/// (symlinks to `secret`), `ddir/inner` (in a denied directory).
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tree { dir };
        std::fs::write(t.p("secret"), "SECRET\n").unwrap();
        std::fs::write(t.p("public"), "PUBLIC\n").unwrap();
        std::fs::create_dir(t.p("sub")).unwrap();
        std::fs::create_dir(t.p("other")).unwrap();
        std::fs::hard_link(t.p("secret"), t.p("other/hardlink")).unwrap();
        std::os::unix::fs::symlink(t.p("secret"), t.p("abs_link")).unwrap();
        std::os::unix::fs::symlink("../secret", t.p("sub/rel_link")).unwrap();
        std::fs::create_dir(t.p("ddir")).unwrap();
        std::fs::write(t.p("ddir/inner"), "INNER\n").unwrap();
        std::os::unix::fs::symlink(t.p("ddir"), t.p("ddir_link")).unwrap();
        t
    }

    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_owned()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs `pathops` with `ops` under a sandbox denying `deny`; returns its
/// output lines.
fn run(deny: &[String], ops: &[String]) -> Vec<String> {
    let mut b = Sandbox::builder();
    for d in deny {
        b = b.deny_path(d);
    }
    run_in(b.build().expect("build sandbox"), ops)
}

fn run_in(sandbox: Sandbox, ops: &[String]) -> Vec<String> {
    let _wd = common::watchdog(Duration::from_secs(60), "pathops");
    let mut child = sandbox
        .spawn(Command::new(pathops()).args(ops).stdout(Stdio::Piped))
        .expect("spawn pathops");
    let out = common::read_all(&mut child.stdout);
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "pathops {ops:?} ended with {status:?}; output:\n{out}"
    );
    out.lines().map(str::to_owned).collect()
}

macro_rules! ops {
    ($($a:expr),* $(,)?) => { [$($a.to_string()),*] };
}

const EACCES: &str = "err:13";

#[test]
fn direct_dotdot_symlinks_hardlink() {
    let t = Tree::new();
    let out = run(
        &[t.p("secret")],
        &ops![
            "read",
            t.p("secret"),
            "read",
            t.p("public"),
            "sysopen",
            t.p("secret"),
            "read",
            t.p("sub/../secret"),
            "read",
            format!("{}/./sub//..//secret", t.path().display()),
            "read",
            t.p("abs_link"),
            "read",
            t.p("sub/rel_link"),
            "read",
            t.p("other/hardlink"),
            "sysopen",
            t.p("public"),
        ],
    );
    assert_eq!(
        out,
        [EACCES, "ok:PUBLIC", EACCES, EACCES, EACCES, EACCES, EACCES, EACCES, "ok:PUBLIC"],
        "direct, public, open(2), `..`, messy path, absolute symlink, relative symlink, hard link, public via open(2)"
    );
    // Nothing was changed.
    assert_eq!(std::fs::read_to_string(t.p("secret")).unwrap(), "SECRET\n");
}

#[test]
fn relative_paths_dirfds_and_openat2() {
    let t = Tree::new();
    let out = run(
        &[t.p("secret")],
        &ops![
            "chdir",
            t.p("sub"),
            "read",
            "../secret",
            "read",
            "rel_link",
            "read",
            "../public",
            "chdir",
            t.p(""),
            "read",
            "secret",
            "read",
            "./other/hardlink",
            "dirread",
            t.p(""),
            "secret",
            "dirread",
            t.p(""),
            "public",
            "dirread",
            t.p("sub"),
            "../secret",
            "dirread",
            t.p("other"),
            "hardlink",
            "openat2",
            t.p("secret"),
            "openat2",
            t.p("sub/rel_link"),
            "openat2",
            t.p("public"),
        ],
    );
    assert_eq!(
        out,
        [
            "ok:",
            EACCES,
            EACCES,
            "ok:PUBLIC",
            "ok:",
            EACCES,
            EACCES,
            EACCES,
            "ok:PUBLIC",
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            "ok:PUBLIC",
        ]
    );
}

#[test]
fn rename_link_symlink_unlink_write() {
    let t = Tree::new();
    std::fs::write(t.p("public2"), "PUBLIC2\n").unwrap();
    std::fs::write(t.p("scratch"), "SCRATCH\n").unwrap();
    let out = run(
        &[t.p("secret")],
        &ops![
            "rename",
            t.p("secret"),
            t.p("moved"),
            "rename",
            t.p("other/hardlink"),
            t.p("moved2"),
            "rename",
            t.p("public2"),
            t.p("secret"),
            "rename",
            t.p("abs_link"),
            t.p("moved3"),
            "link",
            t.p("secret"),
            t.p("newlink"),
            "link",
            t.p("other/hardlink"),
            t.p("newlink2"),
            "symlink",
            t.p("secret"),
            t.p("sl_abs"),
            "symlink",
            "secret",
            t.p("sl_rel"),
            "symlink",
            "../secret",
            t.p("sub/sl_rel2"),
            "unlink",
            t.p("secret"),
            "unlink",
            t.p("other/hardlink"),
            "write",
            t.p("secret"),
            "PWNED",
            "creat",
            t.p("secret"),
            "truncate",
            t.p("secret"),
            "truncate",
            t.p("other/hardlink"),
            // Allowed neighbours still work.
            "rename",
            t.p("public2"),
            t.p("public3"),
            "link",
            t.p("public3"),
            t.p("public4"),
            "symlink",
            "public3",
            t.p("sl_public"),
            "read",
            t.p("sl_public"),
            "unlink",
            t.p("scratch"),
        ],
    );
    assert_eq!(
        out,
        [
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            "ok:",
            "ok:",
            "ok:",
            "ok:PUBLIC2",
            "ok:",
        ]
    );
    assert_eq!(std::fs::read_to_string(t.p("secret")).unwrap(), "SECRET\n");
    assert_eq!(
        std::fs::read_to_string(t.p("other/hardlink")).unwrap(),
        "SECRET\n"
    );
    for gone in [
        "moved",
        "moved2",
        "moved3",
        "newlink",
        "newlink2",
        "sl_abs",
        "sl_rel",
        "sub/sl_rel2",
        "scratch",
        "public2",
    ] {
        assert!(
            std::fs::symlink_metadata(t.p(gone)).is_err(),
            "{gone} should not exist"
        );
    }
    assert!(
        std::fs::symlink_metadata(t.p("abs_link")).is_ok(),
        "abs_link stays"
    );
    assert_eq!(
        std::fs::read_to_string(t.p("public4")).unwrap(),
        "PUBLIC2\n"
    );
    assert_eq!(
        std::fs::read_link(t.p("sl_public")).unwrap(),
        Path::new("public3")
    );
}

#[test]
fn exec_of_a_denied_executable() {
    let t = Tree::new();
    std::fs::copy("/bin/true", t.p("denied_exe")).unwrap();
    std::fs::copy("/bin/true", t.p("public_exe")).unwrap();
    std::os::unix::fs::symlink(t.p("denied_exe"), t.p("exe_link")).unwrap();
    let out = run(
        &[t.p("denied_exe")],
        &ops![
            "exec",
            t.p("denied_exe"),
            "exec",
            t.p("exe_link"),
            "exec",
            t.p("public_exe"),
            "read",
            t.p("denied_exe")
        ],
    );
    assert_eq!(out, [EACCES, EACCES, "ok:ran", EACCES]);
}

#[test]
fn creating_files_honours_mode_and_umask() {
    let t = Tree::new();
    let out = run(
        &[t.p("secret"), t.p("ddir")],
        &ops![
            "create",
            t.p("sub/a"),
            "640",
            "022",
            "AAA",
            "create",
            t.p("sub/b"),
            "666",
            "077",
            "BBB",
            "create",
            t.p("sub/c"),
            "777",
            "000",
            "CCC",
            "create",
            t.p("sub/a"),
            "600",
            "000",
            "again",
            "create",
            t.p("ddir/new"),
            "644",
            "022",
            "NEW",
            "read",
            t.p("sub/a"),
        ],
    );
    assert_eq!(out, ["ok:", "ok:", "ok:", "err:17", EACCES, "ok:AAA"]);
    let mode = |p: &str| std::fs::metadata(t.p(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("sub/a"), 0o640);
    assert_eq!(mode("sub/b"), 0o600);
    assert_eq!(mode("sub/c"), 0o777);
    assert_eq!(std::fs::read_to_string(t.p("sub/b")).unwrap(), "BBB");
    assert!(
        std::fs::symlink_metadata(t.p("ddir/new")).is_err(),
        "nothing created in the denied directory"
    );
}

#[test]
fn a_denied_directory_denies_what_is_beneath_it() {
    let t = Tree::new();
    std::fs::create_dir(t.p("ddir/deeper")).unwrap();
    std::fs::write(t.p("ddir/deeper/f"), "DEEP\n").unwrap();
    std::fs::write(t.p("ddir/linked"), "LINKED\n").unwrap();
    std::fs::hard_link(t.p("ddir/linked"), t.p("sub/outside_link")).unwrap();
    let out = run(
        &[t.p("ddir")],
        &ops![
            "read",
            t.p("ddir/inner"),
            "read",
            t.p("ddir/deeper/f"),
            "read",
            t.p("ddir_link/inner"),
            "dirread",
            t.p(""),
            "ddir/inner",
            "opendir",
            t.p("ddir"),
            "read",
            t.p("sub/outside_link"),
            "rename",
            t.p("ddir"),
            t.p("ddir2"),
            "rename",
            t.p("public"),
            t.p("ddir/public"),
            "unlink",
            t.p("ddir/inner"),
            "read",
            t.p("public"),
        ],
    );
    assert_eq!(
        out,
        [
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            EACCES,
            "ok:PUBLIC"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(t.p("ddir/inner")).unwrap(),
        "INNER\n"
    );
}

#[test]
fn runtime_deny_and_allow() {
    let t = Tree::new();
    let set = Arc::new(DeniedPaths::new());
    let sandbox = Sandbox::builder()
        .deny_path(t.p("secret"))
        .denied_paths(Arc::clone(&set))
        .build()
        .expect("build");
    let mut child = sandbox
        .spawn(
            Command::new(pathops())
                .args(ops![
                    "read",
                    t.p("public"),
                    "wait",
                    "read",
                    t.p("public"),
                    "read",
                    t.p("secret"),
                    "wait",
                    "read",
                    t.p("public"),
                    "read",
                    t.p("secret"),
                ])
                .stdin(Stdio::Piped)
                .stdout(Stdio::Piped),
        )
        .expect("spawn");
    let _wd = common::watchdog(Duration::from_secs(60), "runtime_deny_and_allow");
    let rx = common::line_reader(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let line = |what: &str| common::next_line(&rx, Duration::from_secs(20), what);
    use std::io::Write;
    assert_eq!(line("first read"), "ok:PUBLIC");
    assert!(set.deny(t.p("public")));
    stdin.write_all(b"\n").unwrap();
    assert_eq!(line("first wait"), "ok:");
    assert_eq!(line("read after deny"), EACCES);
    assert_eq!(line("fixed path"), EACCES);
    assert!(set.allow(t.p("public")));
    assert!(
        !set.allow(t.p("secret")),
        "a path given at build time stays denied"
    );
    stdin.write_all(b"\n").unwrap();
    assert_eq!(line("second wait"), "ok:");
    assert_eq!(line("read after allow"), "ok:PUBLIC");
    assert_eq!(line("fixed path again"), EACCES);
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// One thread flips a path buffer between a public and a denied file while
/// others open it and read the content, for about two seconds.
const TOCTOU_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char buf[4096];
static char pub[4096], den[4096];
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    size_t n = strlen(pub) + 1;
    while (!atomic_load(&stop)) {
        memcpy(buf, den, n);
        memcpy(buf, pub, n);
    }
    return NULL;
}

static long public_reads, secret_reads, errors, other;

static void *opener(void *arg) {
    (void)arg;
    long p = 0, s = 0, e = 0, o = 0;
    while (!atomic_load(&stop)) {
        int fd = open(buf, O_RDONLY);
        if (fd < 0) { e++; continue; }
        char c[16] = {0};
        ssize_t n = read(fd, c, sizeof c - 1);
        close(fd);
        if (n > 0 && !strncmp(c, "PUBLIC", 6)) p++;
        else if (n > 0 && !strncmp(c, "SECRET", 6)) s++;
        else o++;
    }
    __atomic_add_fetch(&public_reads, p, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&secret_reads, s, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&errors, e, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&other, o, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    if (argc > 5 && chdir(argv[5]) != 0) return 4;
    strcpy(pub, argv[1]);
    strcpy(den, argv[2]);
    if (strlen(pub) != strlen(den)) return 3;
    strcpy(buf, pub);
    int openers = atoi(argv[3]);
    pthread_t f, o[8];
    pthread_create(&f, NULL, flipper, NULL);
    for (int i = 0; i < openers; i++) pthread_create(&o[i], NULL, opener, NULL);
    struct timespec ts = { atoi(argv[4]), 0 };
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    pthread_join(f, NULL);
    for (int i = 0; i < openers; i++) pthread_join(o[i], NULL);
    printf("public %ld secret %ld errors %ld other %ld\n", public_reads, secret_reads, errors, other);
    return 0;
}
"#;

#[test]
fn a_thread_rewriting_the_path_never_gets_the_denied_content() {
    let t = Tree::new();
    std::fs::write(t.p("pubfile"), "PUBLIC\n").unwrap();
    std::fs::write(t.p("denfile"), "SECRET\n").unwrap();
    let exe = common::build_c("toctou_open", TOCTOU_C, &["-pthread"]);
    let sandbox = Sandbox::builder()
        .deny_path(t.p("denfile"))
        .build()
        .expect("build");
    let _wd = common::watchdog(Duration::from_secs(60), "toctou");
    // Absolute paths for two seconds, then relative ones (from the working
    // directory) for one.
    let modes = [
        vec![t.p("pubfile"), t.p("denfile"), "2".into(), "2".into()],
        vec![
            "pubfile".into(),
            "denfile".into(),
            "2".into(),
            "1".into(),
            t.p(""),
        ],
    ];
    for args in modes {
        let mut child = sandbox
            .spawn(Command::new(&exe).args(&args).stdout(Stdio::Piped))
            .expect("spawn");
        let out = common::read_all(&mut child.stdout);
        assert!(
            child.wait().unwrap().success(),
            "toctou program {args:?} failed: {out}"
        );
        let nums: Vec<i64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [public, secret, errors, _other] = nums[..] else {
            panic!("unexpected output: {out}");
        };
        eprintln!("toctou {args:?}: {out}");
        assert_eq!(secret, 0, "the denied content was read ({args:?}): {out}");
        assert!(
            public > 100,
            "the public file should be read many times ({args:?}): {out}"
        );
        assert!(
            errors > 0,
            "the denied file should have been hit too ({args:?}): {out}"
        );
    }
}

#[test]
fn without_denied_paths_path_calls_are_not_trapped() {
    let t = Tree::new();
    let sandbox = Sandbox::builder().build().expect("build");
    let mut child = sandbox
        .spawn(
            Command::new(pathops())
                .args(ops!["read", t.p("secret"), "wait"])
                .stdin(Stdio::Piped)
                .stdout(Stdio::Piped),
        )
        .expect("spawn");
    let _wd = common::watchdog(Duration::from_secs(60), "untrapped");
    let rx = common::line_reader(child.stdout.take().unwrap());
    assert_eq!(
        common::next_line(&rx, Duration::from_secs(20), "read"),
        "ok:SECRET"
    );
    let received = child
        .supervisor()
        .and_then(|s| s.stats())
        .map(|s| s.received);
    drop(child.stdin.take());
    assert_eq!(
        common::next_line(&rx, Duration::from_secs(20), "wait"),
        "ok:"
    );
    assert!(child.wait().unwrap().success());
    assert!(
        matches!(received, None | Some(0)),
        "no call should be trapped: {received:?}"
    );
}

/// Everyday shell use keeps working under path denial: `/dev/stdin`,
/// `/dev/null`, `/proc/self` (the task's, not the supervisor's), relative
/// paths, directory listing, a FIFO opened by both ends, and a denied file
/// refused.
#[test]
fn ordinary_programs_keep_working() {
    let t = Tree::new();
    let script = r#"
read line < /dev/stdin; echo "stdin:$line"
echo discard > /dev/null && echo null-ok
while read k v; do [ "$k" = "Pid:" ] && [ "$v" = "$$" ] && echo proc-self-ok; done < /proc/self/status
cd "$1" && cat public && ls sub
mkfifo f && (echo through > f &) && cat f
cat secret 2>/dev/null || echo denied
echo made > created && cat created
"#;
    let sandbox = Sandbox::builder()
        .deny_path(t.p("secret"))
        .build()
        .expect("build");
    let _wd = common::watchdog(Duration::from_secs(60), "shell");
    let mut child = sandbox
        .spawn(
            Command::new("sh")
                .args(["-c", script, "sh", &t.p("")])
                .stdin(Stdio::Piped)
                .stdout(Stdio::Piped),
        )
        .expect("spawn sh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
    }
    let out = common::read_all(&mut child.stdout);
    assert!(child.wait().unwrap().success(), "shell failed: {out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "stdin:hello",
            "null-ok",
            "proc-self-ok",
            "PUBLIC",
            "rel_link",
            "through",
            "denied",
            "made"
        ]
    );
}

/// The injected fd keeps the program's `O_CLOEXEC`, access mode and
/// `O_APPEND`; a missing file and a file in a missing directory give the
/// kernel's errnos.
#[test]
fn flags_and_errnos_are_the_kernels() {
    let t = Tree::new();
    let out = run(
        &[t.p("secret")],
        &ops![
            "fdflags",
            t.p("public"),
            "read",
            t.p("missing"),
            "read",
            t.p("missing/x"),
            "read",
            t.p("public/x"),
            "opendir",
            t.p("public"),
        ],
    );
    assert_eq!(out, ["ok:0111", "err:2", "err:2", "err:20", "err:20"]);
}

/// The supervisor resolves paths itself, so a `/proc/self` it would resolve
/// to its own process (through a symlink of the program's) is refused,
/// while a plain `/proc/self/...`, and one spelled with a `.` (respelled
/// in the program's view since the review of relative `/dev/fd` names),
/// is the task's own; `truncate` of a public file works.
#[test]
fn the_supervisors_own_proc_files_are_never_served() {
    let t = Tree::new();
    std::os::unix::fs::symlink("/proc/self", t.p("me")).unwrap();
    let out = run(
        &[t.p("secret")],
        &ops![
            "read",
            "/proc/./self/status",
            "read",
            t.p("me/status"),
            "read",
            "/proc/self/status",
            "read",
            "/proc/thread-self/status",
            "truncate",
            t.p("public"),
        ],
    );
    assert!(out[0].starts_with("ok:Name:\tpathops"), "{out:?}");
    assert_eq!(out[1], EACCES, "{out:?}");
    assert!(out[2].starts_with("ok:Name:\tpathops"), "{out:?}");
    assert!(out[3].starts_with("ok:Name:\tpathops"), "{out:?}");
    assert_eq!(out[4], "ok:");
    assert_eq!(std::fs::metadata(t.p("public")).unwrap().len(), 0);
}

/// The kernel writes a core dump itself, in the crashing process's working
/// directory: under path denial the program may not dump core, so a crash
/// in a denied directory it changed into leaves nothing there.
#[test]
fn a_crash_in_a_denied_directory_dumps_no_core_there() {
    let src = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int c, char **v) {
    int n = atoi(v[1]), raised = 0, dumped = 0;
    for (int i = 0; i < n; i++) {
        pid_t k = fork();
        if (k == 0) {
            struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
            if (setrlimit(RLIMIT_CORE, &r) == 0) _exit(3);
            struct rlimit h; getrlimit(RLIMIT_CORE, &h);
            r.rlim_cur = r.rlim_max = h.rlim_max;
            setrlimit(RLIMIT_CORE, &r);
            prctl(PR_SET_DUMPABLE, 1);
            if (chdir(v[2]) != 0) _exit(4);
            abort();
        }
        int st;
        waitpid(k, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 3) raised++;
        if (WIFSIGNALED(st) && WCOREDUMP(st)) dumped++;
    }
    printf("raised %d dumped %d\n", raised, dumped);
    return 0;
}
"#;
    let exe = common::build_c("core_in_denied_dir", src, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = dir.path().join("denied");
    std::fs::create_dir(&denied).expect("mkdir");
    std::fs::write(denied.join("inner"), "x").expect("write");
    let sandbox = Sandbox::builder()
        .deny_path(&denied)
        .build()
        .expect("build");
    let (out, status) = common::run_piped(&sandbox, &exe, &["5", denied.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(out.trim(), "raised 0 dumped 0", "{out}");
    let names: Vec<_> = std::fs::read_dir(&denied)
        .expect("list")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        ["inner"],
        "the kernel wrote into the denied directory"
    );
}

/// `unixreach STREAM DGRAM DIR ROUNDS`: connects to the stream socket
/// STREAM, sends to the datagram socket DGRAM (`sendto` and `sendmsg`), and
/// binds a new socket in DIR, ROUNDS times each; prints how many of each
/// got through.
const UNIXREACH_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un addr(const char *p) {
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", p);
    return a;
}

int main(int argc, char **argv) {
    int rounds = atoi(argv[4]), conn = 0, sent = 0, msgs = 0, binds = 0;
    for (int i = 0; i < rounds; i++) {
        struct sockaddr_un s = addr(argv[1]), d = addr(argv[2]);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (void *)&s, sizeof s) == 0) conn++;
        close(fd);
        fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (sendto(fd, "x", 1, MSG_DONTWAIT, (void *)&d, sizeof d) == 1) sent++;
        struct iovec iov = { .iov_base = "y", .iov_len = 1 };
        struct msghdr m = { .msg_name = &d, .msg_namelen = sizeof d, .msg_iov = &iov, .msg_iovlen = 1 };
        if (sendmsg(fd, &m, MSG_DONTWAIT) == 1) msgs++;
        close(fd);
        char name[200];
        snprintf(name, sizeof name, "%s/bound%d", argv[3], i);
        struct sockaddr_un b = addr(name);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(fd, (void *)&b, sizeof b) == 0) { binds++; unlink(name); }
        close(fd);
    }
    printf("connect %d\nsendto %d\nsendmsg %d\nbind %d\n", conn, sent, msgs, binds);
    return 0;
}
"#;

/// Unix sockets beneath a denied directory: `connect`, `sendto`, `sendmsg`
/// (by the path and through a symlink from outside) and `bind` of a new
/// name in it are refused, with and without a network policy; the same
/// program reaches a socket outside.
#[test]
fn unix_sockets_beneath_a_denied_directory_are_out_of_reach() {
    use std::os::unix::net::{UnixDatagram, UnixListener};
    let _wd = common::watchdog(Duration::from_secs(120), "unixreach");
    let exe = common::build_c("unixreach", UNIXREACH_C, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = dir.path().join("denied");
    let open = dir.path().join("open");
    std::fs::create_dir(&denied).unwrap();
    std::fs::create_dir(&open).unwrap();
    std::os::unix::fs::symlink(&denied, dir.path().join("link")).unwrap();
    let mut keep = Vec::new();
    for d in [&denied, &open] {
        keep.push((
            UnixListener::bind(d.join("s")).unwrap(),
            UnixDatagram::bind(d.join("d")).unwrap(),
        ));
    }
    let rounds = "10";
    let counts = |out: &str| -> Vec<(String, u32)> {
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    };
    // The program's arguments for the sockets in `d`.
    let args_in = |d: &Path| {
        let path = |n: &str| d.join(n).to_str().unwrap().to_owned();
        [
            path("s"),
            path("d"),
            d.to_str().unwrap().to_owned(),
            rounds.to_owned(),
        ]
    };
    // Its output, run by the library with `denied` denied.
    let library = |args: &[String]| {
        let sandbox = Sandbox::builder().deny_path(&denied).build().unwrap();
        let (out, _) = common::run_piped(
            &sandbox,
            &exe,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        out
    };
    for spelling in [denied.clone(), dir.path().join("link")] {
        let args = args_in(&spelling);
        let out = library(&args);
        let lib = counts(&out);
        let mut cli = Vec::new();
        for extra in [
            &[][..],
            &["--net-deny", "10.0.0.0/8"],
            &["--net-deny-bind", "8080"],
        ] {
            let mut a = vec!["run", "--deny-path", denied.to_str().unwrap()];
            a.extend_from_slice(extra);
            a.push("--");
            a.push(exe.to_str().unwrap());
            a.extend(args.iter().map(String::as_str));
            let o = common::run_unotify(&a);
            cli.push((extra, counts(&common::stdout_of(&o))));
        }
        eprintln!("{spelling:?}: library {lib:?}, cli {cli:?}");
        assert_eq!(lib.len(), 4, "{out}");
        assert!(
            lib.iter().all(|(_, n)| *n == 0),
            "library: got through: {lib:?}"
        );
        for (extra, c) in cli {
            assert_eq!(c.len(), 4, "{extra:?}");
            assert!(
                c.iter().all(|(_, n)| *n == 0),
                "unotify run {extra:?}: got through: {c:?}"
            );
        }
    }
    // Outside the denied directory all of it works.
    let out = library(&args_in(&open));
    // (Datagrams are sent without waiting: the queue holds ten.)
    let open_counts = counts(&out);
    assert_eq!(open_counts.len(), 4, "{out}");
    assert!(
        open_counts.iter().all(|(_, n)| *n > 0),
        "outside the denied directory: {open_counts:?}"
    );
    drop(keep);
}

/// The clean-up after a bind whose directory changed during the call
/// removes only the socket file the call made: a program flipping a
/// symlink so that its bind lands in an open directory while the re-check
/// looks in a denied one, by the name of a socket already there, must not
/// get the supervisor to remove that socket (it did, as root, within a
/// few hundred rounds).
#[test]
fn a_racing_bind_never_removes_a_socket_already_in_a_denied_directory() {
    let exe = common::build_c(
        "unix_bind_swap",
        include_str!("c/unix_bind_swap.c"),
        &["-pthread"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let denied = base.join("denied");
    std::fs::create_dir_all(base.join("fake/denied")).expect("mkdir");
    std::fs::create_dir(&denied).expect("mkdir");
    let victim = denied.join("victim");
    let _listener = std::os::unix::net::UnixListener::bind(&victim).expect("bind");
    let sandbox = Sandbox::builder().deny_path(&denied).build().unwrap();
    let (out, _) = common::run_piped(&sandbox, &exe, &[base.to_str().unwrap(), "3000"]);
    assert!(out.starts_with("bound "), "{out}");
    assert!(
        std::fs::symlink_metadata(&victim).is_ok(),
        "the socket in the denied directory was removed ({out})"
    );
}

/// A bind racing a symlink flip never makes a socket file in a denied
/// directory: the directory is checked while the path leads to an open one,
/// and the bind (by the path as given, so that the socket keeps its name)
/// may resolve it again while it leads to the denied one. The socket files
/// in the denied directory are counted after thousands of rounds. The
/// program's own flipping thread is slow (its calls are trapped too), so a
/// thread of the test flips the same symlink as well: the supervisor's
/// window is what is attacked.
#[test]
fn a_racing_bind_never_makes_a_socket_in_a_denied_directory() {
    let exe = common::build_c(
        "unix_bind_land",
        include_str!("c/unix_bind_land.c"),
        &["-pthread"],
    );
    // Path denial's own bind, and the network's (which owns `bind` under a
    // network policy).
    for extra in [&[][..], &["--net-deny-bind", "8080"]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        let denied = base.join("denied");
        std::fs::create_dir_all(base.join("fake/denied")).expect("mkdir");
        std::fs::create_dir(&denied).expect("mkdir");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (stop, base) = (stop.clone(), base.clone());
            std::thread::spawn(move || {
                let (l, t) = (base.join("L"), base.join("host-tmp"));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for to in [base.as_path(), &base.join("fake")] {
                        let _ = std::fs::remove_file(&t);
                        let _ = std::os::unix::fs::symlink(to, &t);
                        let _ = std::fs::rename(&t, &l);
                    }
                }
            })
        };
        let mut a = vec!["run", "--deny-path", denied.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.extend(["--", exe.to_str().unwrap(), base.to_str().unwrap(), "4000"]);
        let o = common::run_unotify(&a);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().expect("flipper");
        let out = common::stdout_of(&o);
        assert!(out.starts_with("bound "), "{extra:?}: {o:?}");
        let made = std::fs::read_dir(&denied).expect("read_dir").count();
        eprintln!("{extra:?}: {out} socket files in the denied directory: {made}");
        assert_eq!(
            made, 0,
            "{extra:?}: socket files made in the denied directory"
        );
        let bound: u32 = out["bound ".len()..].trim().parse().expect("count");
        assert!(bound > 0, "{extra:?}: no bind went through");
        // One line for the denial; no warning per racing round.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.lines().count() <= 1, "{extra:?}: {err}");
    }
}

/// A bind by a relative name keeps that name: `getsockname` reports what
/// the program gave (Python's `multiprocessing` hands it on), under path
/// denial as without it.
#[test]
fn a_bound_unix_socket_keeps_its_name_under_path_denial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let script = "import os, socket, sys\n\
        os.chdir(sys.argv[1])\n\
        for p in [sys.argv[1] + '/abs.sock', 'rel.sock']:\n\
        \x20   s = socket.socket(socket.AF_UNIX); s.bind(p); print(s.getsockname())\n";
    let o = common::run_unotify(&[
        "run",
        "--deny-path",
        "/etc/shadow",
        "--",
        "python3",
        "-c",
        script,
        base.to_str().unwrap(),
    ]);
    let out = common::stdout_of(&o);
    assert_eq!(
        out,
        format!("{}/abs.sock\nrel.sock\n", base.display()),
        "{o:?}"
    );
}

/// Path denial traps `connect` and the sends for unix socket paths, through
/// the network's handlers, but refuses no socket family or option that a
/// run without it allows: a netlink diagnostics socket (what `ss` opens) and
/// an `AF_VSOCK` socket open as bare (both were `EAFNOSUPPORT`).
#[test]
fn path_denial_refuses_no_socket_family() {
    let script = "import socket\n\
        for fam, ty, proto in [(socket.AF_NETLINK, socket.SOCK_RAW, 4), (40, socket.SOCK_STREAM, 0)]:\n\
        \x20   try:\n\
        \x20       socket.socket(fam, ty, proto).close(); print('ok', fam)\n\
        \x20   except OSError as e:\n\
        \x20       print('refused', fam, e.errno)\n";
    let bare = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    let bare = String::from_utf8_lossy(&bare.stdout).into_owned();
    assert!(bare.contains("ok 16"), "bare: {bare}");
    let o = common::run_unotify(&[
        "run",
        "--deny-path",
        "/etc/shadow",
        "--",
        "python3",
        "-c",
        script,
    ]);
    let sandboxed = common::stdout_of(&o);
    assert_eq!(sandboxed, bare, "under --deny-path");
}

/// Under path denial alone, a connected send (`sendto` without an address,
/// what `send` makes) names no socket file and runs untrapped: 2000 of
/// them cost no trapped call (each was one before). A send with an
/// address is still checked (`unix_sockets_beneath_a_denied_directory_are_out_of_reach`).
#[test]
fn connected_sends_are_not_trapped_under_path_denial() {
    const SENDS_C: &str = r#"
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void)
{
    int sv[2];
    char c = 'x', r;
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0)
        return 1;
    int ok = 0;
    for (int i = 0; i < 2000; i++)
        if (send(sv[0], &c, 1, 0) == 1 && recv(sv[1], &r, 1, 0) == 1)
            ok++;
    printf("sent %d\n", ok);
    return 0;
}
"#;
    let exe = common::build_c("connected_sends", SENDS_C, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::builder()
        .deny_path(dir.path().join("nothing"))
        .build()
        .expect("build");
    let mut child = sandbox
        .spawn(Command::new(&exe).stdout(Stdio::Piped))
        .expect("spawn");
    let handle = child.supervisor().expect("supervisor");
    let out = common::read_all(&mut child.stdout);
    let received = handle.stats().map_or(u64::MAX, |s| s.received);
    assert!(child.wait().unwrap().success(), "{out}");
    assert_eq!(out.trim(), "sent 2000");
    assert!(received < 200, "{received} trapped calls for 2000 sends");
}

/// A pathname unix bind is decided the same way whoever makes it: path
/// denial's own `bind` handler, or the network's on-behalf `bind` (which
/// owns the call under a bind deny list, port remap or a work directory).
/// Each route is asked to bind sockets in a denied directory, outside the
/// write allow list (with and without a work directory), and in the work
/// directory DIR (where the socket belongs in the layer, never in DIR).
/// The network's route skipped the write allow list (5 of 5 through for
/// each of its routes) before it shared path denial's check and bind.
#[test]
fn every_route_of_a_unix_bind_makes_path_denials_checks() {
    let _wd = common::watchdog(Duration::from_secs(240), "unix bind routes");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let (denied, ok, out, wd, store) = (
        base.join("denied"),
        base.join("ok"),
        base.join("out"),
        base.join("wd"),
        base.join("store"),
    );
    for d in [&denied, &ok, &out, &wd] {
        std::fs::create_dir(d).expect("mkdir");
    }
    const N: usize = 5;
    let script = "import socket, sys\n\
        n = 0\n\
        for i in range(5):\n\
        \x20   s = socket.socket(socket.AF_UNIX)\n\
        \x20   try: s.bind('%s/x%d' % (sys.argv[1], i)); n += 1\n\
        \x20   except OSError: pass\n\
        print('bound', n)\n";
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let lists = ["--fs-system", "-r", &s(&base), "-w", &s(&ok)].map(str::to_owned);
    let workdir = ["--workdir", &s(&wd), "--storage", &s(&store)].map(str::to_owned);
    let keep = ["--on-exit", "keep"].map(str::to_owned);
    // (what, options, where the program binds, where no socket may land)
    let cases: Vec<(&str, Vec<String>, &Path, &Path)> = vec![
        (
            "denied",
            vec!["--deny-path".into(), s(&denied)],
            &denied,
            &denied,
        ),
        ("write list", lists.to_vec(), &out, &out),
        (
            "work directory and write list",
            [&lists[..], &workdir].concat(),
            &out,
            &out,
        ),
        ("work directory", [&workdir[..], &keep].concat(), &wd, &wd),
    ];
    let routes: [&[&str]; 4] = [
        &[],
        &["--net-deny-bind", "8080"],
        &["--port-remap"],
        &["--net-allow", "127.0.0.1:1"],
    ];
    let mut through = Vec::new();
    for (what, opts, target, guarded) in &cases {
        for route in routes {
            let mut a = vec!["run"];
            a.extend(opts.iter().map(String::as_str));
            a.extend_from_slice(route);
            a.extend(["--", "python3", "-c", script]);
            let t = s(target);
            a.push(&t);
            let o = common::run_unotify(&a);
            let stdout = common::stdout_of(&o);
            assert!(stdout.starts_with("bound "), "{what} {route:?}: {o:?}");
            let bound: usize = stdout["bound ".len()..].trim().parse().expect("count");
            let landed = std::fs::read_dir(guarded).expect("read_dir").count();
            if *guarded == wd.as_path() {
                // Bound in the layer, seen as DIR, kept there.
                assert_eq!(bound, N, "{what} {route:?}: {o:?}");
                let in_layer = std::fs::read_dir(store.join("upper")).map_or(0, |r| r.count());
                assert_eq!(in_layer, N, "{what} {route:?}: not in the layer");
                let _ = std::fs::remove_dir_all(&store);
                let _ = std::fs::remove_file(base.join("store.state"));
            }
            for f in std::fs::read_dir(guarded).expect("read_dir") {
                std::fs::remove_file(f.expect("entry").path()).expect("clean");
            }
            let _ = std::fs::remove_dir_all(&store);
            eprintln!("{what} {route:?}: bound {bound}, {landed} in {guarded:?}");
            through.push((what.to_string(), route, landed));
        }
    }
    let total: usize = through.iter().map(|t| t.2).sum();
    assert_eq!(total, 0, "sockets made where they may not be: {through:?}");
}
