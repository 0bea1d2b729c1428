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
import yaml

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


def _env(tmp: Path, kill_at: str | None = None, api_url: str | None = None) -> dict[str, str]:
    """The CLI's environment: its own ephemeral Prefect server, or the session's server at ``api_url``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
           "PREFECT_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("TRAJFORGE_TEST_KILL_AT", None)
    if kill_at:
        env["TRAJFORGE_TEST_KILL_AT"] = kill_at
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _start(tmp: Path, out: Path, kill_at: str | None = None, config_text: str = CONFIG, args: tuple[str, ...] = (),
           api_url: str | None = None) -> subprocess.Popen:
    config = tmp / "config.yaml"
    config.write_text(config_text)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "generate", "--config", str(config), "--out", str(out),
         "--run-id", RUN_ID, "--no-progress", *args],
        cwd=tmp, env=_env(tmp, kill_at, api_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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


def _run(tmp: Path, out: Path, kill_at: str | None = None, **start) -> tuple[int, str]:
    return _reap(_start(tmp, out, kill_at, **start))


def _wait_for_staged_rows(proc: subprocess.Popen, staging: Path) -> None:
    deadline = time.monotonic() + 180
    while not list(staging.glob("rows-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before a shard was staged"


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


def test_ctrl_c_stops_at_once_another_config_is_refused_and_the_run_resumes(tmp_path, uninterrupted, prefect_api_url):
    """A real SIGINT to the run's process group (what a terminal's Ctrl-C sends; it stops the run's ephemeral
    Prefect server too): one line and exit status 130 within seconds, nothing committed. A restart under the
    same run id with another seed is refused (exit 2) and touches nothing; with the same config it commits the
    uninterrupted run's rows, in one version."""
    out = tmp_path / "ds"
    staging = out / "_staging" / RUN_ID
    proc = _start(tmp_path, out)
    _wait_for_staged_rows(proc, staging)
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.monotonic()
    rc, output = _reap(proc, timeout=120)
    took = time.monotonic() - interrupted
    assert rc == 130, output
    assert took < 30, f"Ctrl-C took {took:.0f}s to end the run"
    said = [line for line in output.splitlines() if line.startswith("trajforge:")]
    assert said == [f"trajforge: interrupted: run {RUN_ID} stopped; its finished shards stay under "
                    f"{out}/_staging/{RUN_ID}/; resume with: trajforge generate --config {tmp_path / 'config.yaml'} "
                    f"--out {out} --run-id {RUN_ID}"], output
    assert f"{ROOT}/pipelines/" not in output  # no traceback through our code (the Prefect server may print its own)
    assert _runs(out) == []
    staged = _stamps(staging)
    assert staged

    rc, output = _run(tmp_path, out, args=("--seed", "6"), api_url=prefect_api_url)
    assert rc == 2, output
    assert output.strip().splitlines()[-1].startswith(
        f"trajforge: error: {staging / 'run.json'}: run {RUN_ID} was started with another config"), output
    assert _stamps(staging) == staged and _runs(out) == []

    rc, output = _run(tmp_path, out, api_url=prefect_api_url)
    assert rc == 0, output
    assert _runs(out) == [0] and not staging.exists()
    assert _rows(out).equals(uninterrupted)


MODEL_CONFIG = """
name: resume-model
seed: 5
num_tasks: 12
shard_size: 4
domain: {{name: store, db_seed: 0}}
generators: [{{name: blueprint, params: {{min_requests: 1, max_requests: 2}}}}]
backends: {{loop: {{model: loop-model, base_url: "{url}", max_concurrency: 2, timeout_s: 30, max_retries: 0}}}}
simulation: {{mode: model, user: {{backend: loop}}, assistant: {{backend: loop, temperature: 0.0}}}}
runner: {{kind: thread, workers: 2}}
"""


def test_killed_model_run_resumes_with_unfinished_shards_served_from_the_request_cache(tmp_path, prefect_api_url):
    """A model-mode run SIGKILLed mid-shard, resumed: every request whose reply reached the cache before the kill
    is answered from it (counted where the requests arrive, on the loopback server), the rest are sent once,
    and the dataset is the uninterrupted run's."""
    from loopback import LoopbackServer, TranscriptBrain

    from pipelines.flow import run_generate
    from schemas import parse_config
    from simulators.backends import RequestCache

    with LoopbackServer() as server:
        text = MODEL_CONFIG.format(url=server.url)
        config = parse_config(yaml.safe_load(text), "resume-model")
        server.brain = TranscriptBrain(config)
        run_generate(config, tmp_path / "reference", "reference")
        uninterrupted, paid = _rows(tmp_path / "reference"), server.requests
        assert uninterrupted.height == 12 and paid > 24

        server.reset_counts()
        out = tmp_path / "ds"
        proc = _start(tmp_path, out, config_text=text, api_url=prefect_api_url)
        deadline = time.monotonic() + 180
        while server.requests < paid // 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        _reap(proc)
        assert _runs(out) == []
        cached = len(RequestCache(out / "_cache" / "requests.sqlite"))
        staged = {p.name for p in (out / "_staging" / RUN_ID).glob("rows-*.parquet")}
        assert 0 < cached < paid and len(staged) < 3, (cached, staged)  # killed with shards unfinished

        server.reset_counts()
        rc, output = _run(tmp_path, out, config_text=text, api_url=prefect_api_url)
        assert rc == 0, output
        resumed_requests = server.requests
    assert resumed_requests == paid - cached  # nothing whose reply was cached is paid for twice
    manifest = DatasetStore(out).versions()[-1]
    assert sum(u.cached for u in manifest.usage.values()) > 0  # unfinished shards' calls came from the cache
    assert _runs(out) == [0] and _rows(out).equals(uninterrupted)


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
