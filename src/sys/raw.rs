//! System calls that leave `errno` alone.
//!
//! The child of a `CLONE_VM` clone shares the parent's memory, including
//! the thread-local `errno` of the thread that cloned it: a libc wrapper
//! failing in the child would overwrite that thread's `errno` while it
//! runs on. These make the call directly and return the kernel's value:
//! non-negative on success, `-errno` on failure.

/// `syscall(nr, a0, ..., a5)`, returning the raw kernel result.
///
/// # Safety
/// The arguments must be valid for system call `nr` (pointers to live
/// memory of the right size, and so on).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention: number in rax, arguments
    // in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11. The
    // caller vouches for the arguments.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `syscall(nr, a0, ..., a5)`, returning the raw kernel result.
///
/// # Safety
/// The arguments must be valid for system call `nr` (pointers to live
/// memory of the right size, and so on).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention: number in x8, arguments
    // and result in x0..x5. The caller vouches for the arguments.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// [`syscall6`] with fewer arguments (the rest are zero).
///
/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub(crate) unsafe fn syscall(nr: libc::c_long, args: &[usize]) -> isize {
    let mut a = [0usize; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: forwarded; the caller vouches for the arguments.
    unsafe { syscall6(nr, a) }
}

/// `struct clone_args` of `clone3`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// `clone3(args)` whose child, on the stack `args` names, calls
/// `entry(arg)` and exits with its result. Returns the child's pid to the
/// parent, or `-errno`.
///
/// (`clone3` has no libc wrapper taking a function: the child returns
/// from the system call on its new stack, so it must leave the asm block
/// on its own, never returning into the parent's frames.)
///
/// # Safety
/// `args` must name a stack that stays mapped, and `arg` what `entry`
/// reads alive, until the child has exec'd or exited; with `CLONE_VM` the
/// child shares this memory and `entry` must obey the constraints of such
/// a child (raw system calls only, no locks, no allocation).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn clone3_with_entry(
    args: &CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention (see `syscall6`). In the
    // child (rax == 0) the stack pointer is the top of the new stack,
    // 16-byte aligned, so `call` enters `entry` as the ABI expects; r12
    // and r13 survive the system call in both; the child exits without
    // coming back here. The parent sees only rax, rcx and r11 changed.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 231", // exit_group
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// See the x86_64 version.
///
/// # Safety
/// As for the x86_64 version.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn clone3_with_entry(
    args: &CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention (see `syscall6`). In the
    // child (x0 == 0) sp is the top of the new stack, 16-byte aligned;
    // x21 and x22 survive the system call; the child exits without coming
    // back here. The parent sees only x0 changed.
    unsafe {
        core::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x0, x22",
            "blr x21",
            "mov x8, #94", // exit_group
            "svc 0",
            "brk #0",
            "2:",
            in("x8") libc::SYS_clone3,
            inlateout("x0") args as *const CloneArgs as usize as isize => ret,
            in("x1") std::mem::size_of::<CloneArgs>(),
            in("x21") entry,
            in("x22") arg,
            options(nostack),
        );
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_values_and_negative_errno_without_touching_errno() {
        // SAFETY: getpid takes no arguments.
        let pid = unsafe { syscall(libc::SYS_getpid, &[]) };
        assert_eq!(pid, std::process::id() as isize);
        // SAFETY: set errno of this thread to a marker value.
        unsafe { *libc::__errno_location() = 12345 };
        // SAFETY: close of an fd that cannot be open.
        let r = unsafe { syscall(libc::SYS_close, &[usize::MAX >> 2]) };
        assert_eq!(r, -(libc::EBADF as isize));
        // SAFETY: reading errno of this thread.
        assert_eq!(unsafe { *libc::__errno_location() }, 12345);
    }

    #[test]
    fn passes_all_six_arguments() {
        // mmap(addr, len, prot, flags, fd, offset): each argument shows in
        // the result. Page 0 of the file holds 'a', page 1 'b'.
        let page = 4096usize;
        let mut file = tempfile_in_tmp();
        use std::io::Write;
        file.write_all(&vec![b'a'; page]).unwrap();
        file.write_all(&vec![b'b'; page]).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: maps one page of a file we own, read-only, at a place the
        // kernel chooses; unmapped below.
        let addr = unsafe {
            syscall6(
                libc::SYS_mmap,
                [
                    0,
                    page,
                    libc::PROT_READ as usize,
                    libc::MAP_PRIVATE as usize,
                    file.as_raw_fd() as usize,
                    page,
                ],
            )
        };
        assert!(addr > 0, "mmap: {addr}");
        // SAFETY: the mapping made above is one readable page.
        let byte = unsafe { *(addr as *const u8) };
        // SAFETY: unmaps that page.
        unsafe { libc::munmap(addr as *mut libc::c_void, page) };
        assert_eq!(byte, b'b', "the offset (sixth argument) was honoured");
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("unotify-raw-{}", std::process::id()));
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
