//! The C ABI (feature `capi`) from the outside: the header against the
//! cdylib's exported symbols, the C example host, a C host spawning
//! sandboxes from 8 threads (nothing leaked), and the Python binding from a
//! thread pool. Runs with `cargo test --release --features capi`, which also
//! builds the cdylib these programs load.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the `libunotify.so` built with this test (the
/// same `cargo test` invocation, so with the `capi` feature).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().expect("profile dir")] {
        if dir.join("libunotify.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "no libunotify.so next to {}; the [lib] crate-type must include cdylib",
        exe.display()
    );
}

/// Compiles C host `src` against the header and the cdylib.
fn build_host(name: &str, src: &Path) -> PathBuf {
    let lib = lib_dir();
    let mut source = std::fs::read_to_string(src).expect("read C host source");
    // The header is part of what is compiled: a changed header rebuilds.
    let header =
        std::fs::read_to_string(manifest().join("include/unotify.h")).expect("read the header");
    source.push_str(&format!(
        "\n/* header:\n{} */\n",
        header.replace("*/", "* /")
    ));
    let include = format!("-I{}", manifest().join("include").display());
    let libdir = format!("-L{}", lib.display());
    // DT_RPATH, not RUNPATH: it wins over the LD_LIBRARY_PATH cargo sets
    // (which lists target/release, where a stale `cargo build` copy of the
    // library may lie), so the host loads the library built with this test.
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display());
    common::build_c(
        name,
        &source,
        &[&include, &libdir, "-lunotify", &rpath, "-pthread"],
    )
}

/// Function names declared in `include/unotify.h` (comments stripped;
/// function-pointer typedefs, `(*name)(`, are not declarations).
fn header_functions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest().join("include/unotify.h")).expect("header");
    let mut code = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("closed comment") + start + 2;
        rest = &rest[end..];
    }
    code.push_str(rest);
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(off) = code[i..].find("unotify_") {
        let start = i + off;
        let end = start
            + code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(code.len() - start);
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let next = code[end..].trim_start().chars().next();
        if word_start && next == Some('(') {
            names.insert(code[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn header_and_exported_symbols_agree() {
    let so = lib_dir().join("libunotify.so");
    let out = StdCommand::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed: {:?}", out);
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect();
    let declared = header_functions();
    assert!(declared.len() > 40, "header parse found only {declared:?}");
    let missing: Vec<_> = declared.difference(&exported).collect();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    assert!(
        missing.is_empty() && undeclared.is_empty(),
        "include/unotify.h and {} disagree:\n declared, not exported: {missing:?}\n exported, not declared: {undeclared:?}",
        so.display()
    );
}

#[test]
fn c_example_logs_and_denies_openat() {
    let _dog = common::watchdog(Duration::from_secs(60), "C example host");
    let host = build_host(
        "capi-trap-openat",
        &manifest().join("examples/c/trap_openat.c"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "hidden\n").expect("write secret");
    let out = StdCommand::new(&host)
        .arg(&secret)
        .output()
        .expect("run C host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let denied = format!("openat {} -> EACCES", secret.display());
    assert!(stdout.contains(&denied), "no denial logged:\n{stdout}");
    assert!(
        stdout.contains("sh: denied"),
        "the shell read the secret:\n{stdout}"
    );
    assert!(
        stdout.contains("openat /etc/passwd\n"),
        "other opens not logged:\n{stdout}"
    );
    assert!(stdout.contains("sh: passwd ok"), "{stdout}");
    assert!(stdout.contains(", 1 denied;"), "{stdout}");
    assert!(stderr.is_empty(), "the host printed warnings:\n{stderr}");
}

#[test]
fn c_host_threads_spawn_200_sandboxes_without_leaks() {
    let _dog = common::watchdog(Duration::from_secs(240), "C host, 8 threads x 25 sandboxes");
    let host = build_host("capi-threads", &manifest().join("tests/capi_threads.c"));
    let out = StdCommand::new(&host)
        .arg("25")
        .output()
        .expect("run C host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "runs failed or something leaked:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("runs=200 bad=0"), "{stdout}");
}

/// Runs `bindings/python/<script>` with the system `python3` against the
/// library just built; returns its stdout after checking it succeeded and
/// printed nothing on stderr. (CI installs python3: a missing one fails.)
fn run_python_example(script: &str) -> String {
    let _dog = common::watchdog(Duration::from_secs(120), script);
    let out = StdCommand::new("python3")
        .arg(manifest().join("bindings/python").join(script))
        .env("UNOTIFY_LIB", lib_dir().join("libunotify.so"))
        .output()
        .expect("run python3 (the Python binding's tests need it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "python printed errors:\n{stderr}");
    stdout
}

#[test]
fn python_binding_from_a_thread_pool() {
    let stdout = run_python_example("example_threads.py");
    assert!(stdout.contains("24 secrets denied"), "{stdout}");
    assert!(
        stdout.contains("policy, inject, hold/release, denied paths, pause, fs: 0 failures"),
        "{stdout}"
    );
}

#[test]
fn python_binding_in_an_asyncio_loop_with_deferred_handlers() {
    run_python_example("example_asyncio.py");
}

/// `Libs.private` of `unotify.pc`: what a static link needs besides the
/// archive.
fn pc_private_libs() -> Vec<String> {
    let pc = std::fs::read_to_string(manifest().join("unotify.pc")).expect("read unotify.pc");
    let line = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:"))
        .expect("unotify.pc has Libs.private");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn c_example_links_statically_with_the_pkg_config_flags() {
    let _dog = common::watchdog(Duration::from_secs(120), "static C example host");
    if let Ok(out) = StdCommand::new("pkg-config")
        .arg("--validate")
        .arg(manifest().join("unotify.pc"))
        .output()
    {
        assert!(
            out.status.success(),
            "pkg-config rejects unotify.pc: {out:?}"
        );
    }
    let archive = lib_dir().join("libunotify.a");
    assert!(archive.exists(), "no {}", archive.display());
    let source = std::fs::read_to_string(manifest().join("examples/c/trap_openat.c"))
        .expect("read C example");
    let include = format!("-I{}", manifest().join("include").display());
    let archive = archive.display().to_string();
    let mut flags = vec![include.as_str(), archive.as_str()];
    let private = pc_private_libs();
    flags.extend(private.iter().map(String::as_str));
    let host = common::build_c("capi-trap-openat-static", &source, &flags);
    let out = StdCommand::new(&host)
        .arg("/etc/hostname")
        .output()
        .expect("run static C host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("openat /etc/hostname -> EACCES"),
        "{stdout}"
    );
}

/// `unotify.pc` used as a host would after installing under a prefix:
/// `pkg-config --define-variable=prefix=... --cflags --libs unotify`, with
/// a prefix whose `include/` and `lib/` are the repository's header and
/// the library built with this test; the C example compiled with exactly
/// those flags runs.
#[test]
fn c_example_builds_with_pkg_config_under_another_prefix() {
    let _dog = common::watchdog(Duration::from_secs(120), "pkg-config C example host");
    let prefix = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(manifest().join("include"), prefix.path().join("include"))
        .expect("symlink include");
    std::os::unix::fs::symlink(lib_dir(), prefix.path().join("lib")).expect("symlink lib");
    let out = StdCommand::new("pkg-config")
        .arg(format!(
            "--define-variable=prefix={}",
            prefix.path().display()
        ))
        .args(["--cflags", "--libs", "unotify"])
        .env("PKG_CONFIG_PATH", manifest())
        .output()
        .expect("run pkg-config (install it: .ci/run does)");
    assert!(out.status.success(), "pkg-config failed: {out:?}");
    let flags = String::from_utf8(out.stdout).expect("UTF-8 flags");
    let want_i = format!("-I{}/include", prefix.path().display());
    let want_l = format!("-L{}/lib", prefix.path().display());
    assert!(
        flags.contains(&want_i) && flags.contains(&want_l) && flags.contains("-lunotify"),
        "prefix not applied: {flags}"
    );
    let source = std::fs::read_to_string(manifest().join("examples/c/trap_openat.c"))
        .expect("read C example");
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", lib_dir().display());
    let mut args: Vec<&str> = flags.split_whitespace().collect();
    args.push(&rpath);
    let host = common::build_c("capi-trap-openat-pkg-config", &source, &args);
    let run = StdCommand::new(&host)
        .arg("/etc/hostname")
        .output()
        .expect("run C host");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(7), "{stdout}");
    assert!(
        stdout.contains("openat /etc/hostname -> EACCES"),
        "{stdout}"
    );
}

#[test]
fn header_structs_have_the_library_layout() {
    use std::mem::{offset_of, size_of};
    use unotify::sys::capi::child::UnotifyStats as S;
    use unotify::sys::capi::handler::{UnotifyAction as A, UnotifyNotif as N};
    use unotify::sys::capi::policy::UnotifyPolicyEvent as E;
    let host = build_host("capi-abi", &manifest().join("tests/capi_abi.c"));
    let out = StdCommand::new(&host)
        .arg("layout")
        .output()
        .expect("run C host");
    let c = String::from_utf8_lossy(&out.stdout);
    let rust = format!(
        "sizes notif={} action={} stats={} policy_event={}\noffsets",
        size_of::<N>(),
        size_of::<A>(),
        size_of::<S>(),
        size_of::<E>()
    );
    let mut rust = rust;
    for (name, off) in [
        ("unotify_notif.pid", offset_of!(N, pid)),
        ("unotify_notif.nr", offset_of!(N, nr)),
        ("unotify_notif.arch", offset_of!(N, arch)),
        (
            "unotify_notif.instruction_pointer",
            offset_of!(N, instruction_pointer),
        ),
        ("unotify_notif.args", offset_of!(N, args)),
        ("unotify_action.errno_value", offset_of!(A, errno_value)),
        ("unotify_action.value", offset_of!(A, value)),
        ("unotify_action.fd", offset_of!(A, fd)),
        ("unotify_action.fd_flags", offset_of!(A, fd_flags)),
        ("unotify_action.signal", offset_of!(A, signal)),
        ("unotify_action.target_fd", offset_of!(A, target_fd)),
        ("unotify_action.defer_fn", offset_of!(A, defer_fn)),
        ("unotify_action.defer_free", offset_of!(A, defer_free)),
        ("unotify_action.defer_user", offset_of!(A, defer_user)),
        ("unotify_stats.held", offset_of!(S, held)),
        ("unotify_policy_event.category", offset_of!(E, category)),
        ("unotify_policy_event.pid", offset_of!(E, pid)),
        ("unotify_policy_event.parent_pid", offset_of!(E, parent_pid)),
        (
            "unotify_policy_event.addr_family",
            offset_of!(E, addr_family),
        ),
        ("unotify_policy_event.addr", offset_of!(E, addr)),
        ("unotify_policy_event.port", offset_of!(E, port)),
        ("unotify_policy_event.has_size", offset_of!(E, has_size)),
        ("unotify_policy_event.size", offset_of!(E, size)),
        ("unotify_policy_event.argc", offset_of!(E, argc)),
        ("unotify_policy_event.argv", offset_of!(E, argv)),
        ("unotify_policy_event.denied", offset_of!(E, denied)),
        ("unotify_policy_event.held", offset_of!(E, held)),
    ] {
        rust.push_str(&format!(" {name}={off}"));
    }
    assert_eq!(
        c.trim_end(),
        rust,
        "include/unotify.h and src/sys/capi disagree on a struct layout"
    );
}

#[test]
fn c_abi_contract() {
    let _dog = common::watchdog(Duration::from_secs(120), "C ABI contract host");
    let host = build_host("capi-abi", &manifest().join("tests/capi_abi.c"));
    let out = StdCommand::new(&host).output().expect("run C host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("capi_abi: 0 failures"), "{stdout}");
}

#[test]
fn python_binding_reviews_a_workdir_and_runs_in_a_chroot() {
    let stdout = run_python_example("example_workdir.py");
    assert!(
        stdout.contains("reviewed and committed: new.txt added, old.txt deleted, util.h modified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("workdir and chroot: 0 failures"),
        "{stdout}"
    );
}
