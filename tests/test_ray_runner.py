"""Scale-out: shards run as Ray tasks on a local Ray instance and give the same dataset as the thread runner."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.flow import run_generate, task_runner_for
from schemas import ConfigError

pytestmark = pytest.mark.usefixtures("prefect_server")

COMPARED = ["index", "id", "task_id", "status", "stage", "reason", "dedup_hash", "shard"]


def _rows(path) -> pl.DataFrame:
    return pl.read_delta(str(path)).select(COMPARED).sort("index")


def test_ray_runner_gives_the_thread_runners_dataset(tmp_path, small_config):
    import ray

    thread = small_config(num_tasks=40, shard_size=20)
    on_ray = small_config(num_tasks=40, shard_size=20, runner={"kind": "ray"})
    assert type(task_runner_for(on_ray)).__name__ == "RayTaskRunner"

    a = run_generate(thread, tmp_path / "thread", "run-a")
    b = run_generate(on_ray, tmp_path / "ray", "run-a")

    assert not ray.is_initialized(), "the runner stops the local Ray instance it started"
    assert b.config_hash == a.config_hash  # how a run is executed is not part of what it made
    assert (b.tasks, b.accepted, b.rejected) == (a.tasks, a.accepted, a.rejected) and a.rejected > 0
    left, right = _rows(tmp_path / "thread"), _rows(tmp_path / "ray")
    assert right.height == 40 and right["shard"].n_unique() == 2
    assert left.equals(right)


def test_ray_runner_config(small_config):
    from pipelines.ray_runner import ray_init_kwargs

    local = small_config(runner={"kind": "ray"}).runner
    kwargs = ray_init_kwargs(local)
    assert kwargs["num_cpus"] == 2 and kwargs["include_dashboard"] is False
    assert {p.rsplit("/", 1)[-1] for p in kwargs["runtime_env"]["py_modules"]} == {
        "schemas", "simulators", "generators", "filters", "pipelines"}

    remote = small_config(runner={"kind": "ray", "address": "ray://head:10001"}).runner
    assert "num_cpus" not in ray_init_kwargs(remote)
    assert task_runner_for(small_config(runner={"kind": "ray", "address": "ray://head:10001"})).address == \
        "ray://head:10001"

    with pytest.raises(ConfigError, match=r"runner: .*address: only for kind 'ray'"):
        small_config(runner={"kind": "thread", "address": "ray://head:10001"})
