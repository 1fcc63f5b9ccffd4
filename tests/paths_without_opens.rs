//! Attacks on path denial through calls that open nothing: metadata calls
//! (modes, owners, times, extended attributes, `file_setattr`) on a denied
//! file or inside a denied directory, `mkdir`/`mknod`/`bind` in a denied
//! directory, scripts whose `#!` interpreter is denied, and a thread that
//! rewrites the path between the check and the call. Each attack runs a
//! bounded number of times under `unotify run --deny-path`; the test counts
//! what got through (the call reached the file: it succeeded, or failed
//! with another error than `EACCES`) and asserts 0. Each attack is first
//! run bare, where it must get through, so that a 0 means something.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `metaattack DIR TRIES`: runs every attack TRIES times against the tree
/// in DIR and prints `name count` lines, `count` being how many tries got
/// through.
const ATTACK_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

static const char *dir;
static int tries;
static char secret[4096], inner[4096], ddir[4096], slink[4096], dlink[4096];

static char *at(const char *name) {
    static char buf[8][4096];
    static int n;
    char *b = buf[n++ % 8];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

/* A try got through if the call reached the file. */
static int through(long r) { return r == 0 || errno != EACCES; }

struct xattr_args { uint64_t value; uint32_t size; uint32_t flags; };
struct file_attr { uint64_t xflags; uint32_t extsize, nextents, projid, cowextsize; };

static long attack(const char *op, const char *p, int i) {
    mode_t m = (i & 1) ? 0640 : 0604;
    if (!strcmp(op, "chmod")) return chmod(p, m);
    if (!strcmp(op, "fchmodat")) return fchmodat(AT_FDCWD, p, m, 0);
    if (!strcmp(op, "fchmodat2")) return syscall(452, AT_FDCWD, p, m, 0);
    if (!strcmp(op, "chown")) return chown(p, getuid(), getgid());
    if (!strcmp(op, "lchown")) return lchown(p, getuid(), getgid());
    if (!strcmp(op, "fchownat")) return fchownat(AT_FDCWD, p, getuid(), getgid(), 0);
    if (!strcmp(op, "utime")) return utime(p, NULL);
    if (!strcmp(op, "utimes")) return utimes(p, NULL);
#ifdef SYS_futimesat
    if (!strcmp(op, "futimesat")) return syscall(SYS_futimesat, AT_FDCWD, p, NULL);
#else
    if (!strcmp(op, "futimesat")) return utimensat(AT_FDCWD, p, NULL, 0);
#endif
    if (!strcmp(op, "utimensat")) return utimensat(AT_FDCWD, p, NULL, 0);
    if (!strcmp(op, "setxattr")) return setxattr(p, "user.attack", "1", 1, 0);
    if (!strcmp(op, "lsetxattr")) return lsetxattr(p, "user.attack", "1", 1, 0);
    if (!strcmp(op, "removexattr")) return removexattr(p, "user.attack");
    if (!strcmp(op, "lremovexattr")) return lremovexattr(p, "user.attack");
    if (!strcmp(op, "setxattrat")) {
        struct xattr_args a = { (uintptr_t)"1", 1, 0 };
        return syscall(463, AT_FDCWD, p, 0, "user.attack", &a, sizeof a);
    }
    if (!strcmp(op, "removexattrat")) return syscall(466, AT_FDCWD, p, 0, "user.attack");
    if (!strcmp(op, "acct")) {
        /* Root only: the kernel opens the file and appends a record for
           each process that ends. Switched off at once. */
        long r = syscall(SYS_acct, p);
        int e = errno;
        if (r == 0) syscall(SYS_acct, NULL);
        errno = e == EPERM ? EACCES : e;
        return r;
    }
    if (!strcmp(op, "swapon")) {
        /* Root only; not a swap area, so EINVAL once the kernel opened it. */
        long r = syscall(SYS_swapon, p, 0);
        return (r < 0 && errno == EPERM) ? (errno = EACCES, -1) : r;
    }
    if (!strcmp(op, "opath-fchmodat2")) {
        int fd = open(p, O_PATH);
        if (fd < 0) return -1;
        long r = syscall(452, fd, "", m, AT_EMPTY_PATH);
        int e = errno;
        close(fd);
        errno = e;
        return r;
    }
    if (!strcmp(op, "file_setattr")) {
        struct file_attr fa = { 0 };
        return syscall(469, AT_FDCWD, p, &fa, sizeof fa, 0);
    }
    char name[4096];
    snprintf(name, sizeof name, "%s/new%d-%d", p, i, getpid());
    if (!strcmp(op, "mkdir")) return mkdir(name, 0755);
    if (!strcmp(op, "mkdirat")) return mkdirat(AT_FDCWD, name, 0755);
    if (!strcmp(op, "mknod")) return mknod(name, S_IFIFO | 0644, 0);
    if (!strcmp(op, "mknodat")) return mknodat(AT_FDCWD, name, S_IFREG | 0644, 0);
    if (!strcmp(op, "bind")) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s/s%d-%d", p, i, getpid());
        long r = bind(s, (struct sockaddr *)&a, sizeof a);
        int e = errno;
        close(s);
        errno = e;
        return r;
    }
    if (!strcmp(op, "exec")) {
        pid_t pid = fork();
        if (pid == 0) {
            char *args[] = { (char *)p, NULL };
            execv(p, args);
            _exit(errno == EACCES ? 200 : 201);
        }
        int st;
        waitpid(pid, &st, 0);
        /* Ran: the denied interpreter (a copy of true) exited 0. */
        errno = EACCES;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    }
    fprintf(stderr, "unknown op %s\n", op);
    exit(2);
}

static void run(const char *label, const char *op, const char *p) {
    int n = 0;
    for (int i = 0; i < tries; i++) n += through(attack(op, p, i));
    printf("%s %d\n", label, n);
}

int main(int argc, char **argv) {
    dir = argv[1];
    tries = atoi(argv[2]);
    snprintf(secret, sizeof secret, "%s/secret", dir);
    snprintf(inner, sizeof inner, "%s/ddir/inner", dir);
    snprintf(ddir, sizeof ddir, "%s/ddir", dir);
    snprintf(slink, sizeof slink, "%s/link_to_secret", dir);
    snprintf(dlink, sizeof dlink, "%s/link_to_ddir", dir);
    const char *file_ops[] = { "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat",
        "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "removexattr",
        "lremovexattr", "setxattrat", "removexattrat", "file_setattr", "opath-fchmodat2" };
    char label[256];
    for (size_t k = 0; k < sizeof file_ops / sizeof *file_ops; k++) {
        snprintf(label, sizeof label, "%s:secret", file_ops[k]);
        run(label, file_ops[k], secret);
        snprintf(label, sizeof label, "%s:ddir/inner", file_ops[k]);
        run(label, file_ops[k], inner);
    }
    /* Through a symlink (followed by these calls). */
    run("chmod:link_to_secret", "chmod", slink);
    run("setxattr:link_to_secret", "setxattr", slink);
    const char *dir_ops[] = { "mkdir", "mkdirat", "mknod", "mknodat", "bind" };
    for (size_t k = 0; k < sizeof dir_ops / sizeof *dir_ops; k++) {
        snprintf(label, sizeof label, "%s:ddir", dir_ops[k]);
        run(label, dir_ops[k], ddir);
        snprintf(label, sizeof label, "%s:link_to_ddir", dir_ops[k]);
        run(label, dir_ops[k], dlink);
    }
    run("acct:secret", "acct", secret);
    run("swapon:secret", "swapon", secret);
    run("exec:script_denied_interp", "exec", at("script"));
    run("exec:script_nested", "exec", at("script_nested"));
    run("exec:script_env", "exec", at("script_env"));
    if (chdir(dir) == 0) run("exec:script_relative_interp", "exec", at("script_rel"));
    return 0;
}
"#;

/// A directory for the attacks: `secret` (denied), `ddir/` (denied) with
/// `ddir/inner`, `dinterp` (a denied copy of `true`), symlinks
/// `link_to_secret` and `link_to_ddir`, and scripts whose interpreter is
/// `dinterp` directly (`script`), through another script
/// (`script_nested`), through `env` (`script_env`) and by a relative name
/// (`script_rel`, run from the directory).
fn tree() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("secret"), "SECRET\n").unwrap();
    std::fs::create_dir(p("ddir")).unwrap();
    std::fs::write(p("ddir/inner"), "INNER\n").unwrap();
    std::fs::copy("/bin/true", p("dinterp")).unwrap();
    std::os::unix::fs::symlink(p("secret"), p("link_to_secret")).unwrap();
    std::os::unix::fs::symlink(p("ddir"), p("link_to_ddir")).unwrap();
    let d = p("dinterp").to_str().unwrap().to_owned();
    let scripts = [
        ("script", format!("#!{d}\n")),
        ("script_nested", format!("#!{}\n", p("script").display())),
        ("script_env", format!("#!/usr/bin/env {d}\n")),
        ("script_rel", "#!dinterp\n".to_owned()),
    ];
    for (name, text) in scripts {
        std::fs::write(p(name), text).unwrap();
        std::fs::set_permissions(p(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Attributes for the removals to find.
    for f in ["secret", "ddir/inner"] {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys; os.setxattr(sys.argv[1], 'user.attack', b'1')",
            ])
            .arg(p(f))
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn attack_program() -> PathBuf {
    common::build_c("metaattack", ATTACK_C, &[])
}

const TRIES: &str = "10";

fn counts(out: &Output) -> BTreeMap<String, u32> {
    assert!(
        out.status.success(),
        "attack program failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("`name count` line");
            (k.to_owned(), v.parse().expect("count"))
        })
        .collect()
}

fn denying(dir: &Path) -> Vec<String> {
    ["secret", "ddir", "dinterp"]
        .iter()
        .flat_map(|n| {
            [
                "--deny-path".to_owned(),
                dir.join(n).to_str().unwrap().to_owned(),
            ]
        })
        .collect()
}

#[test]
fn metadata_node_and_interpreter_attacks_get_nothing_through() {
    let _wd = common::watchdog(std::time::Duration::from_secs(120), "metaattack");
    let prog = attack_program();
    // Bare: every attack reaches its target.
    let bare_dir = tree();
    let bare = counts(
        &std::process::Command::new(&prog)
            .arg(bare_dir.path())
            .arg(TRIES)
            .output()
            .expect("run bare"),
    );
    for (name, n) in &bare {
        assert!(
            *n > 0,
            "{name}: the attack does not work even bare ({bare:?})"
        );
    }
    // Sandboxed: nothing gets through.
    let dir = tree();
    let out = common::unotify()
        .arg("run")
        .args(denying(dir.path()))
        .arg("--")
        .arg(&prog)
        .arg(dir.path())
        .arg(TRIES)
        .output()
        .expect("run unotify");
    let sandboxed = counts(&out);
    assert_eq!(sandboxed.len(), bare.len(), "{sandboxed:?}");
    let through: Vec<_> = sandboxed.iter().filter(|(_, n)| **n > 0).collect();
    eprintln!("bare: {bare:?}\nsandboxed: {sandboxed:?}");
    assert!(through.is_empty(), "got through: {through:?}");
    // The files are as they were.
    let md = std::fs::metadata(dir.path().join("secret")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let orig = std::fs::metadata(dir.path().join("ddir/inner")).unwrap();
    assert_eq!(
        md.permissions().mode() & 0o777,
        orig.permissions().mode() & 0o777
    );
    let names: Vec<_> = std::fs::read_dir(dir.path().join("ddir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["inner"], "nothing new in the denied directory");
}

/// `race DIR TRIES`: a thread flips a path buffer between an allowed file
/// and a denied one (same length) while the main thread makes metadata
/// calls and `mkdir` on it; after each call it looks (with `stat` and
/// `getxattr`, which path denial does not check) whether the denied file
/// or directory changed. Prints `name count` lines.
const RACE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static char path[4096];
static struct sockaddr_un sun;
static char good[4096], bad[4096];
static volatile int stop;

static void *flipper(void *arg) {
    (void)arg;
    while (!stop) {
        memcpy(path, bad, strlen(bad) + 1);
        memcpy(sun.sun_path, bad, strlen(bad) + 1);
        memcpy(path, good, strlen(good) + 1);
        memcpy(sun.sun_path, good, strlen(good) + 1);
    }
    return NULL;
}

static void race(const char *dir, const char *g, const char *b, const char *op, int tries) {
    snprintf(good, sizeof good, "%s/%s", dir, g);
    snprintf(bad, sizeof bad, "%s/%s", dir, b);
    memcpy(path, good, strlen(good) + 1);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, good, strlen(good) + 1);
    stop = 0;
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int n = 0;
    struct stat st;
    for (int i = 0; i < tries; i++) {
        if (!strcmp(op, "utimensat")) {
            struct timespec ts[2] = { { 1000 + i, 0 }, { 1000 + i, 0 } };
            utimensat(AT_FDCWD, path, ts, 0);
            if (stat(bad, &st) == 0 && st.st_mtime == 1000 + i) n++;
        } else if (!strcmp(op, "chmod")) {
            chmod(path, (i & 1) ? 0601 : 0602);
            if (stat(bad, &st) == 0 && (st.st_mode & 0777) == ((i & 1) ? 0601 : 0602)) n++;
        } else if (!strcmp(op, "setxattr")) {
            char v[32], r[32] = { 0 };
            snprintf(v, sizeof v, "%d", i);
            setxattr(path, "user.race", v, strlen(v), 0);
            if (getxattr(bad, "user.race", r, sizeof r - 1) > 0 && !strcmp(r, v)) n++;
        } else if (!strcmp(op, "mkdir")) {
            mkdir(path, 0755);
            if (stat(bad, &st) == 0 && S_ISDIR(st.st_mode)) { n++; rmdir(bad); }
        } else if (!strcmp(op, "bind")) {
            int s = socket(AF_UNIX, SOCK_DGRAM, 0);
            bind(s, (struct sockaddr *)&sun, sizeof sun);
            close(s);
            if (stat(bad, &st) == 0 && S_ISSOCK(st.st_mode)) { n++; unlink(bad); }
            unlink(good);
        }
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("%s %d\n", op, n);
}

int main(int argc, char **argv) {
    const char *dir = argv[1];
    int tries = atoi(argv[2]);
    race(dir, "public", "secret", "utimensat", tries);
    race(dir, "public", "secret", "chmod", tries);
    race(dir, "public", "secret", "setxattr", tries);
    race(dir, "adir/newdir", "ddir/newdir", "mkdir", tries);
    race(dir, "adir/sock", "ddir/sock", "bind", tries);
    return 0;
}
"#;

#[test]
fn a_thread_rewriting_the_path_during_the_call_changes_nothing_denied() {
    let _wd = common::watchdog(std::time::Duration::from_secs(120), "race");
    let prog = common::build_c("metarace", RACE_C, &["-pthread"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("secret"), "SECRET\n").unwrap();
    std::fs::write(p("public"), "PUBLIC\n").unwrap();
    std::fs::create_dir(p("ddir")).unwrap();
    std::fs::create_dir(p("adir")).unwrap();
    let before = std::fs::metadata(p("secret")).unwrap();
    let out = common::unotify()
        .arg("run")
        .args(["--deny-path", p("secret").to_str().unwrap()])
        .args(["--deny-path", p("ddir").to_str().unwrap()])
        .arg("--")
        .arg(&prog)
        .arg(dir.path())
        .arg("2000")
        .output()
        .expect("run unotify");
    let got = counts(&out);
    eprintln!("race: {got:?}");
    assert_eq!(got.len(), 5, "{got:?}");
    let through: Vec<_> = got.iter().filter(|(_, n)| **n > 0).collect();
    assert!(through.is_empty(), "got through: {through:?}");
    let after = std::fs::metadata(p("secret")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(before.mode(), after.mode());
    assert_eq!(before.mtime(), after.mtime());
    assert!(!p("ddir/newdir").exists());
}

/// `metaops DIR`: metadata calls, mkdir, mknod and bind on allowed files,
/// printing each result (and what it changed) without naming DIR, so that
/// a bare run and a sandboxed run can be compared line by line.
const OPS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utime.h>

static void r(const char *what, long ret) {
    if (ret < 0) printf("%s err %d\n", what, errno); else printf("%s ok %ld\n", what, ret);
}

static void st(const char *what, const char *p) {
    struct stat s;
    if (lstat(p, &s) < 0) { printf("%s stat err %d\n", what, errno); return; }
    printf("%s mode %o uid %d gid %d\n", what, s.st_mode, s.st_uid, s.st_gid);
}

static void stt(const char *what, const char *p) {
    struct stat s;
    if (lstat(p, &s) < 0) { printf("%s stat err %d\n", what, errno); return; }
    printf("%s atime %ld.%ld mtime %ld.%ld\n", what, (long)s.st_atim.tv_sec, s.st_atim.tv_nsec,
           (long)s.st_mtim.tv_sec, s.st_mtim.tv_nsec);
}

struct xattr_args { uint64_t value; uint32_t size; uint32_t flags; };
struct file_attr { uint64_t xflags; uint32_t extsize, nextents, projid, cowextsize; };

int main(int argc, char **argv) {
    if (chdir(argv[1]) < 0) return 2;
    char buf[256];
    r("chmod", chmod("public", 0640)); st("public", "public");
    r("fchmodat", fchmodat(AT_FDCWD, "./public", 0604, 0)); st("public", "public");
    r("fchmodat2-link-nofollow", syscall(452, AT_FDCWD, "link", 0600, AT_SYMLINK_NOFOLLOW));
    r("fchmodat2-link", syscall(452, AT_FDCWD, "link", 0660, 0)); st("public", "public");
    int opath = open("public", O_PATH);
    r("fchmodat2-empty", syscall(452, opath, "", 0644, AT_EMPTY_PATH)); st("public", "public");
    r("fchmodat2-badflags", syscall(452, AT_FDCWD, "public", 0644, 0x1));
    r("chmod-missing", chmod("missing", 0644));
    r("chmod-null", chmod(NULL, 0644));
    r("chown", chown("public", 65534, 65533)); st("public", "public");
    r("lchown", lchown("link", 65532, 65531)); st("link", "link"); st("public", "public");
    r("fchownat-empty", fchownat(opath, "", 0, 0, AT_EMPTY_PATH)); st("public", "public");
    r("fchownat-badflags", fchownat(AT_FDCWD, "public", 0, 0, 0x4));
    struct timespec ts[2] = { { 100, 200 }, { 300, 400 } };
    r("utimensat", utimensat(AT_FDCWD, "public", ts, 0)); stt("public", "public");
    struct timespec omit[2] = { { 5, UTIME_OMIT }, { 7, 8 } };
    r("utimensat-omit", utimensat(AT_FDCWD, "public", omit, 0)); stt("public", "public");
    r("utimensat-link-nofollow", utimensat(AT_FDCWD, "link", ts, AT_SYMLINK_NOFOLLOW)); stt("link", "link");
    struct timespec badns[2] = { { 1, 1000000000 }, { 1, 0 } };
    r("utimensat-badns", utimensat(AT_FDCWD, "public", badns, 0));
    int fd = open("public", O_RDONLY);
    r("utimensat-fd", utimensat(fd, NULL, ts, 0)); stt("public", "public");
    struct timeval tv[2] = { { 11, 12 }, { 13, 14 } };
    r("utimes", utimes("public", tv)); stt("public", "public");
    struct timeval badtv[2] = { { 11, 1000000 }, { 13, 14 } };
    r("utimes-badusec", utimes("public", badtv));
#ifdef SYS_futimesat
    r("futimesat", syscall(SYS_futimesat, AT_FDCWD, "public", tv)); stt("public", "public");
#endif
    struct utimbuf ub = { 21, 22 };
    r("utime", utime("public", &ub)); stt("public", "public");
    r("setxattr", setxattr("public", "user.a", "hello", 5, 0));
    memset(buf, 0, sizeof buf);
    r("getxattr", getxattr("public", "user.a", buf, sizeof buf)); printf("value %s\n", buf);
    r("setxattr-create-again", setxattr("public", "user.a", "x", 1, XATTR_CREATE));
    r("setxattr-replace-missing", setxattr("public", "user.b", "x", 1, XATTR_REPLACE));
    r("setxattr-badflags", setxattr("public", "user.b", "x", 1, 8));
    r("setxattr-emptyname", setxattr("public", "", "x", 1, 0));
    char longname[300]; memset(longname, 'a', 299); longname[299] = 0; memcpy(longname, "user.", 5);
    r("setxattr-longname", setxattr("public", longname, "x", 1, 0));
    r("setxattr-empty-value", setxattr("public", "user.e", "", 0, 0));
    r("removexattr", removexattr("public", "user.a"));
    r("removexattr-again", removexattr("public", "user.a"));
    r("lsetxattr-link-user", lsetxattr("link", "user.l", "v", 1, 0));
    r("lsetxattr-link-trusted", lsetxattr("link", "trusted.l", "v", 1, 0));
    memset(buf, 0, sizeof buf);
    r("lgetxattr-link", lgetxattr("link", "trusted.l", buf, sizeof buf)); printf("value %s\n", buf);
    r("lremovexattr-link", lremovexattr("link", "trusted.l"));
    struct xattr_args xa = { (uintptr_t)"at", 2, 0 };
    r("setxattrat", syscall(463, AT_FDCWD, "public", 0, "user.at", &xa, sizeof xa));
    memset(buf, 0, sizeof buf);
    r("getxattr-at", getxattr("public", "user.at", buf, sizeof buf)); printf("value %s\n", buf);
    r("setxattrat-smallsize", syscall(463, AT_FDCWD, "public", 0, "user.at", &xa, 8));
    r("setxattrat-link-nofollow", syscall(463, AT_FDCWD, "link", AT_SYMLINK_NOFOLLOW, "trusted.at", &xa, sizeof xa));
    r("removexattrat", syscall(466, AT_FDCWD, "public", 0, "user.at"));
    r("removexattrat-empty-fd", syscall(466, fd, "", AT_EMPTY_PATH, "user.e"));
    struct file_attr fa = { 0 };
    r("file_setattr", syscall(469, AT_FDCWD, "public", &fa, sizeof fa, 0));
    r("file_setattr-small", syscall(469, AT_FDCWD, "public", &fa, 4, 0));
    umask(027);
    r("mkdir", mkdir("d1", 0777)); st("d1", "d1");
    r("mkdir-again", mkdir("d1", 0777));
    r("mkdirat-missing-parent", mkdirat(AT_FDCWD, "nope/d", 0777));
    r("mkdir-sticky", mkdir("d2", 01777)); st("d2", "d2");
    r("mknod-fifo", mknod("f1", S_IFIFO | 0666, 0)); st("f1", "f1");
    r("mknodat-reg", mknodat(AT_FDCWD, "f2", S_IFREG | 0666, 0)); st("f2", "f2");
    r("mknod-dir", mknod("f3", S_IFDIR | 0666, 0));
    umask(022);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strcpy(a.sun_path, "sock1");
    r("bind-relative", bind(s, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 6));
    struct sockaddr_un got = { 0 };
    socklen_t gl = sizeof got;
    r("getsockname", getsockname(s, (struct sockaddr *)&got, &gl));
    printf("name %s len %d\n", got.sun_path, (int)gl);
    st("sock1", "sock1");
    r("bind-again", bind(s, (struct sockaddr *)&a, sizeof a));
    int s2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    r("bind-inuse", bind(s2, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_un ab = { .sun_family = AF_UNIX };
    memcpy(ab.sun_path, "\0unotify-abstract-test", 22);
    r("bind-abstract", bind(s2, (struct sockaddr *)&ab, offsetof(struct sockaddr_un, sun_path) + 22));
    int s3 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    r("bind-inet", bind(s3, (struct sockaddr *)&in, sizeof in));
    r("bind-inet-short", bind(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&in, 3));
    r("bind-notsock", bind(fd, (struct sockaddr *)&in, sizeof in));
    r("bind-badfd", bind(999, (struct sockaddr *)&in, sizeof in));
    r("bind-autobind", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, 2));
    pid_t pid = fork();
    if (pid == 0) { execl("./script_ok", "script_ok", NULL); _exit(errno); }
    int w; waitpid(pid, &w, 0);
    printf("script_ok exit %d\n", WEXITSTATUS(w));
    return 0;
}
"#;

#[test]
fn metadata_calls_on_allowed_files_behave_as_bare() {
    use std::os::unix::fs::PermissionsExt;
    let _wd = common::watchdog(std::time::Duration::from_secs(120), "metaops");
    let prog = common::build_c("metaops", OPS_C, &[]);
    let setup = || {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("public"), "PUBLIC\n").unwrap();
        std::fs::write(p("secret"), "SECRET\n").unwrap();
        std::os::unix::fs::symlink("public", p("link")).unwrap();
        std::fs::write(p("script_ok"), "#!/bin/sh\nexit 7\n").unwrap();
        std::fs::set_permissions(p("script_ok"), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    };
    let bare_dir = setup();
    let bare = std::process::Command::new(&prog)
        .arg(bare_dir.path())
        .output()
        .expect("run bare");
    let dir = setup();
    // With the program's capabilities kept, as bare has them (trusted.*
    // xattrs need CAP_SYS_ADMIN): this compares the on-behalf calls, not
    // the capability drop.
    let boxed = common::unotify()
        .arg("run")
        .args(["--deny-path", dir.path().join("secret").to_str().unwrap()])
        .arg("--keep-caps")
        .arg("--")
        .arg(&prog)
        .arg(dir.path())
        .output()
        .expect("run unotify");
    let bare = String::from_utf8_lossy(&bare.stdout).into_owned();
    let boxed_out = String::from_utf8_lossy(&boxed.stdout).into_owned();
    assert!(
        boxed.status.success(),
        "{boxed:?}\n{}",
        String::from_utf8_lossy(&boxed.stderr)
    );
    for (b, s) in bare.lines().zip(boxed_out.lines()) {
        assert_eq!(b, s, "bare:\n{bare}\nsandboxed:\n{boxed_out}");
    }
    assert_eq!(bare.lines().count(), boxed_out.lines().count());
    assert!(bare.contains("script_ok exit 7"), "{bare}");
}

/// `newcalls FILE`: `fchmodat2` (452, Linux 6.6) and the unnamed number
/// 470 (not a call of Linux 6.18), printing `errno`s.
const NEWCALLS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long r = syscall(452, AT_FDCWD, argv[1], 0600, 0);
    printf("fchmodat2 %ld %d\n", r, r < 0 ? errno : 0);
    r = syscall(470, 0, 0, 0, 0, 0, 0);
    printf("470 %ld %d\n", r, r < 0 ? errno : 0);
    struct stat st;
    stat(argv[1], &st);
    printf("mode %o\n", st.st_mode & 0777);
    return 0;
}
"#;

#[test]
fn calls_of_newer_kernels_and_unnamed_numbers_can_be_denied() {
    let prog = common::build_c("newcalls", NEWCALLS_C, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    let run = |args: &[&str]| {
        std::fs::write(&file, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = common::unotify()
            .arg("run")
            .args(args)
            .arg("--")
            .arg(&prog)
            .arg(&file)
            .output()
            .expect("run unotify");
        assert!(
            out.status.success(),
            "{args:?}: {out:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let eperm = libc::EPERM;
    let enosys = libc::ENOSYS;
    assert_eq!(
        run(&[]),
        format!("fchmodat2 0 0\n470 -1 {enosys}\nmode 600\n")
    );
    assert_eq!(
        run(&["--deny", "fchmodat2=EPERM"]),
        format!("fchmodat2 -1 {eperm}\n470 -1 {enosys}\nmode 644\n")
    );
    assert_eq!(
        run(&["--deny", "452", "--deny", "470=EACCES"]),
        format!("fchmodat2 -1 {eperm}\n470 -1 {}\nmode 644\n", libc::EACCES)
    );
    assert_eq!(
        run(&["--deny", "syscall_470=EPERM"]),
        format!("fchmodat2 0 0\n470 -1 {eperm}\nmode 600\n")
    );
    // Out of range: a usage error, not a sandbox.
    let out = common::unotify()
        .args(["run", "--deny", "1024", "--", "/bin/true"])
        .output()
        .expect("run unotify");
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 1024"));
}
