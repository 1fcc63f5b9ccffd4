//! The overlay route of a copy-on-write work directory (`--workdir`,
//! overlayfs in a mount namespace of the program's own, taken by default
//! where the host allows it, as here: the tests run as root): the route
//! taken is the expected one, its change set and commit equal the seccomp
//! route's for the same script (renames of DIR's directories included),
//! abort leaves the tree byte-identical, the program reaches neither DIR
//! itself nor the upper tree, and cannot forge overlayfs's marks.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_ok, build_c, stderr_of as stderr, stdout_of as stdout, unotify};
use unotify::{Sandbox, WorkdirRoute};

/// A fresh directory `tree` in a fresh parent named after `name` (the
/// layer is made next to the work directory).
fn fresh(name: &str) -> PathBuf {
    let parent = common::artefact_dir().join(format!("cowov-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&parent);
    fs::create_dir_all(parent.join("tree")).unwrap();
    parent.join("tree")
}

/// Each path's type, mode and contents (or symlink target).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let v = if m.is_dir() {
                walk(root, &p, out);
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("file {:o} {:?}", m.mode() & 0o7777, fs::read(&p).unwrap())
            };
            out.insert(rel, v);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A small tree with something for every kind of change.
fn seed(dir: &Path) {
    for d in ["deldir/in", "redo", "modedir", "d2f", "sub", "keep"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for (f, text) in [
        ("mod.txt", "m\n"),
        ("del.txt", "d\n"),
        ("deldir/in/x", "x\n"),
        ("redo/a", "a\n"),
        ("ren.txt", "r\n"),
        ("mode.txt", "p\n"),
        ("f2d", "f\n"),
        ("d2f/y", "y\n"),
        ("sub/inner.txt", "i\n"),
        ("sub/stays.txt", "s\n"),
        ("same.txt", "same\n"),
        ("keep/k", "k\n"),
        (
            "hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
        ),
    ] {
        fs::write(dir.join(f), text).unwrap();
    }
}

/// Every kind of change, then a look at the view (its listing and a
/// program built and run in it).
const SCRIPT: &str = "set -e
echo new > added.txt
echo changed >> mod.txt
rm del.txt
rm -r deldir
rm -r redo && mkdir redo && echo b > redo/b
mv ren.txt renamed.txt
chmod 600 mode.txt
chmod 700 modedir
rm f2d && mkdir f2d && echo in > f2d/x
rm -r d2f && echo now-file > d2f
ln -s mod.txt link
ln mod.txt hard
: >> same.txt
mkdir -p new/deep && echo z > new/deep/z
rm sub/inner.txt
cc -O2 -o hello hello.c && ./hello > out.txt
ls -R > listing.txt
cat listing.txt out.txt mod.txt redo/b d2f";

/// `unotify run --workdir . --workdir-route ROUTE FLAGS -- sh -c SCRIPT`
/// in `dir`, with the debug log (which tells the route).
fn run_route(dir: &Path, route: &str, flags: &[&str], script: &str) -> Output {
    unotify()
        .current_dir(dir)
        .env("RUST_LOG", "unotify=debug")
        .args(["run", "--workdir", ".", "--workdir-route", route])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

/// The route a run's debug log names.
fn route_of(out: &Output) -> &'static str {
    let log = stderr(out);
    if log.contains("the overlay route") {
        "overlay"
    } else if log.contains("the seccomp route") {
        "seccomp"
    } else {
        "untold"
    }
}

#[test]
fn the_route_taken_is_the_overlay_here_unless_an_option_needs_the_seccomp_route() {
    let dir = fresh("route");
    fs::write(dir.join("f"), "f\n").unwrap();
    let route = |b: unotify::SandboxBuilder| b.build().map(|s| s.workdir().unwrap().route());
    let b = || {
        Sandbox::builder()
            .workdir(&dir)
            .on_exit(unotify::ExitAction::Abort)
    };
    assert_eq!(route(b()).unwrap(), WorkdirRoute::Overlay);
    assert_eq!(
        route(b().workdir_route(WorkdirRoute::Seccomp)).unwrap(),
        WorkdirRoute::Seccomp
    );
    // Options the overlay cannot serve take the seccomp route by
    // themselves, and refuse a forced overlay.
    assert_eq!(route(b().max_disk(1 << 20)).unwrap(), WorkdirRoute::Seccomp);
    assert_eq!(
        route(b().deny_path(dir.join("f"))).unwrap(),
        WorkdirRoute::Seccomp
    );
    // Without a cgroup nothing refuses the block device holding DIR to a
    // program whose opens are not trapped: the seccomp route makes them.
    assert_eq!(route(b().cgroups(false)).unwrap(), WorkdirRoute::Seccomp);
    let forced = b().workdir_route(WorkdirRoute::Overlay).max_disk(1 << 20);
    let Err(err) = forced.build() else {
        panic!("a forced overlay with --max-disk was accepted")
    };
    assert!(err.to_string().contains("--max-disk"), "{err}");
    // The command says which route it took.
    let out = unotify()
        .current_dir(&dir)
        .env("RUST_LOG", "unotify=debug")
        .args(["run", "--workdir", ".", "--on-exit", "abort", "--", "true"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(route_of(&out), "overlay");
}

/// Directories of DIR to rename (with files and directories beneath).
fn seed_renames(dir: &Path) {
    for d in [
        "mvd/sub/deep",
        "mod/sub",
        "over",
        "empty",
        "twice/s",
        "old",
        "py/q",
        "into",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for (f, text) in [
        ("mvd/f", "f\n"),
        ("mvd/.hidden", "h\n"),
        ("mvd/sub/g", "g\n"),
        ("mvd/sub/deep/h", "deep\n"),
        ("mod/x", "x\n"),
        ("mod/sub/y", "y\n"),
        ("mod/sub/w", "w\n"),
        ("over/z", "z\n"),
        ("twice/t", "t\n"),
        ("twice/s/u", "u\n"),
        ("old/o", "o\n"),
        ("py/p", "p\n"),
        ("py/q/r", "r\n"),
    ] {
        fs::write(dir.join(f), text).unwrap();
    }
    std::os::unix::fs::symlink("f", dir.join("mvd/link")).unwrap();
    fs::set_permissions(
        dir.join("mvd/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
}

/// Renames of directories of DIR by `rename(2)` (which overlayfs without
/// `redirect_dir` answers with `EXDEV`): a directory with nested files and
/// directories, then one of those out of it; a rename then changes
/// inside; a rename over an existing empty directory; a renamed directory
/// renamed again (into another directory); a new directory at the old
/// name; Python's `os.rename`. Then a look at the view.
const RENAME_SCRIPT: &str = "set -e
ren() { python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' \"$1\" \"$2\"; }
ren mvd moved
ren moved/sub subout
ren mod mod2 && echo more >> mod2/x && rm mod2/sub/y && echo new > mod2/sub/new && mkdir mod2/nd
chmod 700 mod2
ren over empty
ren twice twice1 && ren twice1 into/twice2 && echo v > into/twice2/s/v
ren old old2 && mkdir old && echo fresh > old/n
python3 -c 'import os; os.rename(\"py\", \"into/py2\"); os.rename(\"into/py2/q\", \"q2\")'
find . -printf '%p %y %m %l\\n' | LC_ALL=C sort
find . -type f | LC_ALL=C sort | xargs cat";

#[test]
fn both_routes_give_the_same_view_change_set_and_commit() {
    same_on_both_routes(
        "same",
        seed,
        SCRIPT,
        &[
            "A added.txt",
            "M mod.txt",
            "D del.txt",
            "D deldir/in/x",
            "D redo/a",
        ],
    );
}

#[test]
fn renamed_directories_are_the_same_on_both_routes() {
    let committed = same_on_both_routes(
        "ren",
        seed_renames,
        RENAME_SCRIPT,
        &[
            "D mvd/\n",
            "A moved/\n",
            "A moved/f\n",
            "A moved/link\n",
            "A subout/deep/h\n",
            "A mod2/sub/w\n",
            "A empty/z\n",
            "D over/\n",
            "D over/z\n",
            "A into/twice2/s/u\n",
            "A old/n\n",
            "A old2/o\n",
            "A into/py2/p\n",
            "A q2/r\n",
        ],
    );
    for (path, v) in [
        ("moved/f", "file 644 [102, 10]"),
        ("moved/.hidden", "file 644 [104, 10]"),
        ("moved/link", "link f"),
        ("subout", "dir 750"),
        ("subout/deep/h", "file 644 [100, 101, 101, 112, 10]"),
        ("mod2", "dir 700"),
        ("mod2/x", "file 644 [120, 10, 109, 111, 114, 101, 10]"),
        ("mod2/sub/w", "file 644 [119, 10]"),
        ("empty/z", "file 644 [122, 10]"),
        ("into/twice2/s/u", "file 644 [117, 10]"),
        ("old2/o", "file 644 [111, 10]"),
        ("q2/r", "file 644 [114, 10]"),
    ] {
        assert_eq!(committed.get(path).map(String::as_str), Some(v), "{path}");
    }
    for gone in ["mvd", "mod", "over", "twice", "py", "mod2/sub/y", "old/o"] {
        assert!(!committed.contains_key(gone), "{gone}");
    }
}

/// Runs `script` on four trees `seed` makes: dry runs on both routes give
/// the same output (the view and the listed changes, which hold
/// `expected`) and drop the changes; commits on both routes give the same
/// tree (returned).
fn same_on_both_routes(
    name: &str,
    seed: fn(&Path),
    script: &str,
    expected: &[&str],
) -> BTreeMap<String, String> {
    let trees: Vec<PathBuf> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| {
            let d = fresh(&format!("{name}-{n}"));
            seed(&d);
            d
        })
        .collect();
    let before = snapshot(&trees[0]);
    // Dry runs: the view (the script's output) and the listed changes.
    let dry: Vec<Output> = [("seccomp", &trees[0]), ("overlay", &trees[1])]
        .iter()
        .map(|(route, d)| {
            let out = run_route(d, route, &["--dry-run"], script);
            assert_ok(&out);
            assert_eq!(route_of(&out), *route, "{}", stderr(&out));
            out
        })
        .collect();
    assert_eq!(stdout(&dry[0]), stdout(&dry[1]));
    for letter in expected {
        assert!(
            stdout(&dry[1]).contains(letter),
            "{letter}:\n{}",
            stdout(&dry[1])
        );
    }
    // A dry run drops the changes.
    assert_eq!(snapshot(&trees[0]), before);
    assert_eq!(snapshot(&trees[1]), before);
    // Commits: the same tree.
    for (route, d) in [("seccomp", &trees[2]), ("overlay", &trees[3])] {
        let out = run_route(d, route, &[], script);
        assert_ok(&out);
        assert_eq!(route_of(&out), route);
    }
    let (a, b) = (snapshot(&trees[2]), snapshot(&trees[3]));
    assert_ne!(a, before);
    assert_eq!(a, b);
    for d in &trees {
        let left: Vec<_> = fs::read_dir(d.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("unotify-cow"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    b
}

#[test]
fn the_change_set_value_is_the_same_on_both_routes() {
    for (name, seed, script, least) in [
        ("value", seed as fn(&Path), SCRIPT, 20),
        ("value-ren", seed_renames, RENAME_SCRIPT, 30),
    ] {
        same_change_set(name, seed, script, least);
    }
}

/// The library's change set after `script` on a tree `seed` makes: the
/// same on both routes, with at least `least` changes.
fn same_change_set(name: &str, seed: fn(&Path), script: &str, least: usize) {
    let sets: Vec<_> = [WorkdirRoute::Seccomp, WorkdirRoute::Overlay]
        .iter()
        .map(|route| {
            let dir = fresh(&format!("{name}-{route:?}"));
            seed(&dir);
            let sandbox = Sandbox::builder()
                .workdir(&dir)
                .workdir_route(*route)
                .build()
                .unwrap();
            assert_eq!(sandbox.workdir().unwrap().route(), *route);
            let mut cmd = unotify::Command::new("sh");
            cmd.args(["-c", script])
                .current_dir(&dir)
                .stdout(unotify::Stdio::Null);
            assert!(sandbox.run(&mut cmd).unwrap().success());
            let changes = sandbox.workdir().unwrap().changes().unwrap();
            sandbox.workdir().unwrap().abort().unwrap();
            changes
        })
        .collect();
    assert!(sets[0].len() > least, "{:?}", sets[0]);
    assert_eq!(sets[0], sets[1]);
}

#[test]
fn abort_on_the_overlay_route_leaves_the_tree_byte_identical() {
    let dir = fresh("abort");
    seed(&dir);
    let before = snapshot(&dir);
    let out = run_route(&dir, "overlay", &["--on-exit", "abort"], SCRIPT);
    assert_ok(&out);
    assert!(stdout(&out).contains("hello"), "{}", stdout(&out));
    assert_eq!(snapshot(&dir), before);
    // A failed run is aborted by default.
    let out = run_route(&dir, "overlay", &[], "echo x > added; rm mod.txt; exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(snapshot(&dir), before);
    // Renamed directories too.
    let dir = fresh("abort-ren");
    seed_renames(&dir);
    let before = snapshot(&dir);
    let out = run_route(&dir, "overlay", &["--on-exit", "abort"], RENAME_SCRIPT);
    assert_ok(&out);
    assert!(stdout(&out).contains("./subout/deep/h"), "{}", stdout(&out));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_user_without_privileges_falls_back_to_the_seccomp_route() {
    let dir = fresh("nonroot");
    fs::write(dir.join("f"), "orig\n").unwrap();
    for p in [dir.parent().unwrap(), dir.as_path(), &dir.join("f")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .args(["run", "--workdir", ".", "--", "sh", "-c", "echo new >> f"])
        .current_dir(&dir)
        .env("RUST_LOG", "unotify=debug")
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(route_of(&out), "seccomp", "{}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "orig\nnew\n");
}

/// Tries every way out of the overlay's view, `ROUNDS` times each, and
/// prints how many got through: mount changes and namespaces (to uncover
/// DIR), the host's root through another process's `/proc/PID/root`, the
/// upper tree and the state directory by their paths (and from DIR's
/// parent), DIR or its parent (which holds the storage) renamed away, an
/// open by the handle of a file of the view (the lower file's), and a
/// relative write from the working directory it started in. Arguments:
/// DIR, the upper tree, the state directory.
const ESCAPE_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
static int leaks;
static void count(const char *what, int ok) {
    if (ok) { leaks++; printf("through: %s\n", what); }
}
static int create(const char *path) {
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}
int main(int argc, char **argv) {
    const char *dir = argv[1], *upper = argv[2], *state = argv[3];
    char p[4096];
    for (int round = 0; round < 3; round++) {
        count("umount2 detach", umount2(dir, MNT_DETACH) == 0);
        count("umount2", umount2(dir, 0) == 0);
        count("mount bind", mount(upper, dir, NULL, MS_BIND, NULL) == 0);
        count("mount private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
        count("unshare newns", unshare(CLONE_NEWNS) == 0);
        count("unshare newuser", unshare(CLONE_NEWUSER) == 0);
        int ns = open("/proc/1/ns/mnt", O_RDONLY);
        count("setns", ns >= 0 && setns(ns, CLONE_NEWNS) == 0);
        if (ns >= 0) close(ns);
        count("open_tree", syscall(SYS_open_tree, AT_FDCWD, dir, 1 /* OPEN_TREE_CLONE */) >= 0);
        count("fsopen", syscall(SYS_fsopen, "tmpfs", 0) >= 0);
        count("pivot_root", syscall(SYS_pivot_root, ".", ".") == 0);
        count("chroot", chroot("/") == 0);
        snprintf(p, sizeof p, "/proc/1/root%s/leak-init", dir);
        count("/proc/1/root", create(p));
        snprintf(p, sizeof p, "/proc/%d/root%s/leak-parent", getppid(), dir);
        count("/proc/ppid/root", create(p));
        snprintf(p, sizeof p, "%s/leak-upper", upper);
        count("upper", create(p));
        snprintf(p, sizeof p, "%s/../%s/leak-upper2", dir, strrchr(upper, '/') + 1);
        count("upper from DIR/..", create(p));
        snprintf(p, sizeof p, "%s/journal", state);
        count("state", create(p));
        count("mkdir upper", mkdir(upper, 0755) == 0 || mkdir(p, 0755) == 0);
        /* DIR's parent (which holds the storage too) moved away, so that
           the supervisor's paths name another tree. */
        char parent[4096], moved[4200];
        snprintf(parent, sizeof parent, "%s", dir);
        *strrchr(parent, '/') = 0;
        snprintf(moved, sizeof moved, "%s-moved", parent);
        int r = rename(parent, moved);
        count("rename DIR's parent", r == 0);
        if (r == 0) rename(moved, parent);
        snprintf(moved, sizeof moved, "%s-moved", dir);
        r = rename(dir, moved);
        count("rename DIR", r == 0);
        if (r == 0) rename(moved, dir);
        /* A handle of a file of the view holds the lower file's handle:
           opened beneath the overlay, it is DIR's own file. */
        struct file_handle *fh = malloc(sizeof *fh + 128), *lo = malloc(sizeof *lo + 128);
        int mid, fd = -1;
        fh->handle_bytes = 128;
        snprintf(p, sizeof p, "%s/f", dir);
        if (name_to_handle_at(AT_FDCWD, p, fh, &mid, 0x200 /* AT_HANDLE_FID */) == 0) {
            unsigned char *b = fh->f_handle;
            if (b[4] == 0xfb) b += 3;
            if (b[1] == 0xfb && b[2] > 21) {
                lo->handle_type = b[4];
                lo->handle_bytes = b[2] - 21;
                memcpy(lo->f_handle, b + 21, lo->handle_bytes);
                int root = open("/", O_RDONLY | O_DIRECTORY);
                fd = open_by_handle_at(root, lo, O_WRONLY | O_APPEND);
                close(root);
            }
        }
        count("open_by_handle_at", fd >= 0);
        if (fd >= 0) { write(fd, "ESCAPED\n", 8); close(fd); }
        free(fh);
        free(lo);
    }
    /* The view: a relative write from the starting directory, and one by
       DIR's path, are the program's own. */
    count("relative write failed", !create("view-rel"));
    snprintf(p, sizeof p, "%s/view-abs", dir);
    count("absolute write failed", !create(p));
    printf("leaks %d\n", leaks);
    return 0;
}
"#;

fn escape_run(dir: &Path, flags: &[&str]) -> Output {
    let exe = build_c("cowov_escape", ESCAPE_C, &[]);
    let parent = dir.parent().unwrap();
    let upper = parent.join(".tree.unotify-cow");
    let state = parent.join(".tree.unotify-cow.state");
    unotify()
        .current_dir(dir)
        .env("RUST_LOG", "unotify=debug")
        .args(["run", "--workdir", ".", "--workdir-route", "overlay"])
        .args(flags)
        .args(["--on-exit", "abort", "--"])
        .arg(&exe)
        .arg(dir)
        .arg(&upper)
        .arg(&state)
        .output()
        .unwrap()
}

#[test]
fn redteam_the_program_reaches_neither_dir_nor_the_upper_tree_on_the_overlay_route() {
    // With its capabilities kept too (then the filter alone refuses the
    // mount family and new namespaces).
    for flags in [&[][..], &["--keep-caps"][..]] {
        let dir = fresh(if flags.is_empty() { "esc" } else { "esc-caps" });
        fs::write(dir.join("f"), "f\n").unwrap();
        let before = snapshot(&dir);
        let out = escape_run(&dir, flags);
        assert_ok(&out);
        assert_eq!(route_of(&out), "overlay");
        assert!(
            stdout(&out).contains("leaks 0\n"),
            "{flags:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(snapshot(&dir), before, "{flags:?}");
    }
}

/// A program started above DIR (in its parent, which is bound onto itself
/// in the program's namespace) reaches DIR by a relative path through the
/// overlay, not beneath it (before the child took its working directory
/// again after the mounts, the write landed in DIR despite `abort`).
#[test]
fn a_relative_path_from_above_dir_reaches_the_view() {
    let dir = fresh("above");
    fs::write(dir.join("f"), "f\n").unwrap();
    let before = snapshot(&dir);
    let out = unotify()
        .current_dir(dir.parent().unwrap())
        .args(["run", "--workdir"])
        .arg(&dir)
        .args(["--workdir-route", "overlay", "--on-exit", "abort", "--"])
        .args([
            "sh",
            "-c",
            "echo x > tree/from-above && cat tree/from-above && echo y >> tree/f",
        ])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "x\n");
    assert_eq!(snapshot(&dir), before, "a write from above DIR reached DIR");
}

#[test]
fn keep_on_the_overlay_route_leaves_the_upper_directory_and_dir_untouched() {
    let dir = fresh("keep");
    seed(&dir);
    let before = snapshot(&dir);
    let out = run_route(
        &dir,
        "overlay",
        &["--on-exit", "keep"],
        "echo new > added.txt; rm del.txt; python3 -c 'import os; os.rename(\"sub\", \"sub2\")'",
    );
    assert_ok(&out);
    assert_eq!(snapshot(&dir), before);
    let parent = dir.parent().unwrap();
    let upper = parent.join(".tree.unotify-cow");
    assert_eq!(
        fs::read_to_string(upper.join("added.txt")).unwrap(),
        "new\n"
    );
    // The deletion is overlayfs's whiteout; the work directory is gone.
    let wh = fs::symlink_metadata(upper.join("del.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    // A renamed directory is kept whole (filled in: readable without
    // following overlayfs's redirect), its old path whited out.
    assert_eq!(
        fs::read_to_string(upper.join("sub2/inner.txt")).unwrap(),
        "i\n"
    );
    assert_eq!(
        fs::read_to_string(upper.join("sub2/stays.txt")).unwrap(),
        "s\n"
    );
    let wh = fs::symlink_metadata(upper.join("sub")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!parent.join(".tree.unotify-cow.work").exists());
    // A kept layer is refused until it is removed.
    let again = run_route(&dir, "overlay", &[], "true");
    assert!(!again.status.success(), "{}", stderr(&again));
    assert_eq!(snapshot(&dir), before);
}

/// Marks the program sets to forge overlayfs's: `user.overlay.opaque`
/// and `trusted.overlay.opaque` on directories of DIR, and
/// `trusted.overlay.redirect` and `user.overlay.redirect` naming them on
/// new directories, 20 of each. Prints how many marks were set, by
/// name.
const FORGE_PY: &str = r#"
import os
set_ = {}
for i in range(20):
    os.mkdir(f"n{i}")
    for path, name, value in [
        (f"u{i}", "user.overlay.opaque", b"y"),
        (f"t{i}", "trusted.overlay.opaque", b"y"),
        (f"n{i}", "trusted.overlay.redirect", f"/u{i}".encode()),
        (f"n{i}", "user.overlay.redirect", f"/t{i}".encode()),
    ]:
        try:
            os.setxattr(path, name, value)
            set_[name] = set_.get(name, 0) + 1
        except OSError as e:
            print(name, e)
print("set", sorted(set_.items()))
"#;

#[test]
fn redteam_the_program_cannot_forge_opaque_or_redirected_directories() {
    // The marks (`trusted.*` through the overlay is stored escaped;
    // `user.*` is the program's, never read) change nothing: no file of
    // DIR is deleted, no new directory gets DIR's files.
    let dir = fresh("forge");
    for i in 0..20 {
        for d in [format!("u{i}"), format!("t{i}")] {
            fs::create_dir(dir.join(&d)).unwrap();
            fs::write(dir.join(&d).join("f"), "f\n").unwrap();
        }
    }
    let before = snapshot(&dir);
    let out = run_route(
        &dir,
        "overlay",
        // With its capabilities (CAP_SYS_ADMIN sets `trusted.*`).
        &["--keep-caps", "--on-exit", "commit"],
        &format!("python3 -c '{FORGE_PY}'"),
    );
    assert_ok(&out);
    assert_eq!(route_of(&out), "overlay");
    // The marks were set (else the test would show nothing).
    assert!(
        stdout(&out).contains(
            "[('trusted.overlay.opaque', 20), ('trusted.overlay.redirect', 20), ('user.overlay.opaque', 20), ('user.overlay.redirect', 20)]"
        ),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let after = snapshot(&dir);
    let lost = before.keys().filter(|k| !after.contains_key(*k)).count();
    let planted = (0..20)
        .filter(|i| fs::read_dir(dir.join(format!("n{i}"))).unwrap().count() > 0)
        .count();
    assert_eq!((lost, planted), (0, 0), "{}", stderr(&out));
}
