//! `unotify learn`: the profile round trip (learn a build, run it again
//! under the profile; a build that reaches further is refused), network
//! destinations learned, and bad input refused (exit 125).

mod common;

use std::path::{Path, PathBuf};

use common::{stderr_of as stderr, stdout_of as stdout, unotify};

/// A directory outside the system temporary directory (which a learned
/// build writes, and so allows): the fake home must not be beneath it.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Runs `unotify ARGS` in `dir` with `home` as HOME, and a temporary
/// directory of its own beside it as TMPDIR: a checkout under `/tmp` puts
/// the fake home beneath `/tmp`, which a learned profile then rightly
/// refuses to allow (it holds the home directory), and the compiler's
/// temporary files would fail.
fn in_dir(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    let tmp = home.with_file_name("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    unotify()
        .current_dir(dir)
        .env("HOME", home)
        .env("TMPDIR", &tmp)
        .args(args)
        .output()
        .unwrap()
}

/// A project, a fake home with a key, and a Makefile that also reads it.
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let project = root.join("project");
    common::c_project(&project, 4);
    std::fs::write(
        project.join("Makefile.ssh"),
        "include Makefile\nsteal: prog\n\tcat $(HOME)/.ssh/id_rsa\n",
    )
    .unwrap();
    let home = root.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "PRIVATE KEY\n").unwrap();
    (project, home)
}

#[test]
fn a_learned_profile_runs_the_build_again_and_refuses_one_that_reads_ssh() {
    let root = workdir();
    let (project, home) = setup(root.path());
    let profile = root.path().join("build.toml");
    let pf = profile.to_str().unwrap();
    let out = in_dir(
        &project,
        &home,
        &["learn", "--output", pf, "--", "make", "-j4"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    let canon = std::fs::canonicalize(&project).unwrap();
    // The rules, in run's flags, each with what used it.
    assert!(text.contains("fs-system = true"), "{text}");
    assert!(
        text.contains(&format!("\"{}\",", canon.display())),
        "the project is not allowed:\n{text}"
    );
    assert!(
        text.contains("by ld") || text.contains("by collect2"),
        "{text}"
    );
    assert!(text.contains("max-processes = "), "{text}");
    assert!(text.contains("max-memory = "), "{text}");
    assert!(text.contains("net-deny = [\"*\", \"unix:*\"]"), "{text}");
    assert!(
        text.contains("/cc1 by "),
        "programs are not listed:\n{text}"
    );
    assert!(
        !text.contains("home"),
        "the home directory leaked in:\n{text}"
    );

    // The same build, under the profile: it works.
    let clean = in_dir(&project, &home, &["run", "--", "make", "clean"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let out = in_dir(
        &project,
        &home,
        &["run", "--profile", pf, "--", "make", "-j4"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = in_dir(&project, &home, &["run", "--profile", pf, "--", "./prog"]);
    assert_eq!(
        stdout(&run),
        format!("sum={}\n", common::c_project_sum(4)),
        "{}",
        stderr(&run)
    );

    // Without the profile the other build reads the key (the control) ...
    let steal = ["make", "-f", "Makefile.ssh", "steal"];
    let mut args = vec!["run", "--"];
    args.extend(steal);
    let out = in_dir(&project, &home, &args);
    assert!(stdout(&out).contains("PRIVATE KEY"), "{}", stderr(&out));
    // ... under it, it is refused.
    let mut args = vec!["run", "--profile", pf, "--"];
    args.extend(steal);
    let out = in_dir(&project, &home, &args);
    assert!(!stdout(&out).contains("PRIVATE KEY"), "the key was read");
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn network_destinations_are_learned_and_others_refused() {
    let root = workdir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let profile = root.path().join("net.toml");
    let pf = profile.to_str().unwrap();
    let script = format!("echo hi > /dev/tcp/127.0.0.1/{port}");
    let out = unotify()
        .current_dir(root.path())
        .args(["learn", "-o", pf, "--", "bash", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(
        text.contains("net-allow = [\n    # reached by bash"),
        "{text}"
    );
    assert!(text.contains(&format!("\"127.0.0.1:{port}\"")), "{text}");
    let run = |port: u16| {
        unotify()
            .current_dir(root.path())
            .args(["run", "--profile", pf, "--", "bash", "-c"])
            .arg(format!("echo hi > /dev/tcp/127.0.0.1/{port}"))
            .output()
            .unwrap()
    };
    let out = run(port);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(other_port);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused: connect to 127.0.0.1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn learn_refuses_bad_input_with_125() {
    let root = workdir();
    // No command.
    let out = common::run_unotify(&["learn"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    // An output that cannot be written: said before the command runs.
    let marker = root.path().join("ran");
    let out = common::run_unotify(&[
        "learn",
        "--output",
        "/nonexistent-dir/p.toml",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot open the profile output /nonexistent-dir/p.toml"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the command ran");
    // An unknown flag, with a did-you-mean.
    let out = common::run_unotify(&["learn", "--ouput", "p.toml", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("--output"), "{}", stderr(&out));
}

/// A command that lists `/` and the home directory must not teach a
/// profile that allows everything beneath them: a command run under it
/// that reads the key (by 3 names) gets none of them.
#[test]
fn listing_the_root_or_home_does_not_allow_what_is_beneath() {
    let root = workdir();
    let (project, home) = setup(root.path());
    let profile = root.path().join("ls.toml");
    let pf = profile.to_str().unwrap();
    let out = in_dir(
        &project,
        &home,
        &[
            "learn",
            "-o",
            pf,
            "--",
            "sh",
            "-c",
            "ls / >/dev/null; ls \"$HOME\" >/dev/null",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    let key = home.join(".ssh/id_rsa");
    let mut got = 0;
    for name in [
        key.to_str().unwrap().to_owned(),
        "$HOME/.ssh/id_rsa".to_owned(),
        format!("/../{}", key.display()),
    ] {
        let out = in_dir(
            &project,
            &home,
            &[
                "run",
                "--profile",
                pf,
                "--",
                "sh",
                "-c",
                &format!("cat {name}"),
            ],
        );
        if stdout(&out).contains("PRIVATE KEY") {
            got += 1;
        }
    }
    assert_eq!(got, 0, "reads of the key that got through");
    assert!(text.contains("NOT allowed, too broad"), "{text}");
}
