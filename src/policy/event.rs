//! What the policy callback is told about one trapped call.

use std::net::IpAddr;

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
    /// The argument vector of an exec, when argv safety is on.
    pub argv: Option<Vec<String>>,
    /// Whether the supervisor had already denied the call.
    pub denied: bool,
    /// The errno the call fails with, when it fails: the supervisor's
    /// (with `denied`), or the verdict's in an audit record.
    pub errno: Option<i32>,
}

impl SyscallEvent {
    /// One JSON object (no trailing newline), for audit logs. Schema 1:
    /// `schema` (1), `time` (seconds since the Unix epoch, with
    /// microseconds, when the record was written), `syscall`, `category`
    /// (`file`, `network`, `process`, `memory`), `pid`, `parent_pid`,
    /// `host`, `port` (of a network call), `size` (of an `mmap`), `argv`
    /// (of an exec, under argv safety), `denied` (the supervisor had
    /// already refused the call), `verdict` (`allow`, `deny`, `audit`);
    /// `errno` (the errno the call fails with, by name, e.g. `"EACCES"`, or
    /// `null` when it runs); absent values are `null`. Fields may be added; none is removed or
    /// changes meaning without a new schema number.
    pub fn to_json(&self, verdict: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.to_json_at(verdict, now)
    }

    /// [`to_json`](Self::to_json) with the time given.
    fn to_json_at(&self, verdict: &str, time: f64) -> String {
        let mut out = String::with_capacity(200);
        out.push('{');
        push_field(&mut out, "schema", "1");
        push_field(&mut out, "time", &format!("{time:.6}"));
        push_field(&mut out, "syscall", &json_str(self.syscall));
        push_field(&mut out, "category", &json_str(self.category.as_str()));
        push_field(&mut out, "pid", &self.pid.to_string());
        push_field(&mut out, "parent_pid", &opt(self.parent_pid));
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
                a.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",")
            ),
            None => "null".into(),
        };
        push_field(&mut out, "argv", &argv);
        push_field(
            &mut out,
            "denied",
            if self.denied { "true" } else { "false" },
        );
        push_field(&mut out, "verdict", &json_str(verdict));
        let errno = match self.errno {
            Some(e) => match crate::notification::decode::errno_name(e) {
                Some(name) => json_str(name),
                None => e.to_string(),
            },
            None => "null".into(),
        };
        push_field(&mut out, "errno", &errno);
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
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            argv: Some(vec!["a\"b".into(), "c\\d\n".into()]),
            denied: false,
            errno: None,
        };
        assert_eq!(
            ev.to_json_at("allow", 1.5),
            r#"{"schema":1,"time":1.500000,"syscall":"execve","category":"process","pid":7,"parent_pid":1,"host":null,"port":null,"size":null,"argv":["a\"b","c\\d\n"],"denied":false,"verdict":"allow","errno":null}"#
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
