//! Attacks on path denial that change the program's view of the file
//! system (chroot, private mount namespaces, user namespaces, bind mounts,
//! overlays, detached mount trees), and on the capabilities a root program
//! keeps. Each attack runs under the `unotify` command in a bounded loop
//! and reports what got through; every count must be 0.
//!
//! Every run is wrapped in `unshare --mount --propagation private`, so
//! that a mount that gets through (without the refusals) changes only a
//! throw-away namespace, which the supervisor shares.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{stderr_of as stderr, stdout_of as stdout};

/// The denied program: a static executable (it must run inside a jail
/// without libraries) holding a marker that a read would reveal.
const DENIED_C: &str = r#"
__attribute__((used)) static const char mark[] = "TOPSECRET-5c1e9";
int main(void) { return 42; }
"#;

/// `viewattack MODE DIR N`: tries attack MODE N times and prints
/// `ran R changed C`: R is how often the denied file was executed (its
/// exit code 42) or read (its marker), C how often a call that changes the
/// view (chroot, unshare, mount, move_mount) succeeded. DIR holds
/// `secret/denied` (the denied file), `pub/` (an empty directory),
/// `allowed` (a readable file), `upper/`, `work/`, `ovl/` (overlay dirs).
const VIEWATTACK_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 4
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static char dir[512], secret_dir[600], denied[600], pub[600], pub_denied[600];
static char allowed[600], upper[600], work[600], ovl[600], ovl_denied[600];
static int changed;

/* Child: exit 42 only if the denied program ran. */
static void exec_it(const char *path) {
    char *argv[] = { (char *)path, NULL };
    char *envp[] = { NULL };
    execve(path, argv, envp);
    _exit(1);
}

/* Runs `child` in a new process; 1 if the denied program ran in it; a
   view change the child made is reported through its exit code too. */
static int in_child(void (*child)(void)) {
    pid_t p = fork();
    if (p < 0) return 0;
    if (p == 0) { child(); _exit(1); }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 43) { changed++; return 0; }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 42) { changed++; return 1; }
    return 0;
}

static int reads_marker(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    static char buf[1 << 20];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 && memmem(buf, n, "TOPSECRET-5c1e9", 15) != NULL;
}

static void chroot_child(void) {
    if (chroot(secret_dir) != 0) _exit(1);
    if (chdir("/") != 0) _exit(1);
    /* In the jail, /denied is the denied file; in the supervisor's view
       /denied does not exist. */
    char *argv[] = { "/denied", NULL };
    char *envp[] = { NULL };
    execve("/denied", argv, envp);
    _exit(43);
}

/* Binds the secret directory over pub/ in a private mount namespace and
   runs pub/denied, which the supervisor's view does not have. */
static void bind_and_exec(void) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(1);
    if (mount(secret_dir, pub, NULL, MS_BIND, NULL) != 0) _exit(1);
    char *argv[] = { pub_denied, NULL };
    char *envp[] = { NULL };
    execve(pub_denied, argv, envp);
    _exit(43);
}

static void mntns_child(void) {
    if (unshare(CLONE_NEWNS) != 0) _exit(1);
    bind_and_exec();
}

static void userns_child(void) {
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) _exit(2);
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) _exit(1);
    bind_and_exec();
}

static void clone_child(void) {
    /* The same through clone's flags, as raw clone (fork-like). */
    long r = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
    if (r < 0) _exit(1);
    if (r == 0) bind_and_exec();
    int st = 0;
    waitpid(r, &st, 0);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

static void open_tree_child(void) {
    int fd = syscall(SYS_open_tree, AT_FDCWD, secret_dir, OPEN_TREE_CLONE | AT_RECURSIVE);
    if (fd < 0) _exit(1);
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, pub, MOVE_MOUNT_F_EMPTY_PATH) != 0) _exit(1);
    /* pub/ now shows the secret directory (to the supervisor too). */
    if (reads_marker(pub_denied)) _exit(42);
    umount2(pub, MNT_DETACH);
    _exit(43);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: viewattack MODE DIR N\n"); return 2; }
    const char *mode = argv[1];
    snprintf(dir, sizeof dir, "%s", argv[2]);
    int n = atoi(argv[3]);
    snprintf(secret_dir, sizeof secret_dir, "%s/secret", dir);
    snprintf(denied, sizeof denied, "%s/secret/denied", dir);
    snprintf(pub, sizeof pub, "%s/pub", dir);
    snprintf(pub_denied, sizeof pub_denied, "%s/pub/denied", dir);
    snprintf(allowed, sizeof allowed, "%s/allowed", dir);
    snprintf(upper, sizeof upper, "%s/upper", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(ovl, sizeof ovl, "%s/ovl", dir);
    snprintf(ovl_denied, sizeof ovl_denied, "%s/ovl/denied", dir);
    int ran = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(mode, "chroot")) ran += in_child(chroot_child);
        else if (!strcmp(mode, "mntns")) ran += in_child(mntns_child);
        else if (!strcmp(mode, "userns")) ran += in_child(userns_child);
        else if (!strcmp(mode, "clone")) ran += in_child(clone_child);
        else if (!strcmp(mode, "open_tree")) ran += in_child(open_tree_child);
        else if (!strcmp(mode, "overlay")) {
            /* The denied directory as an overlay's lower layer: its files
               appear under ovl/ with another device number. */
            char opts[2048];
            snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s",
                     secret_dir, upper, work);
            if (mount("overlay", ovl, "overlay", 0, opts) == 0) {
                changed++;
                ran += reads_marker(ovl_denied);
                if (fork() == 0) exec_it(ovl_denied);
                int st = 0;
                wait(&st);
                ran += WIFEXITED(st) && WEXITSTATUS(st) == 42;
                umount2(ovl, MNT_DETACH);
            }
        } else if (!strcmp(mode, "bind")) {
            /* An allowed file bound over the denied one: whoever opens the
               denied path (outside the sandbox too) gets other content. */
            if (mount(allowed, denied, NULL, MS_BIND, NULL) == 0) {
                changed++;
                umount2(denied, MNT_DETACH);
            }
            /* And the denied file bound over an allowed one. */
            if (mount(denied, allowed, NULL, MS_BIND, NULL) == 0) {
                changed++;
                ran += reads_marker(allowed);
                umount2(allowed, MNT_DETACH);
            }
        } else { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
    }
    printf("ran %d changed %d\n", ran, changed);
    return 0;
}
"#;

/// A directory laid out for `viewattack`, world-readable (the user
/// namespace attack runs as nobody).
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("unotify-view")
            .tempdir_in("/tmp")
            .unwrap();
        let p = dir.path();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["secret", "pub", "upper", "work", "ovl"] {
            std::fs::create_dir(p.join(d)).unwrap();
            std::fs::set_permissions(p.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let denied = common::build_c("view_denied", DENIED_C, &["-static"]);
        std::fs::copy(&denied, p.join("secret/denied")).unwrap();
        std::fs::set_permissions(
            p.join("secret/denied"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(p.join("allowed"), "allowed content\n").unwrap();
        Layout { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn denied(&self) -> PathBuf {
        self.path().join("secret/denied")
    }
}

fn viewattack() -> PathBuf {
    common::build_c("viewattack", VIEWATTACK_C, &[])
}

/// Runs `unotify run EXTRA... -- PROGRAM ARGS...` in a private mount
/// namespace of its own.
fn run_private(extra: &[&str], program: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private"])
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .arg("run")
        .args(extra)
        .arg("--")
        .arg(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    cmd.output().expect("run unshare (util-linux)")
}

/// `(ran, changed)` from a `viewattack` run.
fn attack(mode: &str, extra: &[&str]) -> (u32, u32) {
    let layout = Layout::new();
    let denied = layout.denied();
    let mut args: Vec<&str> = vec!["--deny-path", denied.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_private(
        &args,
        &viewattack(),
        &[mode, layout.path().to_str().unwrap(), "10"],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{mode}: {:?}\n{text}\n{}",
        out.status,
        stderr(&out)
    );
    let nums: Vec<u32> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{mode}: output {text:?}");
    eprintln!("{mode} {extra:?}: ran {} changed {}", nums[0], nums[1]);
    (nums[0], nums[1])
}

/// Both with the default capabilities and with `--keep-caps` (where only
/// the filter's refusals stand in the way).
fn holds(mode: &str) {
    for keep in [false, true] {
        let extra: &[&str] = if keep { &["--keep-caps"] } else { &[] };
        let (ran, changed) = attack(mode, extra);
        assert_eq!(
            (ran, changed),
            (0, 0),
            "{mode} {extra:?}: the denied file ran or was read {ran} times, the view changed {changed} times"
        );
    }
}

#[test]
fn chroot_into_a_jail_holding_the_denied_file() {
    holds("chroot");
}

#[test]
fn private_mount_namespace_bind() {
    holds("mntns");
}

#[test]
fn user_namespace_as_nobody() {
    holds("userns");
}

#[test]
fn clone_with_a_new_mount_namespace() {
    holds("clone");
}

#[test]
fn overlay_with_the_denied_directory_as_lower_layer() {
    holds("overlay");
}

#[test]
fn bind_mounts_over_and_of_the_denied_file() {
    holds("bind");
}

#[test]
fn open_tree_clone_and_move_mount() {
    holds("open_tree");
}

/// `capattack DIR N`: N times each, what root can do only with a
/// capability the sandbox drops: a device node (`MKNOD`), `chroot`
/// (`SYS_CHROOT`), a new mount namespace and a tmpfs mount (`SYS_ADMIN`),
/// a packet socket (`NET_RAW`). Prints `through K`. Each is tried in a
/// child (the chroot and the namespace stay there).
const CAPATTACK_C: &str = r#"
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static int in_child(int what, const char *dir, int i) {
    pid_t p = fork();
    if (p == 0) {
        char path[600];
        int ok = 0;
        switch (what) {
        case 0:
            snprintf(path, sizeof path, "%s/null%d", dir, i);
            ok = mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0;
            break;
        case 1: ok = chroot("/") == 0; break;
        case 2: ok = unshare(CLONE_NEWNS) == 0; break;
        case 3:
            snprintf(path, sizeof path, "%s/pub", dir);
            ok = mount("tmpfs", path, "tmpfs", 0, "size=64k") == 0;
            if (ok) umount2(path, MNT_DETACH);
            break;
        case 4: ok = socket(AF_PACKET, SOCK_RAW, 0) >= 0; break;
        }
        _exit(ok ? 0 : 1);
    }
    int st = 1;
    waitpid(p, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int n = atoi(argv[2]), through = 0;
    for (int i = 0; i < n; i++)
        for (int what = 0; what < 5; what++)
            through += in_child(what, argv[1], i);
    printf("through %d\n", through);
    return 0;
}
"#;

fn caps_through(extra: &[&str]) -> u32 {
    let layout = Layout::new();
    let exe = common::build_c("capattack", CAPATTACK_C, &[]);
    // No path denied: only the capabilities stand in the way.
    let out = run_private(extra, &exe, &[layout.path().to_str().unwrap(), "4"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{:?}\n{text}\n{}",
        out.status,
        stderr(&out)
    );
    let n = text
        .trim()
        .strip_prefix("through ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("output {text:?}"));
    eprintln!("capattack {extra:?}: through {n}");
    n
}

#[test]
fn root_inside_is_not_root_outside() {
    assert_eq!(caps_through(&[]), 0);
    // The opt-in gives them back (this test runs as root), all but the
    // mount: the sandbox's Landlock domain restricts writes (beneath the
    // cgroup file systems), and a domain that restricts file access
    // forbids mounts (which could hide what it restricts).
    assert_eq!(caps_through(&["--keep-caps"]), 16);
}

/// The capability lines of `/proc/self/status` as seen by `cat` in the
/// sandbox, as numbers.
fn sandbox_caps(extra: &[&str]) -> std::collections::HashMap<String, u64> {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend(["--", "cat", "/proc/self/status"]);
    let out = common::run_unotify(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(&out));
    caps_of(&stdout(&out))
}

fn caps_of(status: &str) -> std::collections::HashMap<String, u64> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), u64::from_str_radix(v.trim(), 16).ok()?))
        })
        .collect()
}

/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// NET_BIND_SERVICE.
const KEPT: u64 = 0b100_1111_1011;

#[test]
fn default_capabilities_are_the_kept_set() {
    let own = caps_of(&std::fs::read_to_string("/proc/self/status").unwrap());
    for extra in [&[][..], &["--deny-path", "/etc/shadow"][..]] {
        let caps = sandbox_caps(extra);
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(caps[set], own[set] & KEPT, "{set} {extra:?}: {caps:x?}");
        }
        assert_eq!(caps["CapInh"], 0);
        assert_eq!(caps["CapAmb"], 0);
    }
    let caps = sandbox_caps(&["--keep-caps"]);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(caps[set], own[set], "{set} with --keep-caps: {caps:x?}");
    }
}

/// `rootfiles DIR`: what a root program does with files, under path
/// denial (every call performed on its behalf): creates, writes, reads,
/// opens a file of another user with mode 0600 (`DAC_OVERRIDE`), works
/// through relative paths and dirfds, links, renames, symlinks,
/// truncates, removes, and reads a FIFO. Prints `failed K` and the failed
/// steps; the denied `DIR/secret/denied` must still fail with EACCES.
const ROOTFILES_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed;
#define CHECK(what, cond) do { if (!(cond)) { failed++; printf("step %s: %s\n", what, strerror(errno)); } } while (0)

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *dir = argv[1];
    char p[600], q[600];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "%s/new%d", dir, i);
        int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
        CHECK("create", fd >= 0);
        CHECK("write", write(fd, "data\n", 5) == 5);
        close(fd);
        fd = open(p, O_RDONLY);
        char buf[16] = {0};
        CHECK("reopen", fd >= 0 && read(fd, buf, sizeof buf) == 5 && !memcmp(buf, "data\n", 5));
        close(fd);
        CHECK("chown", chown(p, 1000, 1000) == 0);
        fd = open(p, O_RDWR | O_APPEND);
        CHECK("open another user's 0600 file", fd >= 0);
        close(fd);
        snprintf(q, sizeof q, "%s/link%d", dir, i);
        CHECK("link", link(p, q) == 0);
        CHECK("unlink", unlink(q) == 0);
        CHECK("symlink", symlink(p, q) == 0);
        fd = open(q, O_RDONLY);
        CHECK("open through symlink", fd >= 0);
        close(fd);
        snprintf(q, sizeof q, "%s/renamed%d", dir, i);
        CHECK("rename", rename(p, q) == 0);
        CHECK("truncate", truncate(q, 1) == 0);
        CHECK("remove", unlink(q) == 0);
    }
    CHECK("chdir", chdir(dir) == 0);
    int d = open(".", O_RDONLY | O_DIRECTORY);
    CHECK("open dir", d >= 0);
    int fd = openat(d, "rel", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK("openat relative", fd >= 0);
    close(fd);
    fd = open("rel", O_RDONLY);
    CHECK("open relative", fd >= 0);
    close(fd);
    CHECK("mkfifo", mkfifo("fifo", 0600) == 0);
    if (fork() == 0) {
        int w = open("fifo", O_WRONLY);
        _exit(w >= 0 && write(w, "x", 1) == 1 ? 0 : 1);
    }
    fd = open("fifo", O_RDONLY);
    char c = 0;
    CHECK("fifo", fd >= 0 && read(fd, &c, 1) == 1 && c == 'x');
    int st = 1;
    wait(&st);
    CHECK("fifo writer", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(p, sizeof p, "%s/secret/denied", dir);
    errno = 0;
    CHECK("denied still denied", open(p, O_RDONLY) < 0 && errno == EACCES);
    printf("failed %d\n", failed);
    return 0;
}
"#;

#[test]
fn a_root_program_keeps_working_with_files_under_path_denial() {
    let exe = common::build_c("rootfiles", ROOTFILES_C, &[]);
    for extra in [&[][..], &["--keep-caps"][..]] {
        let layout = Layout::new();
        let denied = layout.denied();
        let mut args = vec!["run", "--deny-path", denied.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(["--", exe.to_str().unwrap(), layout.path().to_str().unwrap()]);
        let out = common::run_unotify(&args);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{:?}\n{text}\n{}",
            out.status,
            stderr(&out)
        );
        assert_eq!(text.lines().last(), Some("failed 0"), "{extra:?}:\n{text}");
        // Only the one denial the program makes on purpose is told.
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("unotify: denied: openat of "),
            "{extra:?}: stderr: {err}"
        );
    }
}

/// `dropdac FILE N MODE`: a root program opens files (so the supervisor
/// knows its credentials), in the main thread and in a second one, then
/// gives up rights — MODE `capset`: `DAC_OVERRIDE` and `DAC_READ_SEARCH`
/// in the main thread; `setuid`: becomes nobody (glibc changes every
/// thread) — then tries N times, from both threads, to open FILE (another
/// user's, mode 0600). Prints `opened K`: the supervisor, opening on its
/// behalf, must not lend it the rights it gave up.
const DROPDAC_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *file;
static int n, opened;
static pthread_barrier_t before, after;

static void tries(void) {
    for (int i = 0; i < n; i++) {
        int fd = open(file, O_RDONLY);
        if (fd >= 0) { __sync_fetch_and_add(&opened, 1); close(fd); }
    }
}

static void *second(void *arg) {
    (void)arg;
    close(open("/etc/hostname", O_RDONLY));
    pthread_barrier_wait(&before);
    pthread_barrier_wait(&after);
    tries();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    file = argv[1];
    n = atoi(argv[2]);
    pthread_barrier_init(&before, NULL, 2);
    pthread_barrier_init(&after, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, second, NULL);
    close(open("/etc/hostname", O_RDONLY));
    pthread_barrier_wait(&before);
    if (!strcmp(argv[3], "capset")) {
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) != 0) return 3;
        unsigned drop = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
        d[0].effective &= ~drop;
        d[0].permitted &= ~drop;
        if (syscall(SYS_capset, &h, d) != 0) return 4;
    } else if (setresuid(65534, 65534, 65534) != 0) {
        return 5;
    }
    pthread_barrier_wait(&after);
    tries();
    pthread_join(t, NULL);
    /* capset changed the main thread only: the second keeps its rights. */
    printf("opened %d\n", opened);
    return 0;
}
"#;

#[test]
fn the_supervisor_acts_with_no_more_capabilities_than_the_program() {
    use std::os::unix::fs::chown;
    let layout = Layout::new();
    let file = layout.path().join("private");
    std::fs::write(&file, "private\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&file, Some(1000), Some(1000)).unwrap();
    let exe = common::build_c("dropdac", DROPDAC_C, &["-pthread"]);
    let denied = layout.denied();
    // capset: the main thread's 20 tries fail, the second thread's 20
    // succeed; setuid: all 40 fail.
    for (mode, expect) in [("capset", 20), ("setuid", 0)] {
        for extra in [&[][..], &["--keep-caps"][..]] {
            let mut args = vec!["run", "--deny-path", denied.to_str().unwrap()];
            args.extend_from_slice(extra);
            args.extend([
                "--",
                exe.to_str().unwrap(),
                file.to_str().unwrap(),
                "20",
                mode,
            ]);
            let out = common::run_unotify(&args);
            let text = stdout(&out);
            assert!(
                out.status.success(),
                "{:?}\n{text}\n{}",
                out.status,
                stderr(&out)
            );
            eprintln!("dropdac {mode} {extra:?}: {}", text.trim());
            assert_eq!(text.trim(), format!("opened {expect}"), "{mode} {extra:?}");
        }
    }
}

/// `execcaps FILE N`: a root program lowers its effective capabilities
/// (without `DAC_OVERRIDE`, kept permitted), tries N times to open FILE
/// (another user's, mode 0600), then execs itself, which as root makes
/// every permitted capability effective again, and tries N times more.
/// Prints `before K rel R after M`: the supervisor must act with the
/// rights of the moment, so 0 before, N after; R: a relative open (of an
/// allowed file) worked while the effective set was below the permitted.
const EXECCAPS_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int tries(const char *file, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        int fd = open(file, O_RDONLY);
        if (fd >= 0) { k++; close(fd); }
    }
    return k;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]);
    if (argc == 4) {
        printf("%s after %d\n", argv[3], tries(argv[1], n));
        return 0;
    }
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return 3;
    d[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
    if (syscall(SYS_capset, &h, d) != 0) return 4;
    /* A relative path: the supervisor takes the working directory with
       its own rights, and resolves with the program's. */
    int rel = chdir("/etc") == 0 && tries("hostname", 1) == 1;
    char before[32];
    snprintf(before, sizeof before, "before %d rel %d", tries(argv[1], n), rel);
    char *args[] = { argv[0], argv[1], argv[2], before, NULL };
    execv("/proc/self/exe", args);
    return 5;
}
"#;

#[test]
fn credentials_are_those_of_the_moment_across_exec() {
    use std::os::unix::fs::chown;
    let layout = Layout::new();
    let file = layout.path().join("private");
    std::fs::write(&file, "private\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&file, Some(1000), Some(1000)).unwrap();
    let exe = common::build_c("execcaps", EXECCAPS_C, &[]);
    let denied = layout.denied();
    let out = common::run_unotify(&[
        "run",
        "--deny-path",
        denied.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        file.to_str().unwrap(),
        "20",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{:?}\n{text}\n{}",
        out.status,
        stderr(&out)
    );
    assert_eq!(text.trim(), "before 0 rel 1 after 20");
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(&out));
}

/// `nsattack N`: N times each, in a child, `unshare` and `clone` with
/// `CLONE_NEWNS` and with `CLONE_NEWUSER`, and `setns` into its own mount
/// namespace. Prints `through K`.
const NSATTACK_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int attempt(int what) {
    pid_t p = fork();
    if (p == 0) {
        int ok = 0;
        long r;
        switch (what) {
        case 0: ok = unshare(CLONE_NEWNS) == 0; break;
        case 1: ok = unshare(CLONE_NEWUSER) == 0; break;
        case 2:
        case 3:
            r = syscall(SYS_clone, (what == 2 ? CLONE_NEWNS : CLONE_NEWUSER) | SIGCHLD, 0, 0, 0, 0);
            if (r == 0) _exit(0);
            ok = r > 0;
            if (ok) waitpid(r, NULL, 0);
            break;
        case 4: {
            int fd = open("/proc/self/ns/mnt", O_RDONLY);
            ok = fd >= 0 && setns(fd, 0) == 0;
            break;
        }
        }
        _exit(ok ? 0 : 1);
    }
    int st = 1;
    waitpid(p, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int n = atoi(argv[1]), through = 0;
    for (int i = 0; i < n; i++)
        for (int what = 0; what < 5; what++) through += attempt(what);
    printf("through %d\n", through);
    return 0;
}
"#;

/// Without argv safety no fork is trapped: the filter's own refusals of
/// `unshare`, `clone` (new mount or user namespace) and `setns` are what
/// hold, even for a root program that keeps its capabilities.
#[test]
fn namespaces_are_refused_in_the_filter_without_fork_tracking() {
    let layout = Layout::new();
    let exe = common::build_c("nsattack", NSATTACK_C, &[]);
    let sandbox = unotify::Sandbox::builder()
        .deny_path(layout.denied())
        .argv_safety(false)
        .keep_caps(true)
        .build()
        .unwrap();
    let lines = common::run_ok(&sandbox, &exe, &["4"]);
    assert_eq!(lines, ["through 0"]);
}
