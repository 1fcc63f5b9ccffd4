"""A sandboxed program in an asyncio event loop: its pidfd goes to
loop.add_reader, so waiting costs no thread; a deferred Python decision
answers getppid. Exits 0 if all went as expected.

    UNOTIFY_LIB=target/release/libunotify.so python3 bindings/python/example_asyncio.py
"""

import asyncio
import os
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unotify  # noqa: E402

deferred_on = set()


def on_getppid(call):
    def later():  # runs on the deferral pool, not a worker
        deferred_on.add(threading.get_ident())
        return unotify.Return(4242)
    return unotify.Defer(later)


async def exited(child):
    """Resolves when the child's pidfd becomes readable (it exited)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    fd = child.pidfd()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return child.wait(0)


async def main():
    with unotify.Sandbox(handlers={"getppid": on_getppid}) as sb:
        children = [sb.spawn(["/bin/sh", "-c", f"sleep 0.{i}; echo $PPID; exit {i}"], capture=True)
                    for i in range(1, 4)]
        ticks = 0

        async def ticker():  # the loop stays free while the programs run
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        codes = await asyncio.gather(*(exited(c) for c in children))
        t.cancel()
        outs = [c.stdout.read() for c in children]
        for c in children:
            c.close()
    ok = codes == [1, 2, 3] and all(o == b"4242\n" for o in outs) and ticks > 5 and deferred_on
    print(f"asyncio: exit codes {codes}, outputs {outs}, {ticks} loop ticks while waiting, "
          f"deferred on {len(deferred_on)} pool threads")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
