//! Start-up and end of `unotify run`: what its parent pays.

use std::time::{Duration, Instant};

const UNOTIFY: &str = env!("CARGO_BIN_EXE_unotify");

/// How long the parent's reap (`waitpid` of a process known to have
/// exited) of `unotify run -- /bin/true` takes.
// Reaped below with waitpid, after a waitid that leaves it a zombie.
#[allow(clippy::zombie_processes)]
fn reap_time() -> Duration {
    let child = std::process::Command::new(UNOTIFY)
        .args(["run", "--", "/bin/true"])
        .spawn()
        .expect("start unotify");
    let pid = child.id() as i32;
    // Exited, not reaped yet (waitid with WNOWAIT).
    unotify::sys::ptrace::peek(pid, libc::WEXITED).expect("wait for unotify to exit");
    let t = Instant::now();
    let reaped = unotify::sys::process::waitpid_raw(pid, 0).expect("reap unotify");
    let took = t.elapsed();
    let (_, status) = reaped.expect("reaped");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    took
}

/// The parent of `unotify run` reaps it at once. It did not when
/// `unotify` had read another of its threads' `/proc/self/task/<tid>`
/// entries (looking for its children): the kernel's reap then waited on
/// the exiting thread's own clean-up of those entries, 2 to 22 ms (37 of
/// 40 runs over 1 ms before the fix, 0 after).
#[test]
fn unotify_is_reaped_at_once() {
    let runs = 40;
    let slow: Vec<Duration> = (0..runs)
        .map(|_| reap_time())
        .filter(|t| *t > Duration::from_millis(1))
        .collect();
    // A loaded machine may preempt a reap now and then.
    assert!(
        slow.len() <= 3,
        "{} of {runs} reaps of unotify took over 1 ms: {slow:?}",
        slow.len()
    );
}

#[path = "common/mod.rs"]
mod common;

/// Directories named `unotify-<pid>-…` anywhere in the first levels of
/// the cgroup file systems.
fn cgroups_of(pid: i32) -> Vec<std::path::PathBuf> {
    let prefix = format!("unotify-{pid}-");
    let mut found = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                // One made before this test program started is not of its
                // runs: left by a run whose supervisor and watchdog were
                // killed together (`pkill -9 -f unotify`), under a pid
                // now reused.
                if made_before_this_test(&e) {
                    continue;
                }
                found.push(path);
            } else if depth < 3 {
                dirs.push((path, depth + 1));
            }
        }
    }
    found
}

/// Whether directory entry `e` was made before this test program started
/// (its start: the boot time of `/proc/stat`, in whole seconds, plus
/// field 22 of `/proc/self/stat`, in clock ticks of 10 ms; less a second,
/// so that nothing this program made is taken for older).
fn made_before_this_test(e: &std::fs::DirEntry) -> bool {
    static START: std::sync::OnceLock<Option<std::time::SystemTime>> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let ticks: u64 = after.split(' ').nth(19)?.parse().ok()?;
        let boot: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let secs = std::time::Duration::from_millis(boot * 1000 + ticks * 10 - 1000);
        Some(std::time::UNIX_EPOCH + secs)
    });
    let made = e.metadata().and_then(|m| m.modified()).ok();
    matches!((start, made), (Some(s), Some(m)) if m < *s)
}

/// `unotify run -- CMD` under a child subreaper that reaps whatever is
/// given to it after unotify's exit: unotify's pid, its exit status, and
/// whether anything was still running 2 s later.
fn run_and_reap(cmd: &[&str]) -> (i32, i32, bool) {
    let reaper = common::build_c("end_reaper", include_str!("c/end_reaper.c"), &[]);
    let out = std::process::Command::new(reaper)
        .arg(UNOTIFY)
        .args(["run", "--"])
        .args(cmd)
        .output()
        .expect("run end_reaper");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| -> i32 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {k} in {text:?} (stderr {:?})",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (field("pid="), field("status="), field("left=") != 0)
}

/// A run that ends at once still ends the whole sandbox: its cgroups are
/// removed by the time unotify has exited, what the program left running
/// is dead, and the watchdog that `unotify run` leaves to exit with it
/// (it then frees the shared memory, after the parent was told) is gone
/// too, reaped by whoever it was given to.
#[test]
fn a_run_that_ends_at_once_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let script = format!("sleep 30 & echo $! > {}", pidfile.display());
    for cmd in [vec!["/bin/true"], vec!["/bin/sh", "-c", script.as_str()]] {
        for _ in 0..5 {
            let (pid, status, left) = run_and_reap(&cmd);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{cmd:?}: status {status:#x}"
            );
            assert!(
                !left,
                "{cmd:?}: a process of unotify's was still running 2 s after it exited"
            );
            let cgroups = cgroups_of(pid);
            assert!(cgroups.is_empty(), "{cmd:?}: cgroups left: {cgroups:?}");
        }
    }
    let bg: i32 = std::fs::read_to_string(&pidfile)
        .expect("the background sleep's pid")
        .trim()
        .parse()
        .unwrap();
    let state = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "the program's background sleep {bg} still runs: {state}"
    );
}

/// The host side of [`host_killed_ends_its_sandboxes`], run in a
/// process of this test binary of its own: one sandbox (which starts the
/// process's watchdog), then three more, each of whose programs leaves a
/// process in a session of its own (out of its process group: only the
/// cgroup finds it); their pids in `dir`, then it waits to be killed.
fn killed_host(dir: &std::path::Path) -> ! {
    let sandbox = unotify::Sandbox::builder().build().expect("build");
    let first = sandbox
        .run(&mut unotify::Command::new("/bin/true"))
        .expect("the first sandbox");
    assert!(first.success());
    let mut running = Vec::new();
    for i in 0..3 {
        let script = format!(
            "setsid sleep 300 & echo $! > {}/bg{i}.tmp && mv {0}/bg{i}.tmp {0}/bg{i}; exec sleep 300",
            dir.display()
        );
        running.push(
            sandbox
                .spawn(unotify::Command::new("/bin/sh").args(["-c", &script]))
                .expect("spawn"),
        );
    }
    std::fs::write(dir.join("host"), std::process::id().to_string()).expect("write host pid");
    std::thread::sleep(Duration::from_secs(600));
    std::process::exit(1)
}

/// The watchdog that ends the sandboxes when their host dies is one per
/// process, started with its first sandbox: the sandboxes started after
/// it (whose cgroup files the host opened after the watchdog copied its
/// fds) are ended too. A host (this test binary, re-run as one) runs a
/// sandbox, then three whose programs each leave a process in a session of
/// its own, and is killed (`SIGKILL`): none of the three may outlive it,
/// and none of its cgroups.
#[test]
fn a_killed_host_ends_every_sandbox_it_ran() {
    host_killed_ends_its_sandboxes("a_killed_host_ends_every_sandbox_it_ran", false);
}

/// As [`a_killed_host_ends_every_sandbox_it_ran`], the host killed with
/// its whole process group (`kill -KILL -PGID`, as a shell's job control or
/// a supervisor of its own would): the watchdog, in a group of its own, is
/// not killed with it and ends the sandboxes. (With the watchdog left in
/// the host's group, the three outlive it.)
#[test]
fn a_host_killed_with_its_process_group_ends_every_sandbox_it_ran() {
    host_killed_ends_its_sandboxes(
        "a_host_killed_with_its_process_group_ends_every_sandbox_it_ran",
        true,
    );
}

/// The test `name` (this binary re-run as the host, see [`killed_host`]):
/// the host killed alone, or with its process group (`group`, the host
/// leading one).
fn host_killed_ends_its_sandboxes(name: &str, group: bool) {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = std::env::var_os("UNOTIFY_TEST_KILLED_HOST") {
        killed_host(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap());
    host.args([name, "--exact", "--nocapture"])
        .env("UNOTIFY_TEST_KILLED_HOST", dir.path())
        .stdout(std::process::Stdio::null());
    if group {
        host.process_group(0);
    }
    let mut host = host.spawn().expect("start the host");
    let _dog = common::watchdog(Duration::from_secs(60), "the killed host");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = |f: &str| dir.path().join(f).exists();
    while !(ready("host") && (0..3).all(|i| ready(&format!("bg{i}")))) {
        assert!(
            Instant::now() < deadline,
            "the host did not start its sandboxes"
        );
        assert!(host.try_wait().unwrap().is_none(), "the host ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid_in = |f: &str| -> i32 {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let host_pid = pid_in("host");
    let bg: Vec<i32> = (0..3).map(|i| pid_in(&format!("bg{i}"))).collect();
    if group {
        unotify::sys::process::kill(-host_pid, libc::SIGKILL).expect("kill the host's group");
    } else {
        host.kill().unwrap();
    }
    host.wait().unwrap();
    let alive = |p: &i32| {
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        !state.is_empty() && !state.contains(") Z ")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while (bg.iter().any(alive) || !cgroups_of(host_pid).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = bg.iter().copied().filter(alive).collect();
    for p in &left {
        let _ = unotify::sys::process::kill(*p, libc::SIGKILL);
    }
    eprintln!("killed host (group {group}): {} of 3 left", left.len());
    assert!(
        left.is_empty(),
        "{} of 3 outlived their killed host: {left:?}",
        left.len()
    );
    let cgroups = cgroups_of(host_pid);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

/// A sandbox's emptied cgroup is kept for the process's next sandbox (no
/// directory made and removed per spawn), but only when nothing of the
/// sandbox is left in it: a process that left the program's group
/// (`setsid`) is killed at the end, and the next sandbox, in the same
/// cgroup or not, holds none of the earlier one's processes.
#[test]
fn a_kept_cgroup_holds_nothing_of_the_sandbox_before() {
    use std::io::Read;
    let sandbox = unotify::Sandbox::builder().build().expect("build");
    for round in 0..5 {
        let mut child = sandbox
            .spawn(
                unotify::Command::new("/bin/sh")
                    .args(["-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
                    .stdout(unotify::Stdio::Piped),
            )
            .expect("spawn");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .unwrap();
        let daemon: i32 = out.trim().parse().expect("the daemon's pid");
        assert!(child.wait().unwrap().success());
        let state = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap_or_default();
        let alive = !state.is_empty() && !state.contains(") Z ");
        if alive {
            let _ = unotify::sys::process::kill(daemon, libc::SIGKILL);
        }
        assert!(
            !alive,
            "round {round}: the setsid'd sleep {daemon} outlived its sandbox"
        );
        // The next sandbox sees only its own processes.
        let mut next = sandbox
            .spawn(unotify::Command::new("/bin/sleep").arg("0.2"))
            .expect("spawn the next");
        let pids = next.processes().pids();
        assert_eq!(
            pids,
            vec![next.pid() as i32],
            "round {round}: the next sandbox holds {pids:?}"
        );
        assert!(next.wait().unwrap().success());
    }
}

/// The cgroup a sandbox's program is in (the name of the `unotify-…`
/// directory of its `/proc/self/cgroup`), and the host's pid, for a
/// `unotify run -- cat /proc/self/cgroup` started now.
fn cgroup_name_of_a_run() -> (u32, String) {
    let child = common::unotify()
        .args(["run", "--", "cat", "/proc/self/cgroup"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start unotify");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = text
        .split(['/', '\n'])
        .find(|c| c.starts_with("unotify-"))
        .unwrap_or_else(|| panic!("no unotify cgroup in {text:?}"))
        .to_owned();
    (pid, name)
}

/// A sandbox's cgroup is named so that no other host can make the same one,
/// even with the same pid: the shared watchdog of a host that dies between
/// removing a sandbox's cgroup and leaving its list ends that sandbox by
/// its paths, and another host given the pid (forced here through
/// `ns_last_pid`) would otherwise make those very paths for its first
/// sandbox (`unotify-<pid>-0`) and have it killed.
#[test]
fn a_reused_pid_never_names_the_same_cgroup() {
    let (pid, first) = cgroup_name_of_a_run();
    let mut second = None;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (root)");
        let (p, name) = cgroup_name_of_a_run();
        if p == pid {
            second = Some(name);
            break;
        }
    }
    let second = second.expect("pid never reused in 200 tries");
    eprintln!("pid {pid}: {first} then {second}");
    assert_ne!(first, second, "two hosts of pid {pid} made the same cgroup");
}

/// `unotify run` whose program fails to start keeps no cgroup: none named
/// after it is left in any mounted hierarchy while it prints its error
/// (held there by a preloaded `write`), nor after it exited. It kept the
/// failed spawn's emptied cgroup for a next sandbox it never starts, for
/// its watchdog to remove after its exit.
#[test]
fn a_failed_start_keeps_no_cgroup() {
    use std::io::Read;
    let hold = common::build_c(
        "hold_after_stderr.so",
        include_str!("c/hold_after_stderr.c"),
        &["-shared", "-fPIC", "-ldl"],
    );
    let mut child = common::unotify()
        .args(["run", "--", "/unotify-no-such-program"])
        .env("LD_PRELOAD", &hold)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start unotify");
    let pid = child.id() as i32;
    let mut first = [0u8; 8];
    child
        .stderr
        .as_mut()
        .expect("stderr")
        .read_exact(&mut first)
        .expect("its error message");
    // Held in its first write to stderr now.
    let held = cgroups_of(pid);
    let mut rest = String::new();
    child
        .stderr
        .as_mut()
        .expect("stderr")
        .read_to_string(&mut rest)
        .expect("read");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{rest}");
    assert!(
        held.is_empty(),
        "kept while it reported the failure: {held:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(cgroups_of(pid).is_empty(), "left after its exit");
}
