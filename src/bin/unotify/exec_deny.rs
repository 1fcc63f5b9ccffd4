//! `--exec-deny WORD`: refuse any exec whose argv names WORD.
//!
//! A handler on `execve`/`execveat`. Exec argv safety (on whenever exec is
//! handled) freezes the tasks that could rewrite argv before any handler
//! runs, serves the handler's reads from one copy, and kills the new image
//! at the exec event if its argv differs from that copy: the argv read here
//! is the one the kernel execs. With `--audit` the same test runs as the
//! policy callback instead, so that the log records each verdict.

use unotify::policy::{PolicyContext, SyscallEvent, Verdict};
use unotify::{HandlerCtx, NotifAction, SandboxBuilder};

/// Whether any argument contains any of `words`.
fn names_a_word(argv: &[String], words: &[String]) -> bool {
    argv.iter()
        .any(|a| words.iter().any(|w| a.contains(w.as_str())))
}

/// Adds the refusal of execs naming `words` to `builder`.
pub fn install(builder: SandboxBuilder, words: Vec<String>, audited: bool) -> SandboxBuilder {
    if audited {
        return builder.policy_fn(move |ev: &SyscallEvent, _cx: &mut PolicyContext<'_>| {
            if ev.argv.as_ref().is_some_and(|a| names_a_word(a, &words)) {
                Verdict::Deny
            } else {
                Verdict::Allow
            }
        });
    }
    let handler = move |cx: &HandlerCtx<'_>| match cx.read_exec_argv() {
        Some(argv) if !names_a_word(&argv, &words) => NotifAction::Continue,
        // Named, or unreadable: fail closed.
        _ => NotifAction::Errno(libc::EPERM),
    };
    let handler = std::sync::Arc::new(handler);
    let again = std::sync::Arc::clone(&handler);
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
        assert!(names_a_word(&argv(&["/bin/rm", "-f"]), &words));
        assert!(names_a_word(&argv(&["sh", "-c", "x; rm y"]), &words));
        assert!(!names_a_word(&argv(&["/bin/ls", "-l"]), &words));
        assert!(!names_a_word(&[], &words));
    }
}
