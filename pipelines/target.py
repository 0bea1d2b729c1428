"""Target-driven runs: which shard starts next, when the run stops, and how many rows it will have accepted.

A target run (``target_accepted: N``) has no fixed size: shard k is always the same
task indices (``pipelines.shard.shard_indices``), and shards start, a few at a time,
until N rows survive every filter *and* dedup. The count is exact, not an estimate:

- Dedup is greedy in commit order (shard, then index): a row is a duplicate only of
  an earlier kept row. So the decisions for shards 0..k do not depend on any later
  shard, and deduplicating shard k against (earlier versions + the survivors of
  shards 0..k-1) decides exactly what the commit's single pass over all shards will.
  ``AcceptedCount`` does that, one shard at a time in order, holding only the dedup
  index of the survivors (what the commit holds anyway), never the rows.
- The run stops at the first shard K where the count reaches N. Shards after K that
  were started speculatively (to keep the endpoint busy) are discarded, so which
  rows are committed depends only on the seed, never on timing.
- The commit dedups shards 0..K again and keeps the first N survivors; accepted rows
  of shard K after the N-th are committed as rejected at stage ``target`` (they
  passed every check; every task of a committed shard still ends as a row).

Budgets (``budget.max_*``) stop a run earlier; it then commits what it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from dedup import DedupIndex, Deduplicator, ShardTexts
from pipelines.budget import TARGET
from pipelines.rows import ACCEPTED
from pipelines.shard import shard_indices
from pipelines.store import _light
from schemas import RunConfig

NO_YIELD_SHARDS = 10  # a target run that accepted nothing in this many shards stops (``no_yield``)


class AcceptedCount:
    """Rows accepted after every filter and dedup, shard by shard in commit order: what the commit will decide."""

    def __init__(self, dedup: Deduplicator | None) -> None:
        self.config = dedup.config if dedup is not None else None
        self.prior = dedup.prior if dedup is not None else DedupIndex()
        self.survivors = 0
        self.tasks = 0

    def add(self, path: Path) -> int:
        """Count one shard's survivors (the next in order); returns them."""
        light = _light(path)
        self.tasks += light.num_rows
        accepted = pc.equal(light.column("status"), ACCEPTED).to_pylist()
        if self.config is None:
            kept = sum(bool(a) for a in accepted)
        else:
            outcome = Deduplicator(self.config, self.prior).run(
                light.column("id").to_pylist(), [bool(a) for a in accepted], light.column("dedup_hash").to_pylist(),
                ShardTexts([path]))
            self.prior = DedupIndex.concat([self.prior, outcome.index])
            kept = len(outcome.index)
        self.survivors += kept
        return kept

    @property
    def rate(self) -> float | None:
        """Survivors per task so far (None before the first shard)."""
        return self.survivors / self.tasks if self.tasks else None


@dataclass
class Finished:
    path: str | None  # None: abandoned (started beyond the target), nothing staged
    tasks: int  # rows in its file


@dataclass
class ShardPlan:
    """Which shards to start, in order, and where to stop; the flow does the Prefect part.

    ``window`` shards are open at once (synthesis or rollout), so the endpoint always has the next shard's
    dialogues when one shard's last dialogues run out; a target run opens no more than the count so far
    says it still needs (survivors per task × the tasks of open shards), plus nothing speculative beyond.
    """

    config: RunConfig
    window: int
    count: AcceptedCount | None = None  # target runs only
    next: int = 0
    open: set[int] = field(default_factory=set)
    done: dict[int, Finished] = field(default_factory=dict)
    frontier: int = 0  # shards below it are counted
    stop: str | None = None  # num_tasks, target_accepted, no_yield, or the budget's "name: detail"
    cut: int | None = None  # target runs: the shard whose survivors reach the target

    @property
    def target(self) -> int | None:
        return self.config.target_accepted

    def _expected(self) -> float:
        assert self.count is not None
        rate = self.count.rate if self.count.rate is not None else 1.0
        pending = [s for s in (*self.open, *self.done) if s >= self.frontier]
        return self.count.survivors + rate * sum(len(shard_indices(self.config, s)) for s in pending)

    def to_start(self) -> list[int]:
        """The shards to start now."""
        out = []
        limit = self.config.num_shards
        while (self.stop is None and len(self.open) < self.window and (limit is None or self.next < limit)
               and (self.count is None or self._expected() < (self.target or 0))):
            out.append(self.next)
            self.open.add(self.next)
            self.next += 1
        return out

    def finished(self, shard: int, result: Finished) -> None:
        """A shard's rollout ended (or was abandoned); count what can be counted in order, and maybe stop."""
        self.open.discard(shard)
        self.done[shard] = result
        self._advance()

    def _advance(self) -> None:
        while self.count is not None and self.cut is None and self.frontier in self.done:
            staged = self.done[self.frontier]
            if staged.path is None:
                break  # abandoned, which only happens after the cut: nothing to count
            self.count.add(Path(staged.path))
            if self.count.survivors >= (self.target or 0):
                self.cut = self.frontier
                self.stop = TARGET
            self.frontier += 1
        if self.count is not None and self.stop is None and self.frontier >= NO_YIELD_SHARDS \
                and not self.count.survivors:
            self.stop = f"no_yield: {self.count.tasks} tasks and not one row accepted"
        if self.stop is None and not self.open and (self.config.num_shards is not None
                                                     and self.next >= self.config.num_shards):
            self.stop = "num_tasks" if self.config.task_limit == self.config.num_tasks else "max_tasks"

    def budget_out(self, reason: str) -> None:
        if self.stop is None:
            self.stop = reason

    def over(self) -> bool:
        """Stopped, with nothing left running."""
        return self.stop is not None and not self.open

    def committed(self) -> list[int]:
        """The shards the version holds, in order: up to the cut for a target reached, else every one staged."""
        staged = sorted(s for s, f in self.done.items() if f.path is not None)
        return [s for s in staged if s <= self.cut] if self.stop == TARGET and self.cut is not None else staged

    def recount(self, count: AcceptedCount) -> None:
        """Count again from shard 0 against another dedup view (a concurrent commit changed the dataset)."""
        self.count, self.frontier, self.cut, self.stop = count, 0, None, None
        self._advance()
