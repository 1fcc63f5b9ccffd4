//! Names the flags behind a conflicting rule: the library reports only the
//! system call (`conflicting rule for `connect``); the command knows which
//! of its flags asked for a rule on it. Used by `main`'s `run` when the
//! sandbox cannot be built.

use unotify::{Error, Sandbox, SandboxBuilder};

use crate::cli::RunArgs;

/// The flag groups of `run` that trap calls of their own, each with the
/// builder settings it makes (without host names to resolve: a network
/// rule's calls do not depend on its destinations).
fn groups(args: &RunArgs) -> Vec<(String, SandboxBuilder)> {
    let b = || Sandbox::builder().allow_weak_isolation(true);
    let mut out = Vec::new();
    let net: Vec<&str> = [
        ("--net-allow", !args.net_allow.is_empty()),
        ("--net-deny", !args.net_deny.is_empty()),
        ("--net-deny-bind", !args.net_deny_bind.is_empty()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(f, _)| *f)
    .collect();
    if !net.is_empty() {
        // Stand-ins of the same kinds: the calls a network policy traps do
        // not depend on its destinations (and nothing is resolved).
        let pick = |on: bool, spec: &str| -> Vec<String> {
            if on {
                vec![spec.to_owned()]
            } else {
                Vec::new()
            }
        };
        if let Ok(policy) = unotify::net::NetPolicy::from_specs(
            &pick(!args.net_allow.is_empty(), "127.0.0.1:1"),
            &pick(!args.net_deny.is_empty(), "10.0.0.0/8"),
            &pick(!args.net_deny_bind.is_empty(), "1"),
        ) {
            out.push((net.join("/"), b().network(policy)));
        }
    }
    if let Some(n) = args.max_processes {
        out.push((format!("-P {n}"), b().max_processes(n)));
    }
    if let Some(m) = args.max_memory {
        out.push(("-m".to_owned(), b().max_memory(m)));
    }
    if let Some(p) = args.deny_path.iter().chain(&args.deny_path_future).next() {
        out.push(("--deny-path".to_owned(), b().deny_path(p)));
    }
    if !args.exec_deny.is_empty() || !args.exec_deny_substring.is_empty() {
        let words = crate::exec_deny::rules(args);
        out.push((
            "--exec-deny".to_owned(),
            crate::exec_deny::install(b(), words, false, None),
        ));
    }
    if let Some(file) = &args.audit {
        out.push(("--audit".to_owned(), b().audit(file)));
    }
    out
}

/// What to tell the user when the rules on `syscall` conflict.
pub fn explain(args: &RunArgs, syscall: &str) -> String {
    let mut flags: Vec<String> = Vec::new();
    let own = |b: SandboxBuilder| -> SandboxBuilder {
        let mut b = b;
        for rule in args.deny.iter().filter(|r| r.syscall == syscall) {
            b = b.deny(&rule.syscall, rule.errno);
        }
        for t in args.trace.iter().filter(|t| *t == syscall) {
            b = b.trace(t);
        }
        b
    };
    let denied = args.deny.iter().any(|r| r.syscall == syscall);
    let traced = args.trace.iter().any(|t| t == syscall);
    if denied {
        flags.push(format!("`--deny {syscall}`"));
    }
    if traced {
        flags.push(format!("`--trace {syscall}`"));
    }
    let among_own = matches!(
        own(Sandbox::builder().allow_weak_isolation(true)).build(),
        Err(Error::ConflictingRule { .. })
    );
    for (flag, builder) in groups(args).into_iter().filter(|_| !among_own) {
        if let Err(Error::ConflictingRule { .. }) = own(builder).build() {
            flags.push(format!("{flag} (which decides {syscall} itself)"));
        }
    }
    let what = if flags.len() >= 2 {
        format!("{} both set a rule on it", flags.join(" and "))
    } else if let Some(f) = flags.first() {
        format!("{f} sets a rule on it that another option contradicts")
    } else {
        "two options set different rules on it".to_owned()
    };
    format!("conflicting rules for system call `{syscall}`: {what}; remove one of them")
}
