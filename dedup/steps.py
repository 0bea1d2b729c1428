"""What a dedup step is: one layer, one method, its own stats (datatrove's dedup blocks, in miniature).

The pipeline (``dedup.pipeline.Deduplicator``) offers every step the rows still
kept, in order; a step returns which of them it keeps and records each
rejection (layer, reason, the representative's cluster) in the shared
``Decisions``. A step also contributes its own part to the index of kept rows
(a matrix row per kept row), so the next version can dedup against this one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dedup.index import DedupIndex


@dataclass
class Rows:
    """The rows still kept, as positions into the offered rows, with what earlier steps computed for them."""

    positions: list[int]
    source: Callable[[list[int]], list[str]] | None = None  # positions -> user texts (``Deduplicator.run``)
    texts: list[str] | None = None  # user text, fetched once, when the first step asks (``user_texts``)
    signatures: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def user_texts(self) -> list[str]:
        """The rows' user texts, read from ``source`` the first time a step asks: a run of exact repeats, or a near
        layer whose signatures are computed where the rows lie (Ray), reads no messages here."""
        if self.texts is None:
            self.texts = self.source(self.positions) if self.positions and self.source else []
        return self.texts

    def keep(self, mask: Sequence[bool]) -> Rows:
        mask = np.asarray(mask, dtype=bool)
        return Rows(positions=[p for p, k in zip(self.positions, mask, strict=True) if k], source=self.source,
                    texts=None if self.texts is None else [t for t, k in zip(self.texts, mask, strict=True) if k],
                    signatures=None if self.signatures is None else self.signatures[mask],
                    embeddings=None if self.embeddings is None else self.embeddings[mask])


@dataclass
class Decisions:
    """What every step reads and writes: the offered rows, the prior index, and the rejections so far."""

    ids: Sequence[str]
    hashes: Sequence[str | None]
    prior: DedupIndex
    cluster_ids: list[str] = field(default_factory=list)
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)  # position -> (layer, reason)

    def __post_init__(self) -> None:
        self.cluster_ids = self.cluster_ids or list(self.ids)

    def reject(self, position: int, layer: str, reason: str, cluster_id: str) -> None:
        self.rejected[position] = (layer, reason)
        self.cluster_ids[position] = cluster_id


class Step:
    """One dedup layer. ``run`` decides; ``stats`` counts what it saw (offered, duplicates, kept)."""

    layer: ClassVar[str]

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    def run(self, rows: Rows, decisions: Decisions) -> list[bool]:
        """Which of ``rows`` to keep, in order; rejections are recorded in ``decisions``."""
        raise NotImplementedError

    def __call__(self, rows: Rows, decisions: Decisions) -> Rows:
        keep = self.run(rows, decisions)
        self.stats.update(offered=len(rows.positions), duplicates=len(keep) - sum(keep), kept=sum(keep))
        return rows.keep(keep)

    def index_part(self, texts: Callable[[], list[str]]) -> dict[str, np.ndarray]:
        """This layer's matrices for kept rows whose user ``texts()`` these are (rebuilding a stored part); none by default."""
        return {}
