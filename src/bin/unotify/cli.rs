//! Command-line syntax of `unotify`: the clap definitions and the value
//! parsers for syscall names and errnos.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

/// Exit status of `unotify`'s own failures (bad flags, bad policy, setup).
pub const EXIT_USAGE: u8 = 125;

const TOP_EXAMPLES: &str = "\
Examples:
  unotify run --trace openat,execve -- /bin/sh -c 'cat /etc/hostname'
  unotify run --deny mkdirat=EACCES -- mkdir /tmp/x
  unotify run --net-allow 127.0.0.1:8080 -P 64 -m 512M -- curl http://127.0.0.1:8080/
  unotify check

Exit status of `run`: the command's own, or 128+N if it died of signal N;
125 if unotify itself failed, 126 if the command cannot be executed,
127 if it was not found.";

const RUN_EXAMPLES: &str = "\
Examples:
  Trace every file open and program start, let them run:
    unotify run --trace openat,execve -- /bin/sh -c 'cat /etc/hostname'
  Same, with the trace in a file of its own (like strace -o):
    unotify run --trace openat -o /tmp/trace.txt -- ls /
  Make directory creation fail with EACCES (x86_64 has both calls):
    unotify run --deny mkdir=EACCES --deny mkdirat=EACCES -- mkdir /tmp/x
  Let the program reach only a local web server, with at most 64
  processes and 512 MiB of memory:
    unotify run --net-allow 127.0.0.1:8080 -P 64 -m 512M -- curl http://127.0.0.1:8080/
  Refuse a private network, and binding port 8080:
    unotify run --net-deny 10.0.0.0/8 --net-deny-bind 8080 -- ./server
  Let make read the system and the project, and write only the project
  and /tmp (everything else refused by the kernel):
    unotify run --fs-system -r . -w . -w /tmp -- make
  Run with a single supervisor worker thread:
    unotify run --workers 1 --trace connect -- curl -s http://127.0.0.1/

Exit status: the command's own, or 128+N if it died of signal N (SIGINT,
SIGTERM or SIGHUP sent to unotify are forwarded to the program, and the
sandbox is killed after --kill-after; when the program dies of SIGINT,
SIGTERM, SIGHUP or SIGQUIT, unotify ends by that signal too, so a shell
loop stops on Ctrl-C);
125 if unotify failed (bad flags, unknown system call, kernel without
seccomp user notification), 126 if the command cannot be executed, 127 if
it was not found.";

const CHECK_EXAMPLES: &str = "\
Examples:
  unotify check
  unotify check && echo 'this kernel can run unotify'

Prints one line per feature, e.g.
  seccomp user notification: yes (notif 80, resp 24, data 64 bytes)
  SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: no (Invalid argument (os error 22); needs Linux 6.6 or newer)

Exit status: 0 if seccomp user notification works (unotify can run
programs), 1 if not.";

/// `--version`: the version and the features compiled in.
#[cfg(feature = "capi")]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (features: cli, capi)");
#[cfg(not(feature = "capi"))]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (features: cli)");

/// Run programs under a seccomp user-notification supervisor.
///
/// Selected system calls of the program stop in the kernel until the
/// supervisor has decided what they do: run, fail with an errno, or be
/// reported and run.
#[derive(Debug, Parser)]
#[command(name = "unotify", version = VERSION, after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a command in a sandbox under the supervisor.
    #[command(after_help = RUN_EXAMPLES, args_override_self = true)]
    Run(Box<RunArgs>),
    /// Run a command allowing everything, recording what it uses (files,
    /// network destinations, programs, processes, memory), and write a
    /// profile for `run --profile` that allows that and refuses the rest.
    #[command(after_help = LEARN_EXAMPLES)]
    Learn(LearnArgs),
    /// Report which kernel features the supervisor can use.
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        /// Print one JSON object per feature, one per line (name,
        /// available, detail) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for SHELL on stdout.
    /// Example: unotify completions bash > /etc/bash_completion.d/unotify
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL", value_parser = parse_shell)]
        shell: clap_complete::Shell,
    },
    /// Finish (or report) a --workdir commit that a killed run left
    /// unfinished in its storage directory.
    /// Example: unotify cow-recover .project.unotify-cow.state
    CowRecover {
        /// The state directory (PATH/state of --storage PATH, or
        /// .DIR.unotify-cow.state next to the work directory).
        #[arg(value_name = "STORAGE")]
        storage: std::path::PathBuf,
        /// Only report whether a commit is unfinished (exit 1 if so).
        #[arg(long)]
        check: bool,
    },
    /// Print the manual page (roff) on stdout.
    /// Example: unotify man > /usr/local/share/man/man1/unotify.1
    Man,
}

/// Options of `unotify run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read flags from a TOML file: one key per long flag of `run`
    /// (`net-allow = ["127.0.0.1:8080"]`, `max-memory = "512M"`,
    /// `keep-caps = true`). Flags on the command line add to its lists
    /// and override its single values. Repeatable.
    /// Example: --profile build.toml
    #[arg(long, value_name = "FILE")]
    pub profile: Vec<std::path::PathBuf>,

    /// Number of supervisor worker threads (default: one per CPU, at least
    /// 2). Example: --workers 1
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,

    /// Trap these system calls, let them run, and report each one (pid,
    /// name, arguments, decision) on stderr or in the --trace-output
    /// file, whatever RUST_LOG says. Comma-separated; repeatable.
    /// Example: --trace openat,execve
    #[arg(long, value_name = "SYSCALLS", value_delimiter = ',', value_parser = parse_syscall)]
    pub trace: Vec<String>,

    /// Write the traces of --trace to FILE (created or truncated), one
    /// call per line, instead of stderr; like strace -o, the program can
    /// rewrite a FILE it reaches (--audit's log it cannot). Example:
    /// -o /tmp/trace.txt
    #[arg(short = 'o', long, value_name = "FILE", requires = "trace")]
    pub trace_output: Option<std::path::PathBuf>,

    /// Make a system call fail with ERRNO (a number, or a name like EPERM,
    /// EACCES, ENOSYS; default EPERM) without running it. SYSCALL is a name
    /// or a number below 1024 (`syscall_N` too). On a call --deny-path
    /// also decides (`--deny openat --deny-path X`), --deny wins: the call
    /// fails with ERRNO for every path, and X stays denied to the other
    /// calls. Repeatable. Example: --deny mkdirat=EACCES
    #[arg(long, value_name = "SYSCALL[=ERRNO]", value_parser = parse_deny)]
    pub deny: Vec<DenyRule>,

    /// Allow network destinations matching SPEC and refuse the rest
    /// (ECONNREFUSED). SPEC is `[tcp://|udp://|icmp://]TARGET[:PORTS]`:
    /// TARGET an address, a CIDR, a host name or `*`; IPv6 with a port in
    /// brackets; PORTS `80,443`, `8000-8080` or `*`. No scheme means TCP and
    /// UDP. Unix sockets are destinations too: `unix:/path`, `unix:/dir/`,
    /// `unix:@abstract` or `unix:*` (unnamed ones are refused under an
    /// allow list). Repeatable. Example: --net-allow 127.0.0.1:8080
    /// --net-allow [::1]:443 --net-allow unix:/run/app.sock
    #[arg(long, value_name = "SPEC", value_parser = parse_net_spec)]
    pub net_allow: Vec<String>,

    /// Refuse network destinations matching SPEC (same syntax as
    /// --net-allow, no host names) and allow the rest. Repeatable; not
    /// together with --net-allow. Example: --net-deny 10.0.0.0/8
    #[arg(long, value_name = "SPEC", value_parser = parse_net_spec)]
    pub net_deny: Vec<String>,

    /// TCP ports the program may not bind (EACCES). Comma-separated ports
    /// and ranges; repeatable. Example: --net-deny-bind 8080,9000-9005
    #[arg(long, value_name = "PORTS")]
    pub net_deny_bind: Vec<String>,

    /// At most N processes in the sandbox at once, the program itself and
    /// unreaped zombies included; a fork over the limit fails with EAGAIN.
    /// Counts in the sandbox's cgroup: refused with --leave-daemons and
    /// where no cgroup can be made (`unotify check`). Example: -P 64
    #[arg(short = 'P', long, value_name = "N", value_parser = parse_max_processes)]
    pub max_processes: Option<u32>,

    /// At most SIZE bytes of memory (suffixes K, M, G), of every kind with a
    /// memory cgroup (see `unotify check`); a program that uses (or,
    /// without one, maps) more is killed. Example: -m 512M
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,

    /// Deny PATH (a file, or a directory and all beneath it): it cannot be
    /// opened, executed (also as a script's interpreter), linked, renamed,
    /// symlinked to, replaced, or have its mode, owner, times or attributes
    /// changed, and no name can be created in it, by any name (EACCES); a
    /// unix socket beneath it cannot be connected or sent to. PATH must exist (a typo, or a `~` the shell did not expand, would
    /// deny nothing): see --deny-path-future for one made later.
    /// Repeatable. Example: --deny-path /etc/shadow
    #[arg(long, value_name = "PATH", value_parser = os_parser(parse_existing_path))]
    pub deny_path: Vec<std::path::PathBuf>,

    /// Like --deny-path, for a PATH that need not exist yet (one the
    /// program may create later): denied by name until then.
    /// Repeatable. Example: --deny-path-future /tmp/secret
    #[arg(long, value_name = "PATH")]
    pub deny_path_future: Vec<std::path::PathBuf>,

    /// Let the program keep all its capabilities. By default a root
    /// program keeps only CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
    /// SETGID, SETUID and NET_BIND_SERVICE: it cannot mount, make device
    /// nodes, load modules, trace or reconfigure the host.
    /// Example: --keep-caps
    #[arg(long)]
    pub keep_caps: bool,

    /// Deny, with EPERM, any exec that names WORD: an argument that is
    /// WORD or a path ending in it (`/bin/rm`), or a word of an argument
    /// split at spaces and shell punctuation (`sh -c 'cd x; rm y'`), but
    /// not WORD inside a longer word (`echo inform`). Decided on one copy
    /// of argv, read while every task sharing the caller's memory is
    /// stopped and checked again against what the kernel started.
    /// Repeatable. Example: --exec-deny rm
    #[arg(long, value_name = "WORD", value_parser = parse_exec_word)]
    pub exec_deny: Vec<String>,

    /// Deny, with EPERM, any exec one of whose arguments contains TEXT
    /// anywhere (`--exec-deny-substring rm` also refuses `echo inform`).
    /// Repeatable. Example: --exec-deny-substring password=
    #[arg(long, value_name = "TEXT", value_parser = parse_exec_substring)]
    pub exec_deny_substring: Vec<String>,

    /// Append one JSON object per trapped call, once answered (schema 2:
    /// time, syscall, pid, path, destination, outcome, denied, errno,
    /// rule, verdict, ...; see the README) to FILE, opened before the program starts and denied to it (it can
    /// neither forge nor erase records); `-` writes to stdout.
    /// Example: --audit /tmp/audit.jsonl
    #[arg(long, value_name = "FILE")]
    pub audit: Option<std::path::PathBuf>,

    /// At exit, print on stderr how often each rule fired (forks refused
    /// at -P, destinations refused, calls on denied paths, execs refused,
    /// processes killed over -m). The first of each kind is always told
    /// as it happens. Example: --summary
    #[arg(long)]
    pub summary: bool,

    /// Stop the program after DURATION (`30s`, `500ms`, `2m`, `1h`): SIGTERM
    /// to every process of the sandbox, SIGKILL after --kill-after; unotify then
    /// exits with 124, like timeout(1). Example: --timeout 30s
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,

    /// Set the environment variable K to V for the program. Repeatable.
    /// Example: --env LANG=C
    #[arg(long, value_name = "K=V", value_parser = parse_env_set)]
    pub env: Vec<(String, String)>,

    /// Remove the environment variable K for the program. Repeatable.
    /// Example: --unset-env HISTFILE
    #[arg(long, value_name = "K", value_parser = parse_env_name)]
    pub unset_env: Vec<String>,

    /// Start the program with an empty environment (then --env adds to
    /// it). Example: --clean-env --env PATH=/usr/bin:/bin
    #[arg(long)]
    pub clean_env: bool,

    /// At most N open files in each process of the program (its
    /// RLIMIT_NOFILE, soft and hard: an fd numbered N or above cannot be
    /// made, EMFILE). At least 3 (stdin, stdout, stderr).
    /// Example: --max-open-files 256
    #[arg(long, value_name = "N", value_parser = parse_max_open_files)]
    pub max_open_files: Option<u64>,

    /// Copy-on-write work directory: the program's writes beneath DIR go
    /// to an upper layer outside it (see --storage), which it sees as DIR
    /// (reads after writes, listings, renames, deletions); at the end they
    /// are committed to DIR, dropped or kept (--on-exit, --on-error,
    /// --dry-run). Needs no privilege. Example: --workdir . -- make
    #[arg(long, value_name = "DIR", value_parser = os_parser(parse_dir))]
    pub workdir: Option<std::path::PathBuf>,

    /// Where --workdir keeps its upper layer (PATH/upper) and its commit
    /// journal (PATH/state; default: next to DIR, .DIR.unotify-cow and
    /// .DIR.unotify-cow.state). Example:
    /// --storage /var/tmp/build-layer
    #[arg(long, value_name = "PATH", requires = "workdir")]
    pub storage: Option<std::path::PathBuf>,

    /// What to do with --workdir's changes when the program succeeds:
    /// commit (default), abort (drop them) or keep (leave the layer and
    /// print where). Example: --on-exit keep
    #[arg(long, value_name = "ACTION", requires = "workdir")]
    pub on_exit: Option<unotify::ExitAction>,

    /// What to do with --workdir's changes when the program fails (a
    /// non-zero exit, or killed): abort (default), commit or keep.
    /// Example: --on-error keep
    #[arg(long, value_name = "ACTION", requires = "workdir")]
    pub on_error: Option<unotify::ExitAction>,

    /// Print --workdir's changes like `git status --short` (A, M, D) on
    /// stdout when the program ends, and drop them.
    #[arg(long, requires = "workdir")]
    pub dry_run: bool,

    /// Cap --workdir's upper layer at SIZE bytes (suffixes K, M, G): a
    /// write past it fails with ENOSPC. Example: --max-disk 100M
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "workdir")]
    pub max_disk: Option<u64>,

    /// How --workdir's view is made: auto (default: overlayfs in a mount
    /// namespace of the program's own where the host allows it and no
    /// other option needs the seccomp route), seccomp (the supervisor
    /// performs the path calls; no privileges) or overlay (an error where
    /// it cannot be taken). The environment variable UNOTIFY_WORKDIR_ROUTE
    /// gives the default. Example: --workdir-route seccomp
    #[arg(long, value_name = "ROUTE", requires = "workdir")]
    pub workdir_route: Option<unotify::WorkdirRoute>,

    /// Run the program in DIR (which must exist). Relative paths of other
    /// flags (--deny-path) are still taken from unotify's own directory.
    /// Example: --cwd /tmp
    #[arg(long, value_name = "DIR", value_parser = os_parser(parse_dir))]
    pub cwd: Option<std::path::PathBuf>,

    /// After SIGINT, SIGTERM or SIGHUP (forwarded to the program's process
    /// group and every other process of the sandbox, so that their
    /// handlers run), kill the sandbox if it has not
    /// ended within DURATION (`10s`, `500ms`, `2m`; `0` kills at once). A
    /// second signal kills at once. Example: --kill-after 30s
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub kill_after: std::time::Duration,

    /// Let processes that left the program's process group (a
    /// double-forked daemon) run on after the program exits. They are then
    /// unsupervised: every call the filter traps fails with ENOSYS once
    /// unotify is gone, and no limit holds them. Without it they are
    /// killed. Forwarded signals then reach only the program's process
    /// group. Turns cgroups off (-m then counts memory at the calls it
    /// traps), so -P is refused with it. Example: --leave-daemons
    #[arg(long)]
    pub leave_daemons: bool,

    /// Tests only: do not use cgroups.
    #[arg(long, hide = true)]
    pub test_no_cgroups: bool,

    /// Run even if the kernel cannot keep the program away from processes
    /// outside the sandbox (Landlock older than ABI 6, Linux 6.12, or
    /// missing): the program may then signal unotify and other processes,
    /// or connect to their abstract unix sockets; without Landlock it may
    /// also trace them. `unotify check` says which applies.
    #[arg(long)]
    pub allow_weak_isolation: bool,

    /// Let the program read (and execute) files beneath PATH; once -r, -w
    /// or --fs-system is given, everything else is refused by the kernel
    /// (Landlock). PATH must exist. Repeatable. Example: -r /usr -r .
    #[arg(short = 'r', long, value_name = "PATH")]
    pub fs_read: Vec<std::path::PathBuf>,

    /// Let the program read, write, create, remove and rename files
    /// beneath PATH (see -r). Repeatable. Example: -w /tmp
    #[arg(short = 'w', long, value_name = "PATH")]
    pub fs_write: Vec<std::path::PathBuf>,

    /// Add what a dynamically linked program needs to start to the allow
    /// lists: read /usr, /bin, /sbin, /lib*, the loader, name service,
    /// time zone and certificate files of /etc, /proc and the CPU list;
    /// write /dev/null, /dev/zero, /dev/full and /dev/tty.
    /// Example: --fs-system -r . -w /tmp
    #[arg(long)]
    pub fs_system: bool,

    /// Run even if the kernel's Landlock lacks RIGHT (filesystem, refer,
    /// truncate, network, ioctl-dev or scoping), with what the policy
    /// loses logged as a warning; without it such a kernel is refused.
    /// Repeatable. Example: --allow-degraded ioctl-dev
    #[arg(long, value_name = "RIGHT", value_parser = parse_right)]
    pub allow_degraded: Vec<unotify::landlock::Right>,
    /// Determinism and identity (--hostname, --num-cpus, ...).
    #[command(flatten)]
    pub determinism: DeterminismArgs,

    /// The chroot view (--chroot, --mount, --chroot-cwd).
    #[command(flatten)]
    pub chroot: ChrootArgs,

    /// Tests only: believe the kernel's Landlock ABI is at most ABI.
    #[arg(long, value_name = "ABI", hide = true)]
    pub test_landlock_abi_cap: Option<u32>,

    /// The command to run and its arguments (after `--`).
    /// Example: -- /bin/sh -c 'cat /etc/hostname'
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// Options of `unotify learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Write the profile to FILE instead of stdout: FILE is replaced
    /// whole once the command has ended (its directory is checked before
    /// it starts). Example: --output build.toml
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// The command to run and its arguments (after `--`).
    /// Example: -- make -j8
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

const LEARN_EXAMPLES: &str = "\
Examples:
  Learn what a build uses, then run it confined to that:
    unotify learn --output build.toml -- make -j8
    unotify run --profile build.toml -- make -j8

The profile allows, in run's own flags: --fs-system, and the files read
(-r) and written (-w) beyond it, collapsed into the current directory,
the temporary directory, or a directory several files were read from;
the network destinations reached (--net-allow; none: --net-deny '*');
twice the peak process count (-P) and four times the peak resident
memory (-m). Each rule has a comment saying which programs used it.

Exit status: the command's own (the profile is written even when it
fails, with a note); 125 if unotify itself failed (the output cannot be
written, no command), 126/127 as for run.";

/// One `--deny` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRule {
    /// The system call name (or number) as given.
    pub syscall: String,
    /// The errno it fails with.
    pub errno: i32,
}

/// Parses the command line. On a usage error prints it, prefixed with
/// `unotify: `, and returns the exit status to use (125; 0 for `--help` and
/// `--version`).
pub fn parse_from<I, T>(args: I) -> Result<Cli, u8>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let args = match crate::profile::expand(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("unotify: {message}");
            return Err(EXIT_USAGE);
        }
    };
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = e.print();
                Err(0)
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                eprintln!("unotify: a subcommand is required: `run` or `check`\n");
                eprint!("{}", Cli::command().render_help());
                Err(EXIT_USAGE)
            }
            kind => {
                let text = e.render().to_string();
                let text = text.strip_prefix("error: ").unwrap_or(&text);
                let mut text = text.to_owned();
                if kind == ErrorKind::InvalidSubcommand && !text.contains("tip:") {
                    if let Some(tip) = suggest_subcommand(&e) {
                        text = text.replacen("\n\nUsage:", &format!("\n\n{tip}\n\nUsage:"), 1);
                    }
                }
                eprint!("unotify: {text}");
                Err(EXIT_USAGE)
            }
        },
    }
}

impl Cli {
    /// clap's parse, without profiles (for checking one profile key).
    pub fn try_parse_from_raw(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        <Cli as Parser>::try_parse_from(args)
    }
}

/// Adds a did-you-mean for a misspelt subcommand where clap has none
/// (clap's test misses short names: `rnu`, `rn`).
fn suggest_subcommand(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    let cmd = Cli::command();
    let names = cmd.get_subcommands().map(|c| c.get_name());
    did_you_mean(given, names).map(|near| format!("  tip: a similar subcommand exists: '{near}'"))
}

fn parse_exec_word(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(char::is_whitespace) || s.contains('/') {
        return Err(format!(
            "`{s}` is not one word; give a program name or argument like --exec-deny rm (or --exec-deny-substring TEXT to match text anywhere)"
        ));
    }
    Ok(s.to_owned())
}

fn parse_exec_substring(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty text would match every exec; give some text, like --exec-deny-substring password=".into());
    }
    Ok(s.to_owned())
}

/// Parses a duration: a number with a unit `ms`, `s`, `m` or `h` (`s`
/// when none), fractions allowed (`1.5s`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let hint = || format!("`{s}` is not a duration; give one like 10s, 500ms, 2m or 1h");
    let n: f64 = num.parse().map_err(|_| hint())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(hint()),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| hint())
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(
            "a timeout of 0 would stop the program at once; give one like --timeout 30s".into(),
        );
    }
    Ok(d)
}

fn parse_env_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!(
            "`{s}` is not K=V; give a name, `=` and a value, like --env LANG=C"
        )),
    }
}

fn parse_env_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['=', '\0']) {
        return Err(format!(
            "`{s}` is not a variable name; give a name without `=`, like --unset-env HISTFILE"
        ));
    }
    Ok(s.to_owned())
}

fn parse_dir(s: OsString) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    let s = path.display();
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(format!(
            "`{s}` is not a directory; give a directory, like --cwd /tmp"
        )),
        Err(e) => Err(format!(
            "cannot use `{s}` as the directory: {e}; check the path"
        )),
    }
}

fn parse_shell(s: &str) -> Result<clap_complete::Shell, String> {
    use clap::ValueEnum;
    clap_complete::Shell::from_str(s, true).map_err(|_| {
        format!("no completions for `{s}`; use one of bash, zsh, fish, elvish, powershell")
    })
}

fn parse_max_open_files(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 3 => Ok(n),
        Ok(_) => Err(
            "the program needs at least its stdin, stdout and stderr; use --max-open-files 3 or more"
                .into(),
        ),
        Err(_) => Err(format!(
            "`{s}` is not a number of files; give one like --max-open-files 256"
        )),
    }
}

fn parse_workers(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a thread count like --workers 2"))?;
    if n == 0 {
        return Err("the worker pool needs at least 1 thread; use --workers 1 or more".into());
    }
    Ok(n)
}

fn parse_max_processes(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err(
            "the program itself counts, so the limit must be at least 1; use -P 1 or more".into(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{s}` is not a process count; give a number like -P 64"
        )),
    }
}

/// The smallest memory limit accepted: one page. Below it every program
/// is killed at its first allocation, which is never what was meant.
const MIN_MEMORY: u64 = 4096;

fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = unotify::process::parse_size(s).map_err(|e| e.to_string())?;
    if bytes < MIN_MEMORY {
        let digits: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
        let example = if digits.is_empty() || digits == "0" {
            "512M".to_owned()
        } else {
            format!("{digits}M")
        };
        return Err(format!(
            "`{s}` is {bytes} bytes, less than a page ({MIN_MEMORY}): every program would be killed at once; give a unit, like -m {example}"
        ));
    }
    Ok(bytes)
}

fn parse_right(s: &str) -> Result<unotify::landlock::Right, String> {
    s.parse()
        .map_err(|e: unotify::landlock::UnknownRight| e.to_string())
}

fn parse_syscall(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Err(e) = unotify::syscalls::resolve(s) {
        let names = unotify::syscalls::table(unotify::arch::Arch::native())
            .iter()
            .map(|&(name, _)| name);
        return Err(match did_you_mean(s, names) {
            Some(near) => format!("unknown system call `{s}`; did you mean `{near}`?"),
            None => e.to_string(),
        });
    }
    Ok(s.to_owned())
}

/// Refuses a path that does not exist (a dangling symlink exists): denying
/// it would deny nothing the program can reach now.
fn parse_existing_path(s: OsString) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    let s = path.display().to_string();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tilde = if let Some(rest) = s.strip_prefix('~') {
                format!(
                    " (the shell expands `~` only at the start of a word: write `--deny-path {s}` with a space, or $HOME{rest})"
                )
            } else {
                String::new()
            };
            Err(format!(
                "`{s}` does not exist{tilde}; check the path, or use --deny-path-future {s} to deny a path the program may create later"
            ))
        }
        Err(e) => Err(format!(
            "cannot look at `{s}`: {e}; check the path, or use --deny-path-future {s} to deny it by name"
        )),
    }
}

/// Refuses a network SPEC that reads both as an IPv6 address and as an
/// address with a port (`::1:80`): `[::1]:80` says the port, `::1:80/128`
/// the address.
fn parse_net_spec(s: &str) -> Result<String, String> {
    let target = s.split_once("://").map_or(s, |(_, rest)| rest);
    if !target.contains(['[', '/']) && target.matches(':').count() >= 2 {
        if let Some((addr, port)) = target.rsplit_once(':') {
            let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
            if numeric
                && addr.parse::<std::net::Ipv6Addr>().is_ok()
                && target.parse::<std::net::Ipv6Addr>().is_ok()
            {
                return Err(format!(
                    "`{s}` is ambiguous: write [{addr}]:{port} for port {port} of {addr}, or {target}/128 for the address {target} on every port"
                ));
            }
        }
    }
    Ok(s.to_owned())
}

/// The candidate nearest to `given`, if one is near enough to be a typo
/// of it: one that contains it (`fstatat` in `newfstatat`), or is within a
/// few edits (a third of its length, at least one).
pub fn did_you_mean<'a>(given: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given_l = given.to_ascii_lowercase();
    let candidates: Vec<&str> = candidates.collect();
    // A name that contains it (`fstatat` in `newfstatat`), fewest extra
    // letters first.
    let containing = candidates
        .iter()
        .filter(|c| given_l.len() >= 4 && c.len() > given_l.len())
        .filter(|c| c.to_ascii_lowercase().contains(&given_l))
        .min_by_key(|c| c.len());
    if let Some(c) = containing.filter(|c| c.len() - given_l.len() <= 4) {
        return Some(c);
    }
    let limit = (given.len() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&given_l, &c.to_ascii_lowercase()), *c))
        .filter(|&(d, c)| d > 0 && d <= limit || d == 0 && c != given)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edits (insert, delete, substitute, swap of neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

fn parse_deny(s: &str) -> Result<DenyRule, String> {
    let (name, errno) = match s.split_once('=') {
        Some((name, errno)) => (name, parse_errno(errno)?),
        None => (s, libc::EPERM),
    };
    Ok(DenyRule {
        syscall: parse_syscall(name)?,
        errno,
    })
}

/// Parses an errno given as a number (1..=4095) or a name (`EACCES`, `eacces`).
pub fn parse_errno(s: &str) -> Result<i32, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=4095).contains(&n) {
            return Ok(n);
        }
        return Err(format!(
            "errno {n} is out of range; use 1 to 4095 or a name like EPERM"
        ));
    }
    let upper = s.to_ascii_uppercase();
    unotify::action::errno_by_name(&upper).ok_or_else(|| {
        match did_you_mean(&upper, unotify::action::errno_names()) {
            Some(near) => format!("unknown errno `{s}`; did you mean {near}?"),
            None => {
                format!("unknown errno `{s}`; use a number or a name like EPERM, EACCES, ENOSYS")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos() {
        assert_eq!(parse_errno("EACCES"), Ok(libc::EACCES));
        assert_eq!(parse_errno("enosys"), Ok(libc::ENOSYS));
        assert_eq!(parse_errno("13"), Ok(13));
        assert!(parse_errno("0").is_err());
        assert!(parse_errno("4096").is_err());
        assert!(parse_errno("EBOGUS").is_err());
    }

    #[test]
    fn did_you_mean_finds_near_names() {
        let names = ["openat", "newfstatat", "fstat", "read", "run", "check"];
        let near = |s| did_you_mean(s, names.iter().copied());
        assert_eq!(near("opnat"), Some("openat"));
        assert_eq!(near("fstatat"), Some("newfstatat"));
        assert_eq!(near("rnu"), Some("run"));
        assert_eq!(near("chek"), Some("check"));
        assert_eq!(near("xyzzy"), None);
        assert_eq!(near("openat"), None);
    }

    #[test]
    fn deny_rules() {
        assert_eq!(
            parse_deny("mkdirat=EACCES"),
            Ok(DenyRule {
                syscall: "mkdirat".into(),
                errno: libc::EACCES
            })
        );
        assert_eq!(parse_deny("mkdirat").unwrap().errno, libc::EPERM);
        assert!(parse_deny("nosuchcall=EPERM").is_err());
        assert!(parse_deny("mkdirat=").is_err());
    }

    #[test]
    fn command_line() {
        let cli = parse_from([
            "unotify",
            "run",
            "--trace",
            "openat,execve",
            "--trace",
            "read",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let Cmd::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.trace, ["openat", "execve", "read"]);
        assert_eq!(run.command, ["sh", "-c", "exit 3"]);
        // Options of the command are not taken as unotify's.
        let cli = parse_from(["unotify", "run", "ls", "--workers", "3"]).unwrap();
        let Cmd::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.workers, None);
        assert_eq!(run.command, ["ls", "--workers", "3"]);
        Cli::command().debug_assert();
    }
}

/// The chroot options of `unotify run`: the directory the program sees as
/// `/`, and host directories mounted into it, without privileges.
#[derive(Debug, Args)]
pub struct ChrootArgs {
    /// Show DIR to the program as `/`: every path it gives is resolved
    /// inside DIR (and the --mount directories) by unotify, which makes
    /// the call for it; `..`, symlinks and inherited fds never lead out.
    /// Programs must come from a mount at their host path (e.g. --mount
    /// /usr:/usr:ro). Example: --chroot ./rootfs --mount /usr:/usr:ro
    #[arg(long, value_name = "DIR", value_parser = os_parser(parse_chroot_dir))]
    pub chroot: Option<std::path::PathBuf>,

    /// Show the host directory HOST at VIRTUAL (an absolute path in the
    /// view) under --chroot; with `:ro`, writes beneath it fail with
    /// EROFS. Repeatable. Example: --mount /usr:/usr:ro --mount /src:./project
    #[arg(long, value_name = "VIRTUAL:HOST[:ro]", value_parser = os_parser(parse_mount), requires = "chroot")]
    pub mount: Vec<MountSpec>,

    /// Start the program in DIR, a path in the --chroot view (default /).
    /// Example: --chroot-cwd /src
    #[arg(long, value_name = "DIR", requires = "chroot", conflicts_with = "cwd")]
    pub chroot_cwd: Option<std::path::PathBuf>,
}

/// One `--mount VIRTUAL:HOST[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    /// Where the program sees it.
    pub virtual_path: std::path::PathBuf,
    /// The host directory.
    pub host: std::path::PathBuf,
    /// Writes refused (`EROFS`).
    pub read_only: bool,
}

impl ChrootArgs {
    /// Adds the options to `builder`.
    pub fn apply(&self, mut builder: unotify::SandboxBuilder) -> unotify::SandboxBuilder {
        if let Some(dir) = &self.chroot {
            builder = builder.chroot(dir);
        }
        for m in &self.mount {
            builder = builder.mount(&m.virtual_path, &m.host, m.read_only);
        }
        if let Some(dir) = &self.chroot_cwd {
            builder = builder.chroot_cwd(dir);
        }
        builder
    }
}

fn parse_chroot_dir(s: OsString) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    let s = path.display();
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(format!(
            "`{s}` is not a directory; give the directory the program should see as /, like --chroot ./rootfs"
        )),
        Err(e) => Err(format!(
            "cannot use `{s}` as the chroot directory: {e}; create it (mkdir -p {s}) or check the path"
        )),
    }
}

fn parse_mount(spec: OsString) -> Result<MountSpec, String> {
    use std::os::unix::ffi::OsStrExt;
    let usage = "write it as VIRTUAL:HOST or VIRTUAL:HOST:ro, like --mount /usr:/usr:ro";
    let s = std::path::Path::new(&spec).display().to_string();
    let bytes = spec.as_bytes();
    let (rest, read_only) = match bytes.strip_suffix(b":ro") {
        Some(r) => (r, true),
        None => (bytes.strip_suffix(b":rw").unwrap_or(bytes), false),
    };
    let Some(colon) = rest.iter().position(|&b| b == b':') else {
        return Err(format!(
            "`{s}` has no `:` between the virtual path and the host directory; {usage}"
        ));
    };
    let virt = std::path::Path::new(std::ffi::OsStr::from_bytes(&rest[..colon]));
    let host = std::path::Path::new(std::ffi::OsStr::from_bytes(&rest[colon + 1..]));
    if !virt.is_absolute() {
        return Err(format!(
            "the virtual path `{}` of `{s}` is not absolute; give it as the program sees it, from / ({usage})",
            virt.display()
        ));
    }
    if host.as_os_str().is_empty() || host.as_os_str().as_bytes().contains(&b':') {
        return Err(format!("`{s}` does not name one host directory; {usage}"));
    }
    match std::fs::metadata(host) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "the host path `{}` of `{s}` is not a directory; mount a directory",
                host.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot mount `{}` ({e}); check the host directory exists",
                host.display()
            ))
        }
    }
    Ok(MountSpec {
        virtual_path: virt.into(),
        host: host.into(),
        read_only,
    })
}

/// A value parser for `f`, which takes the argument's bytes as given (a
/// path need not be UTF-8).
fn os_parser<T, F>(f: F) -> impl clap::builder::TypedValueParser<Value = T>
where
    F: Fn(OsString) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().try_map(f)
}

/// The determinism and identity options of `unotify run`: what the program
/// sees of the host's name, CPUs, randomness, directory order and clock.
#[derive(Debug, Args)]
pub struct DeterminismArgs {
    /// Show NAME as the host name: uname, hostname, /etc/hostname,
    /// /proc/sys/kernel/hostname. Example: --hostname build
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// Show N CPUs: nproc (sched_getaffinity), sysconf, /proc/cpuinfo,
    /// /sys/devices/system/cpu/online and possible; the program still runs
    /// on every CPU. Example: --num-cpus 4
    #[arg(long, value_name = "N", value_parser = parse_num_cpus)]
    pub num_cpus: Option<u32>,

    /// Make getrandom, /dev/urandom and /dev/random a deterministic stream
    /// derived from SEED (a number up to 2^64-1): the same seed, the same
    /// bytes. Not for keys. Example: --random-seed 42
    #[arg(long, value_name = "SEED", value_parser = parse_seed)]
    pub random_seed: Option<u64>,

    /// List directories in byte order of the names (getdents64: ls -f,
    /// os.listdir, find), the same on every file system.
    /// Example: --deterministic-dirs
    #[arg(long)]
    pub deterministic_dirs: bool,

    /// Start the program's wall clock at TIME (RFC 3339 or a Unix
    /// timestamp); it advances in real time: date, time(), clock_gettime,
    /// gettimeofday. Monotonic clocks and file times stay real.
    /// Example: --time-start 2024-01-02T03:04:05Z
    #[arg(long, value_name = "TIME", value_parser = unotify::determinism::parse_time_start)]
    pub time_start: Option<std::time::SystemTime>,

    /// Give each port the program binds a free real port behind it:
    /// connects to the port on loopback inside the sandbox reach it and
    /// getsockname shows it, so two sandboxes can both bind 8080.
    /// Example: --port-remap
    #[arg(long)]
    pub port_remap: bool,
}

impl DeterminismArgs {
    /// Adds the options to `builder`.
    pub fn apply(&self, mut builder: unotify::SandboxBuilder) -> unotify::SandboxBuilder {
        if let Some(name) = &self.hostname {
            builder = builder.hostname(name.clone());
        }
        if let Some(n) = self.num_cpus {
            builder = builder.num_cpus(n);
        }
        if let Some(seed) = self.random_seed {
            builder = builder.random_seed(seed);
        }
        if self.deterministic_dirs {
            builder = builder.deterministic_dirs(true);
        }
        if let Some(t) = self.time_start {
            builder = builder.time_start(t);
        }
        if self.port_remap {
            builder = builder.port_remap(true);
        }
        builder
    }
}

fn parse_hostname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.contains(['\0', '\n', '/']) {
        return Err(format!(
            "`{s}` is not a host name: give 1 to 64 bytes without `/` or newline, like --hostname build"
        ));
    }
    Ok(s.to_owned())
}

fn parse_num_cpus(s: &str) -> Result<u32, String> {
    let max = unotify::determinism::MAX_CPUS;
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a CPU count: give a number from 1 to {max}, like --num-cpus 4"
        )),
    }
}

fn parse_seed(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| {
        format!("`{s}` is not a seed: give a number from 0 to 18446744073709551615, like --random-seed 42")
    })
}
