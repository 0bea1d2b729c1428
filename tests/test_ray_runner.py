"""Scale-out: shards run as Ray tasks, on a local Ray instance or on a real two-node cluster, and give the same
dataset as the thread runner."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipelines.flow import run_generate, task_runner_for
from schemas import ConfigError

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[1]
COMPARED = ["index", "id", "task_id", "status", "stage", "reason", "dedup_hash", "shard", "cluster_id"]
RAY = Path(sys.executable).parent / "ray"


def _rows(path) -> pl.DataFrame:
    return pl.read_delta(str(path)).select(COMPARED).sort("index")


# At the default near settings these 40 dialogues are all distinct (at most 0.07 estimated Jaccard on word 3-grams),
# so there would be no near decisions to compare; on single words at 0.25 the near layer rejects some rows and
# clusters others, with buckets over the cap (several greedy rounds).
NEAR = {"ngram": 1, "threshold": 0.25, "cluster_threshold": 0.2, "bucket_cap": 4}


def _config(small_config, **runner):
    return small_config(num_tasks=40, shard_size=20, runner=runner or {"kind": "thread"}, dedup={"near": NEAR})


@pytest.fixture(scope="module")
def thread_run(tmp_path_factory):
    """The reference: the same small config on the thread runner (shared by every runner compared with it)."""
    from conftest import _small_config

    out = tmp_path_factory.mktemp("thread") / "ds"
    return run_generate(_config(_small_config), out, "run-a"), _rows(out)


def test_ray_runner_gives_the_thread_runners_dataset(tmp_path, small_config, thread_run, caplog):
    """Shards and the near dedup layer on Ray: signatures (one task per shard file) and each band's candidate pairs
    ran in Ray worker processes, and the rejections and cluster ids are the thread runner's."""
    import ray

    a, left = thread_run
    on_ray = _config(small_config, kind="ray")
    assert type(task_runner_for(on_ray)).__name__ == "RayTaskRunner"
    caplog.set_level(logging.INFO, logger="trajforge.dedup")
    b = run_generate(on_ray, tmp_path / "ray", "run-a")
    (near,) = [r for r in caplog.records if r.name == "trajforge.dedup" and r.msg.startswith("near dedup on Ray")]
    rows, signature_tasks, band_tasks, pids = near.args
    assert rows == left.filter(pl.col("stage").is_null() | (pl.col("stage") == "dedup")).height - \
        left["reason"].str.starts_with("exact duplicate").sum()  # every row the near layer was offered
    assert signature_tasks == 2 and band_tasks > 0  # one task per shard file
    assert pids and os.getpid() not in pids  # computed in Ray's worker processes, not the driver

    assert not ray.is_initialized(), "the runner stops the local Ray instance it started"
    assert b.config_hash == a.config_hash  # how a run is executed is not part of what it made
    assert (b.tasks, b.accepted, b.rejected) == (a.tasks, a.accepted, a.rejected) and a.rejected > 0
    right = _rows(tmp_path / "ray")
    assert right.height == 40 and right["shard"].n_unique() == 2
    assert left["reason"].str.starts_with("near duplicate").any()  # the near layer decided something to compare
    assert left.equals(right)


def test_process_runner_gives_the_thread_runners_dataset(tmp_path, small_config, thread_run):
    """runner.kind process: every shard in a worker process of Prefect's process pool."""
    a, left = thread_run
    config = _config(small_config, kind="process", workers=2)
    assert type(task_runner_for(config)).__name__ == "ProcessPoolTaskRunner"
    b = run_generate(config, tmp_path / "process", "run-a")
    assert b.config_hash == a.config_hash and (b.accepted, b.rejected) == (a.accepted, a.rejected)
    assert _rows(tmp_path / "process").equals(left)


# -- a real cluster: a head node and a second node started with `ray start` -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A cluster's nodes have no checkout of this project: only what the job ships. The nodes' Python hides every
# package pyproject installs unless it comes from Ray's unpacked job files (runtime_resources), so a package
# the runner forgets to ship fails the run here as it would on a real cluster, installed copy or not.
NO_CHECKOUT = """
import importlib.machinery
import sys

HIDDEN = {hidden!r}


class NoCheckout:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if path is not None or fullname not in HIDDEN:
            return None  # a submodule is looked up in its parent's (shipped) folder
        shipped = [p for p in sys.path if "runtime_resources" in p]
        spec = importlib.machinery.PathFinder.find_spec(fullname, shipped)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {{fullname!r}} (not shipped with the job)", name=fullname)
        return spec


sys.meta_path.insert(0, NoCheckout)
"""


def _installed_packages() -> list[str]:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(p.rstrip("*") for p in include)


def _node(temp: Path, env: dict[str, str], cpus: int, head_port: int | None = None, join: str | None = None):
    """One `ray start --block` in its own process group (stopped with it: never `ray stop`, which would stop
    every Ray on the machine), run outside the checkout; every port it opens is a free one."""
    ports = {flag: _free_port() for flag in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                                             "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                             "metrics-export-port")}
    args = [str(RAY), "start", "--block", f"--num-cpus={cpus}", "--object-store-memory=80000000",
            f"--plasma-directory={temp}", "--disable-usage-stats", *(f"--{k}={v}" for k, v in ports.items())]
    if head_port is not None:
        args += ["--head", f"--port={head_port}", "--include-dashboard=false", f"--temp-dir={temp}",
                 f"--ray-client-server-port={_free_port()}"]
    else:
        args += [f"--address={join}"]
    log = open(temp / f"node-{len(list(temp.glob('node-*.log')))}.log", "w")  # noqa: SIM115 (closed with the node)
    return subprocess.Popen(args, env=env, cwd=temp, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True), log


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    done = subprocess.run([str(RAY), "status", f"--address={address}"], env=env, capture_output=True, text=True,
                          timeout=60)
    return done.stdout.count("node_") if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node with no CPUs (it only coordinates) and a second node with two: every shard must run on the
    second node. Token authentication as Ray enables it by default, with a token of this test's own. Yields the
    address and the environment a driver needs (the token), not the nodes' own (which hides the project)."""
    temp = Path(tempfile.mkdtemp(prefix="tf-ray-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    (temp / "no-checkout").mkdir()
    (temp / "no-checkout" / "sitecustomize.py").write_text(NO_CHECKOUT.format(hidden=_installed_packages()))
    env = {**os.environ, **auth, "PYTHONPATH": str(temp / "no-checkout")}
    hidden = subprocess.run([sys.executable, "-c", "import ray, pipelines"], env=env, cwd=temp, capture_output=True,
                            text=True, timeout=120)
    assert "No module named 'pipelines' (not shipped with the job)" in hidden.stderr, hidden.stderr[-2000:]
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_node(temp, env, cpus=0, head_port=port)]
    try:
        deadline = time.monotonic() + 180
        while _alive_nodes(address, env) < 1:
            assert time.monotonic() < deadline, (temp / "node-0.log").read_text()[-2000:]
            time.sleep(1)
        nodes.append(_node(temp, env, cpus=2, join=address))
        while _alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, (temp / "node-1.log").read_text()[-2000:]
            time.sleep(1)
        yield address, {**os.environ, **auth}
    finally:
        for proc, log in nodes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_address_runs_every_shard_on_the_clusters_second_node(tmp_path, small_config, thread_run,
                                                                        ray_cluster, prefect_api_url):
    """`runner: {kind: ray, address: HOST:PORT}` from the command line: the driver connects to the running
    cluster, ships this checkout's packages with the job (the nodes have none of their own), and the shards run
    on the node that has the CPUs."""
    address, ray_env = ray_cluster
    a, left = thread_run
    data = json.loads(_config(small_config).model_dump_json())
    data["runner"] = {"kind": "ray", "address": address}
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**ray_env, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": prefect_api_url, "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(config), "--out",
                           str(tmp_path / "cluster"), "--run-id", "run-a", "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from pipelines.store import DatasetStore

    b = DatasetStore(tmp_path / "cluster").versions()[-1]
    assert b.config_hash == a.config_hash and (b.accepted, b.rejected) == (a.accepted, a.rejected)
    assert _rows(tmp_path / "cluster").equals(left)
    assert _alive_nodes(address, ray_env) == 2  # the cluster outlives the run: the driver only disconnected


def test_ray_runner_config(small_config):
    from pipelines.ray_runner import PROJECT_PACKAGES, ray_init_kwargs

    local = small_config(runner={"kind": "ray"}).runner
    kwargs = ray_init_kwargs(local)
    assert kwargs["num_cpus"] == 2 and kwargs["include_dashboard"] is False
    # every package the project installs is shipped to the workers (a remote cluster has no checkout)
    assert sorted(PROJECT_PACKAGES) == _installed_packages()
    assert {p.rsplit("/", 1)[-1] for p in kwargs["runtime_env"]["py_modules"]} == set(PROJECT_PACKAGES)

    remote = small_config(runner={"kind": "ray", "address": "ray://head:10001"}).runner
    assert "num_cpus" not in ray_init_kwargs(remote)
    assert task_runner_for(small_config(runner={"kind": "ray", "address": "ray://head:10001"})).address == \
        "ray://head:10001"

    with pytest.raises(ConfigError, match=r"runner: .*address: only for kind 'ray'"):
        small_config(runner={"kind": "thread", "address": "ray://head:10001"})
