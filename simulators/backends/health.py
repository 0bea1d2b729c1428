"""Run health: a backend that keeps failing stops the run early instead of filling a version with rejects.

Each ``Endpoint`` reports every attempt to its ``HealthMonitor``. Only
failures a working server does not produce count (``unhealthy`` errors:
refused or dropped connections, timeouts, 5xx, a key or model the server
refuses); a 429 or a request the server rejects for its content (400) is an
answer. The monitor trips when ``max_consecutive_failures`` attempts in a row
failed, or more than ``max_error_rate`` of the last ``window`` attempts did
(``backends.NAME.health`` in the run config). Once tripped, every further
request fails at once (no more waiting on a dead server), and the shard that
sees it raises ``BackendUnhealthyError`` instead of staging its rows, so the
run fails with one line, commits nothing, and keeps the shards staged before
for a resume.
"""

from __future__ import annotations

import threading
from collections import deque

from schemas import BackendHealthConfig, RunFailedError
from simulators.backends.base import BackendError


class BackendUnhealthyError(RunFailedError):
    """The run stopped early because a backend kept failing."""


class BackendStoppedError(BackendError):
    """A request not sent: its backend's monitor has tripped (the dialogue ends; the run is stopping)."""


class HealthMonitor:
    def __init__(self, name: str, url: str, config: BackendHealthConfig) -> None:
        self.name, self.url, self.config = name, url, config
        self._window: deque[bool] = deque(maxlen=config.window)
        self._consecutive = 0
        self._lock = threading.Lock()
        self.tripped: str | None = None  # why, once it has

    def record(self, failure: BackendError | None) -> None:
        """One attempt's outcome: ``None`` for an answer, or the error (counted when it is ``unhealthy``)."""
        bad = failure is not None and getattr(failure, "unhealthy", False)
        with self._lock:
            self._window.append(bad)
            self._consecutive = self._consecutive + 1 if bad else 0
            if not bad or self.tripped is not None:
                return
            failed = sum(self._window)
            if self._consecutive >= self.config.max_consecutive_failures:
                self.tripped = f"{self._consecutive} attempts in a row failed (the last: {failure})"
            elif len(self._window) == self.config.window and failed > self.config.max_error_rate * len(self._window):
                self.tripped = f"{failed} of the last {len(self._window)} attempts failed (the last: {failure})"

    def check(self) -> None:
        """Refuse to send while tripped."""
        if self.tripped is not None:
            raise BackendStoppedError(f"backend {self.name!r} stopped: {self.tripped}")

    def error(self) -> BackendUnhealthyError:
        return BackendUnhealthyError(
            f"backend {self.name!r} at {self.url} kept failing: {self.tripped}; stopped early, nothing committed "
            f"(limits: backends.{self.name}.health)")


def raise_if_unhealthy(endpoints: dict) -> None:
    """Raise for the first endpoint whose monitor tripped: the caller's shard must not be staged."""
    for endpoint in endpoints.values():
        monitor = getattr(endpoint, "health", None)
        if monitor is not None and monitor.tripped is not None:
            raise monitor.error()
