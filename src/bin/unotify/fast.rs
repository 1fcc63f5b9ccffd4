//! The start-up fast path of the command line: `unotify run [--] CMD...`
//! with no option is by far the most common form, and clap's parse of it
//! costs more than the rest of the argument handling together (building
//! every option of every subcommand, about 0.1 ms here). That one form is
//! recognised here and given the same [`RunArgs`] clap would make (a test
//! holds them equal); so is `unotify --version`, whose line is clap's.
//! Everything else goes to clap.

use std::ffi::OsString;
use std::time::Duration;

use crate::cli::{ChrootArgs, DeterminismArgs, RunArgs};

/// `kill_after`'s default (`--kill-after`, `default_value = "10s"` in clap).
const KILL_AFTER: Duration = Duration::from_secs(10);

/// The run arguments of `args` (the whole command line, program name
/// first) if it is `unotify run -- CMD...` or `unotify run CMD...` with
/// `CMD` not starting with `-`; `None` for anything else.
pub fn plain_run(args: &[OsString]) -> Option<RunArgs> {
    use std::os::unix::ffi::OsStrExt;
    if args.get(1).map(|a| a.as_bytes()) != Some(b"run") {
        return None;
    }
    let first = args.get(2)?.as_bytes();
    let command = if first == b"--" {
        &args[3..]
    } else if !first.starts_with(b"-") {
        &args[2..]
    } else {
        return None;
    };
    if command.is_empty() {
        return None;
    }
    Some(defaults(command.to_vec()))
}

/// The line `unotify --version` (or `-V`) prints, if `args` (the whole
/// command line) is just that: clap's, without building its command.
pub fn version_line(args: &[OsString]) -> Option<String> {
    match args {
        [_, flag] if flag == "--version" || flag == "-V" => {
            Some(format!("unotify {}\n", crate::cli::VERSION))
        }
        _ => None,
    }
}

/// `RunArgs` with every option at its default and `command`. (A field
/// added to `RunArgs` must be added here: the literal does not compile
/// without it, and the test compares its default with clap's.)
fn defaults(command: Vec<OsString>) -> RunArgs {
    RunArgs {
        profile: Vec::new(),
        workers: None,
        trace: Vec::new(),
        trace_output: None,
        deny: Vec::new(),
        net_allow: Vec::new(),
        net_deny: Vec::new(),
        net_deny_bind: Vec::new(),
        max_processes: None,
        max_memory: None,
        deny_path: Vec::new(),
        deny_path_future: Vec::new(),
        keep_caps: false,
        exec_deny: Vec::new(),
        exec_deny_substring: Vec::new(),
        audit: None,
        summary: false,
        timeout: None,
        env: Vec::new(),
        unset_env: Vec::new(),
        clean_env: false,
        max_open_files: None,
        workdir: None,
        storage: None,
        on_exit: None,
        on_error: None,
        dry_run: false,
        max_disk: None,
        workdir_route: None,
        cwd: None,
        kill_after: KILL_AFTER,
        leave_daemons: false,
        test_no_cgroups: false,
        allow_weak_isolation: false,
        fs_read: Vec::new(),
        fs_write: Vec::new(),
        fs_system: false,
        allow_degraded: Vec::new(),
        determinism: DeterminismArgs {
            hostname: None,
            num_cpus: None,
            random_seed: None,
            deterministic_dirs: false,
            time_start: None,
            port_remap: false,
        },
        chroot: ChrootArgs {
            chroot: None,
            mount: Vec::new(),
            chroot_cwd: None,
        },
        test_landlock_abi_cap: None,
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// What clap makes of `args`, as its debug text.
    fn clap_run(args: &[OsString]) -> String {
        match Cli::try_parse_from_raw(args.to_vec()).unwrap().command {
            Cmd::Run(run) => format!("{run:?}"),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn same_as_clap() {
        for args in [
            os(&["unotify", "run", "--", "/bin/true"]),
            os(&["unotify", "run", "/bin/echo", "-n", "--x", "--", "a"]),
            os(&["unotify", "run", "--", "-x", "--workers", "3"]),
            os(&["unotify", "run", "sh", "-c", "echo hi"]),
        ] {
            let fast = plain_run(&args).expect("taken");
            assert_eq!(format!("{fast:?}"), clap_run(&args), "{args:?}");
        }
    }

    #[test]
    fn version_as_clap_prints_it() {
        let clap = <Cli as clap::CommandFactory>::command().render_version();
        for flag in ["--version", "-V"] {
            assert_eq!(
                version_line(&os(&["unotify", flag])).as_deref(),
                Some(clap.as_str())
            );
        }
        for args in [
            os(&["unotify", "--version", "x"]),
            os(&["unotify", "run", "--version"]),
            os(&["unotify", "--help"]),
        ] {
            assert!(version_line(&args).is_none(), "{args:?}");
        }
    }

    #[test]
    fn anything_else_goes_to_clap() {
        for args in [
            os(&["unotify"]),
            os(&["unotify", "run"]),
            os(&["unotify", "run", "--"]),
            os(&["unotify", "run", "--workers", "1", "--", "true"]),
            os(&["unotify", "run", "-P", "3", "true"]),
            os(&["unotify", "run", "--profile", "p.toml", "true"]),
            os(&["unotify", "run", "--help"]),
            os(&["unotify", "check"]),
            os(&["unotify", "--version"]),
            os(&["unotify", "rnu", "--", "true"]),
        ] {
            assert!(plain_run(&args).is_none(), "{args:?}");
        }
    }
}
