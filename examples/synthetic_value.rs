//! Makes `getppid` return a made-up value without running it.
//!
//! ```text
//! cargo run --example synthetic_value
//! ```
//!
//! The shell sets `$PPID` from `getppid()`, so `sh -c 'echo $PPID'` prints
//! 4242 instead of this process's pid.

use std::io::Read;

use unotify::{Command, NotifAction, Sandbox, Stdio};

const FAKE_PPID: i64 = 4242;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sandbox = Sandbox::builder()
        .handle("getppid", |_cx: &unotify::HandlerCtx<'_>| {
            NotifAction::ReturnValue(FAKE_PPID)
        })
        .build()?;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo $PPID"]).stdout(Stdio::Piped);
    let mut child = sandbox.spawn(&mut cmd)?;
    let mut seen = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut seen)?;
    let status = child.wait()?;
    let seen = seen.trim();
    println!("real parent pid:         {}", std::process::id());
    println!("$PPID seen by the shell: {seen} ({status})");
    if seen != FAKE_PPID.to_string() {
        eprintln!("expected {FAKE_PPID}: the handler did not answer getppid");
        std::process::exit(1);
    }
    Ok(())
}
