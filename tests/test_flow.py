"""The generate flow end to end on a real temporary Prefect server and real Delta tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from filters import FILTERS, Context
from pipelines.flow import run_generate
from pipelines.rows import row_messages, row_task
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import Tool, Trajectory

pytestmark = pytest.mark.usefixtures("prefect_server")

CONTENT = ["id", "task_id", "status", "stage", "reason", "messages", "task", "verdicts", "dedup_hash"]


def test_end_to_end_every_task_ends_as_one_row(tmp_path, small_config):
    config = small_config()
    manifest = run_generate(config, tmp_path / "ds", "run-a")

    assert manifest.version == 0 and manifest.parent_version is None
    assert manifest.tasks == config.num_tasks
    assert manifest.accepted + manifest.rejected == config.num_tasks
    assert manifest.accepted > 0 and manifest.rejected > 0  # perturb_rate plants mistakes
    assert sum(manifest.stages.values()) == manifest.rejected
    assert sum(manifest.reasons.values()) == manifest.rejected

    df = pl.read_delta(str(tmp_path / "ds"))
    assert df.height == config.num_tasks
    assert sorted(df["index"].to_list()) == list(range(config.num_tasks))
    assert df.filter(pl.col("status") == "accepted").height == manifest.accepted
    rejected = df.filter(pl.col("status") == "rejected")
    assert rejected["stage"].null_count() == 0 and rejected["reason"].null_count() == 0
    assert set(rejected["stage"]) <= {"synthesis", "simulation", "format", "execution", "policy", "outcome",
                                      "required_outputs", "dedup"}
    assert not (tmp_path / "ds" / "_staging" / "run-a").exists()


def test_accepted_rows_reverify_from_storage(tmp_path, small_config):
    """What is stored is enough to verify again: messages and task round-trip through Parquet."""
    config = small_config(num_tasks=20, shard_size=10)
    run_generate(config, tmp_path / "ds", "run-a")
    steps = build_steps(config)
    rows = pl.read_delta(str(tmp_path / "ds")).filter(pl.col("status") == "accepted").to_dicts()
    assert rows
    for row in rows:
        task = row_task(row)
        traj = Trajectory(task_id=task.id, domain=task.domain,
                          tools=[Tool.model_validate(t) for t in json.loads(row["tools"])],
                          messages=row_messages(row))
        assert traj.id == row["id"]
        for name in ("format", "execution", "policy", "outcome", "required_outputs"):
            verdict = FILTERS.get(name)().check(traj, Context(task=task, env=steps.env))
            assert verdict.passed, (name, verdict.reason)


def test_same_config_and_seed_give_the_same_dataset(tmp_path, small_config):
    config = small_config()
    run_generate(config, tmp_path / "a", "run-1")
    run_generate(config, tmp_path / "b", "run-2")
    a = pl.read_delta(str(tmp_path / "a")).sort("index").select(CONTENT)
    b = pl.read_delta(str(tmp_path / "b")).sort("index").select(CONTENT)
    assert a.equals(b)

    other = small_config(seed=12)
    run_generate(other, tmp_path / "c", "run-3")
    c = pl.read_delta(str(tmp_path / "c")).sort("index").select(CONTENT)
    assert not a.equals(c)


def test_versions_append_and_dedup_against_earlier_versions(tmp_path, small_config):
    config = small_config(num_tasks=30, shard_size=15)
    first = run_generate(config, tmp_path / "ds", "run-1")
    second = run_generate(config, tmp_path / "ds", "run-2")  # same seed: every dialogue repeats

    assert (second.version, second.parent_version) == (1, 0)
    assert second.accepted == 0
    assert second.stages.get("dedup") == first.accepted
    assert second.total_accepted == first.accepted

    store = DatasetStore(tmp_path / "ds")
    assert [m.version for m in store.versions()] == [0, 1]
    assert store.read(version=0).height == 30
    assert store.read().height == 60
    dups = store.read().filter(pl.col("stage") == "dedup")
    assert set(dups["reason"]) == {"exact duplicate of an earlier version"}


def test_a_failed_run_commits_no_version(tmp_path, small_config):
    """A real failure in the middle of a run (shard 2's rows cannot be written: a folder holds its path) fails the
    run, and nothing of it is committed: the earlier version is all there is."""
    config = small_config(num_tasks=30, shard_size=10)
    run_generate(config, tmp_path / "ds", "run-ok")

    blocker = tmp_path / "ds" / "_staging" / "run-bad" / "rows-00002.parquet"
    blocker.mkdir(parents=True)
    (blocker / "in-the-way").write_text("a folder where the shard file goes")
    with pytest.raises(OSError, match="Is a directory"):
        run_generate(config.model_copy(update={"seed": 99}), tmp_path / "ds", "run-bad")

    store = DatasetStore(tmp_path / "ds")
    assert [m.run_id for m in store.versions()] == ["run-ok"]
    assert store.read().height == 30
    assert (blocker.parent / "tasks-00002.parquet").is_file()  # what was staged stays, for a resume


ROOT = Path(__file__).resolve().parents[1]
SHARD_IN_A_PROCESS = """
import gc, sys, tempfile
from pathlib import Path
from pipelines.shard import rollout_shard, synthesize_shard
from schemas import Lineage, parse_config
if sys.argv[1] != "default":
    gc.set_threshold(*map(int, sys.argv[1].split(",")))
config = parse_config({"name": "gc", "seed": 1, "num_tasks": 40, "shard_size": 40})
with tempfile.TemporaryDirectory() as tmp:
    tasks = synthesize_shard(config, 0, Path(tmp) / "t.parquet")
    before = gc.get_stats()[0]["collections"]
    rollout_shard(config, 0, tasks, Path(tmp) / "r.parquet", Lineage(run_id="gc", config_hash="c", code_version="c",
                                                                    seed=1))
print(*gc.get_threshold(), gc.get_stats()[0]["collections"] - before)
"""


def test_a_shard_sets_the_collector_for_its_work_unless_the_process_chose_its_own():
    """pipelines/collector.py: full collections stalled a model-mode shard's event loop; a process's own choice
    (anything but CPython's defaults) is left alone."""
    from pipelines.collector import SHARD

    def shard(threshold: str) -> list[int]:
        done = subprocess.run([sys.executable, "-c", SHARD_IN_A_PROCESS, threshold], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return [int(x) for x in done.stdout.split()]

    *threshold, tuned = shard("default")
    assert tuple(threshold) == SHARD
    *threshold, own = shard("701,10,10")
    assert tuple(threshold) == (701, 10, 10) and own > 8 * tuned  # young passes over the same 40 dialogues


def test_a_shards_file_does_not_depend_on_the_order_its_tasks_ended_in(tmp_path, small_config):
    """pipelines/shard_rows.py makes rows Arrow a batch at a time as tasks end (the end of a shard no longer
    waits on one big conversion); put back in slot order, the file is byte for byte the one all rows at once make."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.rows import ROW_SCHEMA
    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.shard_rows import ShardRows
    from schemas import Lineage

    config = small_config(num_tasks=20, shard_size=20)
    tasks = synthesize_shard(config, 0, tmp_path / "tasks.parquet")
    result = rollout_shard(config, 0, tasks, tmp_path / "rows.parquet",
                           Lineage(run_id="order", config_hash="c", code_version="c", seed=11))
    written = pq.read_table(tmp_path / "rows.parquet")
    rows, meta = written.to_pylist(), written.schema.metadata
    assert len(rows) == 20 and result.counts == dict(pl.from_arrow(written)["status"].value_counts().iter_rows())

    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA.with_metadata(meta)), whole)
    ended = list(range(len(rows)))
    random.Random(3).shuffle(ended)
    collected = ShardRows(len(rows), ROW_SCHEMA)
    collected.BATCH = 3  # several batches, the last one short
    for slot in ended[:-1]:
        collected[slot] = rows[slot]
    assert collected.missing == 1
    collected[ended[-1]] = rows[ended[-1]]
    batched = tmp_path / "batched.parquet"
    pq.write_table(collected.table(meta), batched)
    assert batched.read_bytes() == whole.read_bytes() == (tmp_path / "rows.parquet").read_bytes()
    with pytest.raises(AssertionError, match="already has a row"):
        collected[0] = rows[0]
