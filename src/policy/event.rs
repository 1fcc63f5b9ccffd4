//! What the policy callback is told about one trapped call.

use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

/// The broad kind of a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyscallCategory {
    /// Opening, linking, renaming, executing files.
    File,
    /// Sockets: connect, bind, send.
    Network,
    /// Process creation and exec.
    Process,
    /// Memory mappings and the heap.
    Memory,
}

impl SyscallCategory {
    /// Lower-case name, for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            SyscallCategory::File => "file",
            SyscallCategory::Network => "network",
            SyscallCategory::Process => "process",
            SyscallCategory::Memory => "memory",
        }
    }

    /// The category of syscall `name` (unknown names count as `File`).
    pub fn of(name: &str) -> SyscallCategory {
        match name {
            "connect" | "bind" | "sendto" | "sendmsg" | "sendmmsg" | "socket" | "listen"
            | "accept" | "accept4" => SyscallCategory::Network,
            "clone" | "clone3" | "fork" | "vfork" | "execve" | "execveat" => {
                SyscallCategory::Process
            }
            "mmap" | "munmap" | "brk" | "mremap" => SyscallCategory::Memory,
            _ => SyscallCategory::File,
        }
    }
}

/// One trapped system call, as the policy callback sees it.
///
/// Every field was read once by the supervisor and is what it decides on:
/// addresses come from the copy the network layer uses for the call it makes
/// on the program's behalf; `argv` is read only while every task that could
/// change it is stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyscallEvent {
    /// System call name, e.g. `"connect"`.
    pub syscall: &'static str,
    /// Its category.
    pub category: SyscallCategory,
    /// Thread id of the caller.
    pub pid: u32,
    /// Parent process of the caller, if known.
    pub parent_pid: Option<u32>,
    /// Destination (or bind) address of a network call.
    pub host: Option<IpAddr>,
    /// Destination (or bind) port of a network call.
    pub port: Option<u16>,
    /// A size argument (the length of an `mmap`).
    pub size: Option<u64>,
    /// The argument vector of an exec, when argv safety is on: each
    /// argument's exact bytes (`std::os::unix::ffi::OsStrExt::as_bytes`;
    /// one that is not UTF-8 is not changed, so a policy compares what the
    /// kernel execs).
    pub argv: Option<Vec<std::ffi::OsString>>,
    /// Whether the supervisor had already denied the call.
    pub denied: bool,
    /// Whether the call waits for this event's verdict (it is one of
    /// [`HELD_SYSCALLS`](super::HELD_SYSCALLS) and not denied already).
    /// When `false` the call was answered before the callback was told:
    /// a denying verdict changes nothing for it.
    pub held: bool,
    /// The errno the call fails with, when it fails: the supervisor's
    /// (with `denied`), or the verdict's in an audit record.
    pub errno: Option<i32>,
}

/// The audit record's schema version.
pub const AUDIT_SCHEMA: u32 = 2;

/// What an audit record adds to the event, known once the call is
/// answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The path argument as the program gave it, read once (under
    /// `ID_VALID`, or from the copy the decision was made on).
    pub(crate) path: Option<String>,
    /// The socket address argument, readable for every family.
    pub(crate) destination: Option<String>,
    /// What happened (see [`SyscallEvent::to_json`]).
    pub(crate) outcome: &'static str,
    /// The value a call performed on the program's behalf returned.
    pub(crate) ret: Option<i64>,
    /// The rule that decided, as the command line names it.
    pub(crate) rule: Option<String>,
    /// The policy callback's verdict, when it was consulted.
    pub(crate) verdict: Option<&'static str>,
}

impl SyscallEvent {
    /// One JSON object (no trailing newline): the audit record of this
    /// call. Schema 2 (fields in this order; absent values are `null`):
    ///
    /// | field | value |
    /// |---|---|
    /// | `schema` | 2 |
    /// | `time` | seconds since the Unix epoch, with microseconds, when the record was made |
    /// | `syscall`, `category` | the call; `file`, `network`, `process` or `memory` |
    /// | `pid`, `parent_pid` | the calling thread and its parent |
    /// | `path` | the path argument as given (first one of two), read once before the answer |
    /// | `destination` | the socket address argument: `127.0.0.1:80`, `[::1]:443`, `unix:/path`, `unix:@name`, `unix:unnamed`, `netlink:pid=0,groups=0x0`, `unspec`, `family=AF_PACKET` |
    /// | `host`, `port` | of an IP destination |
    /// | `size` | of an `mmap` |
    /// | `argv` | of an exec |
    /// | `outcome` | `continued` (let through: the kernel ran it, its result is not seen), `performed` (done on the program's behalf; `return` says what it returned), `refused` (a rule or the policy callback refused it: see `rule`, `errno`), `failed` (answered with an errno no rule gave: the call itself failed, e.g. `ENOENT` of a missing file), `killed` (over a limit), `held`, `deferred` |
    /// | `denied` | `true` exactly when `outcome` is `refused` or `killed` |
    /// | `errno` | the errno the call was answered with, by name (`"EACCES"`) |
    /// | `return` | the value a performed call returned |
    /// | `rule` | the rule that decided: `deny-path /etc/shadow`, `fs-read allow list`, `net-allow 127.0.0.1:8080`, `net-deny 10.0.0.0/8`, `limit max-processes 8`, `limit max-memory 64 MiB`, `exec-deny rm`, `policy callback` |
    /// | `verdict` | the policy callback's (`allow`, `deny`, `audit`), `null` when none was consulted |
    ///
    /// Fields may be added; none is removed or changes meaning without a
    /// new schema number. Without an answer (a record made when the
    /// callback is told, before the call is answered), `outcome`, `errno`,
    /// `return` and `rule` are `null` and `denied` says whether the
    /// supervisor had already refused it.
    pub fn to_json(&self, verdict: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let answered = Answered {
            verdict: Some(match verdict {
                "allow" => "allow",
                "audit" => "audit",
                _ => "deny",
            }),
            ..Answered::default()
        };
        self.to_json_at(&answered, now)
    }

    /// The record of an answered call.
    pub(crate) fn record(&self, answered: &Answered) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.to_json_at(answered, now)
    }

    fn to_json_at(&self, a: &Answered, time: f64) -> String {
        let text = |v: Option<&str>| v.map_or("null".into(), json_str);
        let mut out = String::with_capacity(300);
        out.push('{');
        push_field(&mut out, "schema", &AUDIT_SCHEMA.to_string());
        push_field(&mut out, "time", &format!("{time:.6}"));
        push_field(&mut out, "syscall", &json_str(self.syscall));
        push_field(&mut out, "category", &json_str(self.category.as_str()));
        push_field(&mut out, "pid", &self.pid.to_string());
        push_field(&mut out, "parent_pid", &opt(self.parent_pid));
        push_field(&mut out, "path", &text(a.path.as_deref()));
        push_field(&mut out, "destination", &text(a.destination.as_deref()));
        push_field(
            &mut out,
            "host",
            &self
                .host
                .map_or("null".into(), |h| json_str(&h.to_string())),
        );
        push_field(&mut out, "port", &opt(self.port));
        push_field(&mut out, "size", &opt(self.size));
        let argv = match &self.argv {
            Some(a) => format!(
                "[{}]",
                a.iter()
                    .map(|s| json_str(&crate::shown::bytes(s.as_bytes())))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => "null".into(),
        };
        push_field(&mut out, "argv", &argv);
        push_field(
            &mut out,
            "outcome",
            &text((!a.outcome.is_empty()).then_some(a.outcome)),
        );
        push_field(
            &mut out,
            "denied",
            if self.denied { "true" } else { "false" },
        );
        let errno = match self.errno {
            Some(e) => match crate::notification::decode::errno_name(e) {
                Some(name) => json_str(name),
                None => e.to_string(),
            },
            None => "null".into(),
        };
        push_field(&mut out, "errno", &errno);
        push_field(&mut out, "return", &opt(a.ret));
        push_field(&mut out, "rule", &text(a.rule.as_deref()));
        push_field(&mut out, "verdict", &text(a.verdict));
        out.pop();
        out.push('}');
        out
    }
}

fn push_field(out: &mut String, key: &str, value: &str) {
    out.push_str(&json_str(key));
    out.push(':');
    out.push_str(value);
    out.push(',');
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

/// A JSON string literal for `s`.
pub(crate) fn json_str(s: &str) -> String {
    crate::shown::quoted(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn json_escapes_and_nulls() {
        let ev = SyscallEvent {
            syscall: "execve",
            category: SyscallCategory::Process,
            pid: 7,
            parent_pid: Some(1),
            host: None,
            port: None,
            size: None,
            argv: Some(vec![
                "a\"b".into(),
                "c\\d".into(),
                OsStr::from_bytes(b"e\xff").into(),
            ]),
            denied: true,
            held: false,
            errno: Some(libc::EPERM),
        };
        let answered = Answered {
            path: Some("/bin/rm".into()),
            outcome: "refused",
            rule: Some("exec-deny rm".into()),
            verdict: Some("deny"),
            ..Answered::default()
        };
        assert_eq!(
            ev.to_json_at(&answered, 1.5),
            r#"{"schema":2,"time":1.500000,"syscall":"execve","category":"process","pid":7,"parent_pid":1,"path":"/bin/rm","destination":null,"host":null,"port":null,"size":null,"argv":["a\"b","c\\\\d","e\\xff"],"outcome":"refused","denied":true,"errno":"EPERM","return":null,"rule":"exec-deny rm","verdict":"deny"}"#
        );
    }

    #[test]
    fn categories() {
        assert_eq!(SyscallCategory::of("connect"), SyscallCategory::Network);
        assert_eq!(SyscallCategory::of("execveat"), SyscallCategory::Process);
        assert_eq!(SyscallCategory::of("brk"), SyscallCategory::Memory);
        assert_eq!(SyscallCategory::of("openat"), SyscallCategory::File);
    }
}
