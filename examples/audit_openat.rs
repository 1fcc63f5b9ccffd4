//! Logs the path of every `openat` a program makes, then lets the call run.
//!
//! ```text
//! cargo run --example audit_openat                 # audits `/bin/ls /`
//! cargo run --example audit_openat -- cat /etc/hostname
//! ```
//!
//! The audit lines go to stderr, the program's own output is untouched.

use std::os::unix::process::ExitStatusExt;

use unotify::{Command, HandlerCtx, NotifAction, Sandbox};

/// `AT_FDCWD` as it arrives in a 64-bit syscall argument.
const AT_FDCWD: u64 = libc::AT_FDCWD as u32 as u64;

fn audit(cx: &HandlerCtx<'_>) -> NotifAction {
    let dir = match cx.arg(0) {
        AT_FDCWD => String::new(),
        fd => format!("(dirfd {}) ", fd as i32),
    };
    // A copy of the path, read while the call is known to be pending. The
    // program could change its memory before the kernel reads it again after
    // CONTINUE: fine for an audit log, not for a security decision.
    match cx.read_cstr(cx.arg(1), libc::PATH_MAX as usize) {
        Ok(path) => eprintln!(
            "[audit] pid {:>6} openat {dir}{:?} flags {:#o}",
            cx.pid(),
            String::from_utf8_lossy(&path),
            cx.arg(2)
        ),
        Err(e) => eprintln!(
            "[audit] pid {:>6} openat {dir}<path unreadable: {e}>",
            cx.pid()
        ),
    }
    NotifAction::Continue
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        argv = vec!["/bin/ls".into(), "/".into()];
    }
    let sandbox = Sandbox::builder().handle("openat", audit).build()?;
    let mut cmd = Command::new(&argv[0]);
    // `cargo run` points LD_LIBRARY_PATH at its target directory, which makes
    // the loader try dozens of paths first; audit what the program does normally.
    cmd.args(&argv[1..]).env_remove("LD_LIBRARY_PATH");
    let status = sandbox.run(&mut cmd)?;
    eprintln!("[audit] {} ended: {status}", argv[0]);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    std::process::exit(code);
}
