//! File-system `ioctl`s as an allow list, for the views that keep a tree
//! from being written (`--workdir`'s lower tree, a chroot's `:ro` mounts).
//!
//! Many file systems take requests that write through a read-only fd
//! (ownership or a capability is all they check): btrfs subvolumes and
//! dedupe (type `0x94`), fscrypt policies and ext4's own requests (`'f'`),
//! XFS's (`'X'`), f2fs's (`0xf5`), the file system's label... A deny list
//! of known numbers always misses one, so the filter stops every request
//! whose type byte is a file system's ([`TYPES`]) and this answers it:
//! the requests that only read are performed on a duplicate of the fd
//! and their result copied out; those the kernel itself refuses on an fd
//! not open for writing (`FICLONE`, `FICLONERANGE`: a writable fd is never
//! a protected file) go on; anything else fails with `ENOTTY`, as a
//! request the file system does not know. Terminal, socket and other
//! `ioctl`s are not stopped.

use std::os::fd::AsFd;

use crate::action::NotifAction;
use crate::filter::ArgCheck;
use crate::handler::{HandlerCtx, MemoryError};

/// The `ioctl` type bytes (`(request >> 8) & 0xff`) of file-system
/// requests in the kernel's uapi headers: `0x15` (`FS_IOC_GETFSUUID`,
/// `FS_IOC_GETFSSYSFSPATH`), `'X'` (XFS, `FS_IOC_FSGETXATTR`,
/// `FIFREEZE`/`FITHAW`/`FITRIM`), `'f'` (the generic `FS_IOC_*`, ext2/3/4,
/// fscrypt, fs-verity), `'n'` (nilfs2), `'o'` (ocfs2), `'r'` (FAT's
/// attributes), `'v'` (`FS_IOC_GETVERSION`/`SETVERSION`), `0x94` (btrfs,
/// `FICLONE`, `FIDEDUPERANGE`, the label), `0x97` (ceph), `0xbc`
/// (bcachefs), `0xcf` (cifs), `0xf5` (f2fs).
pub(crate) const TYPES: [u8; 12] = [
    0x15, b'X', b'f', b'n', b'o', b'r', b'v', 0x94, 0x97, 0xbc, 0xcf, 0xf5,
];

/// The filter checks that stop a file-system request of `ioctl`, one per
/// type: the request's type byte in the low word of the argument. The
/// kernel takes the request as an `unsigned int` and ignores the high
/// word, and glibc may pass it sign-extended (a request with the read
/// bit set has bit 31 set), so only the low 32 bits are compared: a
/// mask of `0xff00` leaves the high word out of the compare, and a
/// request cannot hide its type in bits the kernel never reads.
pub(crate) fn checks() -> impl Iterator<Item = ArgCheck> {
    TYPES
        .iter()
        .map(|&t| ArgCheck::new(1, 0xff00, u64::from(t) << 8))
}

/// Whether a request (its low word) has a file-system type.
pub(crate) fn is_fs_request(cmd: u64) -> bool {
    TYPES.contains(&(((cmd >> 8) & 0xff) as u8))
}

/// The `ioctl` commands that change inode flags, with the size of what
/// their argument points to: `FS_IOC_SETFLAGS` (a `long` in its number, an
/// `int` read), `FS_IOC32_SETFLAGS`, `FS_IOC_FSSETXATTR` (`struct fsxattr`),
/// and `FS_IOC_SETVERSION`/`FS_IOC32_SETVERSION` with ext4's own number
/// for it, `EXT4_IOC_SETVERSION` (the inode generation, an `int` read;
/// ext4 takes it through a read-only fd and moves the ctime).
pub(crate) const SET_INODE: [(u64, usize); 6] = [
    (0x4008_6602, 4),
    (0x4004_6602, 4),
    (0x401c_5820, 28),
    (0x4008_7602, 4),
    (0x4004_7602, 4),
    (0x4008_6604, 4),
];

/// `FS_IOC_ENABLE_VERITY`: works through a read-only fd and makes the
/// file read-only for good; the views refuse it (`EPERM`) on the request
/// register alone.
pub(crate) const ENABLE_VERITY: u64 = 0x4080_6685;

/// Has the file-system `ioctl`s, and the requests `also`, stop and be
/// answered by `handler` (terminal, socket and other `ioctl`s run), unless
/// the caller traps every `ioctl` already (then `handler` comes after the
/// caller's) or denies it.
pub(crate) fn install_answer(
    install: &mut crate::supervisor::enforcement::Install<'_>,
    also: &[u64],
    handler: std::sync::Arc<dyn crate::handler::Handler>,
) -> crate::error::Result<()> {
    let Some(nr) = crate::syscalls::number(crate::arch::Arch::native(), "ioctl") else {
        return Ok(());
    };
    if install.user_denied(nr) || install.filter.is_denied(nr).is_some() {
        return Ok(());
    }
    for &cmd in also {
        install
            .filter
            .notify_if(nr, vec![ArgCheck::new(1, 0xffff_ffff, cmd)])?;
    }
    for check in checks() {
        install.filter.notify_if(nr, vec![check])?;
    }
    install.builtin(nr, handler)
}

/// Requests that only read, with the size of what their argument points
/// to: `FS_IOC_GETFLAGS` (and its 32-bit form), `FS_IOC_GETVERSION` (both
/// forms), `EXT4_IOC_GETVERSION`, `FS_IOC_FSGETXATTR`,
/// `FS_IOC_GETFSLABEL`, `FS_IOC_GETFSUUID`, `FS_IOC_GETFSSYSFSPATH`,
/// `FS_IOC_GET_ENCRYPTION_POLICY` (its number says "write": it reads),
/// `EXT4_IOC_GETSTATE` (the same).
const READS: [(u64, usize); 11] = [
    (0x8008_6601, 4),
    (0x8004_6601, 4),
    (0x8008_7601, 4),
    (0x8004_7601, 4),
    (0x8008_6603, 4),
    (0x801c_581f, 28),
    (0x8100_9431, 256),
    (0x8011_1500, 17),
    (0x8081_1501, 129),
    (0x400c_6615, 12),
    (0x4004_6629, 4),
];

/// `FS_IOC_FIEMAP`: a 32-byte header whose `fm_extent_count` (at 24) says
/// how many 56-byte extents follow.
const FIEMAP: u64 = 0xc020_660b;

/// The most extents one `FS_IOC_FIEMAP` is answered with (a larger count
/// is lowered to it: the kernel says how many it mapped, and callers ask
/// again from the last one).
const FIEMAP_MAX_EXTENTS: u32 = 4096;

/// Bytes of room after a request's argument in the supervisor's buffer.
const SLACK: usize = 4096;

/// Requests the kernel refuses (`EBADF`) unless the fd written is open for
/// writing, which a protected file never is in the program:
/// `FICLONE`, `FICLONERANGE` (`cp --reflink`).
const WRITE_FD_ONLY: [u64; 2] = [0x4004_9409, 0x4020_940d];

/// Answers a file-system `ioctl` (request in `cx.arg(1)`) that the view
/// did not take itself: performed on a duplicate if it only reads, let
/// through if the kernel checks the fd is writable, else `ENOTTY`.
/// Requests of other types are not this module's (`Continue`).
pub(crate) fn answer(cx: &HandlerCtx<'_>) -> NotifAction {
    let cmd = cx.arg(1) & 0xffff_ffff;
    if !is_fs_request(cmd) {
        return NotifAction::Continue;
    }
    if WRITE_FD_ONLY.contains(&cmd) {
        // The kernel itself refuses the call on an fd not open for
        // writing, whichever fd the number holds when it runs.
        return NotifAction::Continue;
    }
    let size = if cmd == FIEMAP {
        match fiemap_size(cx) {
            Ok(n) => Some(n),
            Err(e) => return NotifAction::Errno(e),
        }
    } else {
        READS.iter().find(|(c, _)| *c == cmd).map(|(_, n)| *n)
    };
    let Some(size) = size else {
        log::debug!("file-system ioctl {cmd:#x} refused: not a known read");
        return NotifAction::Errno(libc::ENOTTY);
    };
    match read_on_behalf(cx, cmd, size) {
        Ok(r) => NotifAction::ReturnValue(i64::from(r)),
        Err(e) => NotifAction::Errno(e),
    }
}

/// The argument size of an `FS_IOC_FIEMAP`, its extent count capped.
fn fiemap_size(cx: &HandlerCtx<'_>) -> Result<usize, i32> {
    let head = cx.read_mem(cx.arg(2), 32).map_err(mem_errno)?;
    let count = u32::from_ne_bytes(head[24..28].try_into().expect("4 bytes"));
    Ok(32 + 56 * count.min(FIEMAP_MAX_EXTENTS) as usize)
}

/// Performs a reading request on a duplicate of the fd, with the
/// argument copied in and its answer copied out.
fn read_on_behalf(cx: &HandlerCtx<'_>, cmd: u64, size: usize) -> Result<i32, i32> {
    let fd = crate::paths::as_supervisor(|| cx.dup_fd(cx.arg(0) as u32 as i32))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
    let mut arg = cx.read_mem(cx.arg(2), size).map_err(mem_errno)?;
    if cmd == FIEMAP {
        // Capped at what `size` holds, not at what the program says now:
        // a thread may have raised the count since `fiemap_size` read it,
        // and the kernel writes that many extents into our buffer.
        let count = u32::from_ne_bytes(arg[24..28].try_into().expect("4 bytes"));
        let room = ((size - 32) / 56) as u32;
        arg[24..28].copy_from_slice(&count.min(room).to_ne_bytes());
    }
    // Room past the argument: a size wrong in the table must not let the
    // kernel write past the buffer (only `size` bytes are copied out).
    arg.resize(size + SLACK, 0);
    let r = crate::sys::path::ioctl_buf(fd.as_fd(), cmd, &mut arg)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    arg.truncate(size);
    if cmd == FIEMAP {
        // The count the program asked for, not the capped one.
        let asked = cx.read_mem(cx.arg(2) + 24, 4).map_err(mem_errno)?;
        arg[24..28].copy_from_slice(&asked);
    }
    cx.write_mem(cx.arg(2), &arg).map_err(mem_errno)?;
    Ok(r)
}

fn mem_errno(e: MemoryError) -> i32 {
    match e {
        MemoryError::Gone => libc::ESRCH,
        _ => libc::EFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_system_types_are_known_and_terminal_and_socket_ones_are_not() {
        for cmd in [
            0x8008_6601u64,
            0x4004_9409,
            0x801c_581f,
            0x4100_9432,
            0xc020_660b,
        ] {
            assert!(is_fs_request(cmd), "{cmd:#x}");
        }
        // TCGETS, FIONREAD, FIONBIO, FIOCLEX, SIOCGIFCONF, TIOCGWINSZ
        for cmd in [0x5401u64, 0x541b, 0x5421, 0x5451, 0x8912, 0x5413] {
            assert!(!is_fs_request(cmd), "{cmd:#x}");
        }
        for (cmd, _) in READS {
            assert!(is_fs_request(cmd), "{cmd:#x}");
        }
    }

    #[test]
    fn the_filter_stops_file_system_types_on_the_low_word_only() {
        use crate::filter::interp::{run, verify, Data};
        for arch in [crate::arch::Arch::X86_64, crate::arch::Arch::Aarch64] {
            let nr = crate::syscalls::number(arch, "ioctl").unwrap();
            let mut b = crate::filter::FilterBuilder::new(arch);
            for check in checks() {
                b.notify_if(nr, vec![check]).unwrap();
            }
            let f = b.build().unwrap();
            verify(f.instructions());
            let verdict = |req: u64| {
                run(
                    f.instructions(),
                    &Data::new(arch, nr).with_args([3, req, 0x1000, 0, 0, 0]),
                )
                .0
            };
            let notify = libc::SECCOMP_RET_USER_NOTIF;
            let allow = libc::SECCOMP_RET_ALLOW;
            // btrfs snapshot, FICLONE, FIDEDUPERANGE, the label, ext4's
            // and fscrypt's 'f', XFS's 'X', f2fs, FS_IOC_GETFSUUID; also
            // sign-extended, and with garbage in the high word.
            for req in [
                0x5000_940eu64,
                0x4004_9409,
                0xc018_9436,
                0x4100_9432,
                0x0000_660c,
                0x800c_6613,
                0xc018_587d,
                0x0000_f501,
                0x8011_1500,
                0xffff_ffff_8008_6601,
                0x1234_5678_4004_9409,
            ] {
                assert_eq!(verdict(req), notify, "{arch:?} {req:#x}");
            }
            // TCGETS, FIONREAD, FIONBIO, FIOCLEX, TIOCGWINSZ, SIOCGIFCONF,
            // FIBMAP, and TCGETS with a file-system type in the high word
            // (which the kernel never reads).
            for req in [
                0x5401u64,
                0x541b,
                0x5421,
                0x5451,
                0x5413,
                0x8912,
                0x1,
                0x0000_9466_0000_5401,
            ] {
                assert_eq!(verdict(req), allow, "{arch:?} {req:#x}");
            }
        }
    }
}
