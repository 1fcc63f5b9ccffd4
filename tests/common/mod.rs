//! Helpers shared by the integration tests: building small C programs that
//! run inside the sandbox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::Mutex;

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Directory for test artefacts, inside the target dir.
pub fn artefact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unotify-tests");
    std::fs::create_dir_all(&dir).expect("create test artefact dir");
    dir
}

/// Compiles C `source` into an executable named `name` (cached by content)
/// and returns its path. Extra `flags` go to gcc (e.g. "-pthread").
pub fn build_c(name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = artefact_dir();
    let hash = {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        flags.hash(&mut h);
        h.finish()
    };
    let exe = dir.join(format!("{name}-{hash:016x}"));
    if exe.exists() {
        return exe;
    }
    let src = dir.join(format!("{name}-{hash:016x}.c"));
    std::fs::write(&src, source).expect("write C source");
    let tmp = dir.join(format!("{name}-{hash:016x}.tmp{}", std::process::id()));
    let out = StdCommand::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(flags)
        .output()
        .expect("run cc (install gcc)");
    assert!(
        out.status.success(),
        "compiling {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("move compiled program into place");
    exe
}

/// Reads all of a piped child stream.
pub fn read_all(f: &mut Option<std::fs::File>) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(f) = f.as_mut() {
        f.read_to_string(&mut s).expect("read child output");
    }
    s
}

/// Aborts the whole test process if it is not dropped within its limit, so
/// a hang becomes a clear failure instead of a stuck test run. Dropping it
/// joins its thread.
pub struct Watchdog {
    disarm: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a [`Watchdog`] for `what`, aborting after `limit`.
pub fn watchdog(limit: std::time::Duration, what: &str) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let what = what.to_owned();
    let thread = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!(
                "WATCHDOG: {what} did not finish within {limit:?}; aborting the test process"
            );
            std::process::abort();
        }
    });
    Watchdog {
        disarm: Some(tx),
        thread: Some(thread),
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads `f` line by line on a thread; each line (without its newline) is
/// sent on the returned channel. The channel disconnects at end of file.
pub fn line_reader(f: std::fs::File) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(f).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// The next line from a [`line_reader`], or a panic naming `what` after
/// `timeout` or at end of file.
pub fn next_line(
    rx: &std::sync::mpsc::Receiver<String>,
    timeout: std::time::Duration,
    what: &str,
) -> String {
    match rx.recv_timeout(timeout) {
        Ok(l) => l,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no output line within {timeout:?} while {what}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("child output ended while {what}")
        }
    }
}

/// C source of `calls`, a program making trapped `getppid` calls from
/// several threads: `calls NTHREADS NCALLS v|q ARG...`. Call `i` of thread
/// `t` is `syscall(SYS_getppid, ARG[i % nargs], t, i)`. With `v` each call
/// prints `r <thread> <i> <arg> <result> <elapsed_us>` (result: the return
/// value, or `-errno`). At the end it prints `count <result> <n>` per
/// distinct result (at most 16, then `other <n>`), `done`, and exits 0 once
/// its standard input reaches end of file.
pub const CALLS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAXV 16
struct tally { long val[MAXV]; long n[MAXV]; int used; long other; };

static int nthreads, ncalls, verbose, nargs;
static long *args;
static struct tally *tallies;

static long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void add(struct tally *t, long v, long n) {
    for (int i = 0; i < t->used; i++)
        if (t->val[i] == v) { t->n[i] += n; return; }
    if (t->used < MAXV) { t->val[t->used] = v; t->n[t->used] = n; t->used++; }
    else t->other += n;
}

static void *run(void *p) {
    long t = (long)p;
    for (int i = 0; i < ncalls; i++) {
        long a = args[i % nargs];
        long start = now_us();
        long r = syscall(SYS_getppid, a, t, (long)i);
        if (r == -1) r = -errno;
        add(&tallies[t], r, 1);
        if (verbose) {
            printf("r %ld %d %ld %ld %ld\n", t, i, a, r, now_us() - start);
            fflush(stdout);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: calls NTHREADS NCALLS v|q ARG...\n"); return 2; }
    nthreads = atoi(argv[1]);
    ncalls = atoi(argv[2]);
    verbose = argv[3][0] == 'v';
    nargs = argc - 4;
    args = calloc(nargs, sizeof(long));
    for (int i = 0; i < nargs; i++) args[i] = atol(argv[4 + i]);
    tallies = calloc(nthreads, sizeof(struct tally));
    pthread_t *th = calloc(nthreads, sizeof(pthread_t));
    for (long t = 0; t < nthreads; t++)
        if (pthread_create(&th[t], NULL, run, (void *)t) != 0) { perror("pthread_create"); return 3; }
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    struct tally all = {0};
    for (int t = 0; t < nthreads; t++) {
        for (int i = 0; i < tallies[t].used; i++) add(&all, tallies[t].val[i], tallies[t].n[i]);
        all.other += tallies[t].other;
    }
    for (int i = 0; i < all.used; i++) printf("count %ld %ld\n", all.val[i], all.n[i]);
    if (all.other) printf("other %ld\n", all.other);
    printf("done\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
"#;

/// One `r` line of [`CALLS_C`]'s verbose output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLine {
    pub thread: i64,
    pub index: i64,
    pub arg: i64,
    /// Return value, or `-errno`.
    pub result: i64,
    pub elapsed_us: i64,
}

/// Parses an `r` line of [`CALLS_C`]; `None` for other lines.
pub fn parse_call_line(line: &str) -> Option<CallLine> {
    let mut it = line.split_whitespace();
    if it.next()? != "r" {
        return None;
    }
    let mut n = || it.next().and_then(|s| s.parse::<i64>().ok());
    Some(CallLine {
        thread: n()?,
        index: n()?,
        arg: n()?,
        result: n()?,
        elapsed_us: n()?,
    })
}

/// Reads the summary of [`CALLS_C`] (the `count` lines up to `done`,
/// skipping `r` lines) into `(result, n)` pairs.
pub fn read_counts(
    rx: &std::sync::mpsc::Receiver<String>,
    timeout: std::time::Duration,
) -> Vec<(i64, i64)> {
    let mut counts = Vec::new();
    loop {
        let line = next_line(rx, timeout, "waiting for the summary of `calls`");
        let mut it = line.split_whitespace();
        match it.next() {
            Some("done") => return counts,
            Some("count") => {
                let v: i64 = it.next().and_then(|s| s.parse().ok()).expect("count value");
                let n: i64 = it.next().and_then(|s| s.parse().ok()).expect("count n");
                counts.push((v, n));
            }
            Some("other") => panic!("`calls` saw more than 16 distinct results: {line}"),
            _ => {}
        }
    }
}

/// Headers and `sys3` for test programs: `sys3` returns a raw system call's
/// value, or `-errno` on failure.
pub const C_PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static long sys3(long nr, long a, long b, long c) {
    long r = syscall(nr, a, b, c);
    return r == -1 ? -errno : r;
}
"#;

/// After [`C_PRELUDE`]: calls `getppid` once per argument, passing the
/// argument as the (ignored) first syscall argument so that handlers can
/// tell the calls apart, and prints each result on its own line.
pub const GETPPID_C: &str = r#"
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        dprintf(1, "%ld\n", sys3(SYS_getppid, atol(argv[i]), 0, 0));
    return 0;
}
"#;

/// After [`C_PRELUDE`]: prints "ready", then calls `getppid` once per
/// argument like [`GETPPID_C`].
pub const READY_GETPPID_C: &str = r#"
int main(int argc, char **argv) {
    dprintf(1, "ready\n");
    for (int i = 1; i < argc; i++)
        dprintf(1, "%ld\n", sys3(SYS_getppid, atol(argv[i]), 0, 0));
    return 0;
}
"#;

/// The built `unotify` command, with a clean logging environment and no stdin.
pub fn unotify() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_unotify"));
    cmd.env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    cmd
}

/// `unotify run --workdir . --max-disk CAP --on-exit ON_EXIT -- EXE ARGS`
/// in `dir`, on the seccomp route (which `--max-disk` takes).
pub fn run_capped(
    dir: &Path,
    cap: &str,
    on_exit: &str,
    exe: &Path,
    args: &[&std::ffi::OsStr],
) -> std::process::Output {
    unotify()
        .env("UNOTIFY_WORKDIR_ROUTE", "seccomp")
        .current_dir(dir)
        .args(["run", "--workdir", ".", "--max-disk", cap])
        .args(["--on-exit", on_exit, "--"])
        .arg(exe)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `unotify ARGS...` to completion.
pub fn run_unotify(args: &[&str]) -> std::process::Output {
    unotify().args(args).output().expect("start unotify")
}

/// A command's stderr as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a command succeeded, showing its status and output if not.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout_of(out),
        stderr_of(out)
    );
}

/// A command's stdout as text.
pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Spawns `exe ARGS` under `sandbox` with stdout piped.
pub fn spawn_piped(
    sandbox: &unotify::Sandbox,
    exe: &std::path::Path,
    args: &[&str],
) -> unotify::Child {
    sandbox
        .spawn(
            unotify::Command::new(exe)
                .args(args)
                .stdout(unotify::Stdio::Piped),
        )
        .expect("spawn the sandboxed program")
}

/// Reads the child's whole output, then waits for it.
pub fn finish(mut child: unotify::Child) -> (String, std::process::ExitStatus) {
    let out = read_all(&mut child.stdout);
    let status = child.wait().expect("wait for the child");
    (out, status)
}

/// Runs `exe ARGS` under `sandbox` with stdout piped; returns (stdout, status).
pub fn run_piped(
    sandbox: &unotify::Sandbox,
    exe: &std::path::Path,
    args: &[&str],
) -> (String, std::process::ExitStatus) {
    finish(spawn_piped(sandbox, exe, args))
}

/// Runs and checks that the program exited 0, returning its output lines.
pub fn run_ok(sandbox: &unotify::Sandbox, exe: &std::path::Path, args: &[&str]) -> Vec<String> {
    let (out, status) = run_piped(sandbox, exe, args);
    assert_eq!(
        status.code(),
        Some(0),
        "program failed ({status:?}); output: {out:?}"
    );
    out.lines().map(str::to_owned).collect()
}

/// Writes a small C project into `dir`: `files` source files of a few
/// functions each, a `main.c` that calls them all, a header and a Makefile
/// (`make -jN` builds `prog`, which prints the sum of what they return).
pub fn c_project(dir: &Path, files: usize) {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).expect("create project dir");
    let mut header = String::from("#pragma once\n");
    let mut main = String::from(
        "#include <stdio.h>\n#include \"parts.h\"\nint main(void) {\n    long sum = 0;\n",
    );
    for i in 0..files {
        let mut src = String::from("#include <string.h>\n#include \"parts.h\"\n");
        for f in 0..8 {
            writeln!(
                src,
                "static long helper{f}(long x) {{ char b[64]; memset(b, {f}, sizeof b); return x * {f} + b[{f}]; }}"
            )
            .unwrap();
        }
        writeln!(src, "long part{i}(void) {{ long s = 0;").unwrap();
        for f in 0..8 {
            writeln!(src, "    s += helper{f}({i});").unwrap();
        }
        src.push_str("    return s; }\n");
        std::fs::write(dir.join(format!("part{i}.c")), src).expect("write source");
        writeln!(header, "long part{i}(void);").unwrap();
        writeln!(main, "    sum += part{i}();").unwrap();
    }
    main.push_str("    printf(\"sum=%ld\\n\", sum);\n    return 0;\n}\n");
    std::fs::write(dir.join("parts.h"), header).expect("write header");
    std::fs::write(dir.join("main.c"), main).expect("write main");
    let objs: Vec<String> = (0..files)
        .map(|i| format!("part{i}.o"))
        .chain(["main.o".to_owned()])
        .collect();
    let makefile = format!(
        "CC = cc\nCFLAGS = -O2\nprog: {objs}\n\t$(CC) -o $@ {objs}\n%.o: %.c parts.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\nclean:\n\trm -f prog *.o\n",
        objs = objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), makefile).expect("write Makefile");
}

/// The sum `prog` of [`c_project`] prints for `files` files.
pub fn c_project_sum(files: usize) -> i64 {
    // helperF(i) = i * F + F (the byte F read back).
    (0..files as i64)
        .map(|i| (0..8).map(|f| i * f + f).sum::<i64>())
        .sum()
}

/// Pids of live `sleep` processes with `marker` as an argument (not
/// `unotify run -- sleep MARKER` itself, which has it too).
#[allow(dead_code)]
pub fn sleeps_with_arg(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&b| b == 0);
        let is_sleep = args
            .next()
            .is_some_and(|argv0| argv0 == b"sleep" || argv0.ends_with(b"/sleep"));
        if is_sleep && args.any(|arg| arg == marker.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Runs `prog args` in `dir`, directly (`policy` `None`) or under
/// `unotify run POLICY`, and returns the wall time in seconds; the run
/// must succeed and print nothing on stderr (for the benches).
#[allow(dead_code)]
pub fn timed_run(policy: Option<&[&str]>, prog: &str, args: &[&str], dir: &Path) -> f64 {
    let words: Vec<&str> = match policy {
        None => Vec::new(),
        Some(policy) => [env!("CARGO_BIN_EXE_unotify"), "run"]
            .into_iter()
            .chain(policy.iter().copied())
            .chain(["--"])
            .collect(),
    };
    let launcher: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
    timed_launch(&launcher, prog, args, dir)
}

/// Runs `prog args` in `dir` behind the `launcher` command's words (none:
/// directly), and returns the wall time in seconds; the run must succeed
/// and print nothing on stderr (for the benches).
#[allow(dead_code)]
pub fn timed_launch(launcher: &[&std::ffi::OsStr], prog: &str, args: &[&str], dir: &Path) -> f64 {
    let mut cmd = match launcher.split_first() {
        None => std::process::Command::new(prog),
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(prog);
            c
        }
    };
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    let t = std::time::Instant::now();
    let out = cmd.output().expect("run");
    let took = t.elapsed().as_secs_f64();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{prog} {args:?} behind {launcher:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// A bench's option `name VALUE` from its command line, or `default`.
pub fn bench_arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Interleaved rounds of one workload: each round runs it directly,
/// under plain `unotify run` and under `unotify run FLAGS`, so that the
/// three runs of a round share the machine's load.
pub struct Rounds {
    pub direct: Vec<f64>,
    pub plain: Vec<f64>,
    pub policy: Vec<f64>,
}

impl Rounds {
    /// `runs` rounds of `run` (`None`: directly; else the flags of
    /// `unotify run`), after one warm-up run under `flags`.
    pub fn take(runs: usize, run: &dyn Fn(Option<&[&str]>) -> f64, flags: &[&str]) -> Rounds {
        let bare: [&str; 0] = [];
        run(Some(flags));
        let mut r = Rounds {
            direct: Vec::new(),
            plain: Vec::new(),
            policy: Vec::new(),
        };
        for _ in 0..runs {
            r.direct.push(run(None));
            r.plain.push(run(Some(&bare)));
            r.policy.push(run(Some(flags)));
        }
        r
    }

    /// The median of each round's `policy / base` ratio (steadier than a
    /// ratio of medians on a shared machine), with its lowest and highest.
    pub fn ratio(&self, base: &[f64]) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self.policy.iter().zip(base).map(|(c, p)| c / p).collect();
        let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().cloned().fold(0.0, f64::max);
        (median(ratios), lo, hi)
    }

    /// The medians of the direct, plain and policy runs.
    pub fn medians(&self) -> (f64, f64, f64) {
        (
            median(self.direct.clone()),
            median(self.plain.clone()),
            median(self.policy.clone()),
        )
    }
}

/// A static program with no libc that writes `mark` and a newline, then
/// exits 0: it stands for a file the sandbox must never run, on its own or
/// as the ELF interpreter (`PT_INTERP`) of another program.
pub fn marker_program(name: &str, mark: &str) -> PathBuf {
    let src = format!(
        r#"
void _start(void) {{
    static const char m[] = "{mark}\n";
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(1), "D"(1), "S"(m), "d"(sizeof m - 1)
                     : "rcx", "r11", "memory");
    __asm__ volatile("syscall" : : "a"(60), "D"(0));
    for (;;) {{}}
}}
"#
    );
    build_c(name, &src, &["-static", "-nostdlib", "-fno-pie", "-no-pie"])
}

/// C: `run_child(path, out, &status)` forks, execs `path` (argv `{path}`)
/// with its stdout piped, reads its first 255 bytes into `out` (NUL
/// terminated), and waits for it. A child whose exec failed exits 100.
/// Returns -1 if no pipe could be made. Put it before the program using it.
pub const RUN_CHILD_C: &str = r#"
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static int run_child(const char *path, char out[256], int *status) {
    int p[2];
    if (pipe(p)) return -1;
    pid_t k = fork();
    if (k == 0) {
        dup2(p[1], 1);
        close(p[0]);
        char *a[] = {(char *)path, 0};
        execv(path, a);
        _exit(100);
    }
    close(p[1]);
    memset(out, 0, 256);
    int len = 0, r;
    while (len < 255 && (r = read(p[0], out + len, 255 - len)) > 0) len += r;
    close(p[0]);
    waitpid(k, status, 0);
    return 0;
}
"#;

/// A loop-mounted ext4 image whose files in `d/` and `bare/` (`v0`, `v1`,
/// ...) map their blocks the old way (no extents) on a file system that
/// has extents: `EXT4_IOC_MIGRATE` rewrites such a file's block map (and
/// sets its `e` flag), and ext4 takes it through a read-only fd. Unmounted
/// (and its loop device freed) when dropped.
pub struct IndirectExt4 {
    /// The mount point.
    pub mnt: PathBuf,
}

impl IndirectExt4 {
    /// Makes the image in `dir` with `files` files in each directory.
    pub fn new(dir: &Path, files: usize) -> IndirectExt4 {
        let img = dir.join("ext4.img");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", stderr_of(&out));
        };
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        run(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "^extent,^64bit,^flex_bg"])
            .arg(&img));
        let mount = |img: &Path| {
            run(std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(img)
                .arg(&mnt))
        };
        mount(&img);
        for sub in ["d", "bare"] {
            std::fs::create_dir(mnt.join(sub)).unwrap();
            for i in 0..files {
                std::fs::write(mnt.join(format!("{sub}/v{i}")), vec![b'x'; 20_000]).unwrap();
            }
        }
        run(std::process::Command::new("umount").arg(&mnt));
        run(std::process::Command::new("tune2fs")
            .args(["-O", "extent"])
            .arg(&img));
        mount(&img);
        IndirectExt4 { mnt }
    }

    /// How many files of `sub` have extents now.
    pub fn migrated(&self, sub: &str) -> usize {
        let out = std::process::Command::new("lsattr")
            .arg(self.mnt.join(sub))
            .output()
            .unwrap();
        stdout_of(&out)
            .lines()
            .filter(|l| l.split_whitespace().next().unwrap_or("").contains('e'))
            .count()
    }
}

impl Drop for IndirectExt4 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-d")
            .arg(&self.mnt)
            .status();
    }
}

/// Opens `DIR/v0` .. `DIR/v<N-1>` read-only (`migrate DIR N`) and asks
/// ext4 to convert each to extents (`EXT4_IOC_MIGRATE`, `_IO('f', 9)`),
/// which writes the file's block map; prints `leaks K`, K the calls that
/// succeeded.
pub const MIGRATE_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[2]), leaks = 0;
    for (int i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/v%d", argv[1], i);
        int fd = open(p, O_RDONLY);
        if (fd < 0) { perror(p); return 1; }
        if (ioctl(fd, _IO('f', 9), 0) == 0) leaks++;
        close(fd);
    }
    printf("leaks %d\n", leaks);
    return 0;
}
"#;

/// The bytes the files and directories under `dir` take (their blocks).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = std::fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_usage(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// The `ns_per_iter=` a bench client printed in `out`; an error if it
/// printed none, or a `fails=` count other than 0.
pub fn ns_per_iter(out: &str) -> Result<f64, String> {
    let v = out
        .split("ns_per_iter=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .ok_or_else(|| format!("no ns_per_iter in {out:?}"))?;
    if out.contains("fails=") && !out.contains("fails=0") {
        return Err(format!("some calls failed: {out:?}"));
    }
    v.parse().map_err(|e| format!("ns_per_iter {v:?}: {e}"))
}
