"""Target-driven runs: exactly N accepted after every filter and dedup, deterministic, resumable, budget-bounded.

Real Prefect flows, real Delta commits; dedup is made to bite (a low near-duplicate
threshold, and a second run of the same seed whose first shards are exact repeats of
the first version) so the incremental count is checked where it could go wrong.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.cli import main
from pipelines.flow import run_generate
from pipelines.rows import ACCEPTED
from pipelines.shard import rollout_shard, synthesize_shard
from pipelines.store import DatasetStore
from pipelines.target import AcceptedCount
from schemas import Lineage, parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[1]


def _data(**over) -> dict:
    data = {"name": "target", "seed": 3, "target_accepted": 37, "shard_size": 12,
            "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
            "simulation": {"perturb_rate": 0.3},
            # A low threshold on word sets: the offline dialogues then have near duplicates (their phrasing varies
            # too much for 0.4 on word 3-grams since issue 22).
            "dedup": {"exact": True, "near": {"enabled": True, "threshold": 0.25, "ngram": 1}},
            "runner": {"kind": "thread", "workers": 3}}
    data.update(over)
    return data


def _rows(out: Path, version: int | None = None) -> pl.DataFrame:
    return DatasetStore(out).read(version).select("id", "status", "stage", "reason", "shard", "index").sort("index")


def test_a_target_run_commits_exactly_n_accepted_rows_whatever_the_parallelism(tmp_path):
    manifests, frames = [], []
    for n, in_flight in enumerate((1, 4)):
        config = parse_config(_data(runner={"kind": "thread", "workers": 4, "shards_in_flight": in_flight}))
        manifests.append(run_generate(config, tmp_path / f"ds{n}", f"run-{n}"))
        frames.append(_rows(tmp_path / f"ds{n}"))
    m, rows = manifests[0], frames[0]
    assert m.accepted == 37 and rows.filter(pl.col("status") == ACCEPTED).height == 37
    assert m.stop.reason == "target_accepted" and m.stop.target_accepted == 37
    assert m.tasks == rows.height == 12 * m.stop.shards  # whole shards: every task of them is a row
    assert m.funnel["dedup.near"] > 0  # dedup did reject rows, and the count still came out exact
    # Accepted rows of the last shard beyond the 37th are kept, as rejected at stage target, after every accepted row.
    surplus = rows.filter(pl.col("stage") == "target")
    assert surplus.height == m.stop.surplus == m.stages.get("target", 0)
    assert list(m.funnel)[-1] == "target" and "target" not in m.faults
    last_accepted = rows.filter(pl.col("status") == ACCEPTED)["index"].max()
    assert surplus.is_empty() or surplus["index"].min() > last_accepted
    assert surplus.is_empty() or set(surplus["shard"]) == {m.stop.shards - 1}
    # Deterministic: the same rows whatever the number of shards in flight (speculative shards are discarded).
    assert frames[1].equals(rows)
    assert manifests[1].tasks == m.tasks and manifests[1].stop.surplus == m.stop.surplus


def test_the_count_is_exact_against_earlier_versions_and_equals_the_commits_dedup(tmp_path, small_config):
    out = tmp_path / "ds"
    first = parse_config({**_data(), "target_accepted": None, "num_tasks": 40})
    run_generate(first, out, "first")
    # The same seed again: its first 40 tasks repeat version 0 exactly; only later ones can be accepted.
    second = run_generate(parse_config(_data(target_accepted=15)), out, "second")
    assert second.accepted == 15 and second.funnel["dedup.exact"] > 0
    v0 = set(_rows(out, 0).filter(pl.col("status") == ACCEPTED)["id"])
    new = _rows(out).filter((pl.col("status") == ACCEPTED) & ~pl.col("id").is_in(list(v0)))
    assert new.height == 15 and (new["index"] >= 40).all()

    # AcceptedCount, shard by shard, equals what a commit of the shards so far decides (the prefix property).
    config = parse_config(_data(target_accepted=15))
    lineage = Lineage(run_id="probe", config_hash=config.config_hash(), code_version="t", seed=config.seed)
    count = AcceptedCount(DatasetStore(out).deduplicator(config.dedup))
    files = []
    for shard in range(6):
        tasks = synthesize_shard(config, shard, tmp_path / f"t{shard}.parquet")
        files.append(tmp_path / f"r{shard}.parquet")
        rollout_shard(config, shard, tasks, files[-1], lineage)
        count.add(files[-1])
        probe = tmp_path / f"probe{shard}"
        _copy_dataset(out, probe)
        store = DatasetStore(probe)
        committed = store.commit(files, second.model_copy(update={"run_id": f"probe-{shard}"}),
                                 lambda store=store: store.deduplicator(config.dedup))
        assert committed.accepted == count.survivors, shard


def _copy_dataset(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_staging", "_prefect"))


def test_budgets_stop_a_target_run_early_with_a_committed_version(tmp_path):
    m = run_generate(parse_config(_data(target_accepted=1000, budget={"max_tasks": 30})), tmp_path / "ds", "capped")
    assert m.version == 0 and m.tasks == 30 and 0 < m.accepted < 1000
    assert m.stop.reason == "max_tasks" and m.stop.surplus == 0
    assert sorted(_rows(tmp_path / "ds")["index"]) == list(range(30))


def test_cli_target_accepted_replaces_num_tasks_and_bad_values_are_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**_data(target_accepted=None), "num_tasks": 500}))
    assert main(["generate", "--config", str(path), "--out", str(tmp_path / "ds"), "--target-accepted", "20",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "-> 20 accepted" in out and "target reached: 20 accepted (target 20)" in out
    assert main(["generate", "--config", str(path), "--out", str(tmp_path / "bad"), "--target-accepted", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target_accepted" in err[0] and not (tmp_path / "bad").exists()
    path.write_text(yaml.safe_dump(_data(num_tasks=5)))
    assert main(["generate", "--config", str(path), "--out", str(tmp_path / "bad")]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_killed_target_run_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path):
    import yaml

    config = _data(runner={"kind": "thread", "workers": 1})
    reference = run_generate(parse_config(config), tmp_path / "ref", "ref")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    from prefect.settings import PREFECT_API_URL

    # The session's test server, not one per process: the kill is of the run, and starting servers is slow.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_API_URL": PREFECT_API_URL.value(), "TRAJFORGE_TEST_KILL_AT": "rolled-out:1"}
    command = [sys.executable, "-m", "pipelines.cli", "generate", "--config", str(path), "--out",
               str(tmp_path / "ds"), "--run-id", "killed", "--no-progress"]
    for kill in (True, False):
        if not kill:
            env.pop("TRAJFORGE_TEST_KILL_AT")
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=300)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything the killed run left behind
            except ProcessLookupError:
                pass
        assert proc.returncode == (-signal.SIGKILL if kill else 0), output
        if kill:
            assert not DatasetStore(tmp_path / "ds").exists()
            assert (tmp_path / "ds" / "_staging" / "killed" / "rows-00001.parquet").exists()
    resumed = DatasetStore(tmp_path / "ds").versions()
    assert len(resumed) == 1 and resumed[0].accepted == reference.accepted == 37
    assert _rows(tmp_path / "ds").equals(_rows(tmp_path / "ref"))
