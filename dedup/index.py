"""What dedup remembers of kept rows, in memory: one list entry or matrix row per kept row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DedupIndex:
    """Kept rows' ids, cluster ids and exact hashes, and per enabled layer its matrix (signatures, embeddings)."""

    ids: list[str] = field(default_factory=list)
    cluster_ids: list[str] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)
    signatures: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: Sequence[DedupIndex]) -> DedupIndex:
        out = DedupIndex()
        for p in parts:
            out.ids += p.ids
            out.cluster_ids += p.cluster_ids
            out.hashes += p.hashes
        for name in ("signatures", "embeddings"):
            mats = [getattr(p, name) for p in parts if getattr(p, name) is not None and len(p)]
            setattr(out, name, np.concatenate(mats) if mats else None)
        return out
