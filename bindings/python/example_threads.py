"""A thread pool running sandboxes concurrently, each trapped openat
decided by a Python function (the multi-threaded host the parent project's
users have); then, on four threads at once, a policy function, fd
injection, a held call released from another thread, and a shared set of
denied paths. Exits 0 if every run saw its own denial and nothing else and
every check passed.

    UNOTIFY_LIB=target/release/libunotify.so python3 bindings/python/example_threads.py
"""

import errno
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unotify  # noqa: E402

RUNS, THREADS = 24, 6

lock = threading.Lock()
seen = {}  # path -> number of opens seen by the handler
handler_threads = set()


def on_openat(call):
    path = call.read_cstr(call.args[1]).decode(errors="replace")
    with lock:
        seen[path] = seen.get(path, 0) + 1
        handler_threads.add(threading.get_ident())
    if os.path.basename(path).startswith("secret-"):
        return unotify.Errno(errno.EACCES)
    return None


def one(sb, tmp, i):
    secret = os.path.join(tmp, f"secret-{i}")
    with open(secret, "w") as f:
        f.write("no\n")
    script = f'cat {secret} 2>/dev/null || echo denied-{i}; echo pid $$'
    r = sb.run(["/bin/sh", "-c", script], capture=True, timeout=30)
    return i, r


def main():
    with tempfile.TemporaryDirectory() as tmp, unotify.Sandbox(handlers={"openat": on_openat}) as sb:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda i: one(sb, tmp, i), range(RUNS)))
        bad = 0
        for i, r in results:
            if r.returncode != 0 or f"denied-{i}".encode() not in r.stdout or r.stats["received"] == 0:
                print(f"run {i}: status {r.returncode}, output {r.stdout!r}, stats {r.stats}")
                bad += 1
        secrets = [p for p in seen if "secret-" in p]
        print(f"python: {RUNS} runs on {THREADS} threads, {len(seen)} distinct paths, "
              f"{len(secrets)} secrets denied, handlers ran on {len(handler_threads)} threads, {bad} bad")
        with ThreadPoolExecutor(4) as pool:
            checks = [pool.submit(f, tmp) for f in (check_policy, check_inject, check_hold, check_denied_paths,
                                                    check_pause, check_fs)]
            failed = [msg for c in checks for msg in c.result()]
        for msg in failed:
            print("FAIL:", msg)
        print(f"python: policy, inject, hold/release, denied paths, pause, fs: {len(failed)} failures")
        return 1 if bad or failed or len(secrets) != RUNS else 0


def sh(sb, script):
    r = sb.run(["/bin/sh", "-c", script], capture=True, timeout=30)
    return r.returncode, r.stdout.decode()


def check_policy(tmp):
    """A policy function denies execs naming "forbidden" and, from its
    context, a path."""
    denied = os.path.join(tmp, "policy-denied")
    with open(denied, "w") as f:
        f.write("no\n")
    execs = []

    def policy(ev, ctx):
        ctx.deny_path(denied)
        if ev.category == "process" and ev.argv is not None:
            execs.append(ev.argv)
            if any(b"forbidden" in a for a in ev.argv):
                return unotify.Errno(errno.EACCES)
            return unotify.AUDIT
        return None

    with unotify.Sandbox(policy=policy) as sb:
        out = sh(sb, f"/bin/echo forbid''den 2>/dev/null || echo refused; /bin/echo fine; "
                     f"cat {denied} 2>/dev/null || echo blocked")
    fails = []
    if out != (0, "refused\nfine\nblocked\n"):
        fails.append(f"policy output {out!r}")
    if len(execs) < 3:
        fails.append(f"policy saw {execs!r}")
    return fails


def check_inject(tmp):
    """openat("/magic") answered with a host fd; the shell's chdir with an
    fd installed at 9."""
    magic = os.path.join(tmp, "magic")
    with open(magic, "w") as f:
        f.write("injected\n")

    def on_openat(call):
        if call.read_cstr(call.args[1]) == b"/magic":
            return unotify.InjectFd(os.open(magic, os.O_RDONLY | os.O_CLOEXEC))
        return None

    def on_chdir(call):
        return unotify.InjectFdAt(os.open(magic, os.O_RDONLY | os.O_CLOEXEC), 9)

    fails = []
    with unotify.Sandbox(handlers={"openat": on_openat, "chdir": on_chdir}) as sb:
        out = sh(sb, "cat /magic && cd / && cat <&9")
    if out != (0, "injected\ninjected\n"):
        fails.append(f"inject output {out!r}")
    return fails


def check_hold(tmp):
    """getppid held by the handler, released with 5150 from this thread."""
    handler_sup = []

    def on_getppid(call):
        with call.supervisor() as s:
            handler_sup.append(s.stats()["received"])
        return unotify.Hold()

    fails = []
    with unotify.Sandbox(handlers={"getppid": on_getppid}) as sb:
        child = sb.spawn(["/bin/sh", "-c", "echo $PPID"], capture=True)
        with child, child.supervisor() as sup:
            held = []
            for _ in range(2000):
                held = sup.held()
                if held:
                    break
                time.sleep(0.001)
            if len(held) != 1:
                fails.append(f"held {held!r}")
            else:
                sup.release(held[0][0], unotify.Return(5150))
                try:
                    sup.release(held[0][0], unotify.Return(1))
                    fails.append("a second release was accepted")
                except unotify.UnotifyError as e:
                    if e.code != -9:
                        fails.append(f"second release: {e}")
            out = child.stdout.read().decode()
            code = child.wait(30)
    if (code, out) != (0, "5150\n"):
        fails.append(f"hold output {(code, out)!r}")
    if not handler_sup or handler_sup[0] < 1:
        fails.append(f"supervisor from the handler: {handler_sup!r}")
    return fails


def check_denied_paths(tmp):
    """A shared DeniedPaths, changed from another thread between runs and
    from a handler during one."""
    secret = os.path.join(tmp, "shared-secret")
    with open(secret, "w") as f:
        f.write("secret\n")
    paths = unotify.DeniedPaths()

    def on_sync(call):
        paths.deny(secret)
        return None

    fails = []
    with unotify.Sandbox(handlers={"sync": on_sync}, denied_paths=paths) as sb:
        out = sh(sb, f"cat {secret}; sync; cat {secret} 2>/dev/null || echo blocked")
        if out != (0, "secret\nblocked\n"):
            fails.append(f"denied while running {out!r}")
        if not paths.is_denied(secret) or len(paths) != 1:
            fails.append("is_denied / len after the handler's deny")
        allowed = threading.Thread(target=paths.allow, args=(secret,))
        allowed.start()
        allowed.join()
        out = sh(sb, f"cat {secret} 2>/dev/null || echo blocked")
        if out != (0, "secret\n"):
            fails.append(f"allowed again {out!r}")
    paths.close()
    return fails


def check_pause(tmp):
    """A sandbox with track_processes, paused past its program's sleep and
    resumed."""
    fails = []
    with unotify.Sandbox(track_processes=True) as sb:
        child = sb.spawn(["/bin/sh", "-c", "sleep 0.3; echo done"], capture=True)
        with child, child.supervisor() as sup:
            sup.pause()
            try:
                child.wait(0.6)
                fails.append("the paused program finished")
            except TimeoutError:
                pass
            sup.resume()
            out = child.stdout.read().decode()
            code = child.wait(30)
    if (code, out) != (0, "done\n"):
        fails.append(f"pause output {(code, out)!r}")
    return fails


def check_fs(tmp):
    """File system allow lists: writes only beneath fs_write."""
    fails = []
    w = os.path.join(tmp, "fs-w")
    os.makedirs(w, exist_ok=True)
    with unotify.Sandbox(fs_system=True, fs_write=[w], allow_degraded=["ioctl-dev"]) as sb:
        r = sb.run(["/bin/sh", "-c", f"echo x > {w}/f && echo wrote; echo x 2>/dev/null > {tmp}/out || echo refused"],
                   capture=True, timeout=30)
    if (r.returncode, r.stdout) != (0, b"wrote\nrefused\n"):
        fails.append(f"fs confinement {(r.returncode, r.stdout)!r}")
    if os.path.exists(os.path.join(tmp, "out")):
        fails.append("wrote outside fs_write")
    try:
        unotify.Sandbox(fs_read=["/nonexistent/unotify-py"])
        fails.append("a missing fs_read path was accepted")
    except unotify.UnotifyError:
        pass
    return fails


if __name__ == "__main__":
    sys.exit(main())
