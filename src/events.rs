//! Events: what a sandbox tells its host when one of its rules fires (a
//! fork refused at the process limit, a destination refused, a denied path
//! refused, a process killed over the memory limit), for a command to tell
//! its user or count. It owns the [`Event`] type and the sink the features
//! report through; it calls nothing else of the crate but `shown` (how a
//! path that is not UTF-8 prints). Features report
//! through `HandlerCtx::report`; the builder and `Child` hold the sink.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A rule of the sandbox that fired. Delivered to the observer given to
/// [`SandboxBuilder::observe`](crate::SandboxBuilder::observe), on the
/// supervisor thread that decided (so the observer must be quick and must
/// not block), once per refused call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A process or a process group was killed for going over the memory
    /// limit. With a memory cgroup this is found when the program has
    /// exited (the kernel's OOM killer ran `count` times; `pid` is `None`);
    /// without one, it is reported when the supervisor kills task `pid`.
    MemoryLimitKilled {
        /// The task killed, when the supervisor killed it.
        pid: Option<u32>,
        /// The limit, in bytes.
        limit: u64,
        /// How many processes were killed.
        count: u64,
    },
    /// A fork was refused (`EAGAIN`) at the process limit.
    ProcessLimitRefused {
        /// The task that tried to fork.
        pid: u32,
        /// The limit.
        limit: u32,
    },
    /// A network destination was refused (`ECONNREFUSED`).
    DestinationRefused {
        /// The calling task.
        pid: u32,
        /// The system call (`connect`, `sendto`, ...).
        syscall: &'static str,
        /// The destination, readable: `127.0.0.1:80`, `[::1]:443`,
        /// `unix:/path`, `unix:@name` (a name's bytes that are not UTF-8
        /// as `\xNN`, a `\` as `\\`).
        destination: String,
    },
    /// A call on a denied path, or outside the file system allow lists,
    /// was refused by the supervisor (`EACCES`).
    PathDenied {
        /// The calling task.
        pid: u32,
        /// The system call (`openat`, `execve`, ...).
        syscall: &'static str,
        /// The denied file as the supervisor found it (absolute, symlinks
        /// resolved), when known.
        path: Option<PathBuf>,
    },
}

impl fmt::Display for Event {
    /// One line for a user: what happened and which rule did it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::MemoryLimitKilled { limit, count, .. } => {
                let n = if *count > 1 {
                    format!(" ({count} processes)")
                } else {
                    String::new()
                };
                write!(f, "killed: memory limit {} exceeded{n}", human_size(*limit))
            }
            Event::ProcessLimitRefused { pid, limit } => write!(
                f,
                "refused: a fork of pid {pid} (process limit {limit} reached; EAGAIN)"
            ),
            Event::DestinationRefused {
                pid,
                syscall,
                destination,
            } => write!(
                f,
                "refused: {syscall} to {destination} by pid {pid} (not allowed by the network rules; ECONNREFUSED)"
            ),
            Event::PathDenied { pid, syscall, path } => match path {
                Some(p) => write!(
                    f,
                    "denied: {syscall} of {} by pid {pid} (a denied path, or outside the file system allow lists; EACCES)",
                    crate::shown::path(p)
                ),
                None => write!(f, "denied: {syscall} by pid {pid} (a denied path, or outside the file system allow lists; EACCES)"),
            },
        }
    }
}

impl Event {
    /// The rule that fired, as the command line names it: `limit
    /// max-memory 64 MiB`, `limit max-processes 8`, `net-allow list`,
    /// `deny-path /etc/shadow` (audit records' `rule`).
    pub fn rule(&self) -> String {
        match self {
            Event::MemoryLimitKilled { limit, .. } => {
                format!("limit max-memory {}", human_size(*limit))
            }
            Event::ProcessLimitRefused { limit, .. } => format!("limit max-processes {limit}"),
            Event::DestinationRefused { .. } => "network rules".to_owned(),
            Event::PathDenied { path, .. } => match path {
                Some(p) => format!("deny-path {}", crate::shown::path(p)),
                None => "deny-path".to_owned(),
            },
        }
    }
}

/// `64 MiB`, `1.5 GiB`, `4096 bytes`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut unit = None;
    let mut v = bytes as f64;
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    match unit {
        None => format!("{bytes} bytes"),
        Some(u) if v.fract() == 0.0 => format!("{v:.0} {u}"),
        Some(u) => format!("{v:.1} {u}"),
    }
}

/// A readable destination: `127.0.0.1:80`, `[::1]:443`.
pub(crate) fn destination(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The host's observer.
pub type Observer = dyn Fn(&Event) + Send + Sync;

/// Where features report events: the host's observer, if it gave one.
#[derive(Clone)]
pub(crate) struct EventSink(pub(crate) Arc<Observer>);

impl EventSink {
    /// Hands `event` to the observer; a panicking observer is logged and
    /// does not reach the supervisor.
    pub(crate) fn report(&self, event: &Event) {
        let f = &self.0;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(event))).is_err() {
            log::error!("the event observer panicked on {event:?}");
        }
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_lines() {
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size(100), "100 bytes");
        let ev = Event::MemoryLimitKilled {
            pid: None,
            limit: 64 << 20,
            count: 1,
        };
        assert_eq!(ev.to_string(), "killed: memory limit 64 MiB exceeded");
    }
}
