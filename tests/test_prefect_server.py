"""The Prefect server `trajforge generate` starts for itself, run as installed (outside `make`, nothing configured):
its own home per dataset, analytics off, a configurable start limit, and gone with the run however the run ends."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from procs import gone, with_env

from pipelines.prefect_server import _home
from pipelines.store import DatasetStore

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp: Path, runner: str = "thread") -> Path:
    path = tmp / f"run-{runner}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "server-test", "seed": 3, "num_tasks": 20, "shard_size": 10, "runner": {"kind": runner},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
    }))
    return path


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no Prefect settings from the Makefile, a Prefect home shared by all runs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "TRAJFORGE_")) or k == "PREFECT_LOGGING_LEVEL"}
    env.update(PREFECT_HOME=str(tmp / "user-prefect-home"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **extra)
    return env


def _generate(tmp: Path, out: Path, env: dict[str, str], runner: str = "thread") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(_config(tmp, runner)),
                             "--out", str(out), "--no-progress"], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _servers_of(out: Path):
    return lambda: with_env("PREFECT_HOME", str(out / "_prefect"))


@pytest.mark.parametrize("runner, point", [("thread", "rolled-out:0"), ("process", "committed")])
def test_a_sigkilled_run_takes_its_prefect_server_and_workers_with_it(tmp_path, runner, point):
    """The run SIGKILLs its own main process (thread runner: once the first shard is staged; process runner: in the
    main process, after the commit, while its pool workers are up); nothing else is signalled."""
    out = tmp_path / "ds"
    proc = _generate(tmp_path, out, _env(tmp_path, TRAJFORGE_TEST_KILL_AT=point), runner)
    seen, workers = set(), set()
    while proc.poll() is None:
        seen.update(_servers_of(out)())
        workers.update(_workers_of(tmp_path))
        time.sleep(0.1)
    if runner == "process":  # before reading the run's output: a worker left running holds that pipe open
        assert workers, "the run's pool workers were never seen running"
        assert gone(lambda: _workers_of(tmp_path)), f"pool workers {_workers_of(tmp_path)} outlived the run"
    output = proc.stdout.read()
    assert proc.returncode == -9, output
    assert seen, "the run's Prefect server was never seen running"
    assert gone(_servers_of(out)), f"Prefect server processes {_servers_of(out)()} outlived the SIGKILLed run"
    assert DatasetStore(out).exists() == (point == "committed")
    log = (out / "_logs" / "prefect-server.log").read_text()
    assert "telemetry" not in (log + output).lower(), log + output  # analytics off, though nothing configured it


def test_parallel_runs_on_one_machine_each_get_their_own_prefect_database(tmp_path):
    """Run b's shards run in a process pool: its workers' task runs reach its own server (Prefect's event forwarder
    thread once started Prefect's own temporary server for them, in the user's Prefect home), and no other starts."""
    env = _env(tmp_path)  # one Prefect home for both, as a user's ~/.prefect
    runs = {name: _generate(tmp_path, tmp_path / name, env, runner) for name, runner in (("a", "thread"),
                                                                                         ("b", "process"))}
    strays: set[int] = set()
    while any(proc.poll() is None for proc in runs.values()):
        strays.update(pid for pid in with_env("PREFECT_HOME", str(tmp_path / "user-prefect-home"))
                      if b"prefect.server" in _cmdline(pid))
        time.sleep(0.2)
    for name, proc in runs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"run {name}:\n{output}"
        assert "database is locked" not in output and "error" not in output.lower(), output
    for name in runs:
        assert [m.version for m in DatasetStore(tmp_path / name).versions()] == [0]
        assert (tmp_path / name / "_prefect" / "prefect.db").is_file()  # not the shared home's database
    assert not (tmp_path / "user-prefect-home" / "prefect.db").exists()
    assert not strays, f"Prefect servers in the user's Prefect home: {strays}"
    with sqlite3.connect(tmp_path / "b" / "_prefect" / "prefect.db") as db:
        rollouts = db.execute("select count(*) from task_run where name like 'rollout-%'").fetchone()[0]
    assert rollouts == 2  # one per shard, run in the workers, recorded by the run's own server


def test_a_second_run_on_the_same_dataset_gets_a_temporary_prefect_home(tmp_path):
    with _home(tmp_path) as first:
        assert first == tmp_path / "_prefect"
        with _home(tmp_path) as second:
            assert second != first and second.is_dir()
        assert not second.exists()  # removed with the run
    with _home(tmp_path) as again:  # released: the next run has it back
        assert again == first


def test_the_start_limit_is_configurable_and_a_server_that_misses_it_is_one_line(tmp_path):
    out = tmp_path / "ds"
    proc = _generate(tmp_path, out, _env(tmp_path, TRAJFORGE_PREFECT_START_TIMEOUT_S="0.2"))
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trajforge: error: the local Prefect server did not answer"), output
    assert "TRAJFORGE_PREFECT_START_TIMEOUT_S" in lines[0] and str(out / "_logs" / "prefect-server.log") in lines[0]
    assert gone(_servers_of(out))
    assert not DatasetStore(out).exists()

    proc = _generate(tmp_path, out, _env(tmp_path, TRAJFORGE_PREFECT_START_TIMEOUT_S="soon"))
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert output.strip() == "trajforge: error: TRAJFORGE_PREFECT_START_TIMEOUT_S: expected a number of seconds > 0, " \
                             "got 'soon'"


def _workers_of(tmp: Path) -> list[int]:
    """The process-pool workers of a run started with ``_env(tmp)``."""
    return [pid for pid in with_env("PREFECT_HOME", str(tmp / "user-prefect-home")) if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
