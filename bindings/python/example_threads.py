"""A thread pool running sandboxes concurrently, each trapped openat
decided by a Python function (the multi-threaded host the parent project's
users have). Exits 0 if every run saw its own denial and nothing else.

    UNOTIFY_LIB=target/release/libunotify.so python3 bindings/python/example_threads.py
"""

import errno
import os
import sys
import tempfile
import threading
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
        return 1 if bad or len(secrets) != RUNS else 0


if __name__ == "__main__":
    sys.exit(main())
