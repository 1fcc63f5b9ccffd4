//! `unotify`: run a program under the seccomp user-notification supervisor
//! (`unotify run`), or report what the kernel supports (`unotify check`).
//!
//! Exit status of `run`, as `env` and `timeout` do it: the command's own
//! (128+N if it died of signal N); 125 if `unotify` itself failed, 126 if the
//! command cannot be executed, 127 if it was not found.

// The entry point is `entry::main`, without the Rust runtime's start-up
// (see there); a test build keeps the test harness's own.
#![cfg_attr(not(test), no_main)]

mod cli;
mod conflicts;
#[cfg(not(test))]
#[path = "../../sys/cli_entry.rs"]
mod entry;
mod exec_deny;
mod fast;
mod learn;
mod logging;
mod profile;
mod report;
mod signals;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex, PoisonError};

use unotify::os::{self as pidfd, self as process};
use unotify::{Child, Command, Error, Sandbox};

use cli::{Cmd, RunArgs, EXIT_USAGE};
use signals::{follow_job_stop, SignalState};

/// The command could not be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The program ran longer than `--timeout` (as timeout(1)).
const EXIT_TIMEOUT: u8 = 124;
/// The command was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// `unotify`: returns the exit status (called by `entry::main`).
// (In a test build, the root of what the tests do not call.)
#[cfg_attr(test, allow(dead_code))]
fn unotify_main() -> u8 {
    // Nothing of the same user may trace unotify, read its memory or take
    // its fds (the seccomp listener first): the Landlock domain already
    // keeps the sandbox out, this keeps out what the domain cannot (weak
    // isolation) and other programs of the user.
    if let Err(e) = process::set_dumpable(false) {
        eprintln!("unotify: cannot make this process non-dumpable (prctl PR_SET_DUMPABLE): {e}");
        return EXIT_USAGE;
    }
    // The supervisor holds fds per sandboxed process: its soft limit is
    // raised to the hard one (the program gets the old one back).
    if let Err(e) = process::raise_open_files_limit() {
        log::debug!("cannot raise RLIMIT_NOFILE: {e}");
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(line) = fast::version_line(&args) {
        // (As clap's own print: a closed stdout is not an error.)
        let _ = std::io::stdout().write_all(line.as_bytes());
        return 0;
    }
    let cli = match fast::plain_run(&args) {
        Some(run) => cli::Cli {
            command: Cmd::Run(Box::new(run)),
        },
        None => match cli::parse_from(args) {
            Ok(cli) => cli,
            Err(code) => return code,
        },
    };
    let trace = match &cli.command {
        Cmd::Run(args) => match trace_sink(args) {
            Ok(sink) => sink,
            Err(code) => return code,
        },
        _ => logging::TraceSink::Off,
    };
    logging::init(trace);
    match cli.command {
        Cmd::Run(args) => run(*args, None),
        Cmd::Learn(args) => learn(args),
        Cmd::Check { json } => check(json),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Man => man(),
        Cmd::CowRecover { storage, check } => cow_recover(&storage, check),
    }
}

/// Where `run`'s traces go: the `--trace-output` file, opened (created or
/// truncated) before anything starts, or stderr.
fn trace_sink(args: &RunArgs) -> Result<logging::TraceSink, u8> {
    if args.trace.is_empty() {
        return Ok(logging::TraceSink::Off);
    }
    match &args.trace_output {
        None => Ok(logging::TraceSink::Stderr),
        Some(path) => std::fs::File::create(path)
            .map(logging::TraceSink::File)
            .map_err(|e| {
                eprintln!(
                    "unotify: cannot open the trace output {}: {e}; check the directory exists and is writable",
                    path.display()
                );
                EXIT_USAGE
            }),
    }
}

/// Prints an error of `unotify` itself with what to do about it, and returns
/// the exit status it maps to.
fn fail(err: &Error) -> u8 {
    let (code, hint) = match err {
        Error::NotFound { .. } => (
            EXIT_NOT_FOUND,
            "; check the name, or give the program's path",
        ),
        Error::CannotExecute { .. } => (
            EXIT_CANNOT_EXECUTE,
            "; check that it is an executable file (chmod +x) for this machine",
        ),
        Error::Setup { .. } | Error::Io { .. } => (
            EXIT_USAGE,
            "; run `unotify check` to see what this kernel supports",
        ),
        _ => (EXIT_USAGE, ""),
    };
    eprintln!("unotify: {err}{hint}");
    code
}

/// The exit status mirroring `status`: the exit code, or 128+signal.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return code as u8;
    }
    match status.signal() {
        Some(sig) => 128u8.wrapping_add(sig as u8),
        None => EXIT_USAGE,
    }
}

/// `unotify learn`: `run` with nothing refused and a recorder, then the
/// profile of what the command used.
fn learn(args: cli::LearnArgs) -> u8 {
    // Checked first: a profile that cannot be written stops everything.
    // The file itself is made after the run (see `learn::ProfileFile`).
    let output = match args.output.as_deref().map(learn::ProfileFile::check) {
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            eprintln!("unotify: {e}");
            return EXIT_USAGE;
        }
        None => None,
    };
    let mut raw: Vec<std::ffi::OsString> = vec!["unotify".into(), "run".into(), "--".into()];
    raw.extend(args.command.iter().cloned());
    let run_args = match cli::Cli::try_parse_from_raw(raw) {
        Ok(cli::Cli {
            command: Cmd::Run(run_args),
        }) => run_args,
        _ => {
            eprintln!("unotify: cannot make a run of this command; give it after --");
            return EXIT_USAGE;
        }
    };
    let recorder = Arc::new(learn::Recorder::default());
    let code = run(*run_args, Some(&recorder));
    let status = if code == 0 {
        "the command exited with 0".to_owned()
    } else {
        eprintln!("unotify: learn: the command exited with {code}; the profile holds only what it used until then");
        format!("the command exited with {code}: this profile holds only what it used until then")
    };
    let profile = match recorder.profile(&args.command, &status) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("unotify: learn: {e}");
            return EXIT_USAGE;
        }
    };
    for note in &profile.notes {
        eprintln!("unotify: learn: not in the profile: {note}");
    }
    let written = match &output {
        Some(file) => file.replace(&profile.text),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(profile.text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write the profile: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("unotify: {e}");
        return EXIT_USAGE;
    }
    code
}

fn run(args: RunArgs, learner: Option<&Arc<learn::Recorder>>) -> u8 {
    // Before any thread exists, so that every thread inherits the mask and
    // the signals wait, pending, until `signals::wait_for` takes them.
    let inherited = signals::inherited();
    let set = match signals::block_taken(&inherited) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("unotify: cannot block termination signals: {e}");
            return EXIT_USAGE;
        }
    };
    let report = Arc::new(report::Report::default());
    let observer = Arc::clone(&report);
    let mut builder = Sandbox::builder()
        .foreground(true)
        .allow_weak_isolation(args.allow_weak_isolation)
        .observe_decisions(move |ev| observer.event(ev));
    if let Some(abi) = args.test_landlock_abi_cap {
        builder = builder.landlock_abi_cap(abi);
    }
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    for name in &args.trace {
        builder = builder.trace(name);
    }
    for rule in &args.deny {
        builder = builder.deny(&rule.syscall, rule.errno);
    }
    if !args.net_allow.is_empty() || !args.net_deny.is_empty() || !args.net_deny_bind.is_empty() {
        match unotify::net::NetPolicy::from_specs(
            &args.net_allow,
            &args.net_deny,
            &args.net_deny_bind,
        ) {
            Ok(policy) => builder = builder.network(policy),
            Err(e) => return fail(&unotify::Error::from(e)),
        }
    }
    if args.max_processes.is_some() && args.leave_daemons {
        eprintln!(
            "unotify: -P/--max-processes cannot hold with --leave-daemons: without the sandbox's cgroup a daemon that left the program's process group is not counted; drop one of them"
        );
        return EXIT_USAGE;
    }
    if let Some(n) = args.max_processes {
        builder = builder.max_processes(n);
    }
    if let Some(bytes) = args.max_memory {
        builder = builder.max_memory(bytes);
    }
    for path in args.deny_path.iter().chain(&args.deny_path_future) {
        builder = builder.deny_path(path);
    }
    for path in &args.fs_read {
        builder = builder.fs_read(path);
    }
    for path in &args.fs_write {
        builder = builder.fs_write(path);
    }
    if args.fs_system {
        builder = builder.fs_system();
    }
    for right in &args.allow_degraded {
        builder = builder.allow_degraded(*right);
    }
    builder = builder.keep_caps(args.keep_caps);
    builder = args.determinism.apply(builder);
    builder = args.chroot.apply(builder);
    if args.leave_daemons || args.test_no_cgroups {
        builder = builder.cgroups(false);
    }
    if let Some(file) = &args.audit {
        if file.as_os_str() == "-" {
            match std::io::stdout().as_fd().try_clone_to_owned() {
                Ok(fd) => builder = builder.audit_to(std::fs::File::from(fd)),
                Err(e) => {
                    eprintln!("unotify: cannot use stdout for --audit -: {e}");
                    return EXIT_USAGE;
                }
            }
        } else {
            builder = builder.audit(file);
        }
    }
    if !args.exec_deny.is_empty() || !args.exec_deny_substring.is_empty() {
        builder = exec_deny::install(
            builder,
            exec_deny::rules(&args),
            args.audit.is_some(),
            Some(Arc::clone(&report)),
        );
    }
    if let Some(recorder) = learner {
        builder = recorder.install(builder);
    }
    if let Some(dir) = &args.workdir {
        builder = builder.workdir(dir).dry_run(args.dry_run);
        if let Some(p) = &args.storage {
            builder = builder.cow_storage(p);
        }
        if let Some(a) = args.on_exit {
            builder = builder.on_exit(a);
        }
        if let Some(a) = args.on_error {
            builder = builder.on_error(a);
        }
        if let Some(n) = args.max_disk {
            builder = builder.max_disk(n);
        }
        let route = match &args.workdir_route {
            Some(r) => Some(*r),
            None => match std::env::var("UNOTIFY_WORKDIR_ROUTE") {
                Ok(v) => match v.parse() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        eprintln!("unotify: UNOTIFY_WORKDIR_ROUTE={v}: {e}");
                        return EXIT_USAGE;
                    }
                },
                Err(_) => None,
            },
        };
        if let Some(r) = route {
            builder = builder.workdir_route(r);
        }
    }
    let sandbox = match builder.build() {
        Ok(s) => s,
        Err(Error::ConflictingRule { syscall, .. }) => {
            eprintln!("unotify: {}", conflicts::explain(&args, &syscall));
            return EXIT_USAGE;
        }
        Err(e) => return fail(&e),
    };
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if args.clean_env {
        cmd.env_clear();
    }
    for k in &args.unset_env {
        cmd.env_remove(k);
    }
    for (k, v) in &args.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &args.cwd {
        cmd.current_dir(dir);
    }
    if let Some(n) = args.max_open_files {
        cmd.max_open_files(n);
    }
    // The program starts with the signal state `unotify` was started with.
    cmd.signal_mask(inherited.blocked)
        .ignore_signals(inherited.ignored);

    let state = Arc::new(Mutex::new(SignalState {
        kill_after: args.kill_after,
        ..SignalState::default()
    }));
    // Orphans of the sandbox (a double-forked daemon) become ours, to be
    // reaped as they die and killed when the program has exited.
    if !args.leave_daemons {
        if let Err(e) = process::set_child_subreaper() {
            log::warn!(
                "cannot become a child subreaper: {e}; a daemon the program starts may outlive it"
            );
        }
    }
    let mut child = match sandbox.spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            // This process starts no other sandbox: the failed spawn's
            // emptied cgroup is removed now, not when it exits.
            Child::release_kept_cgroup();
            let code = match e {
                // Its refusal was told: no chmod hint.
                Error::CannotExecute { .. } if report.exec_was_denied() => {
                    eprintln!("unotify: {e}: refused by --exec-deny");
                    EXIT_CANNOT_EXECUTE
                }
                _ => fail(&e),
            };
            if args.summary {
                report.print_summary();
            }
            return signals::take_termination_signal().map_or(code, signals::die_of);
        }
    };
    // This process exits right after the sandbox ends: nothing of it is
    // kept for a next one.
    child.process_exits_after();
    // The child is not reaped before `wait`, so its pid still names it.
    match pidfd::pidfd_open(child.pid() as i32, 0) {
        Ok(pidfd) => {
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.target = Some(pidfd);
            st.pid = Some(child.pid() as i32);
            // With --leave-daemons, those that left the group are left
            // alone by forwarded signals too.
            if !args.leave_daemons {
                st.processes = Some(child.processes());
            }
            // The termination signals that came meanwhile are pending:
            // `wait_for` takes them first.
            drop(st);
            if let Some(recorder) = learner {
                recorder.watch(child.pid() as i32);
            }
            // A stop before `wait_for` looks (its SIGCHLD pending, too).
            follow_job_stop(child.pid() as i32);
            if let Some(limit) = args.timeout {
                if let Err(e) = signals::start_timeout(&state, limit) {
                    eprintln!(
                        "unotify: cannot start the --timeout timer: {e}; stopping the program"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return EXIT_USAGE;
                }
            }
        }
        Err(e) => {
            eprintln!("unotify: cannot watch the sandboxed program: {e}; stopping it");
            let _ = child.kill();
            let _ = child.wait();
            return EXIT_USAGE;
        }
    }
    let status = signals::wait_for(&mut child, &set, &state);
    if let Some(recorder) = learner {
        recorder.finish();
    }
    // The process's watchdog stays until this process exits; the look for
    // orphans below leaves it alone unless orphans are found (then it is
    // killed with them: harmless, the sandbox has ended).
    drop(child);
    // Nothing of the sandbox outlives it: with cgroups the library killed
    // every process in them; without, orphans that left the process group
    // are ours now (nothing traces them once the supervisor has stopped).
    if !args.leave_daemons {
        let killed = process::kill_own_children(&[], 64);
        if killed > 0 {
            log::debug!("killed {killed} processes left behind by the program");
        }
    }
    if args.summary {
        report.print_summary();
    }
    let (received, timed_out) = {
        let st = state.lock().unwrap_or_else(PoisonError::into_inner);
        (st.received, st.timed_out)
    };
    if let (Some(w), Ok(st)) = (sandbox.workdir(), &status) {
        if let Err(code) = settle_workdir(w, st, args.dry_run) {
            return code;
        }
    }
    if timed_out && received.is_none() && status.is_ok() {
        eprintln!(
            "unotify: stopped: the program ran longer than --timeout {}",
            args.timeout.map(|d| format!("{d:?}")).unwrap_or_default()
        );
        return EXIT_TIMEOUT;
    }
    match status {
        // A program that ended on its own after a forwarded signal (a
        // clean shutdown) gives its status.
        Ok(status) if status.code().is_some() => exit_code(status),
        // Killed: end as the signal received, or the program's own
        // terminal signal, so that a calling shell sees it.
        Ok(status) => match (received, status.signal()) {
            (Some(sig), _) => signals::die_of(sig),
            (None, Some(sig)) if signals::PASSED_ON.contains(&sig) => signals::die_of(sig),
            _ => exit_code(status),
        },
        Err(e) => {
            eprintln!("unotify: cannot wait for the sandboxed program: {e}");
            EXIT_USAGE
        }
    }
}

/// Commits, drops or keeps the work directory's changes as the flags say.
fn settle_workdir(
    w: &unotify::WorkDir,
    status: &std::process::ExitStatus,
    dry_run: bool,
) -> Result<(), u8> {
    match w.finish(status) {
        Ok(unotify::Settled::Aborted(changes)) if dry_run => {
            for c in changes {
                println!("{c}");
            }
            Ok(())
        }
        Ok(unotify::Settled::Kept(upper)) => {
            eprintln!(
                "unotify: the changes to {} are kept in {}",
                w.dir().display(),
                upper.display()
            );
            Ok(())
        }
        Ok(settled) => {
            log::info!("work directory {}: {settled:?}", w.dir().display());
            Ok(())
        }
        Err(e) => {
            eprintln!("unotify: {e}");
            Err(EXIT_USAGE)
        }
    }
}

/// `unotify cow-recover STORAGE`.
fn cow_recover(storage: &std::path::Path, check: bool) -> u8 {
    if check {
        return match unotify::pending_commit(storage) {
            Ok(Some(n)) => {
                println!("unfinished commit: {n} operations");
                1
            }
            Ok(None) => {
                println!("no unfinished commit");
                0
            }
            Err(e) => fail(&e),
        };
    }
    match unotify::recover_workdir(storage) {
        Ok(Some((n, dir))) => {
            println!(
                "finished the commit into {} ({n} operations)",
                dir.display()
            );
            0
        }
        Ok(None) => {
            println!("no unfinished commit");
            0
        }
        Err(e) => fail(&e),
    }
}

fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = <cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "unotify", &mut std::io::stdout());
    0
}

fn man() -> u8 {
    let cmd = <cli::Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    let page = clap_mangen::Man::new(cmd.clone());
    if let Err(e) = page.render(&mut out) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
        eprintln!("unotify: cannot write the manual page: {e}");
        return EXIT_USAGE;
    }
    // Each subcommand's options follow, under its own heading.
    for sub in cmd.get_subcommands() {
        let page = clap_mangen::Man::new(sub.clone());
        let heading = format!(".SH \"UNOTIFY {}\"\n", sub.get_name().to_uppercase());
        let written = out
            .write_all(heading.as_bytes())
            .and_then(|()| page.render_description_section(&mut out))
            .and_then(|()| page.render_options_section(&mut out));
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
            eprintln!("unotify: cannot write the manual page: {e}");
            return EXIT_USAGE;
        }
    }
    0
}

fn check(json: bool) -> u8 {
    let features = unotify::probe::probe_features();
    let mut out = std::io::stdout().lock();
    for f in &features {
        let _ = if json {
            writeln!(
                out,
                "{{\"name\":{},\"available\":{},\"detail\":{}}}",
                unotify::shown::quoted(f.name),
                f.available,
                unotify::shown::quoted(&f.detail)
            )
        } else {
            writeln!(out, "{f}")
        };
    }
    let usable = features
        .iter()
        .any(|f| f.name == unotify::probe::USER_NOTIFICATION && f.available);
    if usable {
        0
    } else {
        1
    }
}

// The unwinder linked in (`libgcc_eh.a`) rather than loaded
// (`libgcc_s.so.1`): the shared library's constructor asks the CPU for its
// features (`cpuid`), and each `cpuid` traps to the hypervisor of a
// virtual machine, 20-30 µs apiece where this was measured; with the load
// and relocation of one library less, `unotify run -- /bin/true` starts
// about 0.15 ms sooner there. Unwinding (panics, caught thread panics)
// works alike. (A statically linked build has it already.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[link(name = "gcc_eh", kind = "static")]
extern "C" {}
