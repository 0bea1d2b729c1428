"""Crash-safe resume: ``trajforge generate`` killed with SIGKILL and started again with the same run id.

The run is a real subprocess of the CLI (with its own ephemeral Prefect server, in its
own session so the whole process group dies, as with a killed job). Kill points: an
outside SIGKILL as soon as the first staged shard file appears, then the test-only hook
``TRAJFORGE_TEST_KILL_AT`` (see ``pipelines.resume.checkpoint``) right after the last
shard was rolled out and right after the Delta commit, before staging is cleared. The
final dataset must hold exactly the rows of an uninterrupted run, in exactly one version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipelines.resume import claim_staging, finished
from pipelines.store import DatasetStore
from schemas import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "nightly-1"
SHARDS = 4
CONFIG = f"""
name: resume
seed: 5
num_tasks: {SHARDS * 15}
shard_size: 15
domain: {{name: store, db_seed: 0}}
generators: [{{name: blueprint, params: {{min_requests: 1, max_requests: 2}}}}]
simulation: {{perturb_rate: 0.3}}
runner: {{kind: thread, workers: 1}}
dedup: {{exact: true, near: {{enabled: true}}}}
"""


def _env(tmp: Path, kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
           "PREFECT_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("TRAJFORGE_TEST_KILL_AT", None)
    if kill_at:
        env["TRAJFORGE_TEST_KILL_AT"] = kill_at
    return env


def _start(tmp: Path, out: Path, kill_at: str | None = None) -> subprocess.Popen:
    config = tmp / "config.yaml"
    config.write_text(CONFIG)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "generate", "--config", str(config), "--out", str(out),
         "--run-id", RUN_ID, "--no-progress"],
        cwd=tmp, env=_env(tmp, kill_at), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _reap(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Wait for the CLI, then kill what is left of its group before reading its output: the ephemeral
    Prefect server of a killed run lives on and holds the output pipe open."""
    try:
        proc.wait(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    output, _ = proc.communicate()
    return proc.returncode, output


def _run(tmp: Path, out: Path, kill_at: str | None = None) -> tuple[int, str]:
    return _reap(_start(tmp, out, kill_at))


def _rows(out: Path) -> pl.DataFrame:
    return DatasetStore(out).read().select("id", "status", "stage", "reason").sort("id")


def _runs(out: Path) -> list[int]:
    store = DatasetStore(out)
    return [m.version for m in store.versions() if m.run_id == RUN_ID] if store.exists() else []


def _stamps(staging: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in staging.glob("*.parquet")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pl.DataFrame:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    rc, output = _run(tmp, tmp / "ds")
    assert rc == 0, output
    return _rows(tmp / "ds")


def test_killed_run_resumes_to_the_same_rows_in_one_version(tmp_path, uninterrupted):
    out = tmp_path / "ds"
    staging = out / "_staging" / RUN_ID

    # 1. An outside SIGKILL of the whole run as soon as the first shard file is staged.
    proc = _start(tmp_path, out)
    deadline = time.monotonic() + 120
    while not list(staging.glob("*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    rc, output = _reap(proc)
    assert rc == -signal.SIGKILL, output
    assert _runs(out) == [], "a killed run must leave no version"
    first = _stamps(staging)
    assert first and f"rows-{SHARDS - 1:05d}.parquet" not in first, first

    # 2. Resumed, and killed again just after the last shard was rolled out (mid-way: nothing committed yet).
    rc, output = _run(tmp_path, out, kill_at=f"rolled-out:{SHARDS - 1}")
    assert rc == -signal.SIGKILL, output
    assert _runs(out) == []
    second = _stamps(staging)
    assert {name: second[name] for name in first} == first, "finished shards were redone"
    assert len(second) == 2 * SHARDS

    # 3. Resumed, and killed right after its Delta commit, before staging was cleared.
    rc, output = _run(tmp_path, out, kill_at="committed")
    assert rc == -signal.SIGKILL, output
    assert _runs(out) == [0] and staging.exists()
    assert _stamps(staging) == second, "finished shards were redone"

    # 4. Resumed once more: it sees its own commit, cleans up, and commits nothing again.
    rc, output = _run(tmp_path, out)
    assert rc == 0, output
    assert f"run {RUN_ID} was already committed as version 0" in output
    assert _runs(out) == [0] and DatasetStore(out).latest_version() == 0
    assert not staging.exists()
    rows = _rows(out)
    assert rows.height == uninterrupted.height == SHARDS * 15
    assert rows["id"].n_unique() == rows.height
    assert rows.equals(uninterrupted)
    assert rows.filter(pl.col("status") == "accepted").height == uninterrupted.filter(
        pl.col("status") == "accepted").height


def test_resume_under_another_config_is_refused(tmp_path):
    staging = tmp_path / "_staging" / RUN_ID
    staging.mkdir(parents=True)
    claim_staging(staging, RUN_ID, "aaa")
    claim_staging(staging, RUN_ID, "aaa")  # the same config resumes
    with pytest.raises(ConfigError, match=r"run.json: run nightly-1 was started with another config"):
        claim_staging(staging, RUN_ID, "bbb")


def test_only_whole_shard_files_count_as_finished(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows-00000.parquet"
    assert not finished(path, 3)
    path.write_bytes(b"PAR1 not really")
    assert not finished(path, 3)
    pq.write_table(pa.table({"x": [1, 2]}), path)
    assert not finished(path, 3)
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    assert finished(path, 3)
