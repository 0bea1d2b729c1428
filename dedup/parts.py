"""The cross-version index: one part per Delta version, persisted under ``DIR/_dedup/``.

A part is a folder ``v<version>-<run_id>/`` holding the kept rows' ids, cluster ids and
exact hashes (``rows.arrow``, an uncompressed Arrow IPC file, memory-mapped when read: the
tenth version maps nine, where decoding nine Parquet files was what grew; a part written
by older code has ``rows.parquet``, read as it is), MinHash signatures (``minhash.npy``) and their band keys
per LSH banding (``keys-<bands>x<rows>.npy``, what later versions stream), embeddings
(``embeddings.npy``, float16) and ``meta.json`` with the parameters they were made with.
It is written to a temporary folder and renamed into place, before the Delta commit;
it counts only if the table really has that version with that run id in its manifest,
so a part written for a commit that never happened is ignored.

A new run loads the parts (not the dataset's rows) to dedup against every earlier
version. A version without a usable part — committed by older code, a crash between
index and commit, or other near/semantic parameters — is rebuilt once from that
version's own kept rows, which the caller reads (this package knows no Delta table),
and then written, so the next run finds it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.index import DedupIndex, Strings, arrow
from dedup.minhash import TOKEN_HASH
from dedup.near import part_keys
from dedup.pipeline import Deduplicator
from dedup.semantic import MODEL_NAME
from dedup.text import user_texts
from schemas import DatasetManifest, DedupConfig

INDEX_DIR = "_dedup"
ROWS = "rows.arrow"

KeptRows = Callable[[DatasetManifest], pl.DataFrame]
"""A version's kept rows in dedup order: columns ``id``, ``cluster_id``, ``dedup_hash`` and ``messages``."""


def _meta(config: DedupConfig) -> dict:
    near = config.near
    return {"near": {"num_perm": near.num_perm, "ngram": near.ngram, "seed": near.seed, "token_hash": TOKEN_HASH}
            if near.enabled else None,
            "semantic": {"model": MODEL_NAME} if config.semantic.enabled else None}


def _usable(meta: dict, config: DedupConfig) -> bool:
    want = _meta(config)
    return all(want[k] is None or meta.get(k) == want[k] for k in want)


def part_name(version: int, run_id: str) -> str:
    return f"v{version:08d}-{run_id}"


def save_part(root: Path, version: int, run_id: str, index: DedupIndex, config: DedupConfig) -> Path:
    """Write one version's part atomically (temporary folder, then rename)."""
    base = Path(root) / INDEX_DIR
    final = base / part_name(version, run_id)
    tmp = base / f".tmp-{part_name(version, run_id)}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kept = pa.table({"id": arrow(index.ids), "cluster_id": arrow(index.cluster_ids), "dedup_hash": arrow(index.hashes)})
    with pa.OSFile(str(tmp / ROWS), "wb") as sink, pa.ipc.new_file(sink, kept.schema) as writer:
        writer.write_table(kept)
    if index.signatures is not None:
        np.save(tmp / "minhash.npy", index.signatures)
        for (bands, rows), keys in part_keys(np.asarray(index.signatures), config.near).items():
            np.save(tmp / f"keys-{bands}x{rows}.npy", keys)
    if index.embeddings is not None:
        np.save(tmp / "embeddings.npy", index.embeddings.astype(np.float16))
    (tmp / "meta.json").write_text(json.dumps({"version": version, "run_id": run_id, "rows": len(index),
                                               **_meta(config)}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _load_part(path: Path) -> tuple[dict, DedupIndex]:
    meta = json.loads((path / "meta.json").read_text())
    rows = (pa.ipc.open_file(pa.memory_map(str(path / ROWS))).read_all() if (path / ROWS).exists()
            else pq.read_table(path / "rows.parquet"))  # a part written by older code
    sig, emb = path / "minhash.npy", path / "embeddings.npy"
    return meta, DedupIndex(
        ids=Strings(rows.column("id")), cluster_ids=Strings(rows.column("cluster_id")),
        hashes=Strings(rows.column("dedup_hash")),
        signatures=np.load(sig, mmap_mode="r") if sig.exists() else None,  # streamed, not loaded
        embeddings=np.load(emb).astype(np.float32) if emb.exists() else None,
        band_keys={tuple(map(int, k.stem.removeprefix("keys-").split("x"))): np.load(k, mmap_mode="r")
                   for k in path.glob("keys-*x*.npy")} if sig.exists() else {})


def _rebuild(rows: pl.DataFrame, dedup: Deduplicator) -> DedupIndex:
    """One version's part from its own kept rows."""
    return dedup.index_for(rows["id"].to_list(), rows["cluster_id"].to_list(), rows["dedup_hash"].to_list(),
                           lambda: user_texts(rows))


def load_index(root: str | Path, versions: list[DatasetManifest], config: DedupConfig,
               kept_rows: KeptRows) -> DedupIndex:
    """Everything kept by the given committed versions, from their parts (rebuilding a missing or stale part
    from ``kept_rows(manifest)``)."""
    root = Path(root)
    probe = Deduplicator(config)
    parts = []
    for m in versions:
        path = root / INDEX_DIR / part_name(m.version, m.run_id)
        part = None
        if (path / "meta.json").exists():
            meta, part = _load_part(path)
            if not _usable(meta, config):
                part = None
        if part is None:
            part = _rebuild(kept_rows(m), probe)
            save_part(root, m.version, m.run_id, part, config)
        parts.append(part)
    return DedupIndex.concat(parts)
