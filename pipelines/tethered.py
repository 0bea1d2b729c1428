"""Run a command tethered to the process that started it: when that process goes away, so does the command.

A server a trajforge command starts (the local Prefect server) must not outlive
the command, even when the command is SIGKILLed and runs no cleanup at all. The
kernel does the one thing that survives SIGKILL: it closes the dead process's
file descriptors. So the parent starts ``python -m pipelines.tethered CMD...``
with a pipe on its stdin and never writes to it; this small process runs CMD
as its child and, when the pipe reaches end-of-file (the parent is gone) or it
is told to stop (SIGTERM/SIGINT), stops CMD: SIGTERM, then SIGKILL to the
whole process group after a grace period. The parent starts it in a new
session, so the group holds CMD's own children too (e.g. uvicorn workers).

Portable to every POSIX system (unlike Linux's ``PR_SET_PDEATHSIG``), and
importing nothing heavy, so it costs a few MB and no start-up time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_S = 20.0


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m pipelines.tethered CMD [ARG...]", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def watch_parent() -> None:
        try:
            while os.read(0, 4096):  # unbuffered: no lock for the interpreter to trip over at exit
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    while child.poll() is None and not stop.wait(0.5):
        pass
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    if os.getpgrp() == os.getpid():  # started in its own session: what CMD left behind in the group goes too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM if child.poll() is not None else signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return child.wait()


def exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """In a process-pool worker: exit once the process that started it is gone. A pool worker blocked in a task
    does not notice its parent's death (Prefect's threads keep it alive), so a SIGKILLed run left its workers
    running; this is their initializer (``ProcessPoolTaskRunner(initializer=...)``)."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
