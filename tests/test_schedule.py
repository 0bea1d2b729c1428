"""Schedules proven by waiting for them: `trajforge serve --cron "* * * * *"`, run as a user runs it, commits a
version at each minute with nobody triggering anything.

Three `serve` processes are started together when the module begins, so their
waits overlap (about three minutes of wall time for all of them, on the
minute boundaries):

- ``own``: the local Prefect server serve starts itself; stopped with SIGINT (Ctrl-C);
- ``api``: a `prefect server start` this test started, named by PREFECT_API_URL; stopped with SIGTERM;
- ``nightly``: the nightly loop, schedule → run → version → export → Hub push with a
  version tag, against the loopback Hub in tests/hub_server.py; its first run is
  SIGKILLed midway and the next scheduled run resumes it.

The quick checks (bad cron, a server whose scheduler does nothing) run first,
while those three wait for their minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from hub_server import HubServer, load_from_hub
from procs import gone, in_session

from pipelines.cli import main
from pipelines.prefect_server import free_port, healthy
from pipelines.store import DatasetStore

CRON = "* * * * *"
REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_trajforgeTESTtokenDoNotLeak0123456789"
HUB_REPO = "acme/nightly-trajectories"
WAIT_S = 420  # from the start of the module: the third minute boundary, plus start-up on a loaded machine
NUM_TASKS = 20


def _config_file(tmp: Path, name: str, **extra) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "seed": 5, "num_tasks": NUM_TASKS, "shard_size": 10, "output_dir": str(tmp / "ds"),
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "simulation": {"perturb_rate": 0.25}, **extra,
    }))
    return path


def _env(tmp: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """A user's shell: nothing from the Makefile's Prefect settings; the client's own Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRAJFORGE_", "HF_"))}
    env.update(PREFECT_HOME=str(tmp / "client-prefect-home"), HF_HOME=str(tmp / "hf-home"),
               TRAJFORGE_SCHEDULE_CHECK_S="240",  # a loaded machine; the negative test alone uses a short one
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.update(extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class _Serve:
    """`trajforge serve` as a child process in its own session (as in a terminal); output read as it comes."""

    def __init__(self, config: Path, env: dict[str, str], name: str) -> None:
        self.ds = Path(yaml.safe_load(config.read_text())["output_dir"])
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--config", str(config), "--cron", CRON],
            cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.output: list[str] = []
        self.staged: dict[str, set[str]] = {}  # every run's staging folder seen while serving, and its files
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._watch_staging, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)

    def _watch_staging(self) -> None:
        while self.proc.poll() is None:
            for folder in (self.ds / "_staging").glob("*/"):
                self.staged.setdefault(folder.name, set()).update(p.name for p in folder.glob("*.parquet"))
            time.sleep(0.1)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def api_line(self, timeout: float = 300) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"^Prefect API: (\S+) \((.*)\)$", self.text, re.M)
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"serve printed no API line:\n{self.text}")

    def wait_for(self, what: str, done, deadline: float) -> None:
        while not done():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) while waiting for {what}:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {WAIT_S}s of starting:\n{self.text}")
            time.sleep(1)

    def versions(self) -> list:
        store = DatasetStore(self.ds)
        return store.versions() if store.exists() else []

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # the terminal's Ctrl-C reaches the whole foreground group
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"serve did not stop on {signal.Signals(sig).name}:\n{self.text}") from None


def _prefect_server(tmp: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """`prefect server start` as a user starts it, apart from trajforge."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**_env(tmp), "PREFECT_HOME": str(tmp / "server-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
             "PREFECT_SERVER_UI_ENABLED": "false", **env},
        stdout=open(tmp / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    return proc, f"http://127.0.0.1:{port}/api"


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        assert proc.poll() is None and time.monotonic() < deadline, f"the test's Prefect server at {url} did not start"
        time.sleep(0.5)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class Serving:
    started: float
    own: _Serve
    api: _Serve
    api_url: str
    nightly: _Serve
    hub: HubServer
    idle: tuple[subprocess.Popen, str]  # a Prefect server whose scheduler does not run
    tmp: dict[str, Path]

    @property
    def deadline(self) -> float:
        return self.started + WAIT_S


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    started = time.monotonic()
    tmp = {name: tmp_path_factory.mktemp(name) for name in ("own", "api", "nightly", "idle")}
    hub = HubServer(SECRET).start()
    external, api_url = _prefect_server(tmp["api"])
    # what SQLAlchemy 2.1 did to prefect 3.8's scheduler, done by a setting: a healthy API that schedules nothing
    idle = _prefect_server(tmp["idle"], PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false")
    own = _Serve(_config_file(tmp["own"], "own"), _env(tmp["own"], HF_HUB_OFFLINE="1"), "own")
    nightly = _Serve(
        _config_file(tmp["nightly"], "nightly", publish={"repo": HUB_REPO, "private": True, "rejects": True}),
        _env(tmp["nightly"], HF_ENDPOINT=hub.url, HF_TOKEN=SECRET,
             TRAJFORGE_TEST_KILL_AT="rolled-out:0", TRAJFORGE_TEST_KILL_ONCE=str(tmp["nightly"] / "killed-once")),
        "nightly")
    api = None
    try:
        _wait_healthy(api_url, external)
        api = _Serve(_config_file(tmp["api"], "api"), _env(tmp["api"], api_url, HF_HUB_OFFLINE="1"), "api")
        yield Serving(started, own, api, api_url, nightly, hub, idle, tmp)
    finally:
        for serve in (own, nightly, api):
            if serve is not None and serve.proc.poll() is None:
                _kill_group(serve.proc)
        _kill_group(external)
        _kill_group(idle[0])
        hub.stop()


def test_serve_rejects_a_bad_cron_before_registering(tmp_path, capsys):
    assert main(["serve", "--config", str(_config_file(tmp_path, "bad")), "--cron", "every night"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "trajforge: error: --cron: invalid cron expression 'every night'"
    assert not (tmp_path / "ds").exists()


def test_serve_exits_1_when_the_server_schedules_no_run(serving, tmp_path):
    server, url = serving.idle
    _wait_healthy(url, server)
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "serve", "--config", str(_config_file(tmp_path, "idle")),
         "--cron", CRON], cwd=tmp_path, env=_env(tmp_path, url, TRAJFORGE_SCHEDULE_CHECK_S="15"),
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == (
        f"trajforge: error: the Prefect server at {url} scheduled no run of scheduled-generate/idle within 15s "
        f"of registering it (cron '* * * * *'); its scheduler is not working, see that server's log")
    assert asyncio.run(_deployment(url, "scheduled-generate/idle")).paused, "a deployment nobody serves is paused"


async def _deployment(api_url: str, name: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return await client.read_deployment_by_name(name)


def _check_two_scheduled_versions(serve: _Serve) -> None:
    """Two consecutive minutes of the cron, each a version of its own seed, with nothing triggered by hand."""
    versions = serve.versions()[:2]
    assert [m.version for m in versions] == [0, 1], serve.text
    assert [m.seed for m in versions] == [5, 6]  # config.seed + the version it became: new tasks each run
    due = [datetime.fromisoformat(m.origin.scheduled_for) for m in versions]
    assert due[1] - due[0] == timedelta(minutes=1) and due[0].second == 0, due  # consecutive cron times
    for m, when in zip(versions, due, strict=True):
        assert m.origin.deployment == f"scheduled-generate/{serve.name}" and m.origin.schedule == CRON
        assert m.tasks == NUM_TASKS and m.accepted > 0
        committed = datetime.fromisoformat(m.created_at)
        assert timedelta(0) <= committed - when < timedelta(minutes=2), (m.created_at, when)
    assert len({m.origin.flow_run_id for m in versions}) == 2
    assert versions[1].stages.get("dedup", 0) == 0  # other seeds: nothing the dedup against version 0 rejects

    rows = DatasetStore(serve.ds).read().select("id", "status", "dedup_hash", "run_id", "seed")
    assert rows.height == 2 * NUM_TASKS and rows["id"].n_unique() == 2 * NUM_TASKS
    accepted = rows.filter(pl.col("status") == "accepted")
    by_run = [set(accepted.filter(pl.col("run_id") == m.run_id)["dedup_hash"]) for m in versions]
    assert by_run[0] and by_run[1] and not by_run[0] & by_run[1]  # deduplicated against each other
    for m in versions:
        assert f"committed version {m.version}: seed {m.seed}, {m.accepted} accepted" in serve.text, serve.text


def test_serve_on_its_own_server_fires_every_minute_unaided(serving, tmp_path, capsys):
    serve = serving.own
    match = serve.api_line()
    api_url, where = match[1], match[2]
    assert where.startswith("local server, pid ") and str(serve.ds / "_logs" / "prefect-server.log") in where
    server_pid = int(re.search(r"pid (\d+)", where)[1])
    assert in_session(server_pid), "the local Prefect server runs in its own session"
    serve.wait_for("two scheduled versions", lambda: "committed version 1:" in serve.text, serving.deadline)
    _check_two_scheduled_versions(serve)

    # the server serve configured itself: its own home in the dataset, analytics off
    import httpx

    settings = httpx.get(f"{api_url}/admin/settings", timeout=10).json()
    assert settings["server"]["analytics_enabled"] is False
    assert (serve.ds / "_prefect" / "prefect.db").is_file()

    # where each version came from, in `versions`, its JSON and the report
    assert main(["versions", str(serve.ds), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["origin"]["deployment"] == "scheduled-generate/own" and listed[0]["origin"]["schedule"] == CRON
    assert main(["versions", str(serve.ds)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-2:] == ["started", "by"]
    assert table[1].endswith("scheduled-generate/own (cron '* * * * *')"), table
    assert main(["report", str(serve.ds), "--version", "1", "--to", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "deployment scheduled-generate/own" in page and "schedule * * * * * (cron, UTC)" in page

    assert serve.stop(signal.SIGINT) == 0, serve.text
    assert "stopped: scheduled-generate/own paused" in serve.text
    assert "was never awaited" not in serve.text and "Traceback" not in serve.text, serve.text
    assert gone(lambda: in_session(server_pid)), f"the Prefect server serve started is still running (pid {server_pid})"
    assert not healthy(api_url)


def test_serve_through_prefect_api_url_fires_every_minute_unaided(serving):
    serve = serving.api
    match = serve.api_line()
    assert (match[1], match[2]) == (serving.api_url, "PREFECT_API_URL")  # it used that server, it started none
    serve.wait_for("two scheduled versions", lambda: "committed version 1:" in serve.text, serving.deadline)
    _check_two_scheduled_versions(serve)
    assert not (serve.ds / "_prefect").exists()

    assert serve.stop(signal.SIGTERM) == 0, serve.text
    assert "was never awaited" not in serve.text and "Traceback" not in serve.text, serve.text
    assert healthy(serving.api_url), "serve leaves a server it did not start running"
    assert asyncio.run(_deployment(serving.api_url, "scheduled-generate/api")).paused  # stopping paused the schedule


def test_nightly_loop_a_crashed_run_is_resumed_by_the_next_schedule_and_pushed(serving, tmp_path):
    serve, hub = serving.nightly, serving.hub
    staging = serve.ds / "_staging"
    # 1. The first scheduled run is SIGKILLed midway (just after shard 0 is staged): serve says so, in one line.
    serve.wait_for("a crashed run", lambda: re.search(r"\) crashed: .*nothing was committed", serve.text),
                   serving.deadline)
    crash = next(line for line in serve.output if ") crashed: " in line)
    assert crash.count("\n") == 1 and "the next run resumes it" in crash, crash

    # 2. The next minute's run resumes that attempt: one version, every task once.
    serve.wait_for("the push of version 0", lambda: "v0" in hub.tags(HUB_REPO), serving.deadline)
    v0 = serve.versions()[0]
    crashed = next(iter(serve.staged))  # the first run's staging folder: the crashed attempt
    assert "rows-00000.parquet" in serve.staged[crashed], serve.staged
    assert v0.run_id == crashed, "the retry resumed the crashed attempt's run"
    assert v0.seed == 5 and v0.origin.schedule == CRON
    assert serve.output.index(crash) < next(i for i, line in enumerate(serve.output) if "committed version 0" in line)
    rows = DatasetStore(serve.ds).read(version=0)
    assert rows.height == NUM_TASKS and rows["id"].n_unique() == NUM_TASKS  # no row twice
    assert not (staging / v0.run_id).exists()

    # 3. The version is on the Hub, tagged v0, and `load_dataset(repo, "sft", revision="v0")` is that version.
    repo = hub.repos[("dataset", HUB_REPO)]
    assert repo.private and repo.tags["v0"] in repo.commits
    pushed = hub.files(HUB_REPO, "v0")
    card = pushed["README.md"].decode()
    assert f'load_dataset("{HUB_REPO}", "sft", revision="v0")' in card and "publish:" not in card
    with ThreadPoolExecutor(3) as pool:  # three fresh processes at once
        sft, rejects, anonymous = (pool.submit(load_from_hub, hub.url, HUB_REPO, config, "v0", tmp_path / name, token)
                                   for name, config, token in (("a", "sft", SECRET), ("b", "rejects", SECRET),
                                                               ("c", "sft", None)))
        assert sum(sft.result().values()) == v0.total_accepted
        assert sum(rejects.result().values()) == v0.rejected
        with pytest.raises(AssertionError, match="DatasetNotFoundError"):  # private: without the token, not there
            anonymous.result()

    # 4. The token arrived with every write, was refused nowhere, and is stored nowhere.
    writes = {(m, e, ok): n for (m, e, ok), n in hub.requests.items() if m == "POST" and e != "validate_yaml"}
    assert writes and all(ok for (_, _, ok) in writes), writes
    assert hub.unknown_requests() == []
    assert SECRET not in serve.text
    for blob in pushed.values():
        assert SECRET.encode() not in blob
    for path in serve.ds.rglob("*"):
        if path.is_file() and path.suffix != ".db":
            assert SECRET.encode() not in path.read_bytes(), path

    # 5. The same version pushed again by hand: refused in one line before anything is uploaded; the tag stays.
    commits = len(repo.commits)
    again = subprocess.run([sys.executable, "-m", "pipelines.cli", "push", str(serve.ds), "--version", "0", "--repo",
                            HUB_REPO], cwd=tmp_path, env=_env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=SECRET),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stderr.strip() == (f"trajforge: error: {HUB_REPO} already has tag v0 (commit {repo.tags['v0']}): "
                                    f"version 0 was pushed before, and a version tag is never moved; nothing was "
                                    f"uploaded")
    assert len(repo.commits) == commits

    server_pid = int(re.search(r"pid (\d+)", serve.api_line()[2])[1])
    assert serve.stop(signal.SIGTERM) == 0, serve.text
    assert "was never awaited" not in serve.text, serve.text
    assert gone(lambda: in_session(server_pid)), f"the Prefect server serve started is still running (pid {server_pid})"
