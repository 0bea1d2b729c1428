"""What dedup remembers of kept rows: one entry or matrix row per kept row (earlier versions': Arrow, memory-mapped).

The earlier versions' ids, cluster ids and hashes stay Arrow string columns (``Strings``):
a layer reads a few of them by position (the rows a decision names) or all of them in
Arrow's own kernels (``ExactStep``), so loading the tenth version's index does not
make Python strings of every earlier row, which was what grew with the versions kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dedup.stacked import Stacked


class Strings(Sequence):
    """A string column as Arrow holds it, read as a sequence of ``str | None``."""

    __slots__ = ("array",)

    def __init__(self, array: pa.ChunkedArray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, k):  # an int: one value; a slice (step 1): a column
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step != 1:
                raise ValueError("Strings slices with step 1 only")
            return Strings(self.array.slice(start, max(stop - start, 0)))
        return self.array[k].as_py()

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.array.to_pylist())  # the whole column: one conversion, not one per value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one


def arrow(values: Sequence[str | None]) -> pa.ChunkedArray:
    """Any column of the index as an Arrow string column (a ``Strings``' own, without a copy)."""
    return values.array if isinstance(values, Strings) else pa.chunked_array([pa.array(values, pa.string())])


@dataclass
class DedupIndex:
    """Kept rows' ids, cluster ids and exact hashes, and per enabled layer its matrix (signatures, embeddings)."""

    ids: Sequence[str] = field(default_factory=list)
    cluster_ids: Sequence[str] = field(default_factory=list)
    hashes: Sequence[str | None] = field(default_factory=list)
    signatures: np.ndarray | Stacked | None = None  # prior versions': memory-mapped parts, stacked
    embeddings: np.ndarray | None = None
    # Per (bands, rows), the signatures' band keys where the parts keep them (``dedup.near.part_keys``), stacked
    # like the signatures; a banding some part lacks is not here (the near layer makes its keys again).
    band_keys: dict[tuple[int, int], np.ndarray | Stacked] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: Sequence[DedupIndex]) -> DedupIndex:
        def column(name: str) -> Strings:
            return Strings(pa.chunked_array([c for p in parts for c in arrow(getattr(p, name)).chunks], pa.string()))

        out = DedupIndex(ids=column("ids"), cluster_ids=column("cluster_ids"), hashes=column("hashes"))
        signed = [p for p in parts if p.signatures is not None and len(p)]
        out.signatures = Stacked([p.signatures for p in signed]) if signed else None
        for banding in set.intersection(*(set(p.band_keys) for p in signed)) if signed else ():
            out.band_keys[banding] = Stacked([p.band_keys[banding] for p in signed])
        embs = [p.embeddings for p in parts if p.embeddings is not None and len(p)]
        out.embeddings = np.concatenate(embs) if embs else None
        return out
