//! A chroot without privileges: the program sees a directory as `/`, with
//! host directories mounted into it (`--chroot DIR`, `--mount
//! VIRTUAL:HOST[:ro]`), with no user namespace, no mount and no
//! `CAP_SYS_CHROOT`. Owns one feature of the sandbox's plan ([`Chroot`]);
//! its handlers (`handlers`) walk every path in the view (`view`) and act
//! for the program; the working directory is virtual (`cwd`). Uses
//! `paths::resolve` (the task's rights and fds), argv safety (the exec
//! freeze) and `sys`; the sandbox builder calls it.
//!
//! What the kernel would resolve itself is taken away: the calls that
//! take a path are trapped and answered by the supervisor; a unix
//! pathname given to `bind`, `connect` or a send is resolved in the view
//! by the network's on-behalf calls, which a chroot turns on, through the
//! [`UnixPaths`](crate::net::UnixPaths) service this feature gives; the
//! xattr calls by path, the `ioctl`s that set an inode's flags
//! (`FS_IOC_SETFLAGS`, `FS_IOC_FSSETXATTR`, ...; with a `:ro` mount every
//! file-system `ioctl` but a known read, `paths::fs_ioctl`), `inotify_add_watch`,
//! `fanotify_mark`, `name_to_handle_at`, `quotactl` and `swapoff` are
//! refused; the mount family and new namespaces are refused as under path
//! denial. An exec is resolved in the view, `#!` interpreters included:
//! when the kernel's own resolution (host root, real working directory)
//! reaches the very files the view names it is let through; otherwise it
//! is re-issued as an `execveat` of the view's file by fd
//! (`freeze::reissue`, x86_64), the `#!` step made here. The ELF
//! interpreter is the view's: when the kernel would load another file by
//! that name, the view's loader is run with the program as its argument
//! (`exe` keeps what `/proc/self/exe` then is; see `handlers`).

mod cwd;
mod exe;
mod handlers;
mod view;

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::filter::{ArgCheck, FilterBuilder};
use crate::supervisor::enforcement::{Enforcement, Install};

/// What the builder was given.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spec {
    /// The directory the program sees as `/`.
    pub(crate) root: Option<PathBuf>,
    /// `(virtual, host, read_only)`.
    pub(crate) mounts: Vec<(PathBuf, PathBuf, bool)>,
    /// The program's first working directory (virtual; `/` if unset).
    pub(crate) cwd: Option<PathBuf>,
}

impl Spec {
    /// Whether a chroot was asked for.
    pub(crate) fn any(&self) -> bool {
        self.root.is_some() || !self.mounts.is_empty() || self.cwd.is_some()
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig { message }
}

/// The chroot, as a feature of the sandbox's plan.
#[derive(Debug)]
pub(crate) struct Chroot {
    shared: Arc<handlers::Shared>,
    /// The host directory the program starts in (its real working
    /// directory, which never changes: relative exec paths are resolved
    /// by the kernel from it).
    pub(crate) host_cwd: PathBuf,
    /// Whether a mount is read-only: then the file-system `ioctl`s are an
    /// allow list (`paths::fs_ioctl`), since many write through the
    /// read-only fd a read open of such a mount's file gives.
    read_only_mounts: bool,
}

fn canonical_dir(p: &Path, what: &str) -> Result<PathBuf> {
    let c = std::fs::canonicalize(p).map_err(|e| {
        invalid(format!(
            "{what} {} cannot be used ({e}); give an existing directory",
            p.display()
        ))
    })?;
    if !c.is_dir() {
        return Err(invalid(format!(
            "{what} {} is not a directory; give a directory",
            p.display()
        )));
    }
    Ok(c)
}

impl Chroot {
    /// Checks the spec and pins the root and the mounts.
    pub(crate) fn new(spec: &Spec) -> Result<Chroot> {
        let root = spec.root.as_ref().ok_or_else(|| {
            invalid("mounts and a chroot working directory need a chroot directory: give SandboxBuilder::chroot (--chroot DIR)".into())
        })?;
        let root = canonical_dir(root, "the chroot directory")?;
        let pin = |p: &Path| {
            view::pin_host_dir(p).map_err(|e| Error::setup("open a chroot directory", e))
        };
        let mut mounts = vec![view::Mount {
            virt: b"/".to_vec(),
            fd: pin(&root)?,
            host: root,
            read_only: false,
        }];
        for (virt, host, ro) in &spec.mounts {
            let v = virt.as_os_str().as_bytes();
            if v.first() != Some(&b'/') {
                return Err(invalid(format!(
                    "the mount point {} is not absolute; write it as the program sees it, from / (e.g. /usr)",
                    virt.display()
                )));
            }
            let v = view::normalize(v);
            if v == b"/" {
                return Err(invalid(
                    "a mount on / replaces the chroot directory; give that directory to --chroot instead".into(),
                ));
            }
            if mounts.iter().any(|m| m.virt == v) {
                return Err(invalid(format!(
                    "{} is mounted twice; keep one --mount for it",
                    virt.display()
                )));
            }
            let host = canonical_dir(host, "the mount source")?;
            mounts.push(view::Mount {
                virt: v,
                fd: pin(&host)?,
                host,
                read_only: *ro,
            });
        }
        let view = view::View::new(mounts);
        view.make_mount_points().map_err(|(point, e)| {
            invalid(format!(
                "the mount point {} cannot be made in the chroot directory (errno {}); create it as a directory",
                crate::shown::bytes(&point),
                e.get()
            ))
        })?;
        let cwd = spec
            .cwd
            .as_ref()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .unwrap_or_else(|| b"/".to_vec());
        if cwd.first() != Some(&b'/') {
            return Err(invalid(
                "the chroot working directory must be an absolute virtual path (e.g. /work)".into(),
            ));
        }
        let who = view::Walker {
            tid: std::process::id() as i32,
            tgid: std::process::id() as i32,
        };
        let node = view
            .walk(
                who,
                b"/",
                &cwd,
                view::How {
                    follow: true,
                    resolve: 0,
                },
            )
            .map_err(|e| {
                invalid(format!(
                    "the chroot working directory {} does not exist in the view (errno {}); create it or pick another",
                    crate::shown::bytes(&cwd),
                    e.get()
                ))
            })?;
        let host_cwd = crate::paths::path_of_fd(node.fd.as_fd()).ok_or_else(|| {
            invalid("the chroot working directory has no host path; pick another".into())
        })?;
        Ok(Chroot {
            shared: Arc::new(handlers::Shared {
                view,
                cwds: cwd::Cwds::new(node.vpath),
                creds: Arc::default(),
                exes: exe::Exes::default(),
                argv0: Default::default(),
            }),
            host_cwd,
            read_only_mounts: spec.mounts.iter().any(|(_, _, ro)| *ro),
        })
    }
}

/// Calls refused with `ENOTSUP`: extended attributes by path (the view
/// would have to resolve them; attributes through an fd stay).
const NO_XATTR: &[&str] = &[
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "setxattr",
    "lsetxattr",
    "removexattr",
    "lremovexattr",
    "getxattrat",
    "setxattrat",
    "listxattrat",
    "removexattrat",
    "file_getattr",
    "file_setattr",
    "fsetxattr",
    "fremovexattr",
];

/// Calls refused with `EACCES`: they take a path the kernel would resolve
/// in the host's root, and programs manage without them.
const NO_PATH: &[&str] = &[
    "inotify_add_watch",
    "fanotify_mark",
    "name_to_handle_at",
    "quotactl",
    "swapoff",
];

/// Calls refused with `ENOSYS`: they show the host's mount table, mount
/// points the view hides (a program falls back to `/proc/self/mountinfo`,
/// there only if the view mounts `/proc`).
const HOST_MOUNTS: &[&str] = &["statmount", "listmount"];

impl Enforcement for Chroot {
    fn rules(&self, filter: &mut FilterBuilder) -> Result<()> {
        crate::paths::install(filter)?;
        filter.refuse_undecided(NO_XATTR, libc::ENOTSUP)?;
        filter.refuse_undecided(NO_PATH, libc::EACCES)?;
        filter.refuse_undecided(HOST_MOUNTS, libc::ENOSYS)?;
        if let Some(nr) = crate::syscalls::number(filter.arch(), "ioctl") {
            // Requests that write an inode's flags or attributes through
            // any fd, even a read-only one (a `:ro` mount's files), decided
            // on the request register alone. The kernel reads the request
            // as a 32-bit `unsigned int`.
            let set = crate::paths::fs_ioctl::SET_INODE.iter().map(|(c, _)| *c);
            for req in set.chain([crate::paths::fs_ioctl::ENABLE_VERITY]) {
                filter.refuse_first(nr, vec![ArgCheck::new(1, 0xffff_ffff, req)], libc::EPERM)?;
            }
        }
        Ok(())
    }

    fn builtins(&self, install: &mut Install<'_>) -> Result<()> {
        for (nr, h) in handlers::builtins(&self.shared) {
            install.builtin(nr, h)?;
        }
        Ok(())
    }

    fn late_rules(&self, install: &mut Install<'_>) -> Result<()> {
        crate::paths::install_view(install.filter)?;
        // With a `:ro` mount the file-system ioctls stop.
        if !self.read_only_mounts {
            return Ok(());
        }
        crate::paths::fs_ioctl::install_answer(
            install,
            &[],
            Arc::new(crate::paths::fs_ioctl::answer),
        )
    }

    fn start(
        &self,
        _env: &crate::supervisor::enforcement::StartEnv<'_>,
    ) -> Result<Option<crate::supervisor::enforcement::Running>> {
        let paths = Arc::new(handlers::UnixView(Arc::clone(&self.shared)));
        let hook = crate::net::UnixPathHook(Arc::clone(&paths) as Arc<dyn crate::net::UnixPaths>);
        Ok(Some(
            crate::supervisor::enforcement::Running::new(paths).with_service(Arc::new(hook)),
        ))
    }
}
