"""Scheduling: `trajforge serve` registers a cron deployment on a real `prefect server start` and its runs
append dataset versions. Both ways in: a server named by PREFECT_API_URL, and one serve starts itself."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import yaml

from pipelines.cli import main
from pipelines.prefect_server import local_prefect_server
from pipelines.store import DatasetStore

CRON = "0 3 * * *"
REPO = Path(__file__).resolve().parents[1]


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "nightly", "seed": 5, "num_tasks": 20, "shard_size": 10, "output_dir": str(tmp_path / "ds"),
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "simulation": {"perturb_rate": 0.25},
    }))
    return path


def _env(tmp_path: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                          env.get("PYTHONPATH")])))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class _Serve:
    """`trajforge serve` as a child process, its output read line by line without blocking."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--config", str(config),
                                      "--cron", CRON], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def api_url(self, timeout: float = 240) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("serve printed no API URL:\n" + "".join(self.output)) from None
            if line.startswith("Prefect API: "):
                return line.split(": ", 1)[1].strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("serve did not stop on SIGINT:\n" + "".join(self.output)) from None


async def _deployment(api_url: str, timeout: float = 120):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            for _ in range(int(timeout * 2)):
                try:
                    return await client.read_deployment_by_name("scheduled-generate/nightly")
                except Exception:  # not registered yet
                    await asyncio.sleep(0.5)
    raise AssertionError("no deployment scheduled-generate/nightly")


def _run_once(api_url: str):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        return run_deployment("scheduled-generate/nightly", timeout=240)


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_on_a_configured_server_registers_the_cron_and_each_run_appends_a_version(tmp_path):
    config = _config_file(tmp_path)
    env = _env(tmp_path, None)
    with local_prefect_server(tmp_path / "server.log", env=env) as api_url:
        serve = _Serve(config, _env(tmp_path, api_url))
        try:
            assert serve.api_url() == api_url  # it used PREFECT_API_URL, it did not start its own
            deployment = asyncio.run(_deployment(api_url))
            assert [s.schedule.cron for s in deployment.schedules] == [CRON]
            assert all(s.active for s in deployment.schedules)
            assert deployment.parameters["out_dir"] == str((tmp_path / "ds").resolve())

            runs = [_run_once(api_url) for _ in range(2)]
            assert [r.state.is_completed() for r in runs] == [True, True], "".join(serve.output)
        finally:
            assert serve.stop() == 0, "".join(serve.output)
        assert _healthy(api_url), "serve must leave a server it did not start running"

    versions = DatasetStore(tmp_path / "ds").versions()
    assert [m.version for m in versions] == [0, 1]
    assert [m.seed for m in versions] == [5, 6]  # each scheduled run makes new tasks, not duplicates
    assert len({m.run_id for m in versions}) == 2
    assert all(m.tasks == 20 and m.accepted > 0 for m in versions)
    assert versions[1].stages.get("dedup", 0) < versions[1].accepted


def test_serve_without_api_url_starts_and_stops_its_own_server(tmp_path):
    serve = _Serve(_config_file(tmp_path), _env(tmp_path, None))
    try:
        api_url = serve.api_url()
        assert api_url.startswith("http://127.0.0.1:")
        deployment = asyncio.run(_deployment(api_url))
        assert [s.schedule.cron for s in deployment.schedules] == [CRON]
    finally:
        assert serve.stop() == 0, "".join(serve.output)
    assert not _healthy(api_url), "the server serve started is stopped with it"
    assert (tmp_path / "ds" / "_logs" / "prefect-server.log").exists()


def test_serve_rejects_a_bad_cron_before_registering(tmp_path, capsys):
    assert main(["serve", "--config", str(_config_file(tmp_path)), "--cron", "every night"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "trajforge: error: --cron: invalid cron expression 'every night'"
    assert not (tmp_path / "ds").exists()
