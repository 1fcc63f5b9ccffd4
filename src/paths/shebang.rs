//! The `#!` interpreter of an executable, checked like the executable.
//!
//! The kernel runs a script by running the interpreter named on its first
//! line (and that interpreter's interpreter, a few levels deep). The exec
//! check reads the first bytes of the pinned executable, resolves the
//! interpreter as the kernel does (relative to the task's working
//! directory) and refuses the exec with `EACCES` if any interpreter in the
//! chain is denied. `#!/usr/bin/env prog` names `env`: the kernel runs
//! `env`, whose own exec of `prog` is trapped and checked in its turn.
//! The program at the end of the chain is checked for its ELF interpreter
//! (`PT_INTERP`) the same way: the kernel loads and starts that file.
//! Called by the exec check in [`super::handlers`] (without argv safety:
//! with it, the freeze pinned all of these files).

use std::os::fd::{AsFd, OwnedFd};

use crate::handler::HandlerCtx;
use crate::sys::path::fstat;

use super::deny::DeniedPaths;
use super::resolve::{base, borrow, errno_of, pin, pin_alias, reopen, task_view, Errno, Task};
use crate::script::{interpreter, SCRIPT_HEADER as HEADER};
/// Interpreter levels checked; the kernel gives up (`ELOOP`) after fewer.
const MAX_LEVELS: usize = 8;

/// Reads the start of the pinned regular file `fd`, and opens it for
/// reading (`None`: not a regular file, which the kernel will not run as
/// a script or ELF program).
fn header(fd: &OwnedFd) -> Result<Option<(Vec<u8>, std::fs::File)>, Errno> {
    let st = fstat(fd.as_fd()).map_err(|e| errno_of(&e))?;
    if !st.is_file() {
        return Ok(None);
    }
    // An executable the supervisor cannot read cannot be checked: refused.
    let file =
        reopen(fd.as_fd(), (libc::O_RDONLY | libc::O_NOCTTY) as u64).map_err(|e| errno_of(&e))?;
    let file = std::fs::File::from(file);
    let mut buf = crate::script::read_head(&file).map_err(|e| errno_of(&e))?;
    // The kernel's buffer is zeroed past the end of a short file.
    if buf.len() < HEADER {
        buf.resize(HEADER, 0);
    }
    Ok(Some((buf, file)))
}

/// Pins the interpreter `name` as the kernel finds it (relative to the
/// task's working directory); `None` when it is not there (the kernel
/// fails the exec the same way).
fn pin_interpreter(
    cx: &HandlerCtx<'_>,
    task: &Task,
    name: &[u8],
) -> Result<Option<OwnedFd>, Errno> {
    let (path, alias) = task_view(task, name);
    match alias {
        Some(alias) => pin_alias(cx, task, &alias).map(Some),
        None => {
            let base = base(cx, libc::AT_FDCWD, &path, false)?;
            match pin(borrow(&base), &path, 0, 0) {
                Ok(fd) => Ok(Some(fd)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
                Err(e) => Err(errno_of(&e)),
            }
        }
    }
}

/// Checks the interpreters of the pinned executable `exe`: `Err(EACCES)`
/// if one is denied, `Ok` when the chain ends (a file that is not a
/// script, or a name the kernel will not find).
pub(super) fn check_interpreters(
    cx: &HandlerCtx<'_>,
    d: &DeniedPaths,
    exe: OwnedFd,
) -> Result<(), Errno> {
    let task = Task::ids(cx);
    let mut cur = exe;
    for _ in 0..MAX_LEVELS {
        let Some((head, file)) = header(&cur)? else {
            return Ok(());
        };
        let Some(name) = interpreter(&head[..HEADER])? else {
            // The program the chain ends with, and its ELF interpreter.
            let Some(elf) = crate::script::elf_interpreter(&head, &file) else {
                return Ok(());
            };
            return match pin_interpreter(cx, &task, &elf)? {
                Some(fd) if d.check_fd(fd.as_fd()) => {
                    log::debug!(
                        "pid {}: exec of a program whose ELF interpreter is denied refused",
                        cx.pid()
                    );
                    Err(Errno::of(libc::EACCES))
                }
                _ => Ok(()),
            };
        };
        let Some(next) = pin_interpreter(cx, &task, name)? else {
            return Ok(());
        };
        if d.check_fd(next.as_fd()) {
            log::debug!(
                "pid {}: exec of a script whose interpreter is denied refused",
                cx.pid()
            );
            return Err(Errno::of(libc::EACCES));
        }
        cur = next;
    }
    Err(Errno::of(libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `h` as the kernel's zero-padded buffer.
    fn interp(h: &str) -> Result<Option<String>, Errno> {
        let mut buf = h.as_bytes().to_vec();
        buf.resize(HEADER.max(buf.len()), 0);
        interpreter(&buf).map(|o| o.map(|b| String::from_utf8(b.to_vec()).unwrap()))
    }

    #[test]
    fn the_running_image_is_checked() {
        let d = DeniedPaths::new();
        let me = std::process::id();
        assert!(!crate::paths::exec_image_denied(me, &d));
        d.deny(std::env::current_exe().unwrap());
        assert!(crate::paths::exec_image_denied(me, &d));
        assert!(crate::paths::exec_image_denied(u32::MAX, &d));
    }

    #[test]
    fn parses_like_the_kernel() {
        assert_eq!(interp("#!/bin/sh\necho"), Ok(Some("/bin/sh".into())));
        assert_eq!(interp("#! \t/bin/sh -e\n"), Ok(Some("/bin/sh".into())));
        assert_eq!(
            interp("#!/usr/bin/env python3\n"),
            Ok(Some("/usr/bin/env".into()))
        );
        assert_eq!(interp("#!rel/interp\n"), Ok(Some("rel/interp".into())));
        assert_eq!(interp("#!/bin/sh"), Ok(Some("/bin/sh".into())));
        let long = format!("#!/{}", "x".repeat(300));
        assert_eq!(
            interpreter(&long.as_bytes()[..HEADER]),
            Err(Errno::of(libc::ENOEXEC))
        );
        assert_eq!(interp("#!/bin/sh "), Ok(Some("/bin/sh".into())));
        assert_eq!(interp("#!\n"), Err(Errno::of(libc::ENOEXEC)));
        assert_eq!(interp("#!   \n"), Err(Errno::of(libc::ENOEXEC)));
        assert_eq!(interp("\x7fELF"), Ok(None));
        assert_eq!(interp("# !/bin/sh\n"), Ok(None));
    }
}
