//! Virtual files: opens for reading of files the determinism options
//! replace (`/etc/hostname`, `/proc/cpuinfo`, `/dev/urandom`, ...) get an
//! fd with the virtual content instead.
//!
//! The path is read once and pinned the way path denial resolves it
//! (`paths::pin_to_recognise`); the pinned file is matched by its
//! canonical path (regular and procfs/sysfs files) or its device number
//! (character devices). Anything else is `Continue`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use crate::action::{Errno, NotifAction};
use crate::arch::Arch;
use crate::error::Result;
use crate::handler::HandlerCtx;
use crate::paths::DeniedPaths;
use crate::supervisor::enforcement::Install;
use crate::sys::path::fstat;

/// Makes the fd a matching open gets (the content, or a stream).
pub(crate) type Serve =
    Arc<dyn Fn(&HandlerCtx<'_>) -> std::result::Result<OwnedFd, Errno> + Send + Sync>;

/// The files to replace, with what replaces them.
#[derive(Default)]
pub(crate) struct VirtualFiles {
    /// (canonical path, its file system's device, content).
    files: Vec<(PathBuf, u64, Arc<[u8]>)>,
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
        self.files.push((canonical, meta.dev(), content.into()));
    }

    /// Serves opens of the character device `rdev` with `serve`.
    pub(crate) fn device(&mut self, rdev: u64, serve: Serve) {
        self.devices.push((rdev, serve));
    }

    /// Traps the open calls and adds the handler.
    pub(crate) fn install(
        self,
        install: &mut Install<'_>,
        denied: Option<Arc<DeniedPaths>>,
    ) -> Result<()> {
        let table = Arc::new(Table {
            files: self.files,
            devices: self.devices,
            denied,
        });
        let arch = Arch::native();
        for (name, kind) in [
            ("open", Kind::Open),
            ("openat", Kind::Openat),
            ("openat2", Kind::Openat2),
        ] {
            let Some(nr) = crate::syscalls::number(arch, name) else {
                continue;
            };
            let t = Arc::clone(&table);
            install.builtin(nr, Arc::new(move |cx: &HandlerCtx<'_>| t.open(cx, kind)))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Open,
    Openat,
    Openat2,
}

struct Table {
    files: Vec<(PathBuf, u64, Arc<[u8]>)>,
    devices: Vec<(u64, Serve)>,
    denied: Option<Arc<DeniedPaths>>,
}

impl Table {
    fn open(&self, cx: &HandlerCtx<'_>, kind: Kind) -> NotifAction {
        let (dirfd, path_ptr, flags) = match kind {
            Kind::Open => (libc::AT_FDCWD, cx.arg(0), cx.arg(1)),
            Kind::Openat => (cx.arg(0) as u32 as i32, cx.arg(1), cx.arg(2)),
            Kind::Openat2 => {
                // `struct open_how` starts with its flags; resolve flags
                // restrict resolution (left to the kernel).
                if cx.arg(3) < 24 {
                    return NotifAction::Continue;
                }
                let Ok(how) = cx.read_mem(cx.arg(2), 24) else {
                    return NotifAction::Continue;
                };
                let word = |i: usize| {
                    u64::from_ne_bytes(how[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
                };
                if word(2) != 0 {
                    return NotifAction::Continue;
                }
                (cx.arg(0) as u32 as i32, cx.arg(1), word(0))
            }
        };
        let flags = flags as u32 as i32;
        // Only reads are served; writes, creation and O_PATH go to the
        // real file.
        if flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH | libc::O_DIRECTORY) != 0
        {
            return NotifAction::Continue;
        }
        let Ok(path) = cx.read_cstr(path_ptr, libc::PATH_MAX as usize - 1) else {
            return NotifAction::Continue;
        };
        if path.is_empty() {
            return NotifAction::Continue;
        }
        let Ok(pinned) = crate::paths::pin_to_recognise(cx, dirfd, &path, flags & libc::O_NOFOLLOW)
        else {
            return NotifAction::Continue;
        };
        let Ok(st) = fstat(pinned.as_fd()) else {
            return NotifAction::Continue;
        };
        let served: Option<std::result::Result<OwnedFd, Errno>> =
            if st.mode & libc::S_IFMT == libc::S_IFCHR {
                self.devices
                    .iter()
                    .find(|(rdev, _)| *rdev == st.rdev)
                    .map(|(_, serve)| serve(cx))
            } else if self.files.iter().any(|(_, dev, _)| *dev == st.dev) {
                crate::paths::path_of_fd(pinned.as_fd()).and_then(|p| {
                    self.files
                        .iter()
                        .find(|(path, _, _)| *path == p)
                        .map(|(_, _, content)| {
                            crate::action::sealed_memfd(content).map_err(|e| Errno::from_io(&e))
                        })
                })
            } else {
                None
            };
        let Some(served) = served else {
            return NotifAction::Continue;
        };
        if self
            .denied
            .as_ref()
            .is_some_and(|d| d.check_fd(pinned.as_fd()))
        {
            return NotifAction::Errno(libc::EACCES);
        }
        match served {
            Ok(fd) => NotifAction::InjectFdSend {
                fd,
                newfd_flags: if flags & libc::O_CLOEXEC != 0 {
                    libc::O_CLOEXEC as u32
                } else {
                    0
                },
            },
            Err(e) => e.into(),
        }
    }
}
