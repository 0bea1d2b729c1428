"""One event loop per process for every MCP connection, reachable from sync code and from other event loops.

The environment API is synchronous (``execute``, ``state_hash``: a blueprint
is validated, a replay is run, by plain code), while dialogues are coroutines
on each shard's own event loop, and shards run in several threads at once.
An MCP session belongs to the loop it was opened on (its streams and task
groups are anyio objects), so sessions live on a loop of their own, in a
daemon thread, and everything else reaches them through it:

- ``call`` from sync code blocks only its own thread (a generator or filter
  running in a worker thread, see ``Environment.blocking_io``);
- ``acall`` from a coroutine awaits a future, so a shard's loop keeps running
  its other dialogues while a server answers.

Server processes then outlive any one shard, which is what makes a pool of
started servers reusable across shards. A forked child (a process pool
worker) starts a loop of its own: the parent's thread does not exist there.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_bridge: Bridge | None = None
_on_stop: list[Callable[[], Awaitable[None]]] = []


class Bridge:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="trajforge-mcp", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the bridge loop and wait for it in this thread."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a sync MCP call from the bridge loop itself would wait on itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the bridge loop and await it from another loop (cancelling one cancels the other)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


def bridge() -> Bridge:
    global _bridge
    with _lock:
        if _bridge is None or not _bridge.thread.is_alive():
            _bridge = Bridge()
        return _bridge


def on_stop(hook: Callable[[], Awaitable[None]]) -> None:
    """Register a coroutine function ``stop_all`` runs on the bridge loop (a pool stopping its servers)."""
    _on_stop.append(hook)


def stop_all(timeout: float = 30.0) -> None:
    """Stop everything registered (every server process this process started); the next use starts afresh."""
    with _lock:
        current = _bridge
    if current is None or not current.thread.is_alive():
        return

    async def run() -> None:
        await asyncio.gather(*(hook() for hook in list(_on_stop)), return_exceptions=True)

    try:
        current.call(run(), timeout)
    except Exception:  # at exit, best effort: the tether stops what is left when this process is gone
        pass


def _after_fork() -> None:
    global _bridge, _lock
    _bridge = None
    _lock = threading.Lock()
    _on_stop.clear()  # the parent's pools and their processes are the parent's


os.register_at_fork(after_in_child=_after_fork)
atexit.register(stop_all)
