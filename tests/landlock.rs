//! File system confinement with Landlock (`fs_read`, `fs_write`,
//! `fs_system`; `-r`, `-w`, `--fs-system`): what gets through outside the
//! allow lists, by every name, counted by `landlock_attack.c`; a real
//! build; the per-right degradation; the command's errors.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{artefact_dir, build_c, run_piped, run_unotify, stderr_of, stdout_of, unotify};
use unotify::landlock::Right;
use unotify::{Command, Error, Sandbox, Stdio};

const ROUNDS: &str = "50";

fn attack() -> PathBuf {
    build_c("landlock_attack", include_str!("landlock_attack.c"), &[])
}

/// A fresh directory for one test.
fn scratch(tag: &str) -> PathBuf {
    // Beside the artefact directory (which the attack program is read
    // from), not beneath it.
    let dir = artefact_dir()
        .parent()
        .unwrap()
        .join(format!("landlock-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn counts(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The read layout: `allowed/` (file.txt, a symlink to the secret, a hard
/// link to it made before the sandbox), `outside/secret.txt`, and
/// `outside2/hl`, another hard link to the secret.
fn read_layout(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = scratch(tag);
    let (allowed, outside, outside2) = (
        base.join("allowed"),
        base.join("outside"),
        base.join("outside2"),
    );
    for d in [&allowed, &outside, &outside2] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(allowed.join("file.txt"), "fine\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", allowed.join("sym")).unwrap();
    std::fs::hard_link(outside.join("secret.txt"), outside2.join("hl")).unwrap();
    std::fs::hard_link(outside.join("secret.txt"), allowed.join("hl_inside")).unwrap();
    (allowed, outside, outside2)
}

fn assert_read_confined(c: &BTreeMap<String, u64>) {
    assert_eq!(c["inside_read"], 50, "{c:?}");
    for k in [
        "dotdot",
        "symlink",
        "hardlink_outside",
        "proc_self_root",
        "inherited_fds",
        "dirfd",
        "opath_reopen",
        "link_in",
    ] {
        assert_eq!(c[k], 0, "{k} got through: {c:?}");
    }
    // Landlock decides by the path a file is reached through: a hard link
    // placed in the allowed tree before the sandbox is readable there (as
    // documented on `fs_read`).
    assert_eq!(c["hardlink_inside"], 50, "{c:?}");
}

#[test]
fn reads_outside_the_allow_list_are_refused_by_every_name() {
    let exe = attack();
    let (allowed, outside, outside2) = read_layout("read");
    let sandbox = Sandbox::builder()
        .fs_system()
        .fs_read(exe.parent().unwrap())
        .fs_write(&allowed)
        .build()
        .expect("build");
    assert!(sandbox.degraded().is_empty(), "{:?}", sandbox.degraded());
    let (out, status) = run_piped(
        &sandbox,
        &exe,
        &["read", s(&allowed), s(&outside), s(&outside2), ROUNDS],
    );
    assert!(status.success(), "{status:?}: {out}");
    let c = counts(&out);
    eprintln!("library, read: {c:?}");
    assert_read_confined(&c);
}

#[test]
fn reads_stay_confined_when_paths_are_also_denied() {
    // Path denial opens files on the program's behalf, outside its
    // Landlock domain: those opens are held to the allow lists too.
    let exe = attack();
    let (allowed, outside, outside2) = read_layout("read-deny");
    std::fs::write(allowed.join("denied.txt"), "no\n").unwrap();
    let sandbox = Sandbox::builder()
        .fs_system()
        .fs_read(exe.parent().unwrap())
        .fs_write(&allowed)
        .deny_path(allowed.join("denied.txt"))
        .build()
        .expect("build");
    let (out, status) = run_piped(
        &sandbox,
        &exe,
        &["read", s(&allowed), s(&outside), s(&outside2), ROUNDS],
    );
    assert!(status.success(), "{status:?}: {out}");
    let c = counts(&out);
    eprintln!("library with deny_path, read: {c:?}");
    assert_read_confined(&c);
    // The denied file beneath the allowed tree stays denied.
    let (out, _) = run_piped(
        &sandbox,
        Path::new("/bin/cat"),
        &[s(&allowed.join("denied.txt")), s(&allowed.join("file.txt"))],
    );
    assert_eq!(out, "fine\n");
    // Files without a path (a pipe through /dev/fd) are not held to the
    // lists, by Landlock or by the calls made on the program's behalf.
    let (out, status) = run_piped(
        &sandbox,
        Path::new("/bin/bash"),
        &["-c", "cat <(echo piped)"],
    );
    assert!(status.success(), "{status:?}: {out}");
    assert_eq!(out, "piped\n");
}

fn write_layout(tag: &str) -> (PathBuf, PathBuf) {
    let base = scratch(tag);
    let (w, ro) = (base.join("w"), base.join("ro"));
    std::fs::create_dir(&w).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("file.txt"), "keep\n").unwrap();
    std::fs::write(ro.join("victim"), "").unwrap();
    (w, ro)
}

fn assert_write_confined(c: &BTreeMap<String, u64>, ro: &Path) {
    assert_eq!(c["inside_write"], 50, "{c:?}");
    for k in [
        "create",
        "truncate",
        "open_trunc",
        "open_write",
        "rename",
        "rename_out",
        "link",
        "unlink",
        "mkdir",
        "chmod",
        "chown",
        "utimes",
        "setxattr",
        "symlink",
    ] {
        assert_eq!(c[k], 0, "{k} got through: {c:?}");
    }
    assert_eq!(
        std::fs::read_to_string(ro.join("file.txt")).unwrap(),
        "keep\n"
    );
}

#[test]
fn writes_outside_the_write_paths_are_refused() {
    let exe = attack();
    for deny in [true, false] {
        let (w, ro) = write_layout(if deny { "write-deny" } else { "write" });
        let mut b = Sandbox::builder()
            .fs_system()
            .fs_read(exe.parent().unwrap())
            .fs_read(&ro)
            .fs_write(&w);
        if deny {
            // Every path call made on the program's behalf.
            b = b.deny_path(w.join("nothing-here"));
        }
        let sandbox = b.build().expect("build");
        let (out, status) = run_piped(&sandbox, &exe, &["write", s(&w), s(&ro), ROUNDS]);
        assert!(status.success(), "{status:?}: {out}");
        let c = counts(&out);
        eprintln!("library, write (deny_path {deny}): {c:?}");
        assert_write_confined(&c, &ro);
    }
}

#[test]
fn unotify_run_confines_reads_and_writes() {
    let exe = attack();
    let (allowed, outside, outside2) = read_layout("cli-read");
    // unotify started with the outside directory open on fd 5 (no
    // close-on-exec, as a shell leaves it): the launcher must not hand it
    // to the program.
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "exec \"$@\" 5<\"$0\""])
        .arg(&outside)
        .arg(env!("CARGO_BIN_EXE_unotify"))
        .args([
            "run",
            "--fs-system",
            "-r",
            s(exe.parent().unwrap()),
            "-w",
            s(&allowed),
            "--",
            s(&exe),
            "read",
            s(&allowed),
            s(&outside),
            s(&outside2),
            ROUNDS,
        ])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    let c = counts(&stdout_of(&out));
    eprintln!("unotify run, read: {c:?}");
    assert_read_confined(&c);

    let (w, ro) = write_layout("cli-write");
    let out = run_unotify(&[
        "run",
        "--fs-system",
        "--fs-read",
        s(exe.parent().unwrap()),
        "--fs-read",
        s(&ro),
        "--fs-write",
        s(&w),
        "--",
        s(&exe),
        "write",
        s(&w),
        s(&ro),
        ROUNDS,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let c = counts(&stdout_of(&out));
    eprintln!("unotify run, write: {c:?}");
    assert_write_confined(&c, &ro);
}

#[test]
fn cgroup_files_stay_unwritable_beneath_a_write_path() {
    // -w /sys holds the cgroup file systems: writes there stay refused,
    // the rest of /sys is writable.
    let out = run_unotify(&[
        "run",
        "--fs-system",
        "-w",
        "/sys",
        "--",
        "/bin/sh",
        "-c",
        "for f in /sys/fs/cgroup/*/cgroup.procs; do echo $$ > $f && echo MOVED; done; \
         cat /sys/kernel/mm/transparent_hugepage/enabled > /dev/null && echo READ",
    ]);
    let text = stdout_of(&out);
    assert!(!text.contains("MOVED"), "{text}\n{}", stderr_of(&out));
    assert!(text.contains("READ"), "{text}\n{}", stderr_of(&out));
}

/// Links and renames into another directory (files and directories),
/// `ROUNDS` times each, under the domain every run with cgroups has (the
/// cgroup write ban): as on bare Linux, none fails (a domain that does
/// not allow `REFER` answers them all with `EXDEV`), and the cgroup files
/// stay unwritable.
#[test]
fn renames_and_links_across_directories_work_as_on_bare_linux() {
    let dir = scratch("refer");
    let script = format!(
        "import os, sys
os.chdir(sys.argv[1])
failed = 0
for i in range({ROUNDS}):
    os.makedirs(f'a{{i}}/sub', exist_ok=True)
    os.makedirs(f'b{{i}}', exist_ok=True)
    open(f'a{{i}}/f', 'w').close()
    for op in (lambda: os.rename(f'a{{i}}/f', f'b{{i}}/f'),
               lambda: os.link(f'b{{i}}/f', f'a{{i}}/g'),
               lambda: os.rename(f'a{{i}}/sub', f'b{{i}}/sub'),
               lambda: os.rename(f'b{{i}}', f'a{{i}}/b')):
        try:
            op()
        except OSError as e:
            failed += 1
            print(e)
print('failed', failed)
for f in __import__('glob').glob('/sys/fs/cgroup/*/cgroup.procs'):
    try:
        open(f, 'w').write(str(os.getpid()))
        print('MOVED')
    except OSError:
        pass
"
    );
    let out = run_unotify(&["run", "--", "python3", "-c", &script, dir.to_str().unwrap()]);
    let text = stdout_of(&out);
    assert!(text.contains("failed 0\n"), "{text}\n{}", stderr_of(&out));
    assert!(!text.contains("MOVED"), "{text}");
    assert!(dir.join("a0/b/sub").is_dir() && dir.join("a0/b/f").is_file());
}

#[test]
fn make_builds_inside_the_write_path_and_cannot_write_outside() {
    let dir = scratch("make");
    let project = dir.join("project");
    common::c_project(&project, 8);
    let outside = dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let sandbox = Sandbox::builder()
        .fs_system()
        .fs_write(&project)
        .fs_write(&tmp)
        .build()
        .expect("build");
    let mut child = sandbox
        .spawn(
            Command::new("/bin/sh")
                .args([
                    "-c",
                    &format!(
                        "make -s -j8 && ./prog && (echo x > {}/escape || echo REFUSED)",
                        outside.display()
                    ),
                ])
                .current_dir(&project)
                .env("TMPDIR", &tmp)
                .stdout(Stdio::Piped)
                .stderr(Stdio::Piped),
        )
        .expect("spawn");
    let out = common::read_all(&mut child.stdout);
    let err = common::read_all(&mut child.stderr);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    assert!(
        out.contains(&format!("sum={}", common::c_project_sum(8))),
        "{out}\n{err}"
    );
    assert!(out.contains("REFUSED"), "{out}\n{err}");
    assert!(!outside.join("escape").exists());
    // Only the shell's own complaint about the refused write.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn a_missing_right_fails_the_build_unless_allowed_to_degrade() {
    let tmp = scratch("degrade");
    // ABI 5 (weak isolation accepted): every file system right is there.
    let sb = Sandbox::builder()
        .landlock_abi_cap(5)
        .allow_weak_isolation(true)
        .fs_system()
        .fs_write(&tmp)
        .build()
        .unwrap();
    assert_eq!(sb.degraded(), [Right::Scoping]);
    // ABI 4: no ioctl-dev.
    let err = Sandbox::builder()
        .landlock_abi_cap(4)
        .allow_degraded(Right::Scoping)
        .fs_system()
        .build()
        .unwrap_err();
    match &err {
        Error::MissingRight { right, kernel_abi } => {
            assert_eq!((*right, *kernel_abi), (Right::IoctlDev, 4));
        }
        e => panic!("{e}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("`ioctl-dev` (ABI 5)"), "{msg}");
    assert!(msg.contains("--allow-degraded ioctl-dev"), "{msg}");
    // Allowed: it runs, confined by what the kernel has, and says so.
    let sb = Sandbox::builder()
        .landlock_abi_cap(1)
        .allow_degraded(Right::Scoping)
        .allow_degraded(Right::Refer)
        .allow_degraded(Right::Truncate)
        .allow_degraded(Right::IoctlDev)
        .fs_system()
        .fs_write(&tmp)
        .build()
        .unwrap();
    assert_eq!(
        sb.degraded(),
        [
            Right::Refer,
            Right::Truncate,
            Right::IoctlDev,
            Right::Scoping
        ]
    );
    let (out, status) = run_piped(
        &sb,
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "cat /etc/hostname || echo x > {}/ok && echo RAN",
                tmp.display()
            ),
        ],
    );
    assert!(status.success(), "{out}");
    assert_eq!(out, "RAN\n");
    // No Landlock at all: the allow lists themselves.
    let err = Sandbox::builder()
        .landlock_abi_cap(0)
        .allow_weak_isolation(true)
        .fs_read("/usr")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingRight {
                right: Right::Filesystem,
                kernel_abi: 0
            }
        ),
        "{err}"
    );
}

#[test]
fn unotify_run_reports_and_degrades_rights() {
    let out = run_unotify(&[
        "run",
        "--test-landlock-abi-cap",
        "4",
        "--allow-weak-isolation",
        "--fs-system",
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(err.contains("ioctl-dev"), "{err}");
    assert!(err.contains("--allow-degraded ioctl-dev"), "{err}");
    let out = run_unotify(&[
        "run",
        "--test-landlock-abi-cap",
        "4",
        "--allow-degraded",
        "scoping",
        "--allow-degraded",
        "ioctl-dev",
        "--fs-system",
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("warn") && err.contains("ioctl-dev"), "{err}");
}

#[test]
fn unotify_run_refuses_bad_paths_and_right_names() {
    let out = run_unotify(&["run", "-r", "/nonexistent/unotify-typo", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(err.contains("/nonexistent/unotify-typo"), "{err}");
    assert!(err.contains("exist"), "{err}");
    let out = run_unotify(&["run", "-w", "/nonexistent/w", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    let out = run_unotify(&["run", "--allow-degraded", "bogus", "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(
        err.contains("filesystem, refer, truncate, network, ioctl-dev, scoping"),
        "{err}"
    );
}

#[test]
fn check_reports_the_landlock_rights() {
    let out = unotify().arg("check").output().unwrap();
    let text = stdout_of(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("Landlock: "))
        .expect("a Landlock line");
    assert!(line.contains("rights: filesystem (ABI 1)"), "{line}");
    assert!(
        line.contains("ioctl-dev (ABI 5), scoping (ABI 6)"),
        "{line}"
    );
}

#[test]
fn python_and_a_pipeline_run_without_warnings() {
    let tmp = scratch("python");
    let out = run_unotify(&[
        "run",
        "--fs-system",
        "-w",
        s(&tmp),
        "--",
        "/bin/sh",
        "-c",
        &format!(
            "cd {} && python3 -c 'import json, subprocess; print(subprocess.run([\"echo\", \"sub\"], capture_output=True).stdout.decode().strip())' | tr a-z A-Z",
            tmp.display()
        ),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "SUB\n");
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
}
