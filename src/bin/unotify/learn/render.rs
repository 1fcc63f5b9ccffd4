//! The text of the profile `unotify learn` writes, from the rules it
//! collapsed: TOML for `run --profile`. The names the program chose (files,
//! programs, argv, sockets) go into comments shown on one line
//! (`unotify::shown`) and into values as TOML strings escaped here; a rule
//! a profile cannot hold is left out with a note. The text is read back
//! (as TOML, and as `run --profile` takes it) before it is given out, so no
//! name can add a rule. Called by `Recorder::profile`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Rules, Seen, Users, MIN_MEMORY};

/// A profile, checked.
#[derive(Debug)]
pub struct Profile {
    /// The TOML text.
    pub text: String,
    /// Rules the command used that the profile cannot hold (it will be
    /// refused them), each with what to do: for the user to read.
    pub notes: Vec<String>,
}

/// One line of a list: a comment, or a value (a string).
enum Line {
    Note(String),
    Value(String),
}

/// The text, and the table it must read back as.
#[derive(Default)]
struct Writer {
    text: String,
    expected: toml::Table,
}

impl Writer {
    /// A comment line, whatever `text` holds: a control character in it
    /// (none, as names come shown) is shown too.
    fn comment(&mut self, indent: &str, text: &str) {
        self.text.push_str(indent);
        self.text.push_str("# ");
        for c in text.chars() {
            if c.is_control() {
                self.text.push_str(&unotify::shown::bytes(
                    c.encode_utf8(&mut [0; 4]).as_bytes(),
                ));
            } else {
                self.text.push(c);
            }
        }
        self.text.push('\n');
    }

    /// `key = value`, a single value.
    fn set(&mut self, key: &str, value: toml::Value) {
        let shown = match &value {
            toml::Value::String(s) => toml_str(s),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // Not made here: a profile's keys are the values above.
            _ => unreachable!("a profile value is a string, an integer or a boolean"),
        };
        let _ = writeln!(self.text, "{key} = {shown}");
        self.expected.insert(key.to_owned(), value);
    }

    /// `key = ["a", "b"]` on one line.
    fn inline_list(&mut self, key: &str, values: &[&str]) {
        let shown: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
        let _ = writeln!(self.text, "{key} = [{}]", shown.join(", "));
        let values = values.iter().map(|v| toml::Value::from(*v)).collect();
        self.expected
            .insert(key.to_owned(), toml::Value::Array(values));
    }

    /// `key = [` one line each `]`.
    fn list(&mut self, key: &str, lines: Vec<Line>) {
        let _ = writeln!(self.text, "{key} = [");
        let mut values = Vec::new();
        for line in lines {
            match line {
                Line::Note(text) => self.comment("    ", &text),
                Line::Value(v) => {
                    let _ = writeln!(self.text, "    {},", toml_str(&v));
                    values.push(toml::Value::String(v));
                }
            }
        }
        self.text.push_str("]\n\n");
        self.expected
            .insert(key.to_owned(), toml::Value::Array(values));
    }
}

/// `s` as a TOML basic string on one line (`unotify::shown::quoted`): it
/// reads back as `s`.
fn toml_str(s: &str) -> String {
    unotify::shown::quoted(s)
}

/// `word` as a shell reads it back: as it is when plain, else quoted;
/// with a control character or a byte that is not UTF-8, in `$'...'`
/// with `\xNN` (bash, zsh, ksh, POSIX sh since 2024), so that it stays on
/// one line.
fn shell_word(word: &[u8]) -> String {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(b);
    if !word.is_empty() && word.iter().all(plain) {
        return String::from_utf8_lossy(word).into_owned();
    }
    if let Ok(s) = std::str::from_utf8(word) {
        if !s.chars().any(char::is_control) {
            return format!("'{}'", s.replace('\'', "'\\''"));
        }
    }
    let mut out = String::from("$'");
    let hex = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            let _ = write!(out, "\\x{b:02x}");
        }
    };
    for chunk in word.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() => hex(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes()),
                c => out.push(c),
            }
        }
        hex(&mut out, chunk.invalid());
    }
    out.push('\'');
    out
}

/// A path as a rule's value, or why a profile cannot hold it.
fn path_value(key: &str, path: &Path) -> Result<String, String> {
    let flag = if key == "fs-write" { "-w" } else { "-r" };
    path.to_str().map(str::to_owned).ok_or_else(|| {
        format!(
            "{} is not UTF-8, which a TOML profile cannot hold: the command is refused it under this profile; give it on the command line ({flag} PATH) if it needs it",
            unotify::shown::path(path)
        )
    })
}

/// A destination as a `net-allow` value, or why a profile cannot hold it.
fn destination_value(dest: &[u8]) -> Result<String, String> {
    let refused = |why: &str| {
        format!(
            "{} {why}: the command is refused it under this profile",
            unotify::shown::bytes(dest)
        )
    };
    let spec = std::str::from_utf8(dest)
        .map_err(|_| refused("is not UTF-8, which a network rule cannot hold"))?;
    if spec.starts_with("unix:") {
        unotify::net::UnixTarget::parse(spec)
            .map_err(|e| refused(&format!("cannot be a rule ({e})")))?;
    }
    Ok(spec.to_owned())
}

/// Rounds `bytes` up to whole MiB, as `-m` takes them.
fn mib(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

/// The profile of `rules` (and of the programs and peaks in `seen`),
/// learned from `command`, which ended as `status` says; an error if it
/// does not read back as those rules (not to be written).
pub(super) fn render(
    seen: &Seen,
    rules: &Rules,
    command: &[OsString],
    status: &str,
) -> Result<Profile, String> {
    let mut w = Writer::default();
    let mut notes = Vec::new();
    let cmd: Vec<String> = command.iter().map(|a| shell_word(a.as_bytes())).collect();
    let cmd = cmd.join(" ");
    w.comment("", &format!("unotify profile learned from: {cmd}"));
    w.comment("", &format!("({status})"));
    w.comment("", &format!("Use: unotify run --profile FILE -- {cmd}"));
    w.comment("", "Review it: each rule says what used it.");
    w.text.push('\n');
    let used = |w: &mut Writer, list: &std::collections::BTreeMap<std::path::PathBuf, Users>| {
        for (path, users) in list {
            let line = format!("  {} by {}", unotify::shown::path(path), users.describe());
            w.comment("", &line);
        }
        w.text.push('\n');
    };
    if !seen.execs.is_empty() {
        w.comment(
            "",
            "Programs executed (allowed by the read rules, which include execution):",
        );
        used(&mut w, &seen.execs);
    }
    if !rules.too_broad.is_empty() {
        w.text.push_str("# Used but NOT allowed, too broad (a rule on one allows everything beneath;\n# the command is refused these, add narrower rules by hand if it needs them):\n");
        used(&mut w, &rules.too_broad);
    }
    w.text.push_str("# What a dynamically linked program needs to start (/usr, /lib, the loader,\n# name service files of /etc, /proc, /dev/null); everything else is refused.\n");
    w.set("fs-system", toml::Value::Boolean(true));
    w.text.push('\n');
    for (key, list, what) in [
        (
            "fs-write",
            &rules.write,
            "read, written, created or removed",
        ),
        ("fs-read", &rules.read, "read or executed"),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut lines = Vec::new();
        for (path, users) in list {
            lines.push(Line::Note(format!("{what} by {}", users.describe())));
            match path_value(key, path) {
                Ok(v) => lines.push(Line::Value(v)),
                Err(why) => {
                    lines.push(Line::Note(format!("NOT allowed: {why}")));
                    notes.push(format!("{key}: {why}"));
                }
            }
        }
        w.list(key, lines);
    }
    let mut lines = Vec::new();
    let mut allowed = 0;
    for (dest, users) in &seen.destinations {
        lines.push(Line::Note(format!("reached by {}", users.describe())));
        match destination_value(dest) {
            Ok(v) => {
                lines.push(Line::Value(v));
                allowed += 1;
            }
            Err(why) => {
                lines.push(Line::Note(format!("NOT allowed: {why}")));
                notes.push(format!("net-allow: {why}"));
            }
        }
    }
    if allowed > 0 {
        w.list("net-allow", lines);
    } else {
        // An empty allow list would be no rule at all: every destination
        // is refused instead.
        for line in lines {
            if let Line::Note(text) = line {
                w.comment("", &text);
            }
        }
        w.comment(
            "",
            "No network destination a profile can hold was used: every one is refused.",
        );
        w.inline_list("net-deny", &["*", "unix:*"]);
        w.text.push('\n');
    }
    let procs = seen.peak_processes.max(1);
    let limit = (procs * 2).max(procs + 16);
    w.comment(
        "",
        &format!(
            "At most {procs} process{} at once were seen; twice that, and at least 16 more.",
            if procs == 1 { "" } else { "es" }
        ),
    );
    w.set("max-processes", toml::Value::Integer(i64::from(limit)));
    w.text.push('\n');
    let memory = (seen.peak_memory * 4).max(MIN_MEMORY);
    w.comment(
        "",
        &format!(
            "At most {} resident at once was seen; four times that, and at least {}.",
            unotify::events::human_size(seen.peak_memory),
            unotify::events::human_size(MIN_MEMORY),
        ),
    );
    w.set("max-memory", toml::Value::String(mib(memory)));
    check(&w.text, &w.expected).map_err(|why| {
        format!(
            "the profile is not written: {why}; this is a fault of unotify learn, please report it"
        )
    })?;
    Ok(Profile {
        text: w.text,
        notes,
    })
}

/// Whether `text` reads back as `expected`, and as `run --profile` takes
/// it (its network rules too).
fn check(text: &str, expected: &toml::Table) -> Result<(), String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("it is not TOML ({})", e.message()))?;
    if &table != expected {
        return Err("it does not read back as the rules learned".to_owned());
    }
    let flags = crate::profile::flags_in("the learned profile", text)?;
    // The network rules as the sandbox will take them.
    let mut raw: Vec<OsString> = vec!["unotify".into(), "run".into()];
    raw.extend(flags);
    raw.extend(["--".into(), "true".into()]);
    match crate::cli::Cli::try_parse_from_raw(raw) {
        Ok(crate::cli::Cli {
            command: crate::cli::Cmd::Run(run),
        }) => unotify::net::NetPolicy::from_specs(&run.net_allow, &run.net_deny, &[])
            .map(drop)
            .map_err(|e| format!("its network rules are refused ({e})")),
        _ => Err("run does not take it".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_read_back_as_they_were_on_one_line() {
        let mut tricky: Vec<String> = (0u32..0xa0)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        tricky.extend(
            [
                "",
                "\"",
                "\\",
                "\\u002F",
                "x\n\"/\",\n#",
                "'''",
                "\"\"\"",
                "/tmp/\u{e9}\u{2028}\u{feff}\u{1f600}",
            ]
            .map(str::to_owned),
        );
        for s in tricky {
            let shown = toml_str(&s);
            assert!(!shown.contains(['\n', '\r']), "{shown}");
            let table: toml::Table = format!("k = {shown}").parse().unwrap();
            assert_eq!(table["k"].as_str(), Some(s.as_str()), "{shown}");
        }
    }

    #[test]
    fn commands_are_quoted_for_the_shell_on_one_line() {
        assert_eq!(shell_word(b"make"), "make");
        assert_eq!(shell_word(b"ls / | wc"), "'ls / | wc'");
        assert_eq!(shell_word(b"it's"), "'it'\\''s'");
        assert_eq!(shell_word(b""), "''");
        assert_eq!(shell_word(b"true\ntrue"), "$'true\\x0atrue'");
        assert_eq!(shell_word(b"a\xff'\\"), "$'a\\xff\\'\\\\'");
    }

    #[test]
    fn a_comment_stays_one_line() {
        let mut w = Writer::default();
        w.comment("    ", "x\n\"/\",\r\u{85}#");
        assert_eq!(w.text, "    # x\\x0a\"/\",\\x0d\\u{0085}#\n");
    }

    #[test]
    fn a_profile_that_reads_back_as_another_is_refused() {
        let mut w = Writer::default();
        w.set("fs-system", toml::Value::Boolean(true));
        assert!(check(&w.text, &w.expected).is_ok());
        w.text.push_str("fs-write = [\"/\"]\n");
        assert!(check(&w.text, &w.expected).is_err());
        // TOML, and as expected, but not a profile `run` takes.
        let mut w = Writer::default();
        w.set("no-such-flag", toml::Value::Boolean(true));
        assert!(check(&w.text, &w.expected).is_err());
    }
}
