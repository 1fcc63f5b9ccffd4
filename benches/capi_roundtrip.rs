//! The trapped-call round trip through the C ABI against a Rust closure:
//! `benches/openloop.c` (`openat`+`close` of `/dev/null`, one thread) with
//! `openat` trapped, each handler either answering CONTINUE at once
//! ("continue") or first reading the path (`read_cstr` /
//! `unotify_ctx_read_cstr`, "read path").
//!
//! Headline ("continue"): in this one process, same run, rounds
//! interleaved (which goes first alternates), a Rust closure handler
//! against an `extern "C"` callback registered through the C ABI
//! (`unotify_builder_handle`: the adapter, its struct conversions and the
//! indirect call included); the median of the per-round ratios C/Rust, and
//! of each side. Only the handler differs. (A "read path" callback in Rust
//! would dereference the notification pointer, `unsafe` that benches may
//! not hold; that case is measured from the C host below.)
//!
//! Then, for reference: a C host process (`benches/capi_host.c`) linked
//! against the cdylib (`.so`) or the archive (`.a`) built with this bench;
//! those also differ in process, allocator and code layout.
//! `cargo bench --features capi --bench capi_roundtrip [-- ITERS ROUNDS]`.

use std::ffi::{c_int, c_void, CString};
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use unotify::{Command, HandlerCtx, NotifAction, Sandbox, Stdio};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn cc(out: &Path, src: &Path, flags: &[String]) -> BenchResult<()> {
    let status = std::process::Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(out)
        .arg(src)
        .args(flags)
        .status()?;
    if !status.success() {
        return Err(format!("cc failed to build {}", src.display()).into());
    }
    Ok(())
}

fn build_openloop() -> BenchResult<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/openloop.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openloop");
    cc(&out, &src, &[])?;
    Ok(out)
}

/// The C host, linked against the `libunotify.so` next to this bench
/// (`static_link`: against `libunotify.a` instead).
fn build_c_host(static_link: bool) -> BenchResult<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe()?;
    let lib = exe.parent().ok_or("no deps dir")?;
    if !lib.join("libunotify.so").exists() {
        return Err(format!("no libunotify.so in {}", lib.display()).into());
    }
    let name = if static_link {
        "capi_host_static"
    } else {
        "capi_host"
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut flags = vec![format!("-I{}", root.join("include").display())];
    if static_link {
        flags.push(lib.join("libunotify.a").display().to_string());
        let pc = std::fs::read_to_string(root.join("unotify.pc"))?;
        let private = pc
            .lines()
            .find_map(|l| l.strip_prefix("Libs.private:"))
            .ok_or("no Libs.private in unotify.pc")?;
        flags.extend(private.split_whitespace().map(str::to_owned));
    } else {
        flags.push(format!("-L{}", lib.display()));
        flags.push("-lunotify".to_owned());
        // DT_RPATH: wins over the LD_LIBRARY_PATH cargo sets (a stale copy).
        flags.push(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()));
    }
    cc(&out, &root.join("benches/capi_host.c"), &flags)?;
    Ok(out)
}

fn parse_ns(out: &str) -> BenchResult<f64> {
    let v = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ns_per_iter="))
        .ok_or_else(|| format!("no ns_per_iter in client output {out:?}"))?;
    Ok(v.parse()?)
}

fn rust_run(prog: &Path, iters: u64, read_path: bool) -> BenchResult<f64> {
    let b = Sandbox::builder();
    let b = if read_path {
        b.handle("openat", |cx: &HandlerCtx<'_>| {
            let _ = std::hint::black_box(cx.read_cstr(cx.arg(1), 4096));
            NotifAction::Continue
        })
    } else {
        b.handle("openat", |_cx: &HandlerCtx<'_>| NotifAction::Continue)
    };
    let sandbox = b.build()?;
    let mut out = tempfile::tempfile()?;
    let mut cmd = Command::new(prog);
    cmd.arg(iters.to_string())
        .arg("1")
        .stdout(Stdio::Fd(out.try_clone()?.into()));
    let status = sandbox.run(&mut cmd)?;
    if !status.success() {
        return Err(format!("client under the Rust handler failed: {status}").into());
    }
    let mut s = String::new();
    out.rewind()?;
    out.read_to_string(&mut s)?;
    parse_ns(&s)
}

fn c_run(host: &Path, prog: &Path, iters: u64, read_path: bool) -> BenchResult<f64> {
    let out = std::process::Command::new(host)
        .arg(prog)
        .arg(iters.to_string())
        .arg(if read_path { "read" } else { "continue" })
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "C host failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    parse_ns(&String::from_utf8_lossy(&out.stdout))
}

/// A C-ABI callback defined in Rust: it reads nothing (`*out` is preset
/// to CONTINUE), so it needs no pointer access.
extern "C" fn continue_cb(
    _user: *mut c_void,
    _n: *const unotify::sys::capi::handler::UnotifyNotif,
    _cx: *mut unotify::sys::capi::handler::UnotifyCtx,
    _out: *mut unotify::sys::capi::handler::UnotifyAction,
) -> c_int {
    0
}

/// The C ABI driven from this process: the adapter's cost, with nothing
/// else differing from the Rust closure run.
fn c_abi_in_process(prog: &Path, iters: u64) -> BenchResult<f64> {
    use unotify::sys::capi::builder::*;
    use unotify::sys::capi::child::*;
    let ok = |what: &str, rc: c_int| -> BenchResult<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("{what} failed: {rc}").into())
        }
    };
    let mut b = std::ptr::null_mut();
    ok("builder_new", unotify_builder_new(&mut b))?;
    let openat = CString::new("openat")?;
    ok(
        "handle",
        unotify_builder_handle(b, openat.as_ptr(), Some(continue_cb), std::ptr::null_mut()),
    )?;
    let mut sb = std::ptr::null_mut();
    ok("build", unotify_builder_build(b, &mut sb))?;
    let mut cmd = std::ptr::null_mut();
    let program = CString::new(prog.as_os_str().as_encoded_bytes())?;
    ok("command", unotify_command_new(program.as_ptr(), &mut cmd))?;
    let (n, one) = (CString::new(iters.to_string())?, CString::new("1")?);
    ok("arg", unotify_command_arg(cmd, n.as_ptr()))?;
    ok("arg", unotify_command_arg(cmd, one.as_ptr()))?;
    let mut out = tempfile::tempfile()?;
    ok(
        "stdio",
        unotify_command_stdio(cmd, 1, UNOTIFY_STDIO_FD, out.as_raw_fd()),
    )?;
    let mut status = 0;
    let rc = unotify_sandbox_run(sb, cmd, &mut status);
    unotify_command_free(cmd);
    unotify_sandbox_free(sb);
    ok("run", rc)?;
    if status != 0 {
        return Err(format!("client under the C ABI failed: status {status}").into());
    }
    let mut s = String::new();
    out.rewind()?;
    out.read_to_string(&mut s)?;
    parse_ns(&s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let iters: u64 = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20000);
    let rounds: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(15);
    let prog = build_openloop()?;
    let host = build_c_host(false)?;
    let host_static = build_c_host(true)?;
    println!("capi_roundtrip: openat+close x{iters}, 1 client thread, {rounds} interleaved rounds");
    println!("headline: same process, same run: C callback through the C ABI vs Rust closure");
    let (mut rust, mut c, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift hits both alike.
        let (r, i) = if round % 2 == 0 {
            let r = rust_run(&prog, iters, false)?;
            (r, c_abi_in_process(&prog, iters)?)
        } else {
            let i = c_abi_in_process(&prog, iters)?;
            (rust_run(&prog, iters, false)?, i)
        };
        rust.push(r);
        c.push(i);
        ratios.push(i / r);
    }
    let (lo, hi) = spread(&ratios);
    println!(
        "  continue   Rust closure {:>6.0} ns | C ABI callback {:>6.0} ns | C/Rust per round: median {:.3}x (range {lo:.3}..{hi:.3})",
        median(rust),
        median(c),
        median(ratios),
    );
    println!("  goal: C callback within 1.05x of the Rust closure");
    println!("reference: a C host process (other process, allocator, code layout), same rounds");
    for read_path in [false, true] {
        let (mut rust, mut c, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => rust.push(rust_run(&prog, iters, read_path)?),
                    1 => c.push(c_run(&host, &prog, iters, read_path)?),
                    _ => cs.push(c_run(&host_static, &prog, iters, read_path)?),
                }
            }
        }
        let (r, c, cs) = (median(rust), median(c), median(cs));
        println!(
            "  {:<9}  Rust closure {r:>6.0} ns | C host (.so) {c:>6.0} ns ({:.3}x) | C host (.a) {cs:>6.0} ns ({:.3}x)",
            if read_path { "read path" } else { "continue" },
            c / r,
            cs / r,
        );
    }
    Ok(())
}
