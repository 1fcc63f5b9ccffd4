//! `unotify run --profile FILE`: run's flags in a TOML file; the command
//! line adds to its lists and overrides its single values; errors name the
//! file, the line and the key (exit 125).

mod common;

use common::{run_unotify as run, stderr_of as stderr, stdout_of as stdout};

fn profile(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

#[test]
fn a_profile_sets_flags_and_the_command_line_adds_and_overrides() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), "other\n").unwrap();
    let p = profile(&format!(
        "# denied\ndeny-path = [{:?}]\nmax-processes = 1\n",
        secret.path()
    ));
    let pf = p.path().to_str().unwrap();
    // The file's rule holds.
    let out = run(&[
        "run",
        "--profile",
        pf,
        "--",
        "cat",
        secret.path().to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("denied: openat"), "{}", stderr(&out));
    // -P 1 from the file: a fork is refused.
    let out = run(&["run", "--profile", pf, "--", "sh", "-c", "true & wait"]);
    assert!(stderr(&out).contains("process limit 1"), "{}", stderr(&out));
    // The command line overrides a single value...
    let out = run(&[
        "run",
        "--profile",
        pf,
        "-P",
        "8",
        "--",
        "sh",
        "-c",
        "true & wait; echo ok",
    ]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    // ... and adds to a list.
    let out = run(&[
        "run",
        "--profile",
        pf,
        "--deny-path",
        other.path().to_str().unwrap(),
        "-P",
        "8",
        "--",
        "cat",
        other.path().to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("other"));
}

#[test]
fn profile_errors_name_the_file_line_and_key() {
    let cases = [
        (
            "x = 1\ndeny-pth = [\"/etc\"]\n",
            "line 2, key `deny-pth`",
            "did you mean `deny-path`",
        ),
        (
            "max-memory = \"512\"\n",
            "line 1, key `max-memory`",
            "-m 512M",
        ),
        ("keep-caps = 1.5\n", "key `keep-caps`", "a float"),
        ("max-processes = [\n", "line 1", "expected"),
    ];
    for (text, place, what) in cases {
        let p = profile(text);
        let out = run(&["run", "--profile", p.path().to_str().unwrap(), "--", "true"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{text}: {err}");
        assert!(err.contains(p.path().to_str().unwrap()), "{err}");
        assert!(err.contains(place) && err.contains(what), "{text}: {err}");
    }
    let out = run(&["run", "--profile", "/nonexistent/p.toml", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("check the path"), "{}", stderr(&out));
}
