"""A version's data files written by trajforge itself and committed to Delta as add actions.

Why not ``write_deltalake`` over a stream: deltalake 1.6's writer keeps ~33 MB per 1,000
rows of a stream until the commit (``bench/delta_write_memory.py``), so a 100k-row
version cost the committing process ~3.3 GB whatever the target file size. pyarrow's
``ParquetWriter`` holds one row group at a time; the files are then committed in one
Delta transaction (``create_table_with_add_actions`` for a new table,
``create_write_transaction`` on the table as of the base version otherwise), which keeps
delta-rs' atomicity and its conflict check: a concurrent commit fails this one.

What a transaction cannot do is change the table's schema, so a table whose schema is
not the row schema (written by older code, before a column was added) still gets its
next version from ``write_deltalake(schema_mode="merge")`` (see ``pipelines.store``).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

# Delta's own writer starts a new file at ~100 MiB; the same here, so a version's files stay few and readable.
TARGET_FILE_BYTES = 100 * 2**20
# Delta clients truncate string statistics to 32 characters; longer bounds are left out (no stats: no skipping).
_STAT_CHARS = 32


class PartWriter:
    """Writes batches of ``schema`` into ``root`` as Parquet files of whole row groups; ``close()`` returns the add
    actions and ``discard()`` removes the files of a commit that did not happen (a conflict, an error)."""

    def __init__(self, root: Path, schema: pa.Schema, row_group_rows: int,
                 target_file_bytes: int = TARGET_FILE_BYTES) -> None:
        self.root, self.schema, self.row_group_rows, self.target = root, schema, row_group_rows, target_file_bytes
        self.paths: list[Path] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._sink: pa.OSFile | None = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, batches: Iterable[pa.RecordBatch]) -> PartWriter:
        for batch in batches:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            if self._pending_rows >= self.row_group_rows:
                self._flush()
        return self

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        if self._writer is None:
            path = self.root / f"part-{len(self.paths):05d}-{uuid.uuid4()}-c000.snappy.parquet"
            self.paths.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="snappy")
        table = pa.Table.from_batches(self._pending, self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self._pending, self._pending_rows = [], 0
        if self._sink.tell() >= self.target:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def close(self) -> list[AddAction]:
        self._flush()
        self._close_file()
        return [_add_action(self.root, path) for path in self.paths]

    def discard(self) -> None:
        self._close_file()
        for path in self.paths:
            path.unlink(missing_ok=True)


def _add_action(root: Path, path: Path) -> AddAction:
    stat = path.stat()
    return AddAction(path.relative_to(root).as_posix(), stat.st_size, {}, int(stat.st_mtime * 1000), True,
                     json.dumps(file_stats(pq.ParquetFile(path).metadata)))


def file_stats(meta: pq.FileMetaData) -> dict:
    """Delta's per-file statistics from the Parquet footer: rows, and for top-level primitive columns their nulls
    and bounds (readers skip files with them), merged over the row groups."""
    nulls: dict[str, int] = {}
    low: dict[str, object] = {}
    high: dict[str, object] = {}
    partial: set[str] = set()  # a row group without statistics: nothing is known
    unbounded: set[str] = set()  # bounds too long to write: the null count still holds
    leaves = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for field in meta.schema.to_arrow_schema():
        leaf = leaves.get(field.name)
        if leaf is None or pa.types.is_nested(field.type):
            continue
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(leaf).statistics
            if stats is None or not stats.has_null_count:
                partial.add(field.name)
                break
            nulls[field.name] = nulls.get(field.name, 0) + (stats.null_count or 0)
            if not stats.has_min_max:
                continue
            lo, hi = stats.min, stats.max
            if not _bound(lo) or not _bound(hi):
                unbounded.add(field.name)
                continue
            low[field.name] = lo if field.name not in low else min(low[field.name], lo)
            high[field.name] = hi if field.name not in high else max(high[field.name], hi)
    for name in partial:
        nulls.pop(name, None)
    for name in partial | unbounded:
        low.pop(name, None)
        high.pop(name, None)
    return {"numRecords": meta.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls}


def _bound(value: object) -> bool:
    """Whether a bound can be written as Delta writes it: short strings, finite numbers."""
    if isinstance(value, str):
        return len(value) <= _STAT_CHARS
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
