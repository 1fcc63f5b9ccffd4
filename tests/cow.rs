//! Copy-on-write work directory (`--workdir`): the program sees its own
//! changes, the host tree is untouched until the commit, the commit is the
//! bare run's result and survives a kill, and no route writes the lower
//! tree.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};
use std::time::{Duration, Instant};

use common::{build_c, stderr_of as stderr, stdout_of as stdout, unotify};

/// A fresh directory `name` in a fresh parent (the layer is made next to
/// the work directory).
fn fresh(name: &str) -> PathBuf {
    let parent = common::artefact_dir().join(format!("cow-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&parent);
    fs::create_dir_all(parent.join(name)).unwrap();
    parent.join(name)
}

/// What a tree holds, comparable: each path's type, mode and contents (or
/// symlink target), minus the paths `skip` names (compared otherwise).
fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let v = if m.is_dir() {
                walk(root, &p, skip, out);
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else {
                let bytes = fs::read(&p).unwrap();
                format!(
                    "file {:o} {} {:x}",
                    m.mode() & 0o7777,
                    bytes.len(),
                    fnv(&bytes)
                )
            };
            out.insert(rel, v);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

/// `unotify run --workdir DIR FLAGS -- sh -c SCRIPT`, in DIR.
fn run_in(dir: &Path, flags: &[&str], script: &str) -> Output {
    unotify()
        .current_dir(dir)
        .args(["run", "--workdir", "."])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// No layer is left next to the work directory.
fn assert_no_layer(dir: &Path) {
    let parent = dir.parent().unwrap();
    let left: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("unotify-cow"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

const PY: &str = r#"
import os
with open("new.txt", "w") as f: f.write("new")
os.rename("new.txt", "a.txt")            # over a lower file
os.remove("b.txt")                         # a lower file deleted
with open("c.txt", "a") as f: f.write("+") # a lower file written
os.mkdir("d"); os.symlink("../c.txt", "d/l")
print(sorted(os.listdir(".")))
print(open("a.txt").read(), open("c.txt").read(), open("d/l").read())
print(os.path.exists("b.txt"), os.path.exists(os.path.abspath("b.txt")))
try:
    os.stat("b.txt")
except FileNotFoundError:
    print("stat: ENOENT")
"#;

#[test]
fn python_sees_its_own_changes_and_abort_leaves_the_tree() {
    let dir = fresh("py");
    for (n, c) in [("a.txt", "A"), ("b.txt", "B"), ("c.txt", "C")] {
        fs::write(dir.join(n), c).unwrap();
    }
    let before = snapshot(&dir, &[]);
    let script = format!("python3 -c '{}'", PY.replace('\'', "\\'"));
    let out = run_in(&dir, &["--on-exit", "abort"], &script);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "['a.txt', 'c.txt', 'd']\nnew C+ C+\nFalse False\nstat: ENOENT\n",
        "stderr: {}",
        stderr(&out)
    );
    assert!(stderr(&out).is_empty(), "warnings: {}", stderr(&out));
    assert_eq!(snapshot(&dir, &[]), before, "abort changed the host tree");
    assert_no_layer(&dir);

    // Committed: the same changes in the host tree.
    let out = run_in(&dir, &[], &script);
    assert_ok(&out);
    assert_eq!(fs::read_to_string(dir.join("a.txt")).unwrap(), "new");
    assert_eq!(fs::read_to_string(dir.join("c.txt")).unwrap(), "C+");
    assert!(!dir.join("b.txt").exists());
    assert_eq!(
        fs::read_link(dir.join("d/l")).unwrap(),
        Path::new("../c.txt")
    );
    assert_no_layer(&dir);
}

/// git with fixed identities and dates: its objects are the same in any run.
const GIT: &str = "export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@b GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@b \
GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z' HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1; ";

fn git_repo(dir: &Path) {
    fs::write(dir.join("README"), "readme\n").unwrap();
    fs::create_dir(dir.join("src")).unwrap();
    fs::write(dir.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    let st = StdCommand::new("sh")
        .current_dir(dir)
        .args([
            "-c",
            &format!("{GIT} git init -q -b main && git add -A && git commit -q -m first"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    // The change the runs commit.
    fs::write(dir.join("src/util.c"), "int util(void) { return 1; }\n").unwrap();
    fs::write(dir.join("README"), "readme, changed\n").unwrap();
}

/// `.git/index` holds the files' stat data (inode numbers, times), which
/// differ by nature between two runs: it is compared by `git ls-files -s`
/// (what it records of the contents) instead of byte by byte.
fn git_view(dir: &Path) -> (BTreeMap<String, String>, String) {
    let ls = StdCommand::new("git")
        .current_dir(dir)
        .args(["ls-files", "-s"])
        .output()
        .unwrap();
    let fsck = StdCommand::new("git")
        .current_dir(dir)
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "git fsck: {}", stderr(&fsck));
    (snapshot(dir, &[".git/index"]), stdout(&ls))
}

#[test]
fn git_commit_under_workdir_abort_leaves_the_tree_commit_equals_bare() {
    let cow = fresh("gitcow");
    let bare = fresh("gitbare");
    git_repo(&cow);
    git_repo(&bare);
    let script = format!(
        "{GIT} git init -q && git add -A && git commit -q -m second && git log --oneline | wc -l"
    );
    let before = snapshot(&cow, &[]);

    let out = run_in(&cow, &["--on-exit", "abort"], &script);
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "2");
    assert!(stderr(&out).is_empty(), "warnings: {}", stderr(&out));
    assert_eq!(snapshot(&cow, &[]), before, "abort changed the host tree");

    let out = run_in(&cow, &[], &script);
    assert_ok(&out);
    let st = StdCommand::new("sh")
        .current_dir(&bare)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(git_view(&cow), git_view(&bare));
    assert_no_layer(&cow);
}

fn c_project(dir: &Path) {
    fs::write(dir.join("util.h"), "int answer(void);\n").unwrap();
    fs::write(
        dir.join("util.c"),
        "#include \"util.h\"\nint answer(void) { return 42; }\n",
    )
    .unwrap();
    fs::write(
        dir.join("main.c"),
        "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"hello %d\\n\", answer()); return 0; }\n",
    )
    .unwrap();
    fs::write(
        dir.join("Makefile"),
        "hello: main.o util.o\n\tcc -o $@ $^\n%.o: %.c util.h\n\tcc -O2 -c -o $@ $<\nclean:\n\trm -f hello *.o\n",
    )
    .unwrap();
}

#[test]
fn make_builds_and_runs_its_program_under_workdir() {
    let dir = fresh("make");
    c_project(&dir);
    let before = snapshot(&dir, &[]);
    let out = run_in(
        &dir,
        &["--on-exit", "abort"],
        "make -s -j8 && ./hello && make -s clean && ls",
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), "hello 42\nMakefile\nmain.c\nutil.c\nutil.h\n");
    assert!(stderr(&out).is_empty(), "warnings: {}", stderr(&out));
    assert_eq!(snapshot(&dir, &[]), before);

    let out = run_in(&dir, &[], "make -s -j8 && ./hello");
    assert_ok(&out);
    assert_eq!(stdout(&out), "hello 42\n");
    let built = StdCommand::new(dir.join("hello")).output().unwrap();
    assert_eq!(stdout(&built), "hello 42\n");
    // Up to date after the commit (times kept).
    let again = StdCommand::new("make")
        .current_dir(&dir)
        .args(["-q", "hello"])
        .status()
        .unwrap();
    assert!(again.success(), "make thinks the committed build is stale");
}

#[test]
fn dry_run_prints_the_files_a_build_creates() {
    let dir = fresh("dry");
    c_project(&dir);
    fs::write(dir.join("old.txt"), "x").unwrap();
    let before = snapshot(&dir, &[]);
    let out = run_in(
        &dir,
        &["--dry-run"],
        "make -s && rm old.txt && echo more >> util.h",
    );
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "A hello\nA main.o\nD old.txt\nM util.h\nA util.o\n"
    );
    assert_eq!(snapshot(&dir, &[]), before);
    assert_no_layer(&dir);
}

#[test]
fn max_disk_gives_enospc() {
    let dir = fresh("quota");
    let out = run_in(
        &dir,
        &["--max-disk", "64K", "--on-exit", "commit"],
        "head -c 32768 /dev/zero > small && echo small ok; head -c 1000000 /dev/zero > big; echo big $?",
    );
    assert!(
        stdout(&out).contains("small ok\nbig 1"),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("No space left on device"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn escape_routes_leak_nothing_into_the_lower_tree() {
    let exe = build_c("cow_escape", include_str!("c/cow_escape.c"), &["-pthread"]);
    let dir = fresh("escape");
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("victim"), "orig\n").unwrap();
    fs::set_permissions(dir.join("victim"), fs::Permissions::from_mode(0o644)).unwrap();
    let before = snapshot(&dir, &[]);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let out = unotify()
        .current_dir(&dir)
        .args(["run", "--workdir", ".", "--on-exit", "abort", "--"])
        .arg(&exe)
        .args([&format!("../{name}"), "300"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "leaks 0\n", "stderr: {}", stderr(&out));
    assert_eq!(snapshot(&dir, &[]), before);
}

#[test]
fn a_commit_killed_midway_leaves_each_file_old_or_new_and_is_finished_later() {
    let dir = fresh("kill");
    let storage = dir.parent().unwrap().join("storage");
    for i in 0..2000 {
        fs::write(dir.join(format!("f{i}")), "old").unwrap();
    }
    let script = "for i in $(seq 0 1999); do echo new > f$i; done; for i in $(seq 0 1999); do echo n > g$i; done";
    let mut caught = false;
    for _ in 0..10 {
        let mut child = unotify()
            .current_dir(&dir)
            .args(["run", "--workdir", ".", "--storage"])
            .arg(&storage)
            .args(["--", "sh", "-c", script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if storage.join("state/journal").exists() {
                let _ = child.kill(); // SIGKILL
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.wait();
        if caught && storage.join("state/journal").exists() {
            break;
        }
        caught = false;
        // Committed before the kill: start again from the old tree.
        for i in 0..2000 {
            fs::write(dir.join(format!("f{i}")), "old").unwrap();
            let _ = fs::remove_file(dir.join(format!("g{i}")));
        }
    }
    assert!(caught, "never caught a commit in progress");
    // Each file is the old one or the new one, never torn.
    for i in 0..2000 {
        let f = fs::read_to_string(dir.join(format!("f{i}"))).unwrap();
        assert!(f == "old" || f == "new\n", "f{i} torn: {f:?}");
        if let Ok(g) = fs::read_to_string(dir.join(format!("g{i}"))) {
            assert_eq!(g, "n\n");
        }
    }
    // Reported, then finished by the next run.
    let check = unotify()
        .args(["cow-recover", "--check"])
        .arg(storage.join("state"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    let next = unotify()
        .current_dir(&dir)
        .args(["run", "--workdir", ".", "--storage"])
        .arg(&storage)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_ok(&next);
    assert!(
        stderr(&next).contains("left unfinished"),
        "stderr: {}",
        stderr(&next)
    );
    for i in 0..2000 {
        assert_eq!(
            fs::read_to_string(dir.join(format!("f{i}"))).unwrap(),
            "new\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join(format!("g{i}"))).unwrap(),
            "n\n"
        );
    }
}

#[test]
fn the_change_set_is_a_value_for_the_host_to_review() {
    use unotify::{ChangeKind, EntryType, Sandbox};
    let dir = fresh("lib");
    fs::write(dir.join("keep"), "k").unwrap();
    fs::write(dir.join("gone"), "g").unwrap();
    fs::write(dir.join("edit"), "e").unwrap();
    let sandbox = Sandbox::builder().workdir(&dir).build().unwrap();
    let mut cmd = unotify::Command::new("sh");
    cmd.args(["-c", "rm gone; echo x >> edit; mkdir new; ln -s keep new/l"])
        .current_dir(&dir);
    let status = sandbox.run(&mut cmd).unwrap();
    assert!(status.success());
    let w = sandbox.workdir().unwrap();
    let got: Vec<_> = w
        .changes()
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind, c.entry))
        .collect();
    assert_eq!(
        got,
        vec![
            (PathBuf::from("edit"), ChangeKind::Modified, EntryType::File),
            (PathBuf::from("gone"), ChangeKind::Deleted, EntryType::File),
            (PathBuf::from("new"), ChangeKind::Added, EntryType::Dir),
            (
                PathBuf::from("new/l"),
                ChangeKind::Added,
                EntryType::Symlink
            ),
        ]
    );
    assert!(dir.join("gone").exists(), "changed before the commit");
    w.commit().unwrap();
    assert!(!dir.join("gone").exists());
    assert_eq!(fs::read_to_string(dir.join("edit")).unwrap(), "ex\n");
}

#[test]
fn a_failed_run_is_aborted_or_kept_as_asked() {
    let dir = fresh("onerror");
    fs::write(dir.join("f"), "old").unwrap();
    let script = "echo new > f; echo made > g; exit 3";
    // Default: a failure drops the changes; the program's status is kept.
    let out = run_in(&dir, &[], script);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "old");
    assert!(!dir.join("g").exists());
    assert_no_layer(&dir);
    // Kept: the layer stays and is named; the next run refuses to start
    // over it until it is removed.
    let out = run_in(&dir, &["--on-error", "keep"], script);
    assert_eq!(out.status.code(), Some(3));
    let upper = dir.parent().unwrap().join(".onerror.unotify-cow");
    assert!(
        stderr(&out).contains(&upper.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(upper.join("g")).unwrap(), "made\n");
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "old");
    let out = run_in(&dir, &[], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("kept layer"), "{}", stderr(&out));
    // Committed on failure when asked.
    fs::remove_dir_all(&upper).unwrap();
    fs::remove_dir_all(dir.parent().unwrap().join(".onerror.unotify-cow.state")).unwrap();
    let out = run_in(&dir, &["--on-error", "commit"], script);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(fs::read_to_string(dir.join("g")).unwrap(), "made\n");
}

#[test]
fn a_non_root_user_works_in_a_layer_without_privileges() {
    // The directory and its parent (where the layer goes) belong to nobody,
    // who runs unotify itself: no capability, no user namespace, no mount.
    let dir = fresh("nobody");
    fs::write(dir.join("f"), "orig\n").unwrap();
    for p in [dir.parent().unwrap(), dir.as_path(), &dir.join("f")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let out = StdCommand::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .args(["run", "--workdir", ".", "--on-exit", "abort", "--", "sh", "-c"])
        .arg("echo new >> f; mkdir d; echo x > d/y; cat f; ls; cat /proc/self/status | grep -c '^CapEff:.0000000000000000'")
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out), "orig\nnew\nd\nf\n1\n");
    assert!(stderr(&out).is_empty(), "warnings: {}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "orig\n");
    assert!(!dir.join("d").exists());
}

#[test]
fn a_denied_file_in_the_work_directory_stays_denied_in_the_layer() {
    // A write open copies a shared file up: the denied file must be
    // refused before, not copied (its copy would not be denied and would
    // give its contents).
    let dir = fresh("denied");
    fs::write(dir.join("secret"), "SECRET\n").unwrap();
    let script = "python3 -c '
got = 0
for mode in (\"r\", \"r+\", \"a+\"):
    try:
        f = open(\"secret\", mode); f.seek(0); got += \"SECRET\" in f.read()
    except PermissionError:
        pass
print(\"read\", got)'";
    let out = unotify()
        .current_dir(&dir)
        .args([
            "run",
            "--deny-path",
            "secret",
            "--workdir",
            ".",
            "--on-exit",
            "commit",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "read 0\n", "stderr: {}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.join("secret")).unwrap(), "SECRET\n");
}

#[test]
fn the_program_cannot_forge_the_commit_journal() {
    // A journal in the storage directory is applied by the next run: the
    // program must not write one there (it could name any directory).
    let dir = fresh("journal");
    let state = dir.parent().unwrap().join(".journal.unotify-cow.state");
    let script = format!(
        "n=0; for i in 1 2 3 4 5; do \
         printf 'unotify-cow-journal 1\\nlower %s\\nupper %s\\nR %s\\nend\\n' x y z > {s}/journal && n=$((n+1)); \
         mkdir {s}/d 2>/dev/null && n=$((n+1)); \
         ln -s /etc {s}/journal.tmp 2>/dev/null && n=$((n+1)); \
         done; echo wrote $n",
        s = state.display()
    );
    let out = run_in(&dir, &["--on-exit", "abort"], &script);
    assert_eq!(stdout(&out), "wrote 0\n", "stderr: {}", stderr(&out));
    assert!(!state.join("journal").exists());
}
