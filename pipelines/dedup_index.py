"""Dedup indexes persisted with the dataset, one part per Delta version, under ``DIR/_dedup/``.

A part is a folder ``v<version>-<run_id>/`` holding the kept rows' ids, cluster ids and
exact hashes (``rows.parquet``), MinHash signatures (``minhash.npy``), embeddings
(``embeddings.npy``, float16) and ``meta.json`` with the parameters they were made with.
It is written to a temporary folder and renamed into place, before the Delta commit;
it counts only if the table really has that version with that run id in its manifest,
so a part written for a commit that never happened is ignored.

A new run loads the parts (not the dataset's rows) to dedup against every earlier
version. A version without a usable part — committed by older code, a crash between
index and commit, or other near/semantic parameters — is rebuilt from that version's
own rows once and then written, so the next run finds it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from filters.dedup_layers import DedupIndex, Deduplicator
from filters.minhash import TOKEN_HASH
from pipelines.rows import ACCEPTED
from schemas import DatasetManifest, DedupConfig

INDEX_DIR = "_dedup"


def _meta(config: DedupConfig) -> dict:
    near = config.near
    return {"near": {"num_perm": near.num_perm, "ngram": near.ngram, "seed": near.seed, "token_hash": TOKEN_HASH}
            if near.enabled else None,
            "semantic": {"model": "all-MiniLM-L6-v2"} if config.semantic.enabled else None}


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
    pq.write_table(pa.table({"id": pa.array(index.ids, pa.string()),
                             "cluster_id": pa.array(index.cluster_ids, pa.string()),
                             "dedup_hash": pa.array(index.hashes, pa.string())}), tmp / "rows.parquet")
    if index.signatures is not None:
        np.save(tmp / "minhash.npy", index.signatures)
    if index.embeddings is not None:
        np.save(tmp / "embeddings.npy", index.embeddings.astype(np.float16))
    (tmp / "meta.json").write_text(json.dumps({"version": version, "run_id": run_id, "rows": len(index),
                                               **_meta(config)}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _load_part(path: Path) -> tuple[dict, DedupIndex]:
    meta = json.loads((path / "meta.json").read_text())
    rows = pq.read_table(path / "rows.parquet")
    sig, emb = path / "minhash.npy", path / "embeddings.npy"
    return meta, DedupIndex(
        ids=rows.column("id").to_pylist(), cluster_ids=rows.column("cluster_id").to_pylist(),
        hashes=rows.column("dedup_hash").to_pylist(),
        signatures=np.load(sig) if sig.exists() else None,
        embeddings=np.load(emb).astype(np.float32) if emb.exists() else None)


def user_texts(frame: pl.DataFrame) -> list[str]:
    """The user turns of each row's ``messages``, one per line (filters.dedup_layers.user_text, in polars)."""
    users = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content").fill_null(""))
    return frame.select(users.list.join("\n")).to_series().fill_null("").to_list()


def _rebuild(root: Path, manifest: DatasetManifest, dedup: Deduplicator) -> DedupIndex:
    """One version's part from its own rows (those of its run that were accepted)."""
    # By URI, through deltalake's reader: a plain path with spaces or '#' breaks polars' native scan (see pipelines.store).
    frame = pl.scan_delta(Path(root).resolve().as_uri(), version=manifest.version, use_pyarrow=True).filter(
        (pl.col("run_id") == manifest.run_id) & (pl.col("status") == ACCEPTED))
    names = frame.collect_schema().names()
    cluster = pl.col("cluster_id") if "cluster_id" in names else pl.col("id")
    rows = frame.select("id", cluster.fill_null(pl.col("id")).alias("cluster_id"), "dedup_hash", "messages",
                        "shard", "index").collect().sort("shard", "index")
    texts = user_texts(rows) if dedup.needs_text else []
    return DedupIndex(
        ids=rows["id"].to_list(), cluster_ids=rows["cluster_id"].to_list(), hashes=rows["dedup_hash"].to_list(),
        signatures=dedup.signatures(texts) if dedup.config.near.enabled else None,
        embeddings=dedup.embeddings(texts) if dedup.config.semantic.enabled else None)


def load_index(root: str | Path, versions: list[DatasetManifest], config: DedupConfig) -> DedupIndex:
    """Everything kept by the given committed versions, from their parts (rebuilding a missing or stale part)."""
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
            part = _rebuild(root, m, probe)
            save_part(root, m.version, m.run_id, part, config)
        parts.append(part)
    return DedupIndex.concat(parts)
