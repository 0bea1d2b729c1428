"""Shared by the export, hub and versions tests: a small real dataset with two committed versions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.flow import run_generate
from pipelines.rows import ROW_SCHEMA
from schemas import parse_config

ROOT = Path(__file__).resolve().parents[1]


def config(seed: int, num_tasks: int):
    return parse_config({
        "name": "export-test", "seed": seed, "num_tasks": num_tasks, "shard_size": 20,
        "domain": {"name": "store", "db_seed": 0},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "simulation": {"perturb_rate": 0.25},
    }, "export-test")


def two_versions(path: Path) -> Path:
    """Version 0: 60 tasks (run-a); version 1: 40 more (run-b). Both have accepted and rejected rows."""
    run_generate(config(11, 60), path, "run-a")
    run_generate(config(12, 40), path, "run-b")
    return path


def stage_rows(table: pa.Table, folder: Path, shards: int = 2) -> list[Path]:
    """Rows of a stored table written as staged shard files, as the flow's rollout step leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    table = table.select(ROW_SCHEMA.names).cast(ROW_SCHEMA)
    step = -(-table.num_rows // shards)
    files = []
    for i in range(shards):
        path = folder / f"rows-{i:05d}.parquet"
        pq.write_table(table.slice(i * step, step), path)
        files.append(path)
    return files


def load_offline(folder: Path, config_name: str, tmp: Path) -> subprocess.CompletedProcess:
    """``datasets.load_dataset(folder, config)`` in a fresh process with the Hub unreachable and an empty cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf-home")}
    env.pop("HF_TOKEN", None)
    code = ("import json, sys, datasets; d = datasets.load_dataset(sys.argv[1], sys.argv[2]); "
            "print(json.dumps({s: d[s].num_rows for s in d}))")
    return subprocess.run([sys.executable, "-c", code, str(folder), config_name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def draft_manifest(run_id: str):
    from schemas import DatasetManifest

    return DatasetManifest(parent_version=None, run_id=run_id, config_hash="cfg", code_version="test", seed=0,
                           created_at="2026-01-01T00:00:00+00:00", tasks=0, accepted=0, rejected=0)


def commit_worker(root: str, files: list[str], run_id: str, barrier, results) -> None:
    """One process committing staged rows; waits at ``barrier`` once its dedup view is pinned, so two collide."""
    from dedup import Deduplicator
    from pipelines.store import DatasetStore, StoreError
    from schemas import DedupConfig

    store = DatasetStore(root)
    attempts = []

    def dedup() -> Deduplicator:
        seen = store.deduplicator(DedupConfig())
        attempts.append(len(seen.prior))
        if len(attempts) == 1:
            barrier.wait(timeout=120)
        return seen

    try:
        manifest = store.commit([Path(f) for f in files], draft_manifest(run_id), dedup)
        results.put({"run_id": run_id, "ok": True, "manifest": manifest.model_dump(), "attempts": attempts})
    except StoreError as err:
        results.put({"run_id": run_id, "ok": False, "error": str(err), "attempts": attempts})
