//! The chroot view (`SandboxBuilder::chroot`, `mount`; `unotify run
//! --chroot DIR --mount VIRTUAL:HOST[:ro]`): real programs inside a rootfs
//! made in a temporary directory with the toolchain mounted, and the
//! escapes of `chroot_attack.c`, each counted in a bounded loop (0).

mod common;

use std::path::{Path, PathBuf};

use unotify::{Command, Sandbox, SandboxBuilder, Stdio};

/// A rootfs in a temporary directory, a secret file beside it (outside
/// the view), a read-only mount source and a program outside the view.
struct Rootfs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    secret_dir: PathBuf,
    ro_src: PathBuf,
}

fn rootfs() -> Rootfs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    for d in ["tmp", "proc", "work", "etc", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("etc/hostname"), "in-the-view\n").expect("write");
    let secret_dir = tmp.path().join("outside");
    std::fs::create_dir_all(&secret_dir).expect("mkdir");
    std::fs::write(secret_dir.join("secret"), "SECRET\n").expect("write secret");
    std::fs::copy("/bin/true", secret_dir.join("true")).expect("copy true");
    let ro_src = tmp.path().join("ro");
    std::fs::create_dir_all(&ro_src).expect("mkdir");
    std::fs::write(ro_src.join("file"), "read only\n").expect("write");
    Rootfs {
        _tmp: tmp,
        root,
        secret_dir,
        ro_src,
    }
}

/// The host directories a dynamically linked toolchain needs, mounted at
/// their host paths, read-only.
fn toolchain_mounts() -> Vec<String> {
    [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/etc/alternatives",
    ]
    .iter()
    .filter(|p| Path::new(p).is_dir())
    .map(|p| p.to_string())
    .collect()
}

fn builder(r: &Rootfs) -> SandboxBuilder {
    let mut b = Sandbox::builder().chroot(&r.root);
    for m in toolchain_mounts() {
        b = b.mount(&m, &m, true);
    }
    let art = common::artefact_dir();
    b.mount("/proc", "/proc", true)
        .mount("/dev", "/dev", true)
        .mount("/ro", &r.ro_src, true)
        .mount(&art, &art, true)
}

fn cli_mounts(r: &Rootfs) -> Vec<String> {
    let mut v = vec!["--chroot".to_owned(), r.root.display().to_string()];
    for m in toolchain_mounts() {
        v.push("--mount".into());
        v.push(format!("{m}:{m}:ro"));
    }
    v.extend(["--mount".into(), "/dev:/dev:ro".into()]);
    v
}

fn counts(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(' ')?;
            Some((name.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn escapes_from_the_view_all_fail() {
    let _w = common::watchdog(std::time::Duration::from_secs(120), "chroot attack");
    let r = rootfs();
    let exe = common::build_c(
        "chroot_attack",
        include_str!("chroot_attack.c"),
        &["-pthread"],
    );
    let sandbox = builder(&r).build().expect("build");
    let secret = r.secret_dir.join("secret");
    // Standard input is a directory outside the view, opened before.
    let dir = std::fs::File::open(&r.secret_dir).expect("open the secret's directory");
    let mut cmd = Command::new(&exe);
    cmd.args([
        secret.to_str().unwrap(),
        r.secret_dir.to_str().unwrap(),
        "0",
        "20",
        r.secret_dir.join("true").to_str().unwrap(),
    ])
    .stdin(Stdio::from(dir))
    .stdout(Stdio::Piped);
    let child = sandbox.spawn(&mut cmd).expect("spawn");
    let (out, status) = common::finish(child);
    assert_eq!(status.code(), Some(0), "attack failed to run: {out}");
    let c = counts(&out);
    assert_eq!(c.len(), 10, "every attack reports: {out}");
    let leaks: Vec<_> = c.iter().filter(|(_, n)| *n > 0).collect();
    assert!(leaks.is_empty(), "escapes got through: {leaks:?}");
}

#[test]
fn a_shell_sees_the_view() {
    let r = rootfs();
    let sandbox = builder(&r).chroot_cwd("/work").build().expect("build");
    let script = "pwd; cat /etc/hostname; ls / | sort | tr '\\n' ' '; echo; \
                  cd /tmp && pwd && echo data > f && cat /tmp/f && \
                  readlink /proc/self/cwd /proc/self/root; \
                  case $(readlink /proc/self/exe) in /*bin/readlink) ;; *) echo bad-exe;; esac; \
                  mkdir -p /tmp/a/b && mv /tmp/f /tmp/a/b/g && ls /tmp/a/b; \
                  ln -s /etc/hostname /tmp/l && cat /tmp/l; \
                  { echo x > /ro/new; } 2>/dev/null || echo ro-refused";
    let (out, status) = common::run_piped(&sandbox, Path::new("/bin/sh"), &["-c", script]);
    assert_eq!(status.code(), Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/work");
    assert_eq!(lines[1], "in-the-view");
    assert!(lines[2].starts_with("bin dev etc lib"), "{out}");
    assert_eq!(
        &lines[3..],
        [
            "/tmp",
            "data",
            "/tmp",
            "/",
            "g",
            "in-the-view",
            "ro-refused"
        ]
    );
    assert!(r.root.join("tmp/a/b/g").exists());
}

#[test]
fn read_only_mounts_refuse_writes() {
    let r = rootfs();
    let out = common::unotify()
        .arg("run")
        .args(cli_mounts(&r))
        .args(["--mount", &format!("/ro:{}:ro", r.ro_src.display())])
        .args(["--", "/bin/sh", "-c"])
        .arg(
            "echo x > /ro/file; echo x > /ro/new; rm /ro/file; mkdir /ro/d; \
             touch /ro/file; chmod 600 /ro/file; ln /ro/file /tmp/hl; \
             mv /ro/file /tmp/m; cat /ro/file",
        )
        .output()
        .expect("run");
    let err = common::stderr_of(&out);
    assert!(err.matches("Read-only file system").count() >= 6, "{err}");
    assert!(err.contains("Invalid cross-device link"), "{err}");
    assert_eq!(common::stdout_of(&out), "read only\n");
    assert_eq!(
        std::fs::read_to_string(r.ro_src.join("file")).unwrap(),
        "read only\n"
    );
    assert_eq!(std::fs::read_dir(&r.ro_src).unwrap().count(), 1);
}

#[test]
fn make_builds_a_c_project_in_the_view() {
    let r = rootfs();
    let proj = r.root.join("work/proj");
    common::c_project(&proj, 6);
    let out = common::unotify()
        .arg("run")
        .args(cli_mounts(&r))
        .args(["--chroot-cwd", "/work/proj", "--", "/bin/sh", "-c"])
        .arg("make -j8 >/dev/null && ./prog && make clean >/dev/null && ls")
        .output()
        .expect("run");
    assert_eq!(
        common::stderr_of(&out),
        "",
        "make printed warnings or errors"
    );
    let stdout = common::stdout_of(&out);
    assert!(
        stdout.starts_with(&format!("sum={}\n", common::c_project_sum(6))),
        "{stdout}"
    );
    assert!(out.status.success());
}

#[test]
fn python_writes_renames_lists_and_runs_a_subprocess() {
    let r = rootfs();
    let sandbox = builder(&r).chroot_cwd("/work").build().expect("build");
    let script = r#"
import os, subprocess, json, email
os.makedirs("/tmp/p/q", exist_ok=True)
open("/tmp/p/q/a", "w").write("1")
os.rename("/tmp/p/q/a", "/tmp/p/b")
os.unlink("/tmp/p/b") if False else None
print(sorted(os.listdir("/tmp/p")))
print(os.getcwd())
os.chdir("/tmp/p")
print(os.getcwd(), os.path.realpath("q"), os.readlink("/proc/self/cwd"))
print(subprocess.run(["/bin/sh", "-c", "pwd"], capture_output=True, text=True).stdout.strip())
print(os.path.exists("/ro/file"), os.path.exists("/nonexistent"))
"#;
    let (out, status) = common::run_piped(&sandbox, Path::new("/usr/bin/python3"), &["-c", script]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(
        out,
        "['b', 'q']\n/work\n/tmp/p /tmp/p/q /tmp/p\n/tmp/p\nTrue False\n"
    );
}

#[test]
fn git_commits_inside_the_view() {
    if !Path::new("/usr/bin/git").exists() {
        panic!("git is needed for this test (apt-get install git)");
    }
    let r = rootfs();
    let repo = r.root.join("work/repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("a.txt"), "hello\n").unwrap();
    let out = common::unotify()
        .arg("run")
        .args(cli_mounts(&r))
        .args(["--chroot-cwd", "/work/repo", "--", "/bin/sh", "-c"])
        .arg(
            "git init -q && git add . && git -c user.name=a -c user.email=b@c commit -qm one \
             && git log --format=%s && git status --short && git fsck --no-progress",
        )
        .env("HOME", "/tmp")
        .output()
        .expect("run");
    assert_eq!(common::stderr_of(&out), "");
    assert_eq!(common::stdout_of(&out), "one\n");
    // The host sees the same repository.
    let host = std::process::Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout), "one\n");
}

#[test]
fn bad_chroot_options_exit_125_and_say_what_to_do() {
    let r = rootfs();
    let root = r.root.display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["--chroot", "/nonexistent/dir"], "create it"),
        (&["--chroot", &root, "--mount", "/usr"], "VIRTUAL:HOST"),
        (
            &["--chroot", &root, "--mount", "usr:/usr:ro"],
            "not absolute",
        ),
        (&["--mount", "/usr:/usr:ro"], "--chroot"),
    ];
    for (args, hint) in cases {
        let out = common::unotify()
            .arg("run")
            .args(args)
            .args(["--", "true"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = common::stderr_of(&out);
        assert!(err.contains(hint), "{args:?}: {err}");
    }
    // A missing working directory in the view is refused at build.
    let e = Sandbox::builder()
        .chroot(&r.root)
        .chroot_cwd("/no/such")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("does not exist in the view"), "{e}");
    // Path denial, with host paths, is not mixed with a view.
    let e = Sandbox::builder()
        .chroot(&r.root)
        .deny_path("/etc")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("cannot be combined"), "{e}");
}
