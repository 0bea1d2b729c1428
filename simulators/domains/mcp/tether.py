"""Run an MCP server tied to the trajforge process that started it: when that process is gone, so is the server.

Started as ``python tether.py CMD [ARG...]`` (by file path: it imports nothing
of trajforge, so it starts in milliseconds) in a new session, this process runs
CMD as its child with the same stdin, stdout and stderr, so a stdio server's
JSON-RPC traffic passes straight through. ``pipelines.tethered`` watches its
stdin for the parent's death; here stdin *is* the MCP channel, so this one
watches its parent's pid instead: when it changes (the parent died, SIGKILL
included, and the process was re-parented), it stops CMD's whole process
group, SIGTERM and then SIGKILL. A normal shutdown (stdin closed, then SIGTERM
to the group, as the MCP SDK does) needs nothing from it.

A child that ends with a non-zero status gets one line on stderr saying so,
the last line of the log trajforge quotes when a server fails to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 3.0
POLL_S = 0.25


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python tether.py CMD [ARG...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    try:
        child = subprocess.Popen(argv)
    except OSError as err:
        print(f"trajforge: cannot start {argv[0]!r}: {err.strerror}", file=sys.stderr, flush=True)
        return 127
    # The child holds the pipes now; ours would keep them open after it ends, hiding its exit from the client.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        if child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while child.poll() is None:
        if os.getppid() != parent:  # orphaned: trajforge is gone without stopping us
            stopping = True
            _stop_group(child)
            break
        time.sleep(POLL_S)
    code = child.wait()
    if code and not stopping:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        print(f"trajforge: {argv[0]} {how}", file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM to the whole group (the server and what it started), SIGKILL to what is left after a grace period."""
    own = os.getpid() == os.getpgrp()  # started in a session of its own: the group is the server's alone
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpgrp(), signal.SIGTERM) if own else child.terminate()
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + GRACE_S
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if child.poll() is None:
        child.kill()
    if own:
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # what the server left behind, and this process last
        except (ProcessLookupError, PermissionError):
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
