//! `/etc/hosts` as the policy resolved it: when rules name hosts, opening
//! `/etc/hosts` for reading returns a sealed memfd holding localhost and
//! the names with the addresses they resolved to when the sandbox was
//! built, so the program resolves what the policy resolved.

use std::path::Path;

use crate::action::{sealed_memfd, NotifAction};
use crate::handler::HandlerCtx;

const HOSTS: &[u8] = b"/etc/hosts";

/// Serves the synthetic `/etc/hosts`.
pub(crate) struct HostsFile {
    content: Vec<u8>,
}

impl HostsFile {
    pub(crate) fn new(content: Vec<u8>) -> HostsFile {
        HostsFile { content }
    }

    /// `openat(dirfd, path, flags, ..)`, or `open(path, flags, ..)` with
    /// `dirfd = AT_FDCWD`.
    pub(crate) fn open(
        &self,
        cx: &HandlerCtx<'_>,
        dirfd: i32,
        path_ptr: u64,
        flags: i32,
    ) -> NotifAction {
        let refuse = libc::O_WRONLY
            | libc::O_RDWR
            | libc::O_DIRECTORY
            | libc::O_PATH
            | libc::O_TMPFILE
            | libc::O_EXCL
            | libc::O_TRUNC;
        if flags & refuse != 0 {
            return NotifAction::Continue;
        }
        let Ok(path) = cx.read_cstr(path_ptr, libc::PATH_MAX as usize) else {
            return NotifAction::Continue;
        };
        if !path.ends_with(b"hosts") || !is_etc_hosts(cx.pid(), dirfd, &path) {
            return NotifAction::Continue;
        }
        match sealed_memfd(&self.content) {
            Ok(fd) => NotifAction::InjectFdSend {
                fd,
                newfd_flags: if flags & libc::O_CLOEXEC != 0 {
                    libc::O_CLOEXEC as u32
                } else {
                    0
                },
            },
            Err(e) => {
                log::warn!("cannot create the /etc/hosts memfd: {e}; answering EIO");
                NotifAction::Errno(libc::EIO)
            }
        }
    }
}

/// Whether `path` (relative to `dirfd` of task `pid`) names `/etc/hosts`,
/// lexically.
fn is_etc_hosts(pid: u32, dirfd: i32, path: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            format!("/proc/{pid}/cwd")
        } else {
            format!("/proc/{pid}/fd/{dirfd}")
        };
        match std::fs::read_link(base) {
            Ok(b) if b.is_absolute() => b.join(p),
            _ => return false,
        }
    };
    crate::paths::normalize_abs(&full).as_os_str().as_bytes() == HOSTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical() {
        assert_eq!(
            crate::paths::normalize_abs(Path::new("/etc/./../etc//hosts")),
            Path::new("/etc/hosts")
        );
        assert!(is_etc_hosts(
            std::process::id(),
            libc::AT_FDCWD,
            b"/etc/hosts"
        ));
        assert!(!is_etc_hosts(
            std::process::id(),
            libc::AT_FDCWD,
            b"/etc/hosts.allow"
        ));
    }
}
