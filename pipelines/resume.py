"""Crash-safe resume: what a run started again with the same ``--run-id`` can keep.

A run's state lives in three places, each written atomically, so a SIGKILL at any
moment leaves every one either whole or absent:

- staged shard files ``DIR/_staging/RUN_ID/{tasks,rows}-NNNNN.parquet`` (written beside,
  then renamed): a file that is there and holds its shard's row count is finished and
  is not redone;
- the Delta commit, whose manifest names the run id: once it is in the table the run
  is done, and a restart only clears the leftover staging folder — it never commits
  a second version;
- ``run.json`` in the staging folder, the config hash the staged files were made with,
  so a restart with another config cannot mix its rows with the old ones.

Model calls redone for an unfinished shard come from the request cache, so they cost nothing twice.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.shard import FUNNEL_KEY, STOP_KEY, USAGE_KEY, ShardResult, read_meta
from pipelines.store import DatasetStore
from schemas import ConfigError, DatasetManifest, InputError, Usage

RUN_FILE = "run.json"
KILL_AT_ENV = "TRAJFORGE_TEST_KILL_AT"
KILL_ONCE_ENV = "TRAJFORGE_TEST_KILL_ONCE"


def committed(store: DatasetStore, run_id: str) -> DatasetManifest | None:
    """The version this run already committed, if a crash came after the commit."""
    if not store.exists():
        return None
    return next((m for m in store.versions() if m.run_id == run_id), None)


def check_claim(staging: Path, run_id: str, config_hash: str) -> bool:
    """Whether a killed run left staging that this config may resume; refuses (one line) what it may not."""
    staging = Path(staging)
    if not staging.exists():
        return False
    if not staging.is_dir():
        raise InputError(f"{staging}: the staging of run {run_id} is not a folder; remove it or use another --run-id")
    marker = staging / RUN_FILE
    if not marker.exists():
        return False
    try:
        started = json.loads(marker.read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        raise InputError(f"{marker}: unreadable (a run killed while writing it?); remove {staging} to start "
                         f"run {run_id} afresh, or use another --run-id") from None
    if started != config_hash:
        raise ConfigError(f"{marker}: run {run_id} was started with another config (hash {started}); "
                          f"resume it with that config, or start a new run with another --run-id")
    return True


def claim_staging(staging: Path, run_id: str, config_hash: str) -> None:
    """Record which config the staged files belong to; refuse to resume them under another one."""
    marker = Path(staging) / RUN_FILE
    if check_claim(Path(staging), run_id, config_hash):
        return
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "config_hash": config_hash}))
    os.replace(tmp, marker)


def finished(path: Path, rows: int) -> bool:
    """A staged shard file that is there, readable and holds all of its shard's rows (or all it started
    before a budget ran out: its metadata says so)."""
    try:
        file = pq.ParquetFile(path)
    except (OSError, ValueError):  # absent, or not a Parquet file (cannot happen with atomic writes, but cheap)
        return False
    return file.metadata.num_rows == rows or STOP_KEY in (file.schema_arrow.metadata or {})


def staged_summary(path: Path) -> ShardResult:
    """Counts by status, model usage and synthesis funnel of a finished rows file, as the rollout task reported them."""
    file = pq.ParquetFile(path)
    counts = dict(Counter(file.read(columns=["status"]).column("status").to_pylist()))
    spent = read_meta(file.schema_arrow, USAGE_KEY)
    return ShardResult(counts=counts, usage={role: Usage.model_validate(u) for role, u in spent.items()},
                       synthesis=read_meta(file.schema_arrow, FUNNEL_KEY),
                       unstarted=read_meta(file.schema_arrow, STOP_KEY).get("unstarted", 0))


def checkpoint(point: str) -> None:
    """Test-only hook: SIGKILL this process when ``TRAJFORGE_TEST_KILL_AT`` names ``point``.

    Points: ``synthesized:N`` and ``rolled-out:N`` (just after shard N's file was
    written, only when the shard was really computed, not skipped on resume) and
    ``committed`` (after the Delta commit, before staging is cleared). It kills the
    current process only, so it is meant for the thread task runner; tests start the
    run in its own session and kill the rest of its process group themselves.
    With ``TRAJFORGE_TEST_KILL_ONCE`` naming a file, only the first process to reach
    the point is killed (it creates the file first), so a retry gets past it.
    """
    if os.environ.get(KILL_AT_ENV) != point:
        return
    once = os.environ.get(KILL_ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
