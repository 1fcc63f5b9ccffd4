//! `AF_UNIX` addresses given to calls made on the program's behalf: what an
//! address names, and the same socket file reached from the supervisor.
//!
//! A pathname is resolved in the program's view (its root and working
//! directory, from `/proc/<tid>/root` and `/proc/<tid>/cwd`) with
//! `openat2(RESOLVE_IN_ROOT)` into an `O_PATH` descriptor; the call is then
//! made to `/proc/self/fd/<n>`, which names exactly the inode that was
//! checked. A feature that shows the program another root than its
//! kernel one (the chroot view) resolves the pathnames itself, through a
//! [`UnixPathHook`] service. Used by `onbehalf`; uses `sys`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::fs::{self, OpenHow};
use crate::sys::path::readlinkat;

/// `RESOLVE_IN_ROOT`.
const RESOLVE_IN_ROOT: u64 = 0x10;
/// `offsetof(struct sockaddr_un, sun_path)`.
const PATH_OFFSET: usize = 2;
/// `sizeof(struct sockaddr_un)`.
const SUN_LEN: usize = 110;

/// What an `AF_UNIX` address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnixAddr {
    /// `AF_UNSPEC`: a datagram socket's disconnect.
    Unspec,
    /// Only the family: "any name" (autobind, for `bind`).
    Unnamed,
    /// A pathname, without its terminating NUL.
    Path(Vec<u8>),
    /// An abstract name, without its leading NUL.
    Abstract(Vec<u8>),
}

/// Reads address bytes as the kernel's unix code does; `Err(errno)` for
/// what it refuses.
pub(crate) fn parse(bytes: &[u8]) -> Result<UnixAddr, i32> {
    if bytes.len() < PATH_OFFSET || bytes.len() > SUN_LEN {
        return Err(libc::EINVAL);
    }
    match i32::from(u16::from_ne_bytes([bytes[0], bytes[1]])) {
        libc::AF_UNSPEC => return Ok(UnixAddr::Unspec),
        libc::AF_UNIX => {}
        _ => return Err(libc::EINVAL),
    }
    let path = &bytes[PATH_OFFSET..];
    Ok(match path.first() {
        None => UnixAddr::Unnamed,
        Some(0) => UnixAddr::Abstract(path[1..].to_vec()),
        Some(_) => {
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            UnixAddr::Path(path[..end].to_vec())
        }
    })
}

pub(crate) use crate::sys::net::unix_path_addr as path_addr;

/// Resolves the program's unix socket pathnames in a view the kernel does
/// not know (a chroot's), with the task's rights, symlinks and `..` kept
/// inside it. Errors are errnos for the program.
pub(crate) trait UnixPaths: Send + Sync {
    /// The socket file `path` names (`O_PATH`), for `connect` and sends.
    fn socket(&self, cx: &crate::handler::HandlerCtx<'_>, path: &[u8]) -> Result<OwnedFd, i32>;
    /// The directory (`O_PATH`) a `bind` to `path` makes its socket in,
    /// and the socket's name there.
    fn parent(
        &self,
        cx: &crate::handler::HandlerCtx<'_>,
        path: &[u8],
    ) -> Result<(OwnedFd, Vec<u8>), i32>;
}

/// The service a feature publishes to resolve unix pathnames ([`UnixPaths`]).
pub(crate) struct UnixPathHook(pub(crate) std::sync::Arc<dyn UnixPaths>);

/// A pathname the program gave, resolved in its view.
pub(crate) struct Resolved {
    /// `O_PATH` descriptor of the file (or of the parent directory, for a bind).
    pub(crate) fd: OwnedFd,
    /// Where it is, in the supervisor's view (what the policy matches).
    pub(crate) real: PathBuf,
}

impl Resolved {
    /// The file `fd` names, with its place in the supervisor's view.
    pub(crate) fn of(fd: OwnedFd) -> io::Result<Resolved> {
        let real = real_path(fd.as_fd())?;
        Ok(Resolved { fd, real })
    }

    /// The address that reaches this very inode from the supervisor.
    pub(crate) fn proc_addr(&self) -> Vec<u8> {
        path_addr(crate::sys::procfs::fd_link(self.fd.as_fd()).as_bytes())
    }
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_path(
    dir: Option<BorrowedFd<'_>>,
    p: &[u8],
    flags: u64,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: flags | libc::O_PATH as u64 | libc::O_CLOEXEC as u64,
        mode: 0,
        resolve,
    };
    fs::openat2(dir, &cstr(p)?, &how)
}

/// The program's root, and `path` made absolute inside it.
fn in_root(tid: u32, path: &[u8]) -> io::Result<(OwnedFd, Vec<u8>)> {
    let root_link = format!("/proc/{tid}/root");
    let root = open_path(None, root_link.as_bytes(), libc::O_DIRECTORY as u64, 0)?;
    if path.first() == Some(&b'/') {
        return Ok((root, path.to_vec()));
    }
    // Relative: the working directory, as a path inside the root.
    let cwd = readlinkat(None, &cstr(format!("/proc/{tid}/cwd").as_bytes())?)?;
    let root_path = readlinkat(None, &cstr(root_link.as_bytes())?)?;
    let inside = if root_path == b"/" {
        cwd
    } else if cwd.starts_with(&root_path)
        && (cwd.len() == root_path.len() || cwd[root_path.len()] == b'/')
    {
        cwd[root_path.len()..].to_vec()
    } else {
        // A working directory outside its root: refuse rather than guess.
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    };
    let mut abs = inside;
    if abs.last() != Some(&b'/') {
        abs.push(b'/');
    }
    abs.extend_from_slice(path);
    Ok((root, abs))
}

fn real_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let link = readlinkat(
        None,
        &cstr(crate::sys::procfs::fd_link(fd.as_fd()).as_bytes())?,
    )?;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&link)))
}

/// The program's view, taken by the supervisor (its `/proc/<tid>` links
/// may be closed to the program's own credentials: a process that changed
/// its user is not dumpable), to walk a path in with the program's.
pub(crate) struct View {
    root: OwnedFd,
    abs: Vec<u8>,
}

/// The root of task `tid` and `path` made absolute in it.
pub(crate) fn view(tid: u32, path: &[u8]) -> io::Result<View> {
    let (root, abs) = in_root(tid, path)?;
    Ok(View { root, abs })
}

/// Resolves the pathname of `view` to the file it names (symlinks
/// followed, inside the program's root), with the calling thread's
/// credentials.
pub(crate) fn resolve(view: &View) -> io::Result<Resolved> {
    let fd = open_path(Some(view.root.as_fd()), &view.abs, 0, RESOLVE_IN_ROOT)?;
    let real = real_path(fd.as_fd())?;
    Ok(Resolved { fd, real })
}

/// Resolves the directory a `bind` to the pathname of `view` creates its
/// socket in; returns it and the new file's name.
pub(crate) fn resolve_parent(view: &View) -> io::Result<(Resolved, Vec<u8>)> {
    let (root, abs) = (&view.root, &view.abs);
    let p = Path::new(std::ffi::OsStr::from_bytes(abs));
    let name = match p.file_name() {
        Some(n) if !abs.ends_with(b"/") => n.as_bytes().to_vec(),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let parent = p.parent().map_or(&b"/"[..], |d| d.as_os_str().as_bytes());
    let parent = if parent.is_empty() { &b"/"[..] } else { parent };
    let fd = open_path(
        Some(root.as_fd()),
        parent,
        libc::O_DIRECTORY as u64,
        RESOLVE_IN_ROOT,
    )?;
    let real = real_path(fd.as_fd())?.join(std::ffi::OsStr::from_bytes(&name));
    Ok((Resolved { fd, real }, name))
}

/// Whether task `tid` has the supervisor's root and mount namespace (then
/// a path means the same to both, from the same working directory).
pub(crate) fn same_view(tid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: String| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let root = id(format!("/proc/{tid}/root"));
    let mnt = id(format!("/proc/{tid}/ns/mnt"));
    root.is_some()
        && mnt.is_some()
        && root == id("/proc/self/root".into())
        && mnt == id("/proc/self/ns/mnt".into())
}

/// The working directory of task `tid`, as an `O_PATH` descriptor.
pub(crate) fn cwd(tid: u32) -> io::Result<OwnedFd> {
    open_path(
        None,
        format!("/proc/{tid}/cwd").as_bytes(),
        libc::O_DIRECTORY as u64,
        0,
    )
}

/// The network namespace of `pid` (`self` for the supervisor), as a device
/// and inode pair.
pub(crate) fn net_ns(pid: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse(&path_addr(b"/a/b")),
            Ok(UnixAddr::Path(b"/a/b".to_vec()))
        );
        let mut abs = path_addr(b"");
        abs.pop();
        assert_eq!(parse(&abs), Ok(UnixAddr::Unnamed));
        abs.extend_from_slice(b"\0name");
        assert_eq!(parse(&abs), Ok(UnixAddr::Abstract(b"name".to_vec())));
        assert_eq!(parse(&[1]), Err(libc::EINVAL));
        assert_eq!(parse(&[0, 0]), Ok(UnixAddr::Unspec));
    }

    #[test]
    fn resolves_in_the_programs_view() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let me = std::process::id();
        let v = view(me, sock.as_os_str().as_bytes()).unwrap();
        let r = resolve(&v).unwrap();
        assert_eq!(r.real, std::fs::canonicalize(&sock).unwrap());
        let (p, name) = resolve_parent(&v).unwrap();
        assert_eq!(name, b"s");
        assert_eq!(p.real, r.real);
    }
}
