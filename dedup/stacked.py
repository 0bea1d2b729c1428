"""Row-stacked matrices read as one without concatenating them: the prior versions' signatures, memory-mapped.

Why: deduplicating version k against versions 0..k-1 must not hold every earlier
signature in memory (512 bytes a row at num_perm 128, a copy per concatenation).
The parts stay memory-mapped ``.npy`` files; the near layer streams them in chunks to
find the earlier rows sharing a bucket with a new row, and reads only those.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence

import numpy as np


def _release(part: np.ndarray) -> None:
    """Drop a memory-mapped part's pages from this process's resident set (they stay in the page cache):
    streaming every earlier version would otherwise leave all of them counted as ours."""
    raw = getattr(part, "_mmap", None)
    if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
        raw.madvise(mmap.MADV_DONTNEED)


class Stacked:
    """``parts`` (2-D, same columns) as one matrix: ``len``, ``shape``, ``take`` rows, ``chunks`` to stream."""

    def __init__(self, parts: Sequence[np.ndarray | Stacked]) -> None:
        flat = [q for p in parts for q in (p.parts if isinstance(p, Stacked) else [p])]  # a stack of stacks: one
        self.parts = [p for p in flat if len(p)]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.columns = self.parts[0].shape[1] if self.parts else 0

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.columns

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (ascending or not), as one in-memory array."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.columns), dtype=self.parts[0].dtype if self.parts else np.uint32)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for k, p in enumerate(self.parts):
            mine = np.flatnonzero(part == k)
            if len(mine):
                out[mine] = p[rows[mine] - self.starts[k]]
                _release(p)
        return out

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row number, rows) blocks of at most ``size`` rows, in order."""
        for k, p in enumerate(self.parts):
            for lo in range(0, len(p), size):
                yield int(self.starts[k]) + lo, np.array(p[lo:lo + size])
            _release(p)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate(self.parts) if self.parts else np.zeros((0, self.columns), np.uint32)
        return whole if dtype is None else whole.astype(dtype)
