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

/// The program an exec runs is matched by its file, however the call
/// names it: a file named WORD run with another argv, through `execveat`
/// of an `O_PATH` fd, through `/proc/self/fd/N`, and as the interpreter
/// of a `#!` script. Each exits 99 if the exec was refused with `EPERM`.
const PROGRAM_BY_FILE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static int run(int mode, const char *denied, const char *script) {
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = { "x", NULL }, *env[] = { NULL };
        int fd = open(denied, O_PATH | O_CLOEXEC);
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (mode == 0) execve(denied, argv, env);
        if (mode == 1) syscall(SYS_execveat, fd, "", argv, env, AT_EMPTY_PATH);
        if (mode == 2) execve(proc, argv, env);
        if (mode == 3) execve(script, argv, env);
        _exit(errno == EPERM ? 99 : 98);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
int main(int argc, char **argv) {
    /* The names are made here: the program's own argv must not name it. */
    char denied[4096], script[4096];
    snprintf(denied, sizeof denied, "%s/DENIED%s", argv[1], "X");
    snprintf(script, sizeof script, "%s/script", argv[1]);
    int refused = 0;
    for (int mode = 0; mode < 4; mode++) {
        int code = run(mode, denied, script);
        printf("mode %d: %d\n", mode, code);
        if (code == 99) refused++;
    }
    printf("refused=%d\n", refused);
    return 0;
}
"#;

#[test]
fn the_program_is_matched_by_its_file_however_it_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let exe = common::build_c("program_by_file", PROGRAM_BY_FILE, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    // A program named DENIEDX (a copy of `true`) and a script run by it.
    let denied = dir.path().join("DENIEDX");
    std::fs::copy("/bin/true", &denied).expect("copy true");
    let script = dir.path().join("script");
    std::fs::write(&script, format!("#!{}\n", denied.display())).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = run(&[
        "run",
        "--exec-deny",
        "DENIEDX",
        "--",
        exe.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("refused=4"), "{}", stdout(&out));
    // Bare, each runs.
    let bare = std::process::Command::new(&exe)
        .arg(dir.path())
        .output()
        .expect("run bare");
    assert!(
        String::from_utf8_lossy(&bare.stdout).contains("refused=0"),
        "{}",
        String::from_utf8_lossy(&bare.stdout)
    );
}

/// `--exec-deny` denies no path: a read-only open is not trapped and opens
/// as bare, also through another process's `/proc/<pid>/root`, which the
/// supervisor's on-behalf open refuses (`ELOOP`).
#[test]
fn read_only_opens_run_as_bare() {
    let out = run(&[
        "run",
        "--exec-deny",
        "nosuchword",
        "--",
        "sh",
        "-c",
        "cat /proc/$$/root/etc/passwd > /dev/null && echo read-ok",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "read-ok\n");
}

/// A program named by bytes that are not UTF-8, run by a relative path,
/// by `/proc/self/cwd/...` and through a link: argv safety finds the file
/// the kernel runs by those exact bytes (it looked up `y\u{fffd}`: "not
/// found", or another file next to it, then the exec event killed the
/// program).
#[test]
fn a_program_whose_name_is_not_utf8_runs_as_bare() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `y\xff` is `true`; `y\u{fffd}` next to it is `false`, which a lossy
    // lookup would find instead.
    let script = r#"cp /bin/true "$(printf 'y\377')" && cp /bin/false "$(printf 'y\357\277\275')" &&
ln -s "$(printf 'y\377')" "$(printf 'l\377')" &&
"./$(printf 'y\377')" && echo rel &&
"/proc/self/cwd/$(printf 'y\377')" && echo proc &&
"./$(printf 'l\377')" && echo link"#;
    let out = common::unotify()
        .current_dir(dir.path())
        .args(["run", "--exec-deny", "nosuchword", "--", "sh", "-c", script])
        .output()
        .expect("run unotify");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "rel\nproc\nlink\n", "{}", stderr(&out));
}
