//! A slow, blocking decision moved off the worker with `NotifAction::defer`.
//!
//! ```text
//! cargo run --example deferred_slow
//! ```
//!
//! Opening `/etc/hostname` needs a "slow check" (here a 300 ms sleep standing
//! in for a blocking lookup). The check runs on the deferral pool, so even
//! with a single worker thread the program's other `openat` calls keep being
//! answered while it runs: the output shows them in between.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

const SLOW_PATH: &[u8] = b"/etc/hostname";
const SLOW_CHECK: Duration = Duration::from_millis(300);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let checking = Arc::new(AtomicBool::new(false));
    let answered_meanwhile = Arc::new(AtomicUsize::new(0));
    let (checking2, meanwhile2) = (Arc::clone(&checking), Arc::clone(&answered_meanwhile));

    let handler = move |cx: &HandlerCtx<'_>| -> NotifAction {
        let ms = start.elapsed().as_millis();
        let Ok(path) = cx.read_cstr(cx.arg(1), libc::PATH_MAX as usize) else {
            return NotifAction::Errno(libc::EIO);
        };
        let shown = String::from_utf8_lossy(&path).into_owned();
        if path != SLOW_PATH {
            if checking2.load(Ordering::SeqCst) {
                meanwhile2.fetch_add(1, Ordering::SeqCst);
            }
            // Libraries and locale files are counted, not shown.
            if path.starts_with(b"/etc/passwd") {
                println!(
                    "[{ms:>4} ms] pid {:>6} openat {shown:<14} answered at once",
                    cx.pid()
                );
            }
            return NotifAction::Continue;
        }
        println!(
            "[{ms:>4} ms] pid {:>6} openat {shown:<14} deferred: slow check",
            cx.pid()
        );
        let pid = cx.pid();
        let checking = Arc::clone(&checking2);
        checking.store(true, Ordering::SeqCst);
        NotifAction::defer(move || {
            std::thread::sleep(SLOW_CHECK);
            checking.store(false, Ordering::SeqCst);
            let ms = start.elapsed().as_millis();
            println!("[{ms:>4} ms] pid {pid:>6} openat {shown:<14} slow check done: CONTINUE");
            NotifAction::Continue
        })
    };
    let sandbox = Sandbox::builder()
        .workers(1)
        .handle("openat", handler)
        .build()?;
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "cat /etc/hostname >/dev/null & \
         for i in 1 2 3 4 5 6; do cat /etc/passwd >/dev/null; sleep 0.02; done; wait",
    ])
    .stdout(Stdio::Null)
    // `cargo run` sets LD_LIBRARY_PATH, which makes every `cat` try dozens of
    // library paths: noise here.
    .env_remove("LD_LIBRARY_PATH");
    let status = sandbox.run(&mut cmd)?;
    let n = answered_meanwhile.load(Ordering::SeqCst);
    println!(
        "program ended ({status}) after {} ms",
        start.elapsed().as_millis()
    );
    println!("{n} other openat calls were answered while the slow check ran, on 1 worker thread");
    if n == 0 {
        std::process::exit(1);
    }
    Ok(())
}
