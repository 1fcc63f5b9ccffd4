//! What the running kernel supports: real probes, not version guesses.
//!
//! [`probe_features`] tries each feature the supervisor uses or may use and
//! reports what happened. Probes that need a seccomp filter run in a
//! short-lived forked child (a filter can never be removed from the task that
//! installed it): the child installs a filter that traps `getppid` with a new
//! listener and calls it; the caller takes the listener with `pidfd_getfd`,
//! sets flags on it, receives the trapped call and answers it by injecting a
//! file descriptor with `SECCOMP_ADDFD_FLAG_SEND`.
//!
//! ```no_run
//! let missing: Vec<String> = unotify::probe::probe_features()
//!     .iter()
//!     .filter(|f| !f.available)
//!     .map(|f| f.to_string())
//!     .collect();
//! assert!(missing.is_empty(), "missing kernel features: {missing:?}");
//! ```

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use crate::arch::Arch;
use crate::filter::FilterBuilder;
use crate::sys::pidfd;
use crate::sys::probe::{fork_trapping_child, landlock_abi_version, wait_readable, Installed};
use crate::sys::seccomp::{self, SeccompNotifAddfd, SeccompNotifResp};
use crate::syscalls;

/// Name of the seccomp user notification feature (the first entry of
/// [`probe_features`]).
pub const USER_NOTIFICATION: &str = "seccomp user notification";
/// Name of the `SECCOMP_ADDFD_FLAG_SEND` feature.
pub const ADDFD_FLAG_SEND: &str = "SECCOMP_ADDFD_FLAG_SEND";
/// Name of the `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` feature.
pub const SYNC_WAKE_UP: &str = "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP";
/// Name of the `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` feature.
pub const WAIT_KILLABLE_RECV: &str = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";
/// Name of the `pidfd_getfd` feature.
pub const PIDFD_GETFD: &str = "pidfd_getfd";
/// Name of the Landlock feature.
pub const LANDLOCK: &str = "Landlock";
/// Name of the isolation of the sandbox from the host: available when the
/// full guarantee holds (Landlock ABI 6 or newer), else what applies and
/// that `run` needs `--allow-weak-isolation`.
pub const ISOLATION: &str = "isolation from the host";
/// Name of the behaviour that lets the poll thread block in
/// `SECCOMP_IOCTL_NOTIF_RECV` itself: a blocked receive ends (`ENOENT`) once
/// every task using the filter is gone.
pub const RECV_ENDS_ON_HANGUP: &str = "NOTIF_RECV ends on hang-up";

/// Name of the memory-limit mode: a memory cgroup (every kind of memory, in
/// the kernel), or, where none can be made, the charging of trapped
/// memory calls.
pub const MEMORY_CGROUP: &str = "memory limit by cgroup";
/// Name of the containment mode: a cgroup that holds every process of the
/// sandbox from its creation (the process count, the kill at the end, the
/// watchdog), or, where none can be made, the program's process group.
pub const CGROUP_CONTAINMENT: &str = "process containment by cgroup";

/// How long the hang-up probe lets a receive block before giving up.
const HANGUP_WAIT: Duration = Duration::from_millis(500);

/// How long the probe waits for its child at each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One kernel feature and whether this kernel has it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Feature {
    /// The feature, e.g. `"SECCOMP_ADDFD_FLAG_SEND"`.
    pub name: &'static str,
    /// Whether the probe succeeded.
    pub available: bool,
    /// What the probe saw: sizes or a version when available, the reason
    /// (the kernel's error and the kernel version that added the feature)
    /// when not.
    pub detail: String,
}

impl Feature {
    fn yes(name: &'static str, detail: impl Into<String>) -> Self {
        Feature {
            name,
            available: true,
            detail: detail.into(),
        }
    }

    fn no(name: &'static str, detail: impl Into<String>) -> Self {
        Feature {
            name,
            available: false,
            detail: detail.into(),
        }
    }

    fn from_result(name: &'static str, r: Result<String, String>) -> Self {
        match r {
            Ok(d) => Feature::yes(name, d),
            Err(d) => Feature::no(name, d),
        }
    }
}

impl fmt::Display for Feature {
    /// `name: yes (detail)` or `name: no (detail)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answer = if self.available { "yes" } else { "no" };
        if self.detail.is_empty() {
            write!(f, "{}: {answer}", self.name)
        } else {
            write!(f, "{}: {answer} ({})", self.name, self.detail)
        }
    }
}

/// Probes every feature, in this order: seccomp user notification,
/// `SECCOMP_ADDFD_FLAG_SEND`, `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`,
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, [`RECV_ENDS_ON_HANGUP`],
/// `pidfd_getfd`, Landlock, [`ISOLATION`], [`MEMORY_CGROUP`], [`CGROUP_CONTAINMENT`].
///
/// The hang-up probe receives on a short-lived thread that a timer signal
/// interrupts, with the handler the supervisor installs for its blocking
/// receive.
///
/// Takes a few milliseconds: it forks one child, which never outlives the
/// call.
pub fn probe_features() -> Vec<Feature> {
    let notif = user_notification();
    let listener = if notif.available {
        listener_features()
    } else {
        let why = || Err(format!("needs {USER_NOTIFICATION}"));
        ListenerFeatures {
            addfd_send: why(),
            sync_wake_up: why(),
            wait_killable: why(),
            recv_hangup: why(),
        }
    };
    vec![
        notif,
        Feature::from_result(ADDFD_FLAG_SEND, listener.addfd_send),
        Feature::from_result(SYNC_WAKE_UP, listener.sync_wake_up),
        Feature::from_result(WAIT_KILLABLE_RECV, listener.wait_killable),
        Feature::from_result(RECV_ENDS_ON_HANGUP, listener.recv_hangup),
        Feature::from_result(PIDFD_GETFD, pidfd_getfd_works()),
        Feature::from_result(LANDLOCK, landlock()),
        isolation(),
        Feature::from_result(MEMORY_CGROUP, memory_cgroup()),
        Feature::from_result(CGROUP_CONTAINMENT, cgroup_containment()),
    ]
}

fn memory_cgroup() -> Result<String, String> {
    use crate::sys::cgroup::MemoryMode;
    match crate::sys::cgroup::memory_mode() {
        MemoryMode::CgroupV2(d) => Ok(format!("cgroup v2 memory.max under {}", d.display())),
        MemoryMode::CgroupV1(d) => Ok(format!(
            "cgroup v1 memory.limit_in_bytes under {}",
            d.display()
        )),
        MemoryMode::Accounting(why) => Err(format!(
            "{why}; -m charges the memory calls it traps instead, which shared memory written without a mapping escapes"
        )),
    }
}

fn cgroup_containment() -> Result<String, String> {
    use crate::sys::cgroup::ContainMode;
    match crate::sys::cgroup::contain_mode() {
        ContainMode::CgroupV2Kill(d) => Ok(format!("cgroup v2 cgroup.kill under {}", d.display())),
        ContainMode::CgroupV1Freezer(d) => {
            Ok(format!("cgroup v1 freezer under {}", d.display()))
        }
        ContainMode::CgroupV1Procs(d) => Ok(format!(
            "cgroup v1 under {} (killed one by one: no freezer)",
            d.display()
        )),
        ContainMode::ProcessGroup(why) => Err(format!(
            "{why}; only the program's process group is killed at the end and counted for -P, so a process that calls setsid escapes both"
        )),
    }
}

/// `what` failed with `e`; the feature came with Linux `since`.
fn refused(e: &io::Error, since: &str) -> String {
    format!("{e}; needs Linux {since} or newer")
}

fn user_notification() -> Feature {
    let sizes = match seccomp::notif_sizes() {
        Ok(s) => s,
        Err(e) => {
            return Feature::no(
                USER_NOTIFICATION,
                format!("SECCOMP_GET_NOTIF_SIZES: {}", refused(&e, "5.0")),
            )
        }
    };
    let detail = format!(
        "notif {}, resp {}, data {} bytes",
        sizes.notif, sizes.resp, sizes.data
    );
    if let Err(e) = seccomp::action_available(seccomp::RET_USER_NOTIF) {
        return Feature::no(
            USER_NOTIFICATION,
            format!("{detail}, but SECCOMP_RET_USER_NOTIF is not available: {e}"),
        );
    }
    if let Err(e) = seccomp::check_sizes() {
        return Feature::no(USER_NOTIFICATION, e.to_string());
    }
    Feature::yes(USER_NOTIFICATION, detail)
}

struct ListenerFeatures {
    addfd_send: Result<String, String>,
    sync_wake_up: Result<String, String>,
    wait_killable: Result<String, String>,
    recv_hangup: Result<String, String>,
}

fn listener_features() -> ListenerFeatures {
    let fail_all = |msg: String| ListenerFeatures {
        addfd_send: Err(msg.clone()),
        sync_wake_up: Err(msg.clone()),
        wait_killable: Err(msg.clone()),
        recv_hangup: Err(msg),
    };
    let Some(nr) = syscalls::number(Arch::native(), "getppid") else {
        return fail_all("getppid is not in this architecture's table".into());
    };
    let filter = match FilterBuilder::new(Arch::native())
        .notify(nr)
        .and_then(|b| b.build())
    {
        Ok(f) => f,
        Err(e) => return fail_all(format!("cannot build the probe filter: {e}")),
    };
    let child = match fork_trapping_child(filter.instructions(), libc::c_long::from(nr as i32)) {
        Ok(c) => c,
        Err(e) => return fail_all(format!("cannot fork the probe child: {e}")),
    };
    let installed: Installed = match child.installed(STEP_TIMEOUT) {
        Ok(i) => i,
        Err(e) => return fail_all(format!("installing a filter with a listener failed: {e}")),
    };
    let wait_killable = if installed.wait_killable_recv {
        Ok("accepted by seccomp(2) with NEW_LISTENER".to_owned())
    } else {
        let e = io::Error::from_raw_os_error(installed.wait_killable_errno.unwrap_or(libc::EINVAL));
        Err(refused(&e, "5.19"))
    };
    let listener = pidfd::pidfd_open(child.pid(), 0)
        .and_then(|p| pidfd::pidfd_getfd(p.as_fd(), installed.listener));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("cannot take the probe child's listener with pidfd_getfd: {e}");
            return ListenerFeatures {
                wait_killable,
                ..fail_all(msg)
            };
        }
    };
    let sync_wake_up =
        match seccomp::set_flags(listener.as_fd(), seccomp::USER_NOTIF_FD_SYNC_WAKE_UP) {
            Ok(()) => Ok("set on a listener".to_owned()),
            Err(e) => Err(refused(&e, "6.6")),
        };
    let addfd_send = addfd_send(&child, listener.as_fd(), nr);
    // The child is killed and reaped: the filter has no users left.
    drop(child);
    ListenerFeatures {
        addfd_send,
        sync_wake_up,
        wait_killable,
        recv_hangup: recv_ends_on_hangup(listener),
    }
}

/// Blocks in `NOTIF_RECV` on a listener whose filter has no users left; the
/// kernel should end it with `ENOENT` (Linux 6.11). A timer signal ends the
/// wait after [`HANGUP_WAIT`] on kernels that would block forever.
fn recv_ends_on_hangup(listener: std::os::fd::OwnedFd) -> Result<String, String> {
    use crate::sys::interrupt::{self, AlarmTimer};
    let sig = interrupt::signal();
    match interrupt::install(sig) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "not probed: signal {sig} has another handler, so a blocked receive cannot be timed"
            ))
        }
        Err(e) => {
            return Err(format!(
                "not probed: cannot install the handler of signal {sig}: {e}"
            ))
        }
    }
    let waiter = std::thread::Builder::new()
        .name("unotify-probe".into())
        .spawn(move || -> io::Result<io::Result<()>> {
            interrupt::unblock_here(sig)?;
            let alarm = AlarmTimer::for_this_thread(sig)?;
            alarm.arm(HANGUP_WAIT)?;
            Ok(seccomp::recv(listener.as_fd()).map(drop))
        })
        .map_err(|e| format!("not probed: cannot start a thread: {e}"))?;
    match waiter.join() {
        Ok(Ok(Err(e))) if e.raw_os_error() == Some(libc::ENOENT) => {
            Ok("a blocked receive returned ENOENT once every task was gone".to_owned())
        }
        Ok(Ok(Err(e))) if e.raw_os_error() == Some(libc::EINTR) => Err(format!(
            "a blocked receive still waited {} ms after every task was gone; needs Linux 6.11 or newer (the supervisor then waits with poll(2))",
            HANGUP_WAIT.as_millis()
        )),
        Ok(Ok(Err(e))) => Err(format!("the receive failed otherwise: {e}")),
        Ok(Ok(Ok(()))) => Err("a notification came from a filter without tasks".to_owned()),
        Ok(Err(e)) => Err(format!("not probed: {e}")),
        Err(_) => Err("not probed: the probe thread panicked".to_owned()),
    }
}

/// Receives the child's trapped call and answers it with an fd injected by
/// `SECCOMP_ADDFD_FLAG_SEND`; checks that the call returned that fd.
fn addfd_send(
    child: &crate::sys::probe::TrappingChild,
    listener: std::os::fd::BorrowedFd<'_>,
    nr: u32,
) -> Result<String, String> {
    match wait_readable(listener, STEP_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => return Err("the probe child's trapped call never reached the listener".into()),
        Err(e) => return Err(format!("cannot poll the listener: {e}")),
    }
    let notif =
        seccomp::recv(listener).map_err(|e| format!("SECCOMP_IOCTL_NOTIF_RECV failed: {e}"))?;
    if notif.data.nr != nr as i32 || notif.pid != child.pid() as u32 {
        return Err(format!(
            "unexpected notification (pid {}, syscall {}) instead of the probe child's getppid",
            notif.pid, notif.data.nr
        ));
    }
    let file =
        File::open("/dev/null").map_err(|e| format!("cannot open /dev/null to inject: {e}"))?;
    let req = SeccompNotifAddfd {
        id: notif.id,
        flags: seccomp::ADDFD_FLAG_SEND,
        srcfd: file.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: libc::O_CLOEXEC as u32,
    };
    match seccomp::addfd(listener, &req) {
        Ok(fd) => match child.call_result(STEP_TIMEOUT) {
            Ok(ret) if ret == i64::from(fd) => {
                Ok(format!("the trapped call returned the injected fd {fd}"))
            }
            Ok(ret) => Err(format!(
                "ADDFD gave fd {fd} but the trapped call returned {ret}"
            )),
            Err(e) => Err(format!("the probe child did not report its call: {e}")),
        },
        Err(e) => {
            // Release the child with an ordinary answer.
            let resp = SeccompNotifResp {
                id: notif.id,
                val: 0,
                error: -libc::ENOSYS,
                flags: 0,
            };
            let _ = seccomp::send(listener, &resp);
            Err(refused(&e, "5.14"))
        }
    }
}

fn pidfd_getfd_works() -> Result<String, String> {
    let file = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let pid = std::process::id() as i32;
    let own =
        pidfd::pidfd_open(pid, 0).map_err(|e| format!("pidfd_open: {}", refused(&e, "5.3")))?;
    match pidfd::pidfd_getfd(own.as_fd(), file.as_raw_fd()) {
        Ok(_dup) => Ok("duplicated a file descriptor through a pidfd".into()),
        Err(e) => Err(refused(&e, "5.6")),
    }
}

fn landlock() -> Result<String, String> {
    match landlock_abi_version() {
        Ok(v) => {
            let (has, lacks): (Vec<_>, Vec<_>) = crate::landlock::Right::ALL
                .into_iter()
                .partition(|r| r.abi() <= v);
            let list = |rs: Vec<crate::landlock::Right>| {
                rs.iter()
                    .map(|r| format!("{r} (ABI {})", r.abi()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut d = format!("ABI {v}; rights: {}", list(has));
            if !lacks.is_empty() {
                d.push_str(&format!("; lacks: {}", list(lacks)));
            }
            Ok(d)
        }
        Err(e) => match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Err(format!(
                "{e}; built in but disabled at boot (add landlock to lsm=)"
            )),
            Some(libc::ENOSYS) => Err(refused(&e, "5.13 built with CONFIG_SECURITY_LANDLOCK")),
            _ => Err(e.to_string()),
        },
    }
}

fn isolation() -> Feature {
    let level = crate::isolation::Level::of(&landlock_abi_version());
    Feature {
        name: ISOLATION,
        available: level.is_full(),
        detail: level.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        assert_eq!(Feature::yes("x", "1 2").to_string(), "x: yes (1 2)");
        assert_eq!(Feature::no("y", "").to_string(), "y: no");
    }

    #[test]
    fn probes_agree_with_the_kernel() {
        let features = probe_features();
        let names: Vec<_> = features.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                USER_NOTIFICATION,
                ADDFD_FLAG_SEND,
                SYNC_WAKE_UP,
                WAIT_KILLABLE_RECV,
                RECV_ENDS_ON_HANGUP,
                PIDFD_GETFD,
                LANDLOCK,
                ISOLATION,
                MEMORY_CGROUP,
                CGROUP_CONTAINMENT
            ]
        );
        // The supervisor's own start-up check must agree with the probe.
        assert_eq!(
            features[0].available,
            seccomp::check_sizes().is_ok(),
            "{}",
            features[0]
        );
        if features[0].available {
            assert!(features[0].detail.starts_with("notif "), "{}", features[0]);
        }
        // Each probe agrees with the kernel version that added its feature.
        use crate::sys::interrupt::kernel_at_least;
        for (i, since) in [(1, (5, 14)), (2, (6, 6)), (3, (5, 19)), (5, (5, 6))] {
            assert_eq!(
                features[i].available,
                kernel_at_least(since.0, since.1),
                "{}",
                features[i]
            );
        }
        // The supervisor chooses blocking receive from the kernel version;
        // the probe must agree with it.
        assert_eq!(
            features[4].available,
            crate::sys::interrupt::kernel_at_least(6, 11),
            "{}",
            features[4]
        );
    }
}
