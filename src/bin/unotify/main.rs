//! `unotify`: run a program under the seccomp user-notification supervisor
//! (`unotify run`), or report what the kernel supports (`unotify check`).
//!
//! Exit status of `run`, as `env` and `timeout` do it: the command's own
//! (128+N if it died of signal N); 125 if `unotify` itself failed, 126 if the
//! command cannot be executed, 127 if it was not found.

mod cli;
mod exec_deny;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use unotify::os::{self as process};
use unotify::os::{self as signals, SigSet};
use unotify::{Command, Error, Sandbox};

use cli::{Cmd, RunArgs, EXIT_USAGE};

/// The command could not be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// Filter used when `RUST_LOG` is not set: warnings, and the traces asked for
/// with `--trace`.
const DEFAULT_LOG_FILTER: &str = "warn,unotify::trace=info";

fn main() -> ExitCode {
    // Nothing of the same user may trace unotify, read its memory or take
    // its fds (the seccomp listener first): the Landlock domain already
    // keeps the sandbox out, this keeps out what the domain cannot (weak
    // isolation) and other programs of the user.
    if let Err(e) = process::set_dumpable(false) {
        eprintln!("unotify: cannot make this process non-dumpable (prctl PR_SET_DUMPABLE): {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    init_logging();
    let code = match cli.command {
        Cmd::Run(args) => run(*args),
        Cmd::Check => check(),
    };
    ExitCode::from(code)
}

/// Logs go to stderr. Without `RUST_LOG` the filter is
/// [`DEFAULT_LOG_FILTER`]; with it, `RUST_LOG` alone decides
/// (`RUST_LOG=off` silences everything, traces included).
fn init_logging() {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(filter) => builder.parse_filters(&filter),
        Err(_) => builder.parse_filters(DEFAULT_LOG_FILTER),
    };
    builder.format(|buf, record| {
        if record.target() == "unotify::trace" {
            writeln!(buf, "unotify: trace: {}", record.args())
        } else {
            let level = record.level().as_str().to_ascii_lowercase();
            writeln!(buf, "unotify: {level}: {}", record.args())
        }
    });
    builder.init();
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

/// Job control at a terminal. The sandbox has its own process group, which
/// holds the terminal's foreground while it runs, so a Ctrl-Z stops the
/// sandbox but not `unotify`, and the shell, waiting for `unotify`, would
/// not get the terminal back. So when the program stops while it holds the
/// foreground, `unotify` takes the terminal back and stops itself; when the
/// shell continues it (`fg`), it hands the terminal to the sandbox again
/// (if it got it back itself; after `bg`, it does not) and continues the
/// sandbox.
fn follow_job_stop(pid: i32) {
    // The terminal first: without one (most runs) there is no /proc read.
    if process::terminal_foreground() != Some(pid) || !process::is_job_stopped(pid) {
        return;
    }
    let ours = process::own_group();
    if let Err(e) = process::set_terminal_foreground(ours) {
        log::warn!("cannot take the terminal back from the stopped program: {e}");
        return;
    }
    log::debug!("the sandboxed program stopped: stopping too");
    // Every thread stops here until SIGCONT.
    if let Err(e) = process::kill(std::process::id() as i32, libc::SIGSTOP) {
        log::warn!("cannot stop: {e}");
    }
    if process::terminal_foreground() == Some(ours) {
        if let Err(e) = process::set_terminal_foreground(pid) {
            log::warn!("cannot give the terminal back to the program: {e}");
        }
    }
    if let Err(e) = process::kill_group(pid, libc::SIGCONT) {
        log::warn!("cannot continue the sandbox: {e}");
    }
}

fn run(args: RunArgs) -> u8 {
    // Before any thread exists, so that every thread inherits the mask and
    // the signals wait for this thread (see `wait_for`).
    let set = match signals::block_termination_signals().and_then(|mut set| {
        // And SIGCHLD, for job control (waiting for the program does not
        // need it delivered).
        set.add(libc::SIGCHLD)?;
        signals::block(&set)?;
        Ok(set)
    }) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("unotify: cannot block termination signals: {e}");
            return EXIT_USAGE;
        }
    };
    let mut builder = Sandbox::builder()
        .foreground(true)
        .allow_weak_isolation(args.allow_weak_isolation);
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
    if let Some(n) = args.max_processes {
        builder = builder.max_processes(n);
    }
    if let Some(bytes) = args.max_memory {
        builder = builder.max_memory(bytes);
    }
    for path in &args.deny_path {
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
    if let Some(file) = &args.audit {
        builder = builder.audit(file);
    }
    if !args.exec_deny.is_empty() {
        builder = exec_deny::install(builder, args.exec_deny.clone(), args.audit.is_some());
    }
    let sandbox = match builder.build() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);

    let mut child = match sandbox.spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            let code = fail(&e);
            // A termination signal that came meanwhile decides the status.
            return pending_termination(&set).map_or(code, |sig| 128 + sig as u8);
        }
    };
    let (status, received) = wait_for(&mut child, &set);
    if let Some(sig) = received {
        return 128 + sig as u8;
    }
    match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("unotify: cannot wait for the sandboxed program: {e}");
            EXIT_USAGE
        }
    }
}

/// Waits for the sandboxed program on this thread, taking the signals of
/// `set` (blocked since before the spawn, so that none was lost) as they
/// come: SIGINT, SIGTERM or SIGHUP kills the program (the rest of the
/// sandbox goes when its exit is collected), and `unotify` then exits with
/// 128 + the first one's number; SIGCHLD, sent when the program stops or
/// exits, is for job control ([`follow_job_stop`]) and to look again.
/// Returns the program's status and the termination signal received.
fn wait_for(
    child: &mut unotify::Child,
    set: &SigSet,
) -> (std::io::Result<std::process::ExitStatus>, Option<i32>) {
    let pid = child.pid() as i32;
    let mut received = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Ok(status), received),
            Ok(None) => {}
            Err(e) => return (Err(e), received),
        }
        let sig = match signals::wait_signal(set) {
            Ok(sig) => sig,
            Err(e) => {
                log::warn!("cannot wait for signals: {e}; SIGINT/SIGTERM/SIGHUP are ignored");
                return (child.wait(), received);
            }
        };
        if sig == libc::SIGCHLD {
            follow_job_stop(pid);
            continue;
        }
        log::debug!("received signal {sig}: killing the sandbox");
        received.get_or_insert(sig);
        // Not reaped before `try_wait` on this thread sees its exit, so
        // the pid still names the program.
        if let Err(e) = process::kill(pid, libc::SIGKILL) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                log::warn!("cannot kill the sandbox: {e}");
            }
        }
    }
}

/// A termination signal of `set` pending, if any (SIGCHLD passes).
fn pending_termination(set: &SigSet) -> Option<i32> {
    loop {
        match signals::take_pending(set) {
            Ok(Some(libc::SIGCHLD)) => continue,
            Ok(sig) => return sig,
            Err(_) => return None,
        }
    }
}

fn check() -> u8 {
    let features = unotify::probe::probe_features();
    let mut out = std::io::stdout().lock();
    for f in &features {
        let _ = writeln!(out, "{f}");
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
