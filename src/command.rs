//! [`Command`]: what to run in the sandbox, in the style of `std::process::Command`.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a standard stream of the sandboxed program goes.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum Stdio {
    /// The supervisor's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the other end is on the [`Child`](crate::Child).
    Piped,
    /// This file descriptor.
    Fd(OwnedFd),
}

impl From<File> for Stdio {
    fn from(f: File) -> Self {
        Stdio::Fd(f.into())
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Self {
        Stdio::Fd(fd)
    }
}

/// A program, its arguments, environment, working directory and stdio.
#[derive(Debug)]
pub struct Command {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    env_clear: bool,
    env: BTreeMap<OsString, Option<OsString>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdio: [Stdio; 3],
    /// `RLIMIT_NOFILE` of the program (soft and hard), if set.
    pub(crate) max_open_files: Option<u64>,
    /// The signals the program starts with blocked (kernel mask, bit
    /// `n - 1` for signal `n`).
    pub(crate) blocked_signals: u64,
    /// The signals the program starts ignoring (same encoding).
    pub(crate) ignored_signals: u64,
}

impl Command {
    /// A command running `program`, found on `PATH` unless it contains a `/`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            stdio: [Stdio::Inherit, Stdio::Inherit, Stdio::Inherit],
            max_open_files: None,
            blocked_signals: 0,
            ignored_signals: 0,
        }
    }

    /// The signals the program starts with blocked. By default none, as
    /// with `std::process::Command`: whatever this process blocks, the
    /// program starts with an empty mask. A launcher that passes on the
    /// mask it was started with (as a shell's `exec` would) reads it
    /// ([`os::blocked`](crate::os::blocked)) before it blocks signals of
    /// its own, and gives it here. (`SIGKILL` and `SIGSTOP` cannot be
    /// blocked: left out.)
    pub fn signal_mask(&mut self, blocked: crate::os::SigSet) -> &mut Self {
        self.blocked_signals = blocked.kernel_mask() & !UNCATCHABLE;
        self
    }

    /// Signals the program starts ignoring (`SIG_IGN`), on top of the
    /// defaults, which are `std::process::Command`'s: a signal this process
    /// ignores stays ignored, except `SIGPIPE`, which goes back to its
    /// default action (a Rust program ignores it for itself); a handled
    /// signal goes back to its default action. A launcher that changed
    /// the action of a signal its own caller ignored (`SIGPIPE`, or
    /// `SIGCHLD` so as to wait for the program) gives that signal here,
    /// so the program inherits the caller's "ignore" as it would run
    /// bare. (`SIGKILL` and `SIGSTOP` cannot be ignored: left out.)
    pub fn ignore_signals(&mut self, ignored: crate::os::SigSet) -> &mut Self {
        self.ignored_signals = ignored.kernel_mask() & !UNCATCHABLE;
        self
    }

    /// Limits the program to `n` open files: its `RLIMIT_NOFILE`, soft and
    /// hard, is set to `n` before it execs (an fd numbered `n` or above
    /// cannot be made: `EMFILE`). Raising it above this process's hard
    /// limit needs `CAP_SYS_RESOURCE`; without it the spawn fails.
    pub fn max_open_files(&mut self, n: u64) -> &mut Self {
        self.max_open_files = Some(n);
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .insert(key.as_ref().to_owned(), Some(val.as_ref().to_owned()));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts from an empty environment instead of the supervisor's.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets standard input.
    pub fn stdin(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = s.into();
        self
    }

    /// Sets standard output.
    pub fn stdout(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = s.into();
        self
    }

    /// Sets standard error.
    pub fn stderr(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = s.into();
        self
    }

    /// The program as given.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The environment the program will get.
    pub(crate) fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut vars: BTreeMap<OsString, OsString> = if self.env_clear {
            BTreeMap::new()
        } else {
            std::env::vars_os().collect()
        };
        for (k, v) in &self.env {
            match v {
                Some(v) => {
                    vars.insert(k.clone(), v.clone());
                }
                None => {
                    vars.remove(k);
                }
            }
        }
        vars.into_iter().collect()
    }

    /// The paths to try, in order: the program itself if it contains a `/`,
    /// else each `PATH` entry (the program's `PATH` if set, else ours).
    pub(crate) fn candidates(&self, env: &[(OsString, OsString)]) -> Result<Vec<CString>> {
        let prog = self.program.as_bytes();
        if prog.is_empty() {
            return Err(Error::InvalidConfig {
                message: "the program name is empty; give the command to run".into(),
            });
        }
        if prog.contains(&b'/') {
            return Ok(vec![cstring(&self.program)?]);
        }
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
        std::env::split_paths(&path)
            .map(|dir| {
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                cstring(dir.join(&self.program).as_os_str())
            })
            .collect()
    }
}

/// `SIGKILL` and `SIGSTOP` as kernel mask bits.
const UNCATCHABLE: u64 = 1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1);

/// Converts to a C string, refusing interior NUL bytes.
pub(crate) fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes().to_vec()).map_err(|_| Error::InvalidConfig {
        message: format!(
            "{:?} contains a NUL byte, which cannot be passed to a program",
            s
        ),
    })
}

/// `KEY=VALUE` as a C string.
pub(crate) fn env_entry(k: &OsStr, v: &OsStr) -> Result<CString> {
    let mut bytes = k.to_owned().into_vec();
    bytes.push(b'=');
    bytes.extend_from_slice(v.as_bytes());
    cstring(&OsString::from_vec(bytes))
}
