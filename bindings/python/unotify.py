"""unotify for Python: run a program under a seccomp user-notification
supervisor, with Python functions deciding the trapped system calls.

ctypes only (no compiled extension, no dependency). Needs libunotify.so,
built with `cargo build --release --features capi --lib`; it is found
through $UNOTIFY_LIB, else the system's library path.

    import unotify

    def on_openat(call):
        path = call.read_cstr(call.args[1])
        if path == b"/etc/shadow":
            return unotify.Errno(13)          # EACCES
        return None                           # let it run

    with unotify.Sandbox(handlers={"openat": on_openat}) as sb:
        result = sb.run(["/bin/sh", "-c", "cat /etc/hostname"], capture=True)
        print(result.returncode, result.stdout)

Threads: handlers run on the supervisor's worker threads (ctypes takes the
GIL for them), concurrently with each other and with the caller; a Sandbox
may be used from any number of Python threads at once. A handler that
raises fails the trapped call with EPERM. Call objects are valid only
during the handler call.
"""

import ctypes
import ctypes.util
import itertools
import os
import threading
import traceback

__all__ = ["Sandbox", "Child", "Call", "Errno", "Return", "KillTask", "Defer", "Hold",
           "InjectFd", "InjectFdAt", "Supervisor", "DeniedPaths", "PolicyEvent", "PolicyCtx",
           "AUDIT", "Result", "UnotifyError", "library"]

# ------------------------------------------------------------------ library

_c_int_p = ctypes.POINTER(ctypes.c_int)


class _Notif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("nr", ctypes.c_int32),
        ("arch", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


_DEFER_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Action(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("errno_value", ctypes.c_int),
        ("value", ctypes.c_int64),
        ("fd", ctypes.c_int),
        ("fd_flags", ctypes.c_uint32),
        ("signal", ctypes.c_int),
        ("target_fd", ctypes.c_int),
        ("defer_fn", ctypes.c_void_p),
        ("defer_free", ctypes.c_void_p),
        ("defer_user", ctypes.c_void_p),
    ]


class _Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "received", "answered", "stale", "panics", "deferred",
        "defer_rejected", "defer_timeouts", "held")]


_HANDLER_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_Notif), ctypes.c_void_p, ctypes.POINTER(_Action))

_CONTINUE, _ERRNO, _RETURN, _INJECT_FD, _KILL_TASK, _KILL_GROUP, _DEFER, _HOLD, _INJECT_FD_AT = range(9)


class _PolicyEvent(ctypes.Structure):
    _fields_ = [
        ("syscall", ctypes.c_char_p),
        ("category", ctypes.c_int),
        ("pid", ctypes.c_uint32),
        ("parent_pid", ctypes.c_uint32),
        ("addr_family", ctypes.c_int),
        ("addr", ctypes.c_uint8 * 16),
        ("port", ctypes.c_int),
        ("has_size", ctypes.c_int),
        ("size", ctypes.c_uint64),
        ("argc", ctypes.c_size_t),
        ("argv", ctypes.POINTER(ctypes.c_char_p)),
        ("denied", ctypes.c_int),
    ]


_POLICY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_PolicyEvent), ctypes.c_void_p)
_CHANGE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int)
_STDIO_INHERIT, _STDIO_NULL, _STDIO_FD, _STDIO_PIPE = 0, 1, 2, 3
_EXIT_ACTIONS = {"commit": 0, "abort": 1, "keep": 2}
_CHANGE_KINDS = {1: "added", 2: "modified", 3: "deleted"}
_ENTRY_TYPES = {1: "file", 2: "dir", 3: "symlink", 4: "other"}
_E_TIMEOUT, _E_GONE = -8, -9


def _load():
    path = os.environ.get("UNOTIFY_LIB") or ctypes.util.find_library("unotify") or "libunotify.so"
    lib = ctypes.CDLL(path)
    p = ctypes.c_void_p
    sigs = {
        "unotify_last_error": (ctypes.c_char_p, []),
        "unotify_builder_new": (ctypes.c_int, [ctypes.POINTER(p)]),
        "unotify_builder_free": (None, [p]),
        "unotify_builder_handle": (ctypes.c_int, [p, ctypes.c_char_p, _HANDLER_FN, p]),
        "unotify_builder_deny": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_int]),
        "unotify_builder_trace": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_workers": (ctypes.c_int, [p, ctypes.c_uint32]),
        "unotify_builder_net_allow": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_net_deny": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_max_processes": (ctypes.c_int, [p, ctypes.c_uint32]),
        "unotify_builder_max_memory": (ctypes.c_int, [p, ctypes.c_uint64]),
        "unotify_builder_deny_path": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_allow_weak_isolation": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_fs_read": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_fs_write": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_fs_system": (ctypes.c_int, [p]),
        "unotify_builder_allow_degraded": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_build": (ctypes.c_int, [p, ctypes.POINTER(p)]),
        "unotify_sandbox_free": (None, [p]),
        "unotify_command_new": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(p)]),
        "unotify_command_free": (None, [p]),
        "unotify_command_arg": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_command_env_set": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_char_p]),
        "unotify_command_env_clear": (ctypes.c_int, [p]),
        "unotify_command_cwd": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_command_stdio": (ctypes.c_int, [p, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
        "unotify_sandbox_spawn": (ctypes.c_int, [p, p, ctypes.POINTER(p)]),
        "unotify_child_pid": (ctypes.c_int, [p, _c_int_p]),
        "unotify_child_pidfd": (ctypes.c_int, [p, _c_int_p]),
        "unotify_child_try_wait": (ctypes.c_int, [p, _c_int_p, _c_int_p]),
        "unotify_child_wait": (ctypes.c_int, [p, ctypes.c_int64, _c_int_p]),
        "unotify_child_kill": (ctypes.c_int, [p]),
        "unotify_child_take_pipe": (ctypes.c_int, [p, ctypes.c_int, _c_int_p]),
        "unotify_child_stats": (ctypes.c_int, [p, ctypes.POINTER(_Stats)]),
        "unotify_child_free": (None, [p]),
        "unotify_ctx_read_cstr": (ctypes.c_int, [p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_size_t)]),
        "unotify_ctx_read_mem": (ctypes.c_int, [p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]),
        "unotify_ctx_write_mem": (ctypes.c_int, [p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]),
        "unotify_ctx_dup_fd": (ctypes.c_int, [p, ctypes.c_int, _c_int_p]),
        "unotify_ctx_supervisor": (ctypes.c_int, [p, ctypes.POINTER(p)]),
        "unotify_child_supervisor": (ctypes.c_int, [p, ctypes.POINTER(p)]),
        "unotify_supervisor_stats": (ctypes.c_int, [p, ctypes.POINTER(_Stats)]),
        "unotify_supervisor_held": (ctypes.c_int, [p, ctypes.POINTER(_Notif), ctypes.c_size_t,
                                                   ctypes.POINTER(ctypes.c_size_t)]),
        "unotify_supervisor_release": (ctypes.c_int, [p, ctypes.c_uint64, ctypes.POINTER(_Action)]),
        "unotify_supervisor_free": (None, [p]),
        "unotify_supervisor_pause": (ctypes.c_int, [p]),
        "unotify_supervisor_resume": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_size_t)]),
        "unotify_builder_policy": (ctypes.c_int, [p, _POLICY_FN, p]),
        "unotify_policy_restrict_network": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
        "unotify_policy_grant_network": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
        "unotify_policy_restrict_max_processes": (ctypes.c_int, [p, ctypes.c_uint64]),
        "unotify_policy_restrict_max_memory": (ctypes.c_int, [p, ctypes.c_uint64]),
        "unotify_policy_deny_path": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_policy_allow_path": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_foreground": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_cgroups": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_track_processes": (ctypes.c_int, [p]),
        "unotify_builder_sync_wake_up": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_denied_paths": (ctypes.c_int, [p, p]),
        "unotify_denied_paths_new": (ctypes.c_int, [ctypes.POINTER(p)]),
        "unotify_denied_paths_free": (None, [p]),
        "unotify_denied_paths_deny": (ctypes.c_int, [p, ctypes.c_char_p, _c_int_p]),
        "unotify_denied_paths_allow": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_denied_paths_is_denied": (ctypes.c_int, [p, ctypes.c_char_p, _c_int_p]),
        "unotify_denied_paths_count": (ctypes.c_int, [p, ctypes.POINTER(ctypes.c_size_t)]),
        "unotify_builder_chroot": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_mount": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]),
        "unotify_builder_chroot_cwd": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_workdir": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_cow_storage": (ctypes.c_int, [p, ctypes.c_char_p]),
        "unotify_builder_on_exit": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_on_error": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_dry_run": (ctypes.c_int, [p, ctypes.c_int]),
        "unotify_builder_max_disk": (ctypes.c_int, [p, ctypes.c_uint64]),
        "unotify_sandbox_changes": (ctypes.c_int, [p, _CHANGE_FN, p]),
        "unotify_sandbox_commit": (ctypes.c_int, [p]),
        "unotify_sandbox_abort": (ctypes.c_int, [p]),
        "unotify_sandbox_keep": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_size_t]),
        "unotify_sandbox_finish": (ctypes.c_int, [p, ctypes.c_int, _c_int_p, _CHANGE_FN, p]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib = None


def library():
    """The loaded libunotify (loaded on first use)."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


class UnotifyError(Exception):
    """A failed libunotify call: `code` is its UNOTIFY_E_* status."""

    def __init__(self, what, code, message):
        super().__init__(f"{what}: {message} (status {code})")
        self.code = code


def _check(what, rc):
    if rc != 0:
        raise UnotifyError(what, rc, library().unotify_last_error().decode(errors="replace"))


def _b(s):
    return os.fsencode(s) if not isinstance(s, bytes) else s

# ------------------------------------------------------------------ answers


class Errno:
    """Fail the call with this errno."""

    def __init__(self, errno):
        self.errno = errno


class Return:
    """Return this value without running the call."""

    def __init__(self, value):
        self.value = value


class KillTask:
    """Send `signal` (default SIGKILL) to the caller's process."""

    def __init__(self, signal=9):
        self.signal = signal


class Defer:
    """Decide later: `fn()` runs on the deferral pool (off the worker
    threads) and returns None, Errno, Return or KillTask."""

    def __init__(self, fn):
        self.fn = fn


class Hold:
    """Do not answer now: the call stays blocked until `Supervisor.release`
    answers it (from any thread)."""


class InjectFd:
    """Install `fd` in the task and make the call return its number. The
    library takes `fd` over (do not close it)."""

    def __init__(self, fd, cloexec=True):
        self.fd, self.cloexec = fd, cloexec


class InjectFdAt:
    """Install `fd` in the task at exactly `target` (replacing what is
    there), then let the call run. The library takes `fd` over."""

    def __init__(self, fd, target, cloexec=False):
        self.fd, self.target, self.cloexec = fd, target, cloexec


# Deferred functions waiting for the pool, by key (the C side carries the key).
_deferred = {}
_deferred_lock = threading.Lock()
_deferred_keys = itertools.count(1)


@_DEFER_FN
def _run_deferred(user, _notif, out):
    with _deferred_lock:
        fn = _deferred.get(user)
    try:
        _fill(fn(), ctypes.cast(out, ctypes.POINTER(_Action)))
        return 0
    except Exception:  # fail closed: EPERM
        traceback.print_exc()
        return 1


@_FREE_FN
def _free_deferred(user):
    with _deferred_lock:
        _deferred.pop(user, None)


class Call:
    """The trapped call, valid during the handler call only."""

    __slots__ = ("id", "pid", "nr", "args", "_cx")

    def __init__(self, notif, cx):
        self.id, self.pid, self.nr = notif.id, notif.pid, notif.nr
        self.args = tuple(notif.args)
        self._cx = cx

    def read_cstr(self, addr, max_len=4096):
        """The NUL-terminated string at addr in the task, as bytes (a copy)."""
        buf = ctypes.create_string_buffer(max_len + 1)
        n = ctypes.c_size_t()
        _check("read_cstr", library().unotify_ctx_read_cstr(self._cx, addr, buf, max_len + 1, ctypes.byref(n)))
        return buf.raw[: n.value]

    def read_mem(self, addr, length):
        """`length` bytes at addr in the task (a copy)."""
        buf = ctypes.create_string_buffer(length)
        _check("read_mem", library().unotify_ctx_read_mem(self._cx, addr, buf, length))
        return buf.raw

    def write_mem(self, addr, data):
        """Writes `data` at addr in the task."""
        _check("write_mem", library().unotify_ctx_write_mem(self._cx, addr, data, len(data)))

    def dup_fd(self, fd):
        """A duplicate of the task's fd, owned by the caller (close it)."""
        out = ctypes.c_int(-1)
        _check("dup_fd", library().unotify_ctx_dup_fd(self._cx, fd, ctypes.byref(out)))
        return out.value

    def supervisor(self):
        """A Supervisor handle on the supervisor running this handler (to
        release a held call later, from another thread)."""
        s = ctypes.c_void_p()
        _check("ctx_supervisor", library().unotify_ctx_supervisor(self._cx, ctypes.byref(s)))
        return Supervisor(s)


class _Closing:
    """A handle freed by `close()`: also as a context manager, and when
    garbage-collected (errors then are ignored)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Supervisor(_Closing):
    """One child's supervisor (not kept alive by this object): `stats()`,
    `held()` (the held calls, as (id, pid, nr) tuples), `release(id,
    answer)`, `pause()`, `resume()`. Thread-safe; usable from a handler."""

    def __init__(self, handle):
        self._s = handle

    def stats(self):
        st = _Stats()
        _check("supervisor_stats", library().unotify_supervisor_stats(self._s, ctypes.byref(st)))
        return {name: getattr(st, name) for name, _ in _Stats._fields_}

    def held(self):
        n = ctypes.c_size_t()
        buf = (_Notif * 64)()
        _check("supervisor_held", library().unotify_supervisor_held(self._s, buf, 64, ctypes.byref(n)))
        return [(x.id, x.pid, x.nr) for x in buf[: min(n.value, 64)]]

    def release(self, call_id, answer):
        """Answers the held call `call_id` with None, Errno, Return,
        KillTask, InjectFd or InjectFdAt. UnotifyError (code UNOTIFY_E_GONE,
        -9) if no such call is held."""
        a = _Action()
        a.fd, a.target_fd = -1, -1
        _fill(answer, ctypes.pointer(a))
        _check("supervisor_release", library().unotify_supervisor_release(self._s, call_id, ctypes.byref(a)))

    def pause(self):
        """Stops the sandbox and holds its forks (needs track_processes=True
        or max_processes)."""
        _check("supervisor_pause", library().unotify_supervisor_pause(self._s))

    def resume(self):
        """Resumes a paused sandbox; returns how many held forks were answered."""
        n = ctypes.c_size_t()
        _check("supervisor_resume", library().unotify_supervisor_resume(self._s, ctypes.byref(n)))
        return n.value

    def close(self):
        if self._s is not None:
            library().unotify_supervisor_free(self._s)
            self._s = None



class DeniedPaths(_Closing):
    """A set of denied paths (EACCES), shared by every Sandbox built with
    it: `deny`, `allow` and `is_denied` apply at once, from any thread (a
    handler, a policy function, another thread), while programs run."""

    def __init__(self):
        self._d = None
        d = ctypes.c_void_p()
        _check("denied_paths_new", library().unotify_denied_paths_new(ctypes.byref(d)))
        self._d = d

    def deny(self, path):
        """Denies path from now on; False if it already was."""
        added = ctypes.c_int()
        _check("denied_paths_deny", library().unotify_denied_paths_deny(self._d, _b(path), ctypes.byref(added)))
        return bool(added.value)

    def allow(self, path):
        """Allows again a path denied with deny(); False if it was not."""
        return library().unotify_denied_paths_allow(self._d, _b(path)) == 0

    def is_denied(self, path):
        d = ctypes.c_int()
        _check("denied_paths_is_denied", library().unotify_denied_paths_is_denied(self._d, _b(path), ctypes.byref(d)))
        return bool(d.value)

    def __len__(self):
        n = ctypes.c_size_t()
        _check("denied_paths_count", library().unotify_denied_paths_count(self._d, ctypes.byref(n)))
        return n.value

    def close(self):
        """Frees this handle; sandboxes built with the set keep it."""
        if self._d is not None:
            library().unotify_denied_paths_free(self._d)
            self._d = None


# ------------------------------------------------------------------ policy


AUDIT = "audit"  # a policy verdict: allow, and log the call


class PolicyEvent:
    """One call the policy function decides: `syscall` (str), `category`
    ("file", "network", "process", "memory"), `pid`, `parent_pid`, `host`
    (an address string or None), `port` (or None), `size` (or None),
    `argv` (a list of bytes, or None), `denied` (bool)."""

    __slots__ = ("syscall", "category", "pid", "parent_pid", "host", "port", "size", "argv", "denied")

    def __init__(self, ev):
        import ipaddress
        self.syscall = ev.syscall.decode()
        self.category = ("file", "network", "process", "memory")[ev.category]
        self.pid, self.parent_pid = ev.pid, ev.parent_pid
        if ev.addr_family == 2:
            self.host = str(ipaddress.IPv4Address(bytes(ev.addr[:4])))
        elif ev.addr_family == 10:
            self.host = str(ipaddress.IPv6Address(bytes(ev.addr)))
        else:
            self.host = None
        self.port = ev.port if ev.port >= 0 else None
        self.size = ev.size if ev.has_size else None
        self.argv = [ev.argv[i] for i in range(ev.argc)] if ev.argv else None
        self.denied = bool(ev.denied)


class PolicyCtx:
    """Narrows the running policy, during one policy call only."""

    __slots__ = ("_pc",)

    def __init__(self, pc):
        self._pc = pc

    def _nets(self, cidrs):
        arr = (ctypes.c_char_p * max(len(cidrs), 1))(*[_b(c) for c in cidrs])
        return arr, len(cidrs)

    def restrict_network(self, cidrs):
        _check("restrict_network", library().unotify_policy_restrict_network(self._pc, *self._nets(cidrs)))

    def grant_network(self, cidrs):
        _check("grant_network", library().unotify_policy_grant_network(self._pc, *self._nets(cidrs)))

    def restrict_max_processes(self, n):
        _check("restrict_max_processes", library().unotify_policy_restrict_max_processes(self._pc, n))

    def restrict_max_memory(self, n):
        _check("restrict_max_memory", library().unotify_policy_restrict_max_memory(self._pc, n))

    def deny_path(self, path):
        _check("deny_path", library().unotify_policy_deny_path(self._pc, _b(path)))

    def allow_path(self, path):
        """False if the path was not denied at run time."""
        return library().unotify_policy_allow_path(self._pc, _b(path)) == 0


def _verdict(verdict):
    if verdict is None:
        return 0
    if verdict == AUDIT:
        return 1
    if isinstance(verdict, Errno):
        return -verdict.errno
    raise TypeError(f"a policy function returns None, AUDIT or Errno, not {verdict!r}")


def _wrap_policy(fn):
    def trampoline(_user, ev, pc):
        try:
            return _verdict(fn(PolicyEvent(ev.contents), PolicyCtx(pc)))
        except Exception:  # fail closed: deny (EPERM)
            traceback.print_exc()
            return -1
    return _POLICY_FN(trampoline)


def _fill(action, out):
    a = out.contents
    if action is None:
        a.kind = _CONTINUE
    elif isinstance(action, Errno):
        a.kind, a.errno_value = _ERRNO, action.errno
    elif isinstance(action, Return):
        a.kind, a.value = _RETURN, action.value
    elif isinstance(action, KillTask):
        a.kind, a.signal = _KILL_TASK, action.signal
    elif isinstance(action, Hold):
        a.kind = _HOLD
    elif isinstance(action, InjectFd):
        a.kind, a.fd, a.fd_flags = _INJECT_FD, action.fd, os.O_CLOEXEC if action.cloexec else 0
    elif isinstance(action, InjectFdAt):
        a.kind, a.fd, a.target_fd = _INJECT_FD_AT, action.fd, action.target
        a.fd_flags = os.O_CLOEXEC if action.cloexec else 0
    elif isinstance(action, Defer):
        with _deferred_lock:
            key = next(_deferred_keys)
            _deferred[key] = action.fn
        a.kind, a.defer_user = _DEFER, key
        a.defer_fn = ctypes.cast(_run_deferred, ctypes.c_void_p).value
        a.defer_free = ctypes.cast(_free_deferred, ctypes.c_void_p).value
    else:
        raise TypeError("a handler returns None, Errno, Return, KillTask, Defer, Hold, InjectFd or "
                        f"InjectFdAt, not {action!r}")


def _wrap(fn):
    def trampoline(_user, notif, cx, out):
        try:
            _fill(fn(Call(notif.contents, cx)), out)
            return 0
        except Exception:  # fail closed: the call gets EPERM
            traceback.print_exc()
            return 1
    return _HANDLER_FN(trampoline)

# ------------------------------------------------------------------ sandbox


class Result:
    """A finished program: `returncode` (negative: killed by that signal),
    `stdout` (bytes, with capture=True), the supervisor's `stats` (dict)."""

    def __init__(self, returncode, stdout, stats):
        self.returncode, self.stdout, self.stats = returncode, stdout, stats


class Child(_Closing):
    """A running sandboxed program: `pid`, `stdout` (a binary file, with
    capture), `pidfd()` for an event loop, `wait`, `poll`, `kill`,
    `stats`, `close`."""

    def __init__(self, handle, capture):
        lib = library()
        self._c = handle
        pid = ctypes.c_int()
        _check("pid", lib.unotify_child_pid(handle, ctypes.byref(pid)))
        self.pid = pid.value
        self.stdout = None
        if capture:
            fd = ctypes.c_int(-1)
            _check("take_pipe", lib.unotify_child_take_pipe(handle, 1, ctypes.byref(fd)))
            self.stdout = os.fdopen(fd.value, "rb")

    def pidfd(self):
        """A new pidfd (the caller closes it), readable once the program
        exited: for asyncio's add_reader, select, epoll."""
        fd = ctypes.c_int(-1)
        _check("pidfd", library().unotify_child_pidfd(self._c, ctypes.byref(fd)))
        return fd.value

    def wait(self, timeout=None):
        """Waits (at most `timeout` seconds: else TimeoutError) and returns
        the exit code (negative: killed by that signal)."""
        status = ctypes.c_int()
        ms = -1 if timeout is None else int(timeout * 1000)
        rc = library().unotify_child_wait(self._c, ms, ctypes.byref(status))
        if rc == _E_TIMEOUT:
            raise TimeoutError(f"pid {self.pid} still runs")
        _check("wait", rc)
        return os.waitstatus_to_exitcode(status.value)

    def poll(self):
        """The exit code if the program has exited, else None."""
        exited, status = ctypes.c_int(), ctypes.c_int()
        _check("try_wait", library().unotify_child_try_wait(self._c, ctypes.byref(exited), ctypes.byref(status)))
        return os.waitstatus_to_exitcode(status.value) if exited.value else None

    def supervisor(self):
        """A Supervisor handle on this child's supervisor (held calls)."""
        s = ctypes.c_void_p()
        _check("child_supervisor", library().unotify_child_supervisor(self._c, ctypes.byref(s)))
        return Supervisor(s)

    def kill(self):
        """Kills the whole sandbox (SIGKILL)."""
        _check("kill", library().unotify_child_kill(self._c))

    def stats(self):
        """The supervisor's counters, as a dict."""
        st = _Stats()
        _check("stats", library().unotify_child_stats(self._c, ctypes.byref(st)))
        return {name: getattr(st, name) for name, _ in _Stats._fields_}

    def close(self):
        """Frees the child (one still running is killed and waited for)."""
        if self.stdout is not None:
            self.stdout.close()
            self.stdout = None
        if self._c is not None:
            library().unotify_child_free(self._c)
            self._c = None



class Sandbox(_Closing):
    """A sandbox policy: `handlers` maps syscall names to Python functions
    `fn(call) -> None | Errno | Return | KillTask | Defer | Hold | InjectFd |
    InjectFdAt`; `deny` maps names to an errno answered in the filter;
    `policy` is `fn(event, ctx) -> None | AUDIT | Errno` (see PolicyEvent,
    PolicyCtx); `denied_paths` a shared DeniedPaths; `fs_read`, `fs_write`
    (paths) and `fs_system` confine the file system (Landlock), and
    `allow_degraded` names the Landlock rights it may run without.
    `chroot` (a directory) is shown to the program as `/`, with `mounts`
    ((virtual, host, read_only) triples) and `chroot_cwd`; `workdir` runs
    the program on a copy-on-write view of a directory (`cow_storage`,
    `on_exit`/`on_error` "commit" | "abort" | "keep", `dry_run`,
    `max_disk` in bytes), settled with `finish`, or by the host with
    `changes`, `commit`, `abort`, `keep`. Thread-safe: `run` may
    be called from many threads at once."""

    def __init__(self, handlers=None, deny=None, workers=None, net_allow=(), net_deny=(),
                 deny_paths=(), max_processes=None, max_memory=None, allow_weak_isolation=False,
                 policy=None, denied_paths=None, foreground=None, cgroups=None,
                 track_processes=False, sync_wake_up=None, fs_read=(), fs_write=(),
                 fs_system=False, allow_degraded=(), chroot=None, mounts=(), chroot_cwd=None,
                 workdir=None, cow_storage=None, on_exit=None, on_error=None, dry_run=False,
                 max_disk=None):
        lib = library()
        self._callbacks = []  # kept alive as long as the sandbox
        self._sb = None
        b = ctypes.c_void_p()
        _check("builder_new", lib.unotify_builder_new(ctypes.byref(b)))
        try:
            for name, fn in (handlers or {}).items():
                cb = _wrap(fn)
                self._callbacks.append(cb)
                _check(f"handle {name}", lib.unotify_builder_handle(b, _b(name), cb, None))
            for name, errno in (deny or {}).items():
                _check(f"deny {name}", lib.unotify_builder_deny(b, _b(name), errno))
            if workers is not None:
                _check("workers", lib.unotify_builder_workers(b, workers))
            for spec in net_allow:
                _check("net_allow", lib.unotify_builder_net_allow(b, _b(spec)))
            for spec in net_deny:
                _check("net_deny", lib.unotify_builder_net_deny(b, _b(spec)))
            for path in deny_paths:
                _check("deny_path", lib.unotify_builder_deny_path(b, _b(path)))
            if max_processes is not None:
                _check("max_processes", lib.unotify_builder_max_processes(b, max_processes))
            if max_memory is not None:
                _check("max_memory", lib.unotify_builder_max_memory(b, max_memory))
            if allow_weak_isolation:
                _check("allow_weak_isolation", lib.unotify_builder_allow_weak_isolation(b, 1))
            if policy is not None:
                cb = _wrap_policy(policy)
                self._callbacks.append(cb)
                _check("policy", lib.unotify_builder_policy(b, cb, None))
            if denied_paths is not None:
                _check("denied_paths", lib.unotify_builder_denied_paths(b, denied_paths._d))
            for name, value in (("foreground", foreground), ("cgroups", cgroups),
                                ("sync_wake_up", sync_wake_up)):
                if value is not None:
                    _check(name, getattr(lib, f"unotify_builder_{name}")(b, int(bool(value))))
            if track_processes:
                _check("track_processes", lib.unotify_builder_track_processes(b))
            for path in fs_read:
                _check("fs_read", lib.unotify_builder_fs_read(b, _b(path)))
            for path in fs_write:
                _check("fs_write", lib.unotify_builder_fs_write(b, _b(path)))
            if fs_system:
                _check("fs_system", lib.unotify_builder_fs_system(b))
            for right in allow_degraded:
                _check("allow_degraded", lib.unotify_builder_allow_degraded(b, _b(right)))
            if chroot is not None:
                _check("chroot", lib.unotify_builder_chroot(b, _b(chroot)))
            for virtual, host, read_only in mounts:
                _check("mount", lib.unotify_builder_mount(b, _b(virtual), _b(host), int(bool(read_only))))
            if chroot_cwd is not None:
                _check("chroot_cwd", lib.unotify_builder_chroot_cwd(b, _b(chroot_cwd)))
            if workdir is not None:
                _check("workdir", lib.unotify_builder_workdir(b, _b(workdir)))
            if cow_storage is not None:
                _check("cow_storage", lib.unotify_builder_cow_storage(b, _b(cow_storage)))
            for name, value in (("on_exit", on_exit), ("on_error", on_error)):
                if value is not None:
                    if value not in _EXIT_ACTIONS:
                        raise ValueError(f"{name}={value!r}: expected 'commit', 'abort' or 'keep'")
                    _check(name, getattr(lib, f"unotify_builder_{name}")(b, _EXIT_ACTIONS[value]))
            if dry_run:
                _check("dry_run", lib.unotify_builder_dry_run(b, 1))
            if max_disk is not None:
                _check("max_disk", lib.unotify_builder_max_disk(b, max_disk))
        except BaseException:
            lib.unotify_builder_free(b)
            raise
        sb = ctypes.c_void_p()
        _check("build", lib.unotify_builder_build(b, ctypes.byref(sb)))  # frees b
        self._sb = sb

    def spawn(self, argv, env=None, cwd=None, capture=False):
        """Starts argv (a list) and returns a Child. `env` (a dict) replaces
        the environment; with `capture`, the Child's `stdout` is a pipe."""
        lib = library()
        if self._sb is None:
            raise ValueError("the sandbox is closed")
        cmd = ctypes.c_void_p()
        _check("command_new", lib.unotify_command_new(_b(argv[0]), ctypes.byref(cmd)))
        child = ctypes.c_void_p()
        try:
            for a in argv[1:]:
                _check("command_arg", lib.unotify_command_arg(cmd, _b(a)))
            if env is not None:
                _check("env_clear", lib.unotify_command_env_clear(cmd))
                for k, v in env.items():
                    _check("env_set", lib.unotify_command_env_set(cmd, _b(k), _b(v)))
            if cwd is not None:
                _check("cwd", lib.unotify_command_cwd(cmd, _b(cwd)))
            if capture:
                _check("stdio", lib.unotify_command_stdio(cmd, 1, _STDIO_PIPE, -1))
            _check("spawn", lib.unotify_sandbox_spawn(self._sb, cmd, ctypes.byref(child)))
        finally:
            lib.unotify_command_free(cmd)
        return Child(child, capture)

    def run(self, argv, env=None, cwd=None, capture=False, timeout=None):
        """Runs argv (a list) to completion and returns a Result; `timeout`
        (seconds) kills the sandbox when it runs out and raises
        TimeoutError."""
        child = self.spawn(argv, env=env, cwd=cwd, capture=capture)
        try:
            out = child.stdout.read() if capture else None
            try:
                code = child.wait(timeout)
            except TimeoutError:
                child.kill()
                child.wait()
                raise TimeoutError(f"{argv[0]} still ran after {timeout} s; killed") from None
            return Result(code, out, child.stats())
        finally:
            child.close()

    def _open(self):
        if self._sb is None:
            raise ValueError("the sandbox is closed")
        return self._sb

    @staticmethod
    def _collector():
        got = []

        def take(_user, path, kind, entry):
            got.append((os.fsdecode(path), _CHANGE_KINDS.get(kind, kind), _ENTRY_TYPES.get(entry, entry)))
            return 0
        return got, _CHANGE_FN(take)

    def changes(self):
        """The work directory's changes so far, sorted by path: a list of
        (path relative to it, "added" | "modified" | "deleted",
        "file" | "dir" | "symlink" | "other")."""
        got, cb = self._collector()
        _check("changes", library().unotify_sandbox_changes(self._open(), cb, None))
        return got

    def commit(self):
        """Applies the changes to the work directory (crash-safe)."""
        _check("commit", library().unotify_sandbox_commit(self._open()))

    def abort(self):
        """Drops the changes."""
        _check("abort", library().unotify_sandbox_abort(self._open()))

    def keep(self):
        """Keeps the upper layer and returns its path."""
        buf = ctypes.create_string_buffer(4096)
        _check("keep", library().unotify_sandbox_keep(self._open(), buf, len(buf)))
        return os.fsdecode(buf.value)

    def finish(self, returncode):
        """Settles the work directory after a run that ended with
        `returncode` (a Result's or Child's: negative for a signal) as
        `on_exit`/`on_error`/`dry_run` say; returns ("commit" | "abort" |
        "keep", the changes committed or dropped)."""
        status = -returncode if returncode < 0 else (returncode & 0xFF) << 8
        got, cb = self._collector()
        outcome = ctypes.c_int(-1)
        _check("finish", library().unotify_sandbox_finish(self._open(), status, ctypes.byref(outcome), cb, None))
        names = {v: k for k, v in _EXIT_ACTIONS.items()}
        return names[outcome.value], got

    def close(self):
        """Frees the sandbox (runs already finished)."""
        if self._sb is not None:
            library().unotify_sandbox_free(self._sb)
            self._sb = None

