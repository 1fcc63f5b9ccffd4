"""The file system views from Python: a copy-on-write work directory whose
changes the host reviews before committing them, a dry run, a kept layer,
and a chroot with read-only mounts of the host's programs.

Run with UNOTIFY_LIB pointing at libunotify.so (tests/capi.rs does). Prints
what it checked and exits non-zero on a failure."""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unotify  # noqa: E402

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def project(root):
    d = os.path.join(root, "proj")
    os.mkdir(d)
    for name, text in (("old.txt", "old\n"), ("keep.txt", "kept\n"), ("util.h", "#define A 1\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


def snapshot(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            out[name] = f.read()
    return out


EDIT = "echo new > new.txt; rm old.txt; echo '#define B 2' >> util.h; cat keep.txt"
EXPECTED = [("new.txt", "added", "file"), ("old.txt", "deleted", "file"),
            ("util.h", "modified", "file")]

with tempfile.TemporaryDirectory() as root:
    # Review, then commit.
    d = project(root)
    before = snapshot(d)
    with unotify.Sandbox(workdir=d, on_exit="abort") as sb:
        r = sb.run(["/bin/sh", "-c", EDIT], cwd=d, capture=True)
        expect(r.returncode == 0 and r.stdout == b"kept\n", f"the edit ran in the view: {r.returncode} {r.stdout!r}")
        expect(snapshot(d) == before, "nothing reached the work directory before the commit")
        expect(sb.changes() == EXPECTED, f"the change set: {sb.changes()}")
        sb.commit()
    after = snapshot(d)
    expect(after == {"keep.txt": "kept\n", "new.txt": "new\n", "util.h": "#define A 1\n#define B 2\n"},
           f"the commit applied the changes: {after}")
    print("reviewed and committed:", ", ".join(f"{k[0]} {k[1]}" for k in EXPECTED))

    # A dry run lists the changes and drops them.
    shutil.rmtree(d)
    d = project(root)
    with unotify.Sandbox(workdir=d, dry_run=True) as sb:
        r = sb.run(["/bin/sh", "-c", EDIT], cwd=d, capture=True)
        outcome, changes = sb.finish(r.returncode)
        expect((outcome, changes) == ("abort", EXPECTED), f"dry run: {outcome} {changes}")
    expect(snapshot(d) == before, "a dry run leaves the work directory as it was")

    # A failed run keeps its layer when told to, and says where.
    with unotify.Sandbox(workdir=d, on_error="keep") as sb:
        r = sb.run(["/bin/sh", "-c", "echo x > made.txt; exit 3"], cwd=d)
        outcome, changes = sb.finish(r.returncode)
        expect(r.returncode == 3 and outcome == "keep", f"kept after a failure: {r.returncode} {outcome}")
        kept = sb.keep()
        expect(os.path.isfile(os.path.join(kept, "made.txt")), f"the kept layer {kept} holds made.txt")
    expect(not os.path.exists(os.path.join(d, "made.txt")), "a kept layer is not committed")
    shutil.rmtree(kept, ignore_errors=True)

    # Bad input is refused, with the reason.
    try:
        unotify.Sandbox(workdir=d, on_exit="comit")
        expect(False, "a misspelt exit action is refused")
    except ValueError:
        pass
    with unotify.Sandbox() as sb:
        try:
            sb.changes()
            expect(False, "changes() without a work directory is refused")
        except unotify.UnotifyError as e:
            expect(e.code == -3 and "workdir" in str(e), f"the refusal says what to do: {e}")

    # A chroot: the program sees the rootfs as /, the host's programs mounted read-only.
    rootfs = os.path.join(root, "rootfs")
    os.makedirs(os.path.join(rootfs, "etc"))
    os.makedirs(os.path.join(rootfs, "work"))
    with open(os.path.join(rootfs, "etc", "hostname"), "w") as f:
        f.write("in-the-view\n")
    mounts = [(p, p, True) for p in ("/usr", "/bin", "/lib", "/lib64", "/dev") if os.path.isdir(p)]
    with unotify.Sandbox(chroot=rootfs, mounts=mounts, chroot_cwd="/work") as sb:
        r = sb.run(["/bin/sh", "-c", "cat /etc/hostname; pwd; { echo x > /usr/nope; } 2>/dev/null || echo ro"],
                   capture=True)
        expect(r.stdout == b"in-the-view\n/work\nro\n", f"the chroot's view: {r.stdout!r}")
    print("chroot: the view's /etc/hostname, its working directory, read-only mounts")

print(f"workdir and chroot: {len(failures)} failures")
sys.exit(1 if failures else 0)
