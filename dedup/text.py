"""What the near and semantic layers compare: a dialogue's user turns, one per line.

The assistant's side follows from the user's, so two dialogues whose users say
the same things are duplicates whatever the assistant answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq


def user_texts(frame: pl.DataFrame) -> list[str]:
    """The user turns of each row's stored ``messages`` column, one per line, in polars (no Python per message)."""
    users = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content").fill_null(""))
    return frame.select(users.list.join("\n")).to_series().fill_null("").to_list()


def shard_user_texts(path: str | Path, rows: list[int]) -> list[str]:
    """The user texts of the given rows (ascending) of one shard file."""
    return user_texts(pl.read_parquet(path, columns=["messages"])[rows])


class ShardTexts:
    """The offered rows' user texts as they lie in shard Parquet files (a ``messages`` column), numbered in file
    order: a ``texts_for`` for ``Deduplicator.run`` that also says where the rows are, so that work done next to
    the data (``dedup.on_ray``) reads each file itself instead of receiving texts from this process."""

    def __init__(self, files: Sequence[str | Path]) -> None:
        self.files = [Path(f) for f in files]
        self.starts = np.cumsum([0] + [pq.ParquetFile(f).metadata.num_rows for f in self.files])

    def by_file(self, positions: Sequence[int]) -> list[tuple[Path, list[int], np.ndarray]]:
        """(file, its rows, where they go among ``positions``) for each file holding some of them."""
        pos = np.asarray(positions, dtype=np.int64)
        which = np.searchsorted(self.starts, pos, side="right") - 1
        out = []
        for k in np.unique(which).tolist():
            at = np.flatnonzero(which == k)
            local = pos[at] - self.starts[k]
            order = np.argsort(local, kind="stable")
            out.append((self.files[k], local[order].tolist(), at[order]))
        return out

    def __call__(self, positions: list[int]) -> list[str]:
        """One shard file in memory at a time."""
        out: list[str] = [""] * len(positions)
        for path, rows, at in self.by_file(positions):
            for a, text in zip(at.tolist(), shard_user_texts(path, rows), strict=True):
                out[a] = text
        return out
