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
    """A semaphore for coroutines on any loop, first come first served; also measures mean occupancy.

    Its size can change while slots are held (``resize``): a smaller limit takes effect as slots are released.
    """

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
            if self._free >= 0 and self._hand_over():
                return  # the slot moves to the waiter: _free is unchanged
            self._account()
            self._free += 1  # below zero after a shrink: the slot is retired, not passed on

    def _hand_over(self) -> bool:
        """Give one slot to the first waiter whose loop still runs (under the lock)."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        while self._waiters:
            loop, waiter = self._waiters.popleft()
            try:
                # A waiter on this thread's own loop needs no wake-up through the loop's self-pipe (a write and a
                # read per request, at hundreds in flight); one on another shard's loop does.
                (loop.call_soon if loop is here else loop.call_soon_threadsafe)(self._grant, waiter)
                return True
            except RuntimeError:  # that loop is closed; try the next waiter
                continue
        return False

    def resize(self, limit: int) -> None:
        """A new number of slots: more wake waiters now; fewer are taken back as holders release theirs."""
        with self._lock:
            self._account()
            self._free += limit - self.limit
            self.limit = limit
            while self._free > 0 and self._hand_over():
                self._free -= 1

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


def _thread_busy_s() -> float:
    """Seconds this thread has run or waited for a CPU (Linux's schedstat); elsewhere, its CPU time alone."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            ran, waited = f.read().split()[:2]
        return (int(ran) + int(waited)) / 1e9
    except (OSError, ValueError):
        return time.thread_time()


class ClientLoad:
    """How busy the calling thread's event loop was since that thread last asked: running or waiting for a CPU.

    A loop that is busy most of the time answers each reply late by its own backlog, so the latency it measures
    grows with its own load, not the server's: on a fixed-latency server, a CPU-bound client would read its own
    lag as the server queueing and back off, idling the server it was meant to keep busy.
    """

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}

    def share(self) -> float:
        now, busy = time.perf_counter(), _thread_busy_s()
        last = self._last.get(key := threading.get_ident())
        self._last[key] = (now, busy)
        return 0.0 if last is None or now <= last[0] else (busy - last[1]) / (now - last[0])


class AIMD:
    """Adaptive concurrency for one endpoint: slow start, then additive increase, multiplicative decrease (TCP's
    rules for a window).

    The endpoint reports each request's outcome; this decides the limit's size, between ``floor`` and the
    configured ``ceiling``.

    - Slow start: the limit starts at ``initial`` (the endpoint's ``initial_concurrency``: by default an eighth
      of the ceiling, at least 8; TCP's initial window) and doubles after each window of successes (as many as
      the limit), up to the ceiling, until the first sign of overload. Starting low is what lets the client see
      the server's unloaded latency at all: a limit that starts far above a server's batch size queues every
      request from the first one on. But 8 at once loads no model server, and starting at 1 cost three windows
      of an idle server: reaching a ceiling of 64 takes 4 windows, not 7, and one of 256 takes 4, not 6.
      (Growing fourfold halves that, but leaves fewer low-load windows to take the baseline from: on a loaded
      machine a queueing server's limit then settles higher, tests/test_adaptive.py.)
    - Overload (429, 5xx, a timeout or dropped connection): the limit becomes ``decrease`` × the requests that
      were in flight when the rejected one was sent, i.e. just under what the server refused. Only requests
      sent after the last decrease count, so one burst of rejections is one decrease, not a collapse.
    - Latency growth: when a window's mean latency exceeds ``latency_factor`` × the lowest window mean of the
      recent past (slow start measured it at low load), the server is queueing: the limit shrinks towards what
      Little's law says the server keeps up with. Window means, not single requests: a model's replies vary
      in length, and one short reply is no baseline. Not while this client's own event loop was busy (running
      or waiting for a CPU) for ``client_busy`` or more of the window (``ClientLoad``): then the growth is the
      client's lag, and backing off would only idle the server; overload still shows as 429s and 5xx.
    - Otherwise, after a window of successes while the limit was in use, one slot more; but back at the level
      where the server last refused, only every ``PROBE_WINDOWS`` windows (a server's cap rarely moves, and each
      probe above it costs a burst of 429s and a decrease).

    Thread-safe: shard threads share the endpoint.
    """

    RECENT_WINDOWS = 32
    PROBE_WINDOWS = 8

    def __init__(self, limit: ConcurrencyLimit, ceiling: int, floor: int = 1, decrease: float = 0.9,
                 latency_factor: float | None = 3.0, client_busy: float = 0.5, initial: int = 1) -> None:
        self.limit, self.ceiling, self.floor = limit, ceiling, min(floor, ceiling)
        self.client_busy, self._client = client_busy, ClientLoad()
        self.ignored_latency = 0  # windows whose latency grew while the client itself was busy
        self.decrease, self.latency_factor = decrease, latency_factor
        self._lock = threading.Lock()
        self._generation = 0
        self._successes = 0
        self._window_latency = 0.0
        self._recent: deque[float] = deque(maxlen=self.RECENT_WINDOWS)  # mean latency of each recent window
        self.decreases = 0
        self.increases = 0
        self.slow_start = True
        self._refused_at: int | None = None  # requests in flight when the server last said it was overloaded
        self._held = 0  # windows spent just under that level
        limit.resize(min(self.ceiling, max(self.floor, initial, 1)))

    def issued(self) -> tuple[int, int]:
        """Called with the slot held: the ticket its outcome is reported with (generation, requests in flight)."""
        return self._generation, self.limit.in_use

    def succeeded(self, ticket: tuple[int, int], latency_s: float) -> None:
        with self._lock:
            self._successes += 1
            self._window_latency += latency_s
            size = self.limit.limit
            if self._successes < size:
                return
            mean = self._window_latency / self._successes
            baseline = min(self._recent, default=mean)
            self._recent.append(mean)
            self._successes, self._window_latency = 0, 0.0
            busy = self._client.share()
            client_lag = self.client_busy < 1 and busy >= self.client_busy  # 1: never discount latency
            if self.latency_factor and mean > self.latency_factor * baseline and client_lag:
                self.ignored_latency += 1
            elif self.latency_factor and mean > self.latency_factor * baseline:
                if ticket[0] == self._generation:  # else: sent before the last decrease, which answered it
                    # By Little's law the server keeps up with about size × tolerated / seen latency in flight:
                    # shrink that far (at most by half), so a limit far too high comes down in a few windows.
                    self._shrink(size, max(0.5, min(self.decrease, self.latency_factor * baseline / mean)))
            elif ticket[1] >= size - 1 and size < self.ceiling:  # only grow a limit that is actually reached
                if self._refused_at is not None and size + 1 >= self._refused_at:
                    self._held += 1
                    if self._held < self.PROBE_WINDOWS:
                        return
                self._held = 0
                self.increases += 1
                self.limit.resize(min(self.ceiling, 2 * size if self.slow_start else size + 1))

    def overloaded(self, ticket: tuple[int, int]) -> None:
        with self._lock:
            if ticket[0] != self._generation:  # sent before the last decrease: that decrease already answered it
                return
            self._shrink(min(self.limit.limit, ticket[1]), refused_at=ticket[1])

    def _shrink(self, basis: int, factor: float | None = None, refused_at: int | None = None) -> None:
        self.slow_start = False
        if refused_at is not None:  # a refusal, not just slow replies: the level to probe sparingly
            self._refused_at, self._held = refused_at, 0
        self._generation += 1
        self._successes, self._window_latency = 0, 0.0
        self.decreases += 1
        factor = self.decrease if factor is None else factor
        self.limit.resize(max(self.floor, min(self.limit.limit - 1, int(basis * factor))))
