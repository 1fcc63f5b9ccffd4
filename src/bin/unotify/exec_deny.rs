//! `--exec-deny WORD`: refuse any exec whose argv names WORD.
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

/// The first of `words` some argument contains.
fn names_a_word<'w>(argv: &[String], words: &'w [String]) -> Option<&'w str> {
    words
        .iter()
        .find(|w| argv.iter().any(|a| a.contains(w.as_str())))
        .map(String::as_str)
}

/// Adds the refusal of execs naming `words` to `builder`; each refusal is
/// told to `report`, if given.
pub fn install(
    builder: SandboxBuilder,
    words: Vec<String>,
    audited: bool,
    report: Option<Arc<Report>>,
) -> SandboxBuilder {
    if audited {
        return builder.policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            let Some(argv) = &ev.argv else {
                return Verdict::Allow;
            };
            match names_a_word(argv, &words) {
                Some(word) => {
                    if let Some(r) = &report {
                        r.exec_denied(argv, word);
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
                if let Some(r) = &report {
                    r.exec_denied(&argv, word);
                }
                NotifAction::Errno(libc::EPERM)
            }
        },
        // Unreadable: fail closed.
        None => NotifAction::Errno(libc::EPERM),
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
    fn a_word_anywhere_in_an_argument_is_named() {
        let words = vec!["rm".to_owned()];
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_a_word(&argv(&["/bin/rm", "-f"]), &words).is_some());
        assert!(names_a_word(&argv(&["sh", "-c", "x; rm y"]), &words).is_some());
        assert!(names_a_word(&argv(&["/bin/ls", "-l"]), &words).is_none());
        assert!(names_a_word(&[], &words).is_none());
    }
}
