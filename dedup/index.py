"""What dedup remembers of kept rows: one list entry or matrix row per kept row (signatures: memory-mapped parts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dedup.stacked import Stacked


@dataclass
class DedupIndex:
    """Kept rows' ids, cluster ids and exact hashes, and per enabled layer its matrix (signatures, embeddings)."""

    ids: list[str] = field(default_factory=list)
    cluster_ids: list[str] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)
    signatures: np.ndarray | Stacked | None = None  # prior versions': memory-mapped parts, stacked
    embeddings: np.ndarray | None = None
    # Per (bands, rows), the signatures' band keys where the parts keep them (``dedup.near.part_keys``), stacked
    # like the signatures; a banding some part lacks is not here (the near layer makes its keys again).
    band_keys: dict[tuple[int, int], np.ndarray | Stacked] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: Sequence[DedupIndex]) -> DedupIndex:
        out = DedupIndex()
        for p in parts:
            out.ids += p.ids
            out.cluster_ids += p.cluster_ids
            out.hashes += p.hashes
        signed = [p for p in parts if p.signatures is not None and len(p)]
        out.signatures = Stacked([p.signatures for p in signed]) if signed else None
        for banding in set.intersection(*(set(p.band_keys) for p in signed)) if signed else ():
            out.band_keys[banding] = Stacked([p.band_keys[banding] for p in signed])
        embs = [p.embeddings for p in parts if p.embeddings is not None and len(p)]
        out.embeddings = np.concatenate(embs) if embs else None
        return out
