//! The usual run options of `unotify run` (`--timeout`, `--env`,
//! `--unset-env`, `--clean-env`, `--cwd`, `--max-open-files`), each with a
//! refusal of bad input (exit 125, saying what to do); and `--version`,
//! `completions`, `man` and `check --json`.

mod common;

use std::time::{Duration, Instant};

use common::{run_unotify as run, stderr_of as stderr, stdout_of as stdout};

/// Asserts exit 125 with `needle` in the message.
fn refused(args: &[&str], needle: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
}

#[test]
fn timeout_stops_the_program_and_exits_124() {
    let start = Instant::now();
    let out = run(&["run", "--timeout", "300ms", "--", "sleep", "10"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
    // One that ignores SIGTERM is killed after --kill-after.
    let out = run(&[
        "run",
        "--timeout",
        "300ms",
        "--kill-after",
        "300ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 10",
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    // A program that ends in time keeps its status.
    let out = run(&["run", "--timeout", "10s", "--", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    refused(&["run", "--timeout", "0", "--", "true"], "--timeout 30s");
    refused(&["run", "--timeout", "soon", "--", "true"], "like 10s");
}

#[test]
fn environment_options() {
    let out = run(&[
        "run",
        "--env",
        "UNOTIFY_T=a=b",
        "--",
        "sh",
        "-c",
        "echo $UNOTIFY_T",
    ]);
    assert_eq!(stdout(&out), "a=b\n", "{}", stderr(&out));
    let out = common::unotify()
        .env("UNOTIFY_GONE", "1")
        .args([
            "run",
            "--unset-env",
            "UNOTIFY_GONE",
            "--",
            "sh",
            "-c",
            "echo x${UNOTIFY_GONE}x",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "xx\n", "{}", stderr(&out));
    let out = run(&[
        "run",
        "--clean-env",
        "--env",
        "ONLY=1",
        "--",
        "/usr/bin/env",
    ]);
    assert_eq!(stdout(&out), "ONLY=1\n", "{}", stderr(&out));
    refused(&["run", "--env", "NOVALUE", "--", "true"], "--env LANG=C");
    refused(&["run", "--env", "=1", "--", "true"], "--env LANG=C");
    refused(
        &["run", "--unset-env", "A=B", "--", "true"],
        "--unset-env HISTFILE",
    );
}

#[test]
fn cwd_runs_the_program_in_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let canon = dir.path().canonicalize().unwrap();
    let out = run(&["run", "--cwd", canon.to_str().unwrap(), "--", "pwd"]);
    assert_eq!(stdout(&out).trim_end(), canon.to_str().unwrap());
    refused(
        &["run", "--cwd", "/nonexistent/dir", "--", "true"],
        "check the path",
    );
    refused(
        &["run", "--cwd", "/etc/hostname", "--", "true"],
        "not a directory",
    );
}

#[test]
fn max_open_files_bounds_the_fds() {
    let script = "import os\n\
                  n = 0\n\
                  try:\n\
                  \x20   while True:\n\
                  \x20       fd = os.open('/dev/null', os.O_RDONLY)\n\
                  \x20       n = max(n, fd)\n\
                  except OSError as e:\n\
                  \x20   print(n, e.errno)\n";
    let out = run(&[
        "run",
        "--max-open-files",
        "20",
        "--",
        "/usr/bin/python3",
        "-c",
        script,
    ]);
    assert_eq!(
        stdout(&out).trim_end(),
        format!("19 {}", libc::EMFILE),
        "{}",
        stderr(&out)
    );
    refused(&["run", "--max-open-files", "2", "--", "true"], "3 or more");
    refused(
        &["run", "--max-open-files", "many", "--", "true"],
        "--max-open-files 256",
    );
}

#[test]
fn version_names_the_features() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with("unotify ") && text.contains("features: cli"),
        "{text}"
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(stdout(&out).contains("deny-path"), "{shell}");
    }
    refused(&["completions", "tcsh"], "bash, zsh");
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert!(page.contains(".TH unotify 1"), "{page}");
    assert!(
        page.contains("UNOTIFY RUN") && page.contains("timeout"),
        "{page}"
    );
}

#[test]
fn check_json_is_one_object_per_feature() {
    let out = run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object"))
        .collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert_eq!(lines[0]["name"], "seccomp user notification");
    assert_eq!(lines[0]["available"], true);
    assert!(lines.iter().all(|l| l["detail"].is_string()), "{text}");
}

/// Path options take the bytes given, UTF-8 or not: `--deny-path` of a
/// name with a `\xff` byte denies that file (it was refused with "invalid
/// UTF-8", so such a file could not be denied from the command line), and
/// `--cwd`, `--workdir` and `--mount` take such names too.
#[test]
fn path_options_take_names_that_are_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join(OsStr::from_bytes(b"d\xff"));
    std::fs::create_dir(&sub).unwrap();
    let secret = sub.join(OsStr::from_bytes(b"s\xfe"));
    std::fs::write(&secret, "secret\n").unwrap();
    let out = common::unotify()
        .arg("run")
        .arg("--deny-path")
        .arg(&secret)
        .args(["--", "cat"])
        .arg(&secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("denied: openat of"),
        "{}",
        stderr(&out)
    );

    let out = common::unotify()
        .arg("run")
        .arg("--cwd")
        .arg(&sub)
        .arg("--workdir")
        .arg(&sub)
        .args(["--on-exit", "abort", "--", "cat"])
        .arg(OsStr::from_bytes(b"s\xfe"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "secret\n");

    let mut mount = b"/m:".to_vec();
    mount.extend_from_slice(sub.as_os_str().as_bytes());
    mount.extend_from_slice(b":ro");
    let root = tempfile::tempdir().unwrap();
    let out = common::unotify()
        .args(["run", "--chroot"])
        .arg(root.path())
        .args(["--mount", "/usr:/usr:ro", "--mount", "/bin:/bin:ro"])
        .args(["--mount", "/lib:/lib:ro", "--mount", "/lib64:/lib64:ro"])
        .arg("--mount")
        .arg(OsStr::from_bytes(&mount))
        .args(["--", "/bin/cat"])
        .arg(OsStr::from_bytes(b"/m/s\xfe"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "secret\n");
}
