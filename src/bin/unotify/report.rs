//! What `unotify run` tells its user about the rules that fired: the
//! first event of each kind on stderr, as it happens (`unotify: killed:
//! memory limit 64 MiB exceeded`), and with `--summary` the counts at exit.
//! Fed by the library's event observer (`SandboxBuilder::observe`) and by
//! `exec_deny`; used by `main`'s `run`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use unotify::events::Event;

/// The kinds of event, in the order the summary lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Processes killed over `-m`.
    MemoryKill,
    /// Forks refused at `-P`.
    ProcessLimit,
    /// Destinations refused by the network rules.
    Destination,
    /// Calls refused on a denied path.
    DeniedPath,
    /// Execs refused by `--exec-deny`.
    ExecDeny,
}

impl Kind {
    fn of(ev: &Event) -> Option<Kind> {
        Some(match ev {
            Event::MemoryLimitKilled { .. } => Kind::MemoryKill,
            Event::ProcessLimitRefused { .. } => Kind::ProcessLimit,
            Event::DestinationRefused { .. } => Kind::Destination,
            Event::PathDenied { .. } => Kind::DeniedPath,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Kind::MemoryKill => "processes killed over the memory limit",
            Kind::ProcessLimit => "forks refused at the process limit",
            Kind::Destination => "network destinations refused",
            Kind::DeniedPath => "calls refused on denied paths",
            Kind::ExecDeny => "execs refused by --exec-deny",
        }
    }
}

/// The events seen so far.
#[derive(Debug, Default)]
pub struct Report {
    /// Events of each kind (a memory kill counts its processes).
    counts: Mutex<BTreeMap<Kind, u64>>,
}

impl Report {
    /// Takes an event from the library.
    pub fn event(&self, ev: &Event) {
        let Some(kind) = Kind::of(ev) else {
            return;
        };
        let n = match ev {
            Event::MemoryLimitKilled { count, .. } => *count,
            _ => 1,
        };
        self.note(kind, n, || ev.to_string());
    }

    /// An exec refused by `--exec-deny`.
    pub fn exec_denied(&self, argv: &[String], rule: &str) {
        self.note(Kind::ExecDeny, 1, || {
            format!("refused: exec of `{}` ({rule}; EPERM)", argv.join(" "))
        });
    }

    /// Whether an exec was refused by `--exec-deny`.
    pub fn exec_was_denied(&self) -> bool {
        self.count(Kind::ExecDeny) > 0
    }

    fn count(&self, kind: Kind) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&kind).copied().unwrap_or(0)
    }

    /// Counts `n` events of `kind`; tells the user about the first.
    fn note(&self, kind: Kind, n: u64, line: impl FnOnce() -> String) {
        let first = {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let c = counts.entry(kind).or_insert(0);
            *c += n;
            *c == n
        };
        if first {
            eprintln!("unotify: {}", line());
        }
    }

    /// The counts, one line each (`--summary`).
    pub fn print_summary(&self) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.values().all(|&n| n == 0) {
            eprintln!("unotify: summary: no rule fired");
            return;
        }
        for (kind, n) in counts.iter().filter(|(_, &n)| n > 0) {
            eprintln!("unotify: summary: {n} {}", kind.label());
        }
    }
}
