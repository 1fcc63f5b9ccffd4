//! `--exec-deny WORD` matches words (a whole argument, a path's last part,
//! a word of a shell command), not text inside a longer word;
//! `--exec-deny-substring TEXT` matches anywhere, only when asked for.

mod common;

use common::{run_unotify as run, stderr_of as stderr, stdout_of as stdout};

#[test]
fn a_word_inside_a_longer_word_is_not_refused() {
    let out = run(&["run", "--exec-deny", "rm", "--", "echo", "inform"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "inform\n");
}

#[test]
fn the_program_a_path_or_a_shell_word_is_refused() {
    let cases: [&[&str]; 3] = [
        &["rm", "-f", "/nonexistent"],
        &["/bin/rm", "-f", "/nonexistent"],
        &["sh", "-c", "cd /; rm -f /nonexistent"],
    ];
    for argv in cases {
        let mut args = vec!["run", "--exec-deny", "rm", "--"];
        args.extend_from_slice(argv);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(126), "{argv:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("(--exec-deny rm; EPERM)"),
            "{}",
            stderr(&out)
        );
    }
    // Inside the shell: the shell runs, its `rm` is refused.
    let out = run(&[
        "run",
        "--exec-deny",
        "rm",
        "--",
        "sh",
        "-c",
        "W=r; ${W}m -f /nonexistent; echo rc=$?",
    ]);
    assert!(stdout(&out).contains("rc=126"), "{}", stdout(&out));
}

#[test]
fn substrings_only_when_asked() {
    let out = run(&["run", "--exec-deny-substring", "rm", "--", "echo", "inform"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--exec-deny-substring rm"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_words_are_refused() {
    for (flag, word, needle) in [
        ("--exec-deny", "rm -rf", "not one word"),
        ("--exec-deny", "", "not one word"),
        ("--exec-deny", "/bin/rm", "--exec-deny rm"),
        ("--exec-deny-substring", "", "every exec"),
    ] {
        let out = run(&["run", flag, word, "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag} {word:?}");
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}
