"""Limits shared by every event loop of a process.

Shards run in threads, each with its own event loop, yet an endpoint's
concurrency and rate limits are promises about the whole run; asyncio's own
primitives belong to one loop, so these are built on a thread lock and hand
slots to waiting loops with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque


class ConcurrencyLimit:
    """A semaphore for coroutines on any loop, first come first served; also measures mean occupancy."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._free = limit
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()
        self._busy_since = time.perf_counter()
        self._busy_area = 0.0  # integral of slots in use over time

    def _account(self) -> None:
        now = time.perf_counter()
        self._busy_area += (self.limit - self._free) * (now - self._busy_since)
        self._busy_since = now

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    def occupancy(self) -> float:
        """Slots in use × seconds, since creation: divide by elapsed × limit for utilization."""
        with self._lock:
            self._account()
            return self._busy_area

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._account()
                self._free -= 1
                return
            waiter = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, waiter))
                    granted = False
                except ValueError:
                    granted = waiter.done() and not waiter.cancelled()
            if granted:  # the slot arrived just as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, waiter)
                    return  # the slot moves to the waiter: _free is unchanged
                except RuntimeError:  # that loop is closed; try the next waiter
                    continue
            self._account()
            self._free += 1

    def _grant(self, waiter: asyncio.Future) -> None:
        if waiter.cancelled():
            self.release()
        else:
            waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RateLimit:
    """A token bucket refilled continuously; a caller reserves its amount and sleeps off any deficit.

    Reserving ahead (the balance may go negative) keeps callers in arrival
    order and lets a token count be corrected once the real usage is known.
    """

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now; returns the seconds to wait before using it."""
        with self._lock:
            self._refill()
            self._tokens -= min(amount, self.capacity)
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def adjust(self, delta: float) -> None:
        """Correct a reservation: positive takes more, negative gives back."""
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens - delta)

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            await asyncio.sleep(wait)
