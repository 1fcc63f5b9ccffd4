//! `--exec-deny WORD`: refuse any exec whose argv names WORD, as a word:
//! an argument that is WORD or a path ending in it (`/bin/rm`), or a word
//! of an argument split at spaces and shell punctuation (`sh -c 'x; rm
//! y'`); `echo inform` does not name `rm`. `--exec-deny-substring TEXT`
//! matches TEXT anywhere, only when asked for.
//!
//! A handler on `execve`/`execveat`. Exec argv safety (on whenever exec is
//! handled) freezes the tasks that could rewrite argv before any handler
//! runs, serves the handler's reads from one copy, and kills the new image
//! at the exec event if its argv differs from that copy: the argv read here
//! is the one the kernel execs. With `--audit` the same test runs as the
//! policy callback instead, so that the log records each verdict.

use std::sync::Arc;

use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
use unotify::{HandlerCtx, NotifAction, SandboxBuilder};

use crate::report::Report;

/// One rule of `--exec-deny` or `--exec-deny-substring`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecRule {
    /// A word: a whole argument, a path's last part, or a word of an
    /// argument split at spaces and shell punctuation.
    Word(String),
    /// Text anywhere in an argument.
    Substring(String),
}

impl ExecRule {
    /// The flag that gave it, for messages.
    pub fn flag(&self) -> String {
        match self {
            ExecRule::Word(w) => format!("--exec-deny {w}"),
            ExecRule::Substring(s) => format!("--exec-deny-substring {s}"),
        }
    }

    fn matches(&self, arg: &str) -> bool {
        match self {
            ExecRule::Substring(s) => arg.contains(s.as_str()),
            ExecRule::Word(w) => arg
                .split(|c: char| c.is_whitespace() || ";|&()<>`$'\"{}=,".contains(c))
                .filter(|t| !t.is_empty())
                .any(|t| t == w || t.rsplit('/').next() == Some(w.as_str())),
        }
    }
}

/// The rules of `--exec-deny` and `--exec-deny-substring`.
pub fn rules(args: &crate::cli::RunArgs) -> Vec<ExecRule> {
    let words = args.exec_deny.iter().cloned().map(ExecRule::Word);
    let subs = args
        .exec_deny_substring
        .iter()
        .cloned()
        .map(ExecRule::Substring);
    words.chain(subs).collect()
}

/// The first rule some argument of `argv` matches.
fn names_a_word<'r>(argv: &[String], rules: &'r [ExecRule]) -> Option<&'r ExecRule> {
    rules.iter().find(|r| argv.iter().any(|a| r.matches(a)))
}

/// The first word rule a program the exec runs is named by (its file's
/// last path part: the executable, an interpreter of its `#!` chain or
/// the ELF interpreter its program names,
/// however the call names it).
fn names_a_program<'r>(cx: &HandlerCtx<'_>, rules: &'r [ExecRule]) -> Option<&'r ExecRule> {
    let programs = cx.exec_programs();
    rules.iter().find(|r| {
        matches!(r, ExecRule::Word(w) if programs
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == w.as_str())))
    })
}

/// Adds the refusal of execs matching `words` to `builder`; each refusal
/// is told to `report`, if given.
pub fn install(
    builder: SandboxBuilder,
    words: Vec<ExecRule>,
    audited: bool,
    report: Option<Arc<Report>>,
) -> SandboxBuilder {
    // The programs an exec runs (whatever its argv says), by their files.
    let programs = {
        let words = words.clone();
        let report = report.clone();
        Arc::new(
            move |cx: &HandlerCtx<'_>| match names_a_program(cx, &words) {
                None => NotifAction::Continue,
                Some(word) => {
                    cx.refused_by(|| word.flag().trim_start_matches('-').to_owned());
                    if let Some(r) = &report {
                        r.exec_denied(&cx.read_exec_argv().unwrap_or_default(), &word.flag());
                    }
                    NotifAction::Errno(libc::EPERM)
                }
            },
        )
    };
    let again = Arc::clone(&programs);
    let builder = builder
        .handle("execve", move |cx: &HandlerCtx<'_>| programs(cx))
        .handle("execveat", move |cx: &HandlerCtx<'_>| again(cx));
    if audited {
        return builder.policy_fn(move |ev: &SyscallEvent, cx: &mut PolicyContext<'_>| {
            let Some(argv) = &ev.argv else {
                return Verdict::Allow;
            };
            // Words are text: a byte that is not UTF-8 reads as U+FFFD,
            // which is no separator and no part of a word, as the byte.
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let argv = &argv;
            match names_a_word(argv, &words) {
                Some(word) => {
                    cx.decided_by(word.flag().trim_start_matches('-'));
                    if let Some(r) = &report {
                        r.exec_denied(argv, &word.flag());
                    }
                    Verdict::Deny
                }
                None => Verdict::Allow,
            }
        });
    }
    let handler = move |cx: &HandlerCtx<'_>| match cx.read_exec_argv() {
        Some(argv) => match names_a_word(&argv, &words) {
            None => NotifAction::Continue,
            Some(word) => {
                cx.refused_by(|| word.flag().trim_start_matches('-').to_owned());
                if let Some(r) = &report {
                    r.exec_denied(&argv, &word.flag());
                }
                NotifAction::Errno(libc::EPERM)
            }
        },
        // Unreadable: fail closed.
        None => {
            cx.refused_by(|| "exec-deny (argv unreadable)".to_owned());
            NotifAction::Errno(libc::EPERM)
        }
    };
    let handler = Arc::new(handler);
    let again = Arc::clone(&handler);
    builder
        .handle("execve", move |cx: &HandlerCtx<'_>| handler(cx))
        .handle("execveat", move |cx: &HandlerCtx<'_>| again(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_whole_words_and_substrings_only_when_asked() {
        let words = vec![ExecRule::Word("rm".to_owned())];
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_a_word(&argv(&["/bin/rm", "-f"]), &words).is_some());
        assert!(names_a_word(&argv(&["sh", "-c", "x; rm y"]), &words).is_some());
        assert!(names_a_word(&argv(&["/bin/ls", "-l"]), &words).is_none());
        assert!(names_a_word(&[], &words).is_none());
        assert!(names_a_word(&argv(&["echo", "inform", "-rm-", "rmdir"]), &words).is_none());
        assert!(names_a_word(&argv(&["sh", "-c", "true&&rm x"]), &words).is_some());
        let sub = vec![ExecRule::Substring("rm".to_owned())];
        assert!(names_a_word(&argv(&["echo", "inform"]), &sub).is_some());
    }
}
