//! Virtual files: opens for reading of files the determinism options
//! replace (`/etc/hostname`, `/proc/cpuinfo`, `/dev/urandom`, ...) get an
//! fd with the virtual content instead.
//!
//! Served through path denial's on-behalf opens (its [`OpenHook`]
//! extension point, which the plan turns on with these options): the path
//! is read and pinned once there, the way path denial resolves it, and
//! checked against the denied paths; the pinned file is then matched by
//! its canonical path (regular and procfs/sysfs files) or its device
//! number (character devices). Anything else is opened as usual, from the
//! same pinned file: no open is left to the kernel, which would read the
//! path again.
//!
//! [`OpenHook`]: crate::paths::OpenHook

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use crate::action::Errno;
use crate::handler::HandlerCtx;
use crate::paths::ServeOpen;
use crate::sys::path::FileStat;

/// A virtual file: its canonical path, its device and inode, its content.
type VirtualFile = (PathBuf, (u64, u64), Arc<[u8]>);

/// Makes the fd a matching open gets (the content, or a stream).
pub(crate) type Serve =
    Arc<dyn Fn(&HandlerCtx<'_>) -> std::result::Result<OwnedFd, Errno> + Send + Sync>;

/// The files to replace, with what replaces them.
#[derive(Default)]
pub(crate) struct VirtualFiles {
    /// (canonical path, its device and inode, content).
    files: Vec<VirtualFile>,
    /// (`st_rdev` of a character device, the fd an open gets).
    devices: Vec<(u64, Serve)>,
}

impl VirtualFiles {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.devices.is_empty()
    }

    /// Serves `content` for `path` (ignored if `path` does not exist: no
    /// open can name it).
    pub(crate) fn file(&mut self, path: &str, content: Vec<u8>) {
        let Ok(canonical) = std::fs::canonicalize(path) else {
            log::debug!("{path} does not exist here; not served");
            return;
        };
        let Ok(meta) = std::fs::metadata(&canonical) else {
            return;
        };
        use std::os::unix::fs::MetadataExt;
        self.files
            .push((canonical, (meta.dev(), meta.ino()), content.into()));
    }

    /// Serves opens of the character device `rdev` with `serve`.
    pub(crate) fn device(&mut self, rdev: u64, serve: Serve) {
        self.devices.push((rdev, serve));
    }

    /// The table opens are matched against, served through path denial's
    /// on-behalf opens ([`crate::paths::OpenHook`]): the path is read and
    /// pinned once there, checked against the denied paths, then matched
    /// here; no open of a virtual file is left to the kernel, which would
    /// read the path again.
    pub(crate) fn into_table(self) -> Arc<Table> {
        Arc::new(Table {
            files: self.files,
            devices: self.devices,
        })
    }
}

/// The virtual files and devices of a sandbox.
pub(crate) struct Table {
    files: Vec<VirtualFile>,
    devices: Vec<(u64, Serve)>,
}

impl Table {
    /// What the open of the pinned file replaces it with, if it is one of
    /// the virtual files or devices: the content for a file (by identity,
    /// so a hard link to it too, or by its path, which a file put in its
    /// place keeps), the device's server for a device.
    fn lookup(&self, pinned: BorrowedFd<'_>, st: &FileStat) -> Option<Found<'_>> {
        if st.mode & libc::S_IFMT == libc::S_IFCHR {
            return self
                .devices
                .iter()
                .find(|(rdev, _)| *rdev == st.rdev)
                .map(|(_, serve)| Found::Device(serve));
        }
        if let Some((_, _, content)) = self.files.iter().find(|(_, id, _)| *id == (st.dev, st.ino))
        {
            return Some(Found::File(content));
        }
        if !self.files.iter().any(|(_, (dev, _), _)| *dev == st.dev) {
            return None;
        }
        let p = crate::paths::path_of_fd(pinned)?;
        self.files
            .iter()
            .find(|(path, _, _)| *path == p)
            .map(|(_, _, content)| Found::File(content))
    }
}

enum Found<'a> {
    File(&'a Arc<[u8]>),
    Device(&'a Serve),
}

impl ServeOpen for Table {
    fn serve(
        &self,
        cx: &HandlerCtx<'_>,
        pinned: BorrowedFd<'_>,
        st: &FileStat,
        flags: i32,
    ) -> Option<std::result::Result<OwnedFd, Errno>> {
        // An `O_PATH` fd names the file without reading it (a later open
        // through `/proc/self/fd/N` comes here again).
        // (`O_DIRECTORY` fails as for the file: none is a directory.)
        if flags & (libc::O_PATH | libc::O_DIRECTORY) != 0 {
            return None;
        }
        let found = self.lookup(pinned, st)?;
        // Served for reading only: an open for writing or truncating would
        // reach the real file (and read it, with `O_RDWR`).
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Some(Err(Errno::of(libc::EACCES)));
        }
        Some(match found {
            Found::Device(serve) => serve(cx),
            Found::File(content) => {
                crate::action::sealed_memfd(content).map_err(|e| Errno::from_io(&e))
            }
        })
    }
}
