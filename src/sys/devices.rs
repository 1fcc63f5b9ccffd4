//! Block devices refused to a cgroup, in the kernel: the device controller
//! that file confinement needs (a root program reading a denied file's
//! blocks through `/dev/sdX`, or writing them, gets round every path rule).
//!
//! Two mechanisms, as the host offers them:
//! - cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program (`BLOCK_DENY`:
//!   refuse when the device is a block device, allow anything else)
//!   attached to the sandbox's v2 directory with `BPF_F_ALLOW_MULTI` (a
//!   cgroup made beneath it keeps it; every attached program must allow);
//! - cgroup v1: the `devices` controller, `b *:* rwm` written to the
//!   sandbox's directory's `devices.deny`.
//!
//! Both are checked by the kernel for the cgroup's tasks at every open of a
//! device node (`EPERM`), `mknod` of one, and block-device opens the kernel
//! makes for them (`swapon`, device-mapper tables). Called by `cgroup`
//! (the sandbox's [`Containment`](super::cgroup::Containment)); raw system
//! calls only.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

/// `bpf(2)` commands.
const BPF_PROG_LOAD: usize = 5;
const BPF_PROG_ATTACH: usize = 8;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE`, the attach type.
const ATTACH_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`.
const F_ALLOW_MULTI: u32 = 1 << 1;
/// `BPF_DEVCG_DEV_BLOCK`: the low 16 bits of `access_type`.
const DEVCG_DEV_BLOCK: i32 = 1;

/// One eBPF instruction (`struct bpf_insn`): `regs` holds the destination
/// register in its low nibble, the source in its high one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The device program. Its context (`struct bpf_cgroup_dev_ctx`, in r1) is
/// `{ u32 access_type; u32 major; u32 minor; }`, `access_type` being
/// `(access << 16) | device type`. Returns 1 to allow, 0 to refuse.
///
/// ```text
/// r2 = *(u32 *)(r1 + 0)   ; access_type
/// r2 &= 0xffff            ; the device type
/// r0 = 1                  ; allow ...
/// if r2 != BLOCK goto +1
/// r0 = 0                  ; ... but a block device
/// exit
/// ```
const BLOCK_DENY: [Insn; 6] = [
    insn(0x61, 2, 1, 0, 0),               // BPF_LDX | BPF_MEM | BPF_W
    insn(0x57, 2, 0, 0, 0xffff),          // BPF_ALU64 | BPF_AND | BPF_K
    insn(0xb7, 0, 0, 0, 1),               // BPF_ALU64 | BPF_MOV | BPF_K
    insn(0x55, 2, 0, 1, DEVCG_DEV_BLOCK), // BPF_JMP | BPF_JNE | BPF_K
    insn(0xb7, 0, 0, 0, 0),               // BPF_ALU64 | BPF_MOV | BPF_K
    insn(0x95, 0, 0, 0, 0),               // BPF_JMP | BPF_EXIT
];

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (the kernel takes a
/// shorter attr when the fields it does not get would be zero).
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: usize, attr: &mut T) -> io::Result<usize> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union
    // bpf_attr` of the size passed; the kernel reads it (and may write
    // back within it), and reads the memory its pointers name, which the
    // callers keep alive for the call.
    let r = unsafe {
        super::raw::syscall(
            libc::SYS_bpf,
            &[cmd, attr as *mut T as usize, std::mem::size_of::<T>()],
        )
    };
    if r < 0 {
        return Err(io::Error::from_raw_os_error((-r) as i32));
    }
    Ok(r as usize)
}

/// Loads [`BLOCK_DENY`]; its fd.
fn load_block_deny() -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"unotify_blk\0");
    let mut attr = ProgLoad {
        prog_type: PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: BLOCK_DENY.len() as u32,
        insns: BLOCK_DENY.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..ProgLoad::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just made this fd for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The device program (`BLOCK_DENY`), loaded once per process (an error is not kept: the
/// next call tries again). Loading it needs `CAP_BPF` or `CAP_SYS_ADMIN`:
/// [`cgroup::device_mode`](super::cgroup::device_mode) asks for it to know
/// whether the v2 mechanism can be had.
pub fn block_program() -> io::Result<BorrowedFd<'static>> {
    static PROG: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = PROG.get() {
        return Ok(fd.as_fd());
    }
    let fd = load_block_deny()?;
    // (A concurrent first load: one of the two fds is kept, the other closed.)
    Ok(PROG.get_or_init(|| fd).as_fd())
}

/// Refuses block devices to the tasks of the v2 cgroup `dir` (an `O_RDONLY
/// | O_DIRECTORY` fd of it) and of the cgroups made beneath it, for as long
/// as the cgroup exists (the attachment holds the program).
pub fn refuse_block_v2(dir: BorrowedFd<'_>) -> io::Result<()> {
    let prog = block_program()?;
    let mut attr = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: ATTACH_CGROUP_DEVICE,
        attach_flags: F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Refuses block devices to the tasks of the v1 `devices` cgroup `dir`
/// (and to the cgroups made beneath it later, which start with its list).
pub fn refuse_block_v1(dir: &Path) -> io::Result<()> {
    fs::write(dir.join("devices.deny"), "b *:* rwm")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    /// A block device node (a loop device's number: the check is the
    /// device cgroup's, made before the driver is asked) in a fresh
    /// directory, and the directory.
    fn block_node() -> (PathBuf, CString) {
        let dir = std::env::temp_dir().join(format!("unotify-devices-{}", std::process::id()));
        let _ = fs::create_dir(&dir);
        let node = dir.join("blk");
        let _ = fs::remove_file(&node);
        let c = CString::new(node.as_os_str().as_bytes()).unwrap();
        crate::sys::path::mknodat(None, &c, libc::S_IFBLK | 0o600, libc::makedev(7, 0) as u32)
            .expect("mknod a block node (run as root)");
        (dir, c)
    }

    /// What a child placed in the cgroup whose `cgroup.procs` is `procs`
    /// gets from opening `node`, and from making a block node beside it:
    /// (open errno, mknod errno), 0 for success.
    fn child_in(procs: &Path, node: &CString) -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let again = CString::new([node.as_bytes(), b"2"].concat()).unwrap();
        // SAFETY: the child makes raw calls only, then `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut go = [0u8; 1];
            // SAFETY: raw calls on live buffers; the child never returns.
            unsafe {
                libc::read(fds[0], go.as_mut_ptr().cast(), 1);
                let fd = libc::open(node.as_ptr(), libc::O_RDONLY);
                let open_err = if fd < 0 { *libc::__errno_location() } else { 0 };
                let m = libc::mknod(again.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0));
                let mknod_err = if m < 0 { *libc::__errno_location() } else { 0 };
                libc::unlink(again.as_ptr());
                // (An exit status has 8 bits: both errnos are small.)
                libc::_exit((open_err & 0xf) | ((mknod_err & 0xf) << 4));
            }
        }
        fs::write(procs, pid.to_string()).unwrap();
        // SAFETY: writes one byte from a live buffer; closes our fds.
        unsafe {
            libc::write(fds[1], b"g".as_ptr().cast(), 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let mut st = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        let code = libc::WEXITSTATUS(st);
        (code & 0xf, code >> 4)
    }

    fn hierarchy(v2: bool) -> Option<PathBuf> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let fstype = right.split(' ').next()?;
                let point = left.split(' ').nth(4)?;
                let opts = right.split(' ').nth(2)?;
                let want = if v2 {
                    fstype == "cgroup2"
                } else {
                    fstype == "cgroup" && opts.split(',').any(|o| o == "devices")
                };
                want.then(|| PathBuf::from(point))
            })
            .next()
    }

    /// Each mechanism refuses a block device's open and `mknod` to a
    /// task of the cgroup (and a task outside still opens it).
    #[test]
    fn each_mechanism_refuses_block_devices() {
        let (dir, node) = block_node();
        let mut tried = 0;
        for v2 in [true, false] {
            let Some(root) = hierarchy(v2) else { continue };
            let cg = root.join(format!("unotify-devtest-{}-{v2}", std::process::id()));
            fs::create_dir(&cg).unwrap();
            // Before: a task of the fresh cgroup opens it.
            let before = child_in(&cg.join("cgroup.procs"), &node);
            if v2 {
                let d = fs::File::open(&cg).unwrap();
                refuse_block_v2(std::os::fd::AsFd::as_fd(&d)).unwrap();
            } else {
                refuse_block_v1(&cg).unwrap();
            }
            let after = child_in(&cg.join("cgroup.procs"), &node);
            fs::remove_dir(&cg).unwrap();
            assert_eq!(before, (0, 0), "v2 {v2}: open and mknod before the refusal");
            assert_eq!(
                after,
                (libc::EPERM, libc::EPERM),
                "v2 {v2}: open and mknod after it"
            );
            tried += 1;
        }
        let _ = fs::remove_dir_all(&dir);
        assert!(tried > 0, "no cgroup hierarchy to test in");
    }
}
