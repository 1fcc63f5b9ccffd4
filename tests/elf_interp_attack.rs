//! The ELF interpreter (`PT_INTERP`) of a program is checked like the
//! program: any ELF can name a denied file as its interpreter, and the
//! kernel loads and starts that file by its name. Each attack builds a
//! static program with no libc that stands for the denied one (it prints a
//! marker) and a dynamic program linked with `-Wl,--dynamic-linker=` naming
//! it, then execs the dynamic program in a bounded loop and counts the
//! runs of the denied one.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{marker_program, run_unotify, stderr_of, stdout_of};

/// The program that names `interp` as its ELF interpreter.
fn linked_to(name: &str, interp: &Path) -> PathBuf {
    let flag = format!("-Wl,--dynamic-linker={}", interp.display());
    common::build_c(name, "int main(void) { return 42; }\n", &[&flag])
}

/// Runs `argv[2]` `argv[1]` times, its stdout piped, and counts: the runs
/// of the denied program, of the benign one, refused execs, and images
/// killed.
const RUNNER: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]), denied = 0, benign = 0, refused = 0, killed = 0;
    for (int i = 0; i < n; i++) {
        char b[256];
        int st;
        if (run_child(argv[2], b, &st)) return 2;
        if (strstr(b, "DENIED-PROGRAM-RAN")) denied++;
        else if (strstr(b, "BENIGN-INTERPRETER-RAN")) benign++;
        else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) killed++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 100) refused++;
    }
    printf("denied=%d benign=%d refused=%d killed=%d\n", denied, benign, refused, killed);
    return 0;
}
"#;

fn runner() -> PathBuf {
    common::build_c(
        "elf_interp_runner",
        &format!("{}{RUNNER}", common::RUN_CHILD_C),
        &[],
    )
}

/// The count `name=N` in the runner's report.
fn field(out: &str, name: &str) -> i64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {out:?}"))
}

/// The runner's report says the denied program never ran and each of the
/// `n` execs was refused.
fn assert_all_refused(out: &str, n: i64) {
    assert_eq!(field(out, "denied"), 0, "{out}");
    assert_eq!(field(out, "refused"), n, "{out}");
}

/// The fixture: `dir/<interp_name>` is the denied program, `prog` the
/// program naming it as its interpreter.
struct Fixture {
    _dir: tempfile::TempDir,
    denied: PathBuf,
    prog: PathBuf,
}

fn fixture(interp_name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let denied = dir.path().join(interp_name);
    std::fs::copy(
        marker_program("elf_interp_denied", "DENIED-PROGRAM-RAN"),
        &denied,
    )
    .unwrap();
    let prog = linked_to(&format!("elf_interp_{interp_name}"), &denied);
    Fixture {
        _dir: dir,
        denied,
        prog,
    }
}

fn run_loop(flags: &[&str], prog: &Path, n: &str) -> String {
    let runner = runner();
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend(["--", runner.to_str().unwrap(), n, prog.to_str().unwrap()]);
    let out = run_unotify(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    stdout_of(&out)
}

#[test]
fn a_denied_program_never_runs_as_an_elf_interpreter() {
    let _w = common::watchdog(Duration::from_secs(120), "PT_INTERP under --deny-path");
    let f = fixture("denied_prog");
    // Bare, the denied program does run as the interpreter.
    let bare = std::process::Command::new(runner())
        .args(["1", f.prog.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(field(&stdout_of(&bare), "denied"), 1);
    let out = run_loop(&["--deny-path", f.denied.to_str().unwrap()], &f.prog, "50");
    assert_all_refused(&out, 50);
}

#[test]
fn exec_deny_refuses_a_program_whose_elf_interpreter_it_names() {
    let _w = common::watchdog(Duration::from_secs(120), "PT_INTERP under --exec-deny");
    let f = fixture("rm");
    let out = run_loop(&["--exec-deny", "rm"], &f.prog, "50");
    assert_all_refused(&out, 50);
}

#[test]
fn without_argv_safety_path_denial_checks_the_elf_interpreter() {
    let _w = common::watchdog(Duration::from_secs(120), "PT_INTERP without argv safety");
    let f = fixture("denied_nosafety");
    let sandbox = unotify::Sandbox::builder()
        .deny_path(&f.denied)
        .argv_safety(false)
        .build()
        .unwrap();
    let (out, status) = common::run_piped(&sandbox, &runner(), &["50", f.prog.to_str().unwrap()]);
    assert!(status.success(), "{status:?}");
    assert_all_refused(&out, 50);
}

#[test]
fn programs_with_an_allowed_elf_interpreter_keep_running() {
    let _w = common::watchdog(Duration::from_secs(120), "allowed PT_INTERP");
    let f = fixture("denied_other");
    let dir = tempfile::tempdir().unwrap();
    let benign = dir.path().join("benign");
    std::fs::copy(
        marker_program("elf_interp_benign", "BENIGN-INTERPRETER-RAN"),
        &benign,
    )
    .unwrap();
    let prog = linked_to("elf_interp_benign_user", &benign);
    let out = run_loop(&["--deny-path", f.denied.to_str().unwrap()], &prog, "20");
    assert_eq!(field(&out, "benign"), 20, "{out}");
    // The system's loader, directly and through a script.
    let out = run_unotify(&[
        "run",
        "--deny-path",
        f.denied.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "/bin/true && env true && ls / >/dev/null && echo fine",
    ]);
    assert_eq!(stdout_of(&out), "fine\n", "{}", stderr_of(&out));
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));
}

/// While the sandboxed program execs, a host thread puts the benign and
/// the denied interpreter in turn under the name the program's
/// `PT_INTERP` gives: the decision may see one and the kernel load the
/// other. The denied one must never run.
#[test]
fn an_elf_interpreter_swapped_during_exec_never_runs_a_denied_program() {
    let _w = common::watchdog(Duration::from_secs(180), "PT_INTERP swap race");
    let dir = tempfile::tempdir().unwrap();
    let benign = dir.path().join("benign");
    let denied = dir.path().join("denied");
    std::fs::copy(
        marker_program("elf_interp_benign", "BENIGN-INTERPRETER-RAN"),
        &benign,
    )
    .unwrap();
    std::fs::copy(
        marker_program("elf_interp_denied", "DENIED-PROGRAM-RAN"),
        &denied,
    )
    .unwrap();
    let name = dir.path().join("interp");
    let prog = linked_to("elf_interp_swapped", &name);
    std::fs::hard_link(&benign, &name).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir) = (Arc::clone(&stop), dir.path().to_owned());
        let (benign, denied, name) = (benign.clone(), denied.clone(), name.clone());
        std::thread::spawn(move || {
            let tmp = dir.join("tmp");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for src in [&denied, &benign] {
                    let _ = std::fs::remove_file(&tmp);
                    std::fs::hard_link(src, &tmp).unwrap();
                    std::fs::rename(&tmp, &name).unwrap();
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let out = run_loop(&["--deny-path", denied.to_str().unwrap()], &prog, "400");
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert_eq!(field(&out, "denied"), 0, "{out} ({swaps} swaps)");
    assert!(
        field(&out, "benign") > 0,
        "the benign interpreter never ran: {out}"
    );
    eprintln!("{out} ({swaps} swaps)");
}
