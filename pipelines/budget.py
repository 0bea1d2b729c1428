"""Budgets during a run: what has been spent, and whether a task may still start.

The flow decides where a run stops (shards, the target, the budget), but the
tasks inside a shard must notice a spent budget between two dialogues, not at
the end of the shard. Two channels carry the decision to them:

- a ``RunLedger`` per run and process: the usage meters of every shard running in
  this process, live (they are the very objects the endpoints charge), plus what
  finished shards spent; shard threads of the thread runner see each other's spend
  the moment a dialogue ends;
- a stop file in the run's staging folder, written by the flow when it decides to
  stop (a budget seen at a shard's end, the target reached): what shards in other
  processes (process and Ray runners) read.

A task that has started always finishes, so a budget can be overshot by the
dialogues in flight when it ran out; no task starts after that.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.cost import run_cost
from schemas import RunConfig, Usage

STOP_FILE = "stop.json"
TARGET = "target_accepted"  # the stop reason that discards work in flight instead of committing it
CHECK_EVERY_S = 0.25  # how stale a shard's view of the stop file may be (it is read from disk)


@dataclass
class Spend:
    requests: int = 0
    tokens: int = 0
    cost: float = 0.0


def exceeded(config: RunConfig, spend: Spend) -> str | None:
    """The first budget the spend has reached, as ``name: what``; None while every one has room."""
    b = config.budget
    if b.max_requests is not None and spend.requests >= b.max_requests:
        return f"max_requests: {spend.requests} requests sent (budget {b.max_requests})"
    if b.max_tokens is not None and spend.tokens >= b.max_tokens:
        return f"max_tokens: {spend.tokens} tokens (budget {b.max_tokens})"
    if b.max_cost is not None and spend.cost >= b.max_cost:
        return f"max_cost: {spend.cost:.4g} spent (budget {b.max_cost:g})"
    return None


def spend_of(config: RunConfig, usage: dict[str, Usage], gpu_seconds: float) -> Spend:
    requests = sum(u.requests for u in usage.values())
    tokens = sum(u.prompt_tokens + u.completion_tokens for u in usage.values())
    cost = run_cost(config, usage, gpu_seconds)
    return Spend(requests, tokens, cost.total if cost else 0.0)


@dataclass
class RunLedger:
    """What one run has spent, as seen from this process; shards register their live meters here."""

    config: RunConfig
    base_seconds: float = 0.0  # generation time of earlier attempts of this run (a resumed run)
    started: float = field(default_factory=time.monotonic)
    _meters: dict[int, dict[str, Usage]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reason: str | None = None  # once a budget ran out, it stays out

    def track(self, shard: int, usage: dict[str, Usage]) -> None:
        """A shard's meters by role: live while it runs (synthesis, then the rollout's, which include
        synthesis's), or what a finished shard reported; each replaces the last."""
        with self._lock:
            self._meters[shard] = usage

    def usage(self) -> dict[str, Usage]:
        with self._lock:
            meters = list(self._meters.values())
        total: dict[str, Usage] = {}
        for by_role in meters:
            for role, u in list(by_role.items()):
                total.setdefault(role, Usage()).add(u)
        return total

    def seconds(self) -> float:
        return self.base_seconds + time.monotonic() - self.started

    def spend(self) -> Spend:
        return spend_of(self.config, self.usage(), self.seconds())

    def exceeded(self) -> str | None:
        """The budget that ran out, from the live meters at this moment (asked before each task starts).

        Not throttled: a check that was allowed to be a quarter of a second stale let a fast server's run spend
        14× its ``max_cost`` before it was seen (one dialogue at a time, replies in a millisecond). Summing a
        run's meters costs microseconds, and nothing is asked when no budget is set.
        """
        if not self.config.budget.is_set():
            return None
        if self._reason is None:
            self._reason = exceeded(self.config, self.spend())
        return self._reason


_LEDGERS: dict[str, RunLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger_for(run_id: str, config: RunConfig, base_seconds: float = 0.0, fresh: bool = False) -> RunLedger:
    """This process's ledger of ``run_id``; ``fresh`` (the flow, at its start) begins a new one."""
    with _LEDGERS_LOCK:
        if fresh or run_id not in _LEDGERS:
            _LEDGERS[run_id] = RunLedger(config, base_seconds)
        return _LEDGERS[run_id]


def write_stop(staging: Path, reason: str, detail: str = "") -> None:
    tmp = Path(staging) / (STOP_FILE + ".tmp")
    tmp.write_text(json.dumps({"reason": reason, "detail": detail}))
    os.replace(tmp, Path(staging) / STOP_FILE)


def clear_stop(staging: Path) -> None:
    """A restarted run decides again where to stop."""
    (Path(staging) / STOP_FILE).unlink(missing_ok=True)


class StopCheck:
    """Asked before each task of a shard starts: None, or why no more tasks start (``budget: why`` or the target)."""

    def __init__(self, staging: str | Path | None, ledger: RunLedger | None) -> None:
        self.path = Path(staging) / STOP_FILE if staging else None
        self.ledger = ledger
        self._seen: str | None = None
        self._at = 0.0

    def track(self, shard: int, usage: dict[str, Usage]) -> None:
        """Make a running shard's meters part of the run's spend in this process."""
        if self.ledger is not None:
            self.ledger.track(shard, usage)

    def reason(self) -> str | None:
        if self._seen is not None:
            return self._seen
        if self.ledger is not None and (why := self.ledger.exceeded()):
            self._seen = why
        elif self.path is not None and time.monotonic() - self._at >= CHECK_EVERY_S:
            self._at = time.monotonic()
            try:
                self._seen = json.loads(self.path.read_text())["reason"]
            except (OSError, ValueError, KeyError):
                pass
        return self._seen

    def discards(self) -> bool:
        """Whether the stop throws this shard's work away (the target was reached before it) rather than
        committing what it has (a budget ran out)."""
        return self._seen == TARGET


NEVER = StopCheck(None, None)
