//! The `unotify` command's C entry point. Not part of the library: the
//! binary (`src/bin/unotify/main.rs`, `#![no_main]`) includes this file
//! with `#[path]`, so that its one unsafe attribute (`no_mangle`) lives
//! here with the crate's other unsafe code.
//!
//! Why not the Rust runtime's own `main`: its start-up costs a program
//! that ends in about a millisecond 60-70 µs on the VM measured (README,
//! "Start-up"), mostly to find the main thread's stack for a stack
//! overflow message (glibc's `pthread_getattr_np` reads and parses
//! `/proc/self/maps`, and asks for the CPU affinity), then an alternate
//! signal stack and two handlers. Kept of what it does: file descriptors
//! 0-2 opened on `/dev/null` when closed, `SIGPIPE` ignored (recorded
//! first, so that the program gets its caller's: `signals::record_inherited`), exit status
//! 101 after a panic, stdout flushed at exit. Left out: the stack overflow
//! message (an overflow of the main thread is a plain `SIGSEGV`) and the
//! main thread's name in panic messages (`<unnamed>`).
//!
//! `std::env::args_os` needs nothing of it: with glibc, std takes `argc`
//! and `argv` from its own initializer (`.init_array`), before `main`.

// The binary's one place that allows it (`[lints]` deny it elsewhere);
// every block below has a `// SAFETY:` line.
#![allow(unsafe_code)]

/// What the process runs, as the runtime would: `unotify_main`
/// (its return value is the exit status), after the set-up above.
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    standard_fds_open();
    // What the program inherits, before SIGPIPE and SIGCHLD change here.
    super::signals::record_inherited();
    // SAFETY: sets SIGPIPE's disposition to "ignore"; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(super::unotify_main).unwrap_or(101);
    // Flushes stdout (std's clean-up) and runs the C `atexit` handlers.
    std::process::exit(i32::from(code))
}

/// Opens `/dev/null` on each of the file descriptors 0-2 that is closed,
/// as the Rust runtime does (so that a file opened later never lands on
/// stdout); aborts if it cannot.
fn standard_fds_open() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: poll reads and writes three live pollfd structs.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if r != -1 {
            for pfd in fds {
                if pfd.revents & libc::POLLNVAL != 0 {
                    open_dev_null();
                }
            }
            return;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // (Where poll cannot tell, ask each descriptor.)
            Some(libc::EINVAL | libc::EAGAIN | libc::ENOMEM) => {
                for fd in 0..3 {
                    // SAFETY: F_GETFD takes an integer and reads no memory.
                    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                    {
                        open_dev_null();
                    }
                }
                return;
            }
            // SAFETY: abort takes no arguments and does not return.
            _ => unsafe { libc::abort() },
        }
    }
}

/// Opens `/dev/null` read-write on the lowest free descriptor, or aborts.
fn open_dev_null() {
    // SAFETY: open reads a NUL-terminated path.
    if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR, 0) } == -1 {
        // SAFETY: abort takes no arguments and does not return.
        unsafe { libc::abort() }
    }
}
