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

/// `unotify learn -o PROFILE -- CMD...` in `dir` (as [`in_dir`]), which
/// must exit with 0: its output, and the profile.
fn learn(dir: &Path, home: &Path, profile: &Path, cmd: &[&str]) -> (std::process::Output, String) {
    let mut args = vec!["learn", "-o", profile.to_str().unwrap(), "--"];
    args.extend_from_slice(cmd);
    let out = in_dir(dir, home, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(profile).unwrap();
    (out, text)
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
    let (_, text) = learn(&project, &home, &profile, &["make", "-j4"]);
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
    let (_, text) = learn(
        &project,
        &home,
        &profile,
        &["sh", "-c", "ls / >/dev/null; ls \"$HOME\" >/dev/null"],
    );
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

/// The names a program chooses (a file's, an executed script's, an
/// argument, its own name, a unix socket's) reach the profile only inside
/// comments, shown on one line: none adds a line of TOML (red team rt12:
/// a file named `x\n"/",\n#` put `/` into fs-write). Six marked names,
/// counted on the profile's lines that are not comments.
#[test]
fn names_the_program_chose_stay_in_comments() {
    let root = workdir();
    let project = root.path().join("project");
    let home = root.path().join("home");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        project.join("attack.sh"),
        r#"n1="$(printf 'x\n"/", # INJ1\n#')"; echo hi > "$n1"
n2="$(printf 's\nINJ2 = 1 #\n#')"; printf '#!/bin/sh\n' > "$n2"; chmod +x "$n2"; "./$n2"
/bin/true "$(printf 'a\nINJ3 = 1 #\n#')"
python3 attack.py
"#,
    )
    .unwrap();
    std::fs::write(
        project.join("attack.py"),
        r#"import ctypes, socket
ctypes.CDLL(None).prctl(15, b"p\nINJ4 = 1 #\n#", 0, 0, 0)
open("f4", "w").close()
for a in ("./s\nINJ5 = 1 #\n#", b"\0a\nINJ6 = 1 #\n#", b"\0b\xff"):
    try:
        socket.socket(socket.AF_UNIX).connect(a)
    except OSError:
        pass
"#,
    )
    .unwrap();
    let profile = root.path().join("p.toml");
    let pf = profile.to_str().unwrap();
    let (learned, text) = learn(&project, &home, &profile, &["sh", "attack.sh"]);
    let injected: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| {
            (1..=6)
                .map(|i| format!("INJ{i}"))
                .filter(|m| l.contains(m.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        injected.is_empty(),
        "names out of their comments: {injected:?}\n{text}"
    );
    // A name is in the profile, shown.
    assert!(text.contains(r#"/s\x0aINJ2 = 1 #\x0a# by sh"#), "{text}");
    // The profile is as run takes it, allows nothing but what was used,
    // and the socket names no rule can hold are said to be left out.
    let table: toml::Table = text.parse().unwrap();
    let canon = std::fs::canonicalize(&project).unwrap();
    assert_eq!(
        table["fs-write"].as_array().unwrap(),
        &[toml::Value::from(canon.to_str().unwrap())],
        "{text}"
    );
    assert_eq!(
        stderr(&learned)
            .matches("not in the profile: net-allow")
            .count(),
        3,
        "{}",
        stderr(&learned)
    );
    assert!(!text.contains('\u{fffd}'), "a name was mangled:\n{text}");
    let outside = root.path().join("outside");
    let out = unotify()
        .current_dir(&project)
        .env("HOME", &home)
        .args([
            "run",
            "--profile",
            pf,
            "--",
            "sh",
            "-c",
            "echo x > \"$1\"",
            "sh",
        ])
        .arg(&outside)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!outside.exists(), "written outside the learned rules");
}

/// A newline in the command itself stays in the header's comments (red
/// team rt12 L4: `sh -c 'true<NL>true'` gave a profile run refused).
#[test]
fn a_command_with_a_newline_gives_a_profile_run_takes() {
    let root = workdir();
    let profile = root.path().join("nl.toml");
    let pf = profile.to_str().unwrap();
    let out = common::run_unotify(&["learn", "-o", pf, "--", "sh", "-c", "true\ntrue"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("-- sh -c $'true\\x0atrue'\n"), "{text}");
    let out = common::run_unotify(&["run", "--profile", pf, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", stderr(&out));
}

/// A rule's value is the path exactly, whatever it holds (quotes,
/// backslashes, a newline, a tab): it reads back as that path and run
/// allows it; a path that is not UTF-8, which TOML cannot hold, is left
/// out with a note (never a rule for another path).
#[test]
fn rule_values_read_back_as_the_paths_used() {
    use std::os::unix::ffi::OsStrExt;
    let root = workdir();
    let project = root.path().join("project");
    let home = root.path().join("home");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let odd = root.path().join("q\"b\\n\nt\t\u{e9}").join("f");
    let bad = root
        .path()
        .join(std::ffi::OsStr::from_bytes(b"bad\xff"))
        .join("f");
    for f in [&odd, &bad] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "DATA\n").unwrap();
    }
    let profile = root.path().join("v.toml");
    let pf = profile.to_str().unwrap();
    let out = unotify()
        .current_dir(&project)
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .args(["learn", "-o", pf, "--", "cat"])
        .args([&odd, &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let odd = std::fs::canonicalize(&odd).unwrap();
    assert_eq!(
        table["fs-read"].as_array().unwrap(),
        &[toml::Value::from(odd.to_str().unwrap())],
        "{text}"
    );
    assert!(
        stderr(&out).contains("bad\\xff/f is not UTF-8"),
        "{}",
        stderr(&out)
    );
    let run = |f: &Path| {
        unotify()
            .current_dir(&project)
            .env("HOME", &home)
            .args(["run", "--profile", pf, "--", "cat"])
            .arg(f)
            .output()
            .unwrap()
    };
    let out = run(&odd);
    assert_eq!(stdout(&out), "DATA\n", "{}", stderr(&out));
    let out = run(&bad);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `--output FILE` is exactly the profile rendered, whatever the command
/// did to FILE meanwhile (red team rt12 M1: a tail it appended survived,
/// and a FILE it replaced was kept, the profile written into the unlinked
/// one): a tail, a replacement, a symlink to another file of the user.
#[test]
fn the_output_is_the_profile_whatever_the_command_did_to_it() {
    let root = workdir();
    let victim = root.path().join("victim");
    std::fs::write(&victim, "VICTIM\n").unwrap();
    let attacks = [
        "for i in $(seq 1 3000); do echo; done >> \"$1\"; echo 'keep-caps = true' >> \"$1\"",
        "rm -f \"$1\"; echo 'keep-caps = true' > \"$1\"",
        "rm -f \"$1\"; ln -s \"$2\" \"$1\"",
    ];
    let mut tampered = Vec::new();
    for (i, attack) in attacks.iter().enumerate() {
        let profile = root.path().join(format!("out{i}.toml"));
        let out = unotify()
            .current_dir(root.path())
            .args(["learn", "-o"])
            .arg(&profile)
            .args(["--", "sh", "-c", attack, "sh"])
            .arg(&profile)
            .arg(&victim)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = std::fs::read_to_string(&profile).unwrap_or_default();
        let regular = std::fs::symlink_metadata(&profile).is_ok_and(|m| m.is_file());
        let parsed = text.parse::<toml::Table>().is_ok();
        if !regular
            || !parsed
            || text
                .lines()
                .any(|l| l.contains("keep-caps") && !l.starts_with('#'))
            || !text.starts_with("# unotify profile learned from: sh -c")
            || !text.ends_with("M\"\n")
        {
            tampered.push((attack, text));
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "VICTIM\n");
    assert!(tampered.is_empty(), "{tampered:#?}");
    // Nothing is left beside it.
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("unotify-learn"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
