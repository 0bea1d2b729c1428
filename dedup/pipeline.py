"""The one entry point: a run's rows through the enabled layers (exact → near → semantic), against earlier versions.

Each layer keeps one deterministic representative per cluster: rows are offered in a
fixed order (shard, then index), and a row is a duplicate only of an *earlier kept*
row (of an earlier version, or earlier in this run). Ties go to the most similar, then
the earliest. The outcome says, per rejected row, which layer and of whom; it carries
each layer's stats and this run's survivors as a new index part, which the store
persists next to the Delta version it belongs to (``dedup.index``).

Pure computation: no files here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dedup.exact import ExactStep
from dedup.index import DedupIndex
from dedup.near import LOCAL, NearStep, NearWork
from dedup.semantic import SemanticStep
from dedup.steps import Decisions, Rows, Step
from schemas import DedupConfig


@dataclass
class DedupOutcome:
    """Per row offered: rejected rows as {position: (layer, reason)}, everyone's cluster id, and the new index part.

    ``counts`` has one entry per enabled layer (rows it rejected), in order: what the funnel shows.
    """

    rejected: dict[int, tuple[str, str]]
    cluster_ids: list[str]
    counts: dict[str, int]
    stats: dict[str, dict[str, int]]
    index: DedupIndex
    similarity_histogram: dict[str, int] = field(default_factory=dict)


def enabled_steps(config: DedupConfig, near: NearWork = LOCAL) -> list[Step]:
    """The enabled layers, in the order a row meets them."""
    return ([ExactStep()] if config.exact else []) + ([NearStep(config, near)] if config.near.enabled else []) + (
        [SemanticStep(config)] if config.semantic.enabled else [])


class Deduplicator:
    """``near`` is where the near layer's heavy work runs (``near.NearWork``): here, or on Ray (``dedup.on_ray``).
    Only where it runs differs: the decisions are made here, in order, and are the same either way."""

    def __init__(self, config: DedupConfig, prior: DedupIndex | None = None, near: NearWork = LOCAL) -> None:
        self.config = config
        self.prior = prior or DedupIndex()
        self.near = near

    def run(self, ids: Sequence[str], accepted: Sequence[bool], hashes: Sequence[str | None],
            texts_for: Callable[[list[int]], list[str]]) -> DedupOutcome:
        """Decide duplicates among the accepted rows, in the order given.

        ``texts_for(positions)`` returns the user text of those rows; it is asked once, for
        the rows still kept when the first layer that reads text here starts, so a run of
        exact repeats reads no messages. A ``ShardTexts`` (rows as they lie in shard
        Parquet files) also lets Ray workers read the texts themselves (``dedup.on_ray``).
        """
        decisions = Decisions(ids=ids, hashes=hashes, prior=self.prior)
        rows = Rows(positions=[i for i, ok in enumerate(accepted) if ok], source=texts_for)
        steps = enabled_steps(self.config, self.near)
        for step in steps:
            rows = step(rows, decisions)
        index = DedupIndex(ids=[ids[i] for i in rows.positions],
                           cluster_ids=[decisions.cluster_ids[i] for i in rows.positions],
                           hashes=[hashes[i] for i in rows.positions],
                           signatures=rows.signatures, embeddings=rows.embeddings)
        return DedupOutcome(
            rejected=decisions.rejected, cluster_ids=decisions.cluster_ids, index=index,
            counts={s.layer: s.stats["duplicates"] for s in steps}, stats={s.layer: dict(s.stats) for s in steps},
            similarity_histogram=next((s.similarity_histogram for s in steps if isinstance(s, SemanticStep)), {}))

    def index_for(self, ids: list[str], cluster_ids: list[str], hashes: list[str | None],
                  texts: Callable[[], list[str]]) -> DedupIndex:
        """The index part of rows already kept (an earlier version's, rebuilt from its stored rows)."""
        fetched: list[list[str]] = []

        def once() -> list[str]:
            if not fetched:
                fetched.append(texts())
            return fetched[0]

        parts: dict = {}
        for step in enabled_steps(self.config):
            parts.update(step.index_part(once))
        return DedupIndex(ids=ids, cluster_ids=cluster_ids, hashes=hashes, **parts)
