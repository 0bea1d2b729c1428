"""Ctrl-C during ``trajforge generate``: out within seconds, and resumable.

A run's state is safe at every instant (atomic shard files, one atomic Delta
commit: see ``pipelines.resume``), so an interrupted run needs no orderly
shutdown to be resumed. The interrupt still unwinds the flow body, which stops
the managed vLLM servers the run started; what comes after is Prefect's engine
reporting the crash and joining its worker threads, which may be in the middle
of a shard or retrying an API server that the same Ctrl-C stopped (the
ephemeral server is in the terminal's process group). That could take minutes,
so once the flow body has unwound the process gets ``GRACE_S`` more and then
exits with status 130, as a shell reports an interrupted command. A second
Ctrl-C exits at once.

Only the command line arms this: a library caller's interrupt behaves as usual.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_STATUS = 130  # 128 + SIGINT
GRACE_S = 5.0  # for Prefect to record the crash once the flow body has unwound
UNWIND_S = 60.0  # at most this long for the flow body itself (a managed vLLM server takes up to 20 s to stop)

_armed = threading.Event()
_interrupted = threading.Event()


def _exit_in(seconds: float) -> None:
    timer = threading.Timer(seconds, os._exit, args=(EXIT_STATUS,))
    timer.daemon = True
    timer.start()


@contextmanager
def exit_promptly_on_interrupt(message: str) -> Iterator[None]:
    """Within this block (main thread only), Ctrl-C prints ``message`` on one line and ends the process soon."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame) -> None:
        if _interrupted.is_set():
            os._exit(EXIT_STATUS)
        _interrupted.set()
        sys.stderr.write(f"trajforge: interrupted: {message}\n")  # not print: a flow with log_prints takes it over
        sys.stderr.flush()
        _exit_in(UNWIND_S)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    _armed.set()
    try:
        yield
    finally:
        _armed.clear()
        signal.signal(signal.SIGINT, previous)


def flow_body_unwound() -> None:
    """Called as an interrupt leaves the flow body: the run's own cleanup is done, Prefect's gets ``GRACE_S``."""
    if _armed.is_set() and _interrupted.is_set():
        _exit_in(GRACE_S)
