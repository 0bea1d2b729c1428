"""Big datasets for the viewer's tests and benchmark, made from real pipeline output.

A real offline run gives a few thousand real rows (accepted and rejected, with
their real reasons and dialogues); a 100k-row dataset is those rows copied into
new versions through the store's own commit path, so the table, its files and
its manifests are what a long series of nightly runs would leave.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from pipelines.rows import ROW_SCHEMA
from pipelines.store import DatasetStore


def replicate(source: str | Path, target: str | Path, rows_per_version: int, versions: int,
              shard_rows: int = 5000) -> list[int]:
    """Commit ``versions`` new versions to ``target``, each ``rows_per_version`` rows cycled from ``source``'s newest.

    Each copy gets its own run id (``replica-K``) and task indices, as a new run
    would; ids and contents are the source rows', so dedup-style duplicate ids
    stay as real datasets have them. Returns the committed version numbers.
    """
    store, out = DatasetStore(source), DatasetStore(target)
    template = store.versions()[-1]
    rows = DeltaTable(str(source)).to_pyarrow_table().select(ROW_SCHEMA.names).cast(ROW_SCHEMA)
    committed = []
    start = len(out.versions()) if out.exists() else 0
    for k in range(start, start + versions):
        run_id = f"replica-{k}"
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for part, first in enumerate(range(0, rows_per_version, shard_rows)):
                n = min(shard_rows, rows_per_version - first)
                take = pa.array([(first + i) % rows.num_rows for i in range(n)], pa.int64())
                chunk = rows.take(take)
                chunk = chunk.set_column(ROW_SCHEMA.get_field_index("run_id"), "run_id",
                                         pa.array([run_id] * n, pa.string()))
                chunk = chunk.set_column(ROW_SCHEMA.get_field_index("index"), "index",
                                         pc.add(pa.array(range(n), pa.int64()), first))
                chunk = chunk.set_column(ROW_SCHEMA.get_field_index("shard"), "shard",
                                         pa.array([part] * n, pa.int32()))
                path = Path(tmp) / f"shard-{part:05d}.parquet"
                pq.write_table(chunk, path)
                files.append(path)
            manifest = template.model_copy(update={
                "version": None, "run_id": run_id, "created_at": datetime.now(UTC).isoformat(),
                "usage": {}, "synthesis": {}})
            committed.append(out.commit(files, manifest, dedup=None).version)
    return committed


def commit_rows(root: str | Path, rows: list[dict], run_id: str, **manifest: object) -> int:
    """Commit ``rows`` (dicts in the row schema) as one new version through the store's commit; its number."""
    store = DatasetStore(root)
    template = store.versions()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard-00000.parquet"
        pq.write_table(pa.Table.from_pylist([{**r, "run_id": run_id} for r in rows], schema=ROW_SCHEMA), path)
        final = template.model_copy(update={"version": None, "run_id": run_id, "usage": {}, "synthesis": {},
                                            "created_at": datetime.now(UTC).isoformat(), **manifest})
        return store.commit([path], final, dedup=None).version


def without_fault(source: str | Path, target: str | Path) -> int:
    """A copy of ``source``'s newest version as code older than fault attribution wrote it: no ``fault`` column.

    Returns the number of rows.
    """
    from deltalake import CommitProperties, write_deltalake

    from pipelines.store import MANIFEST_KEY

    manifest = DatasetStore(source).versions()[-1]
    rows = DeltaTable(str(source)).to_pyarrow_table()
    rows = rows.drop_columns(["fault"])
    write_deltalake(str(target), rows, mode="error", commit_properties=CommitProperties(
        custom_metadata={MANIFEST_KEY: manifest.model_dump_json(exclude={"version"})}))
    return rows.num_rows
