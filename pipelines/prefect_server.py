"""The Prefect server a trajforge command runs against: the one ``PREFECT_API_URL`` names, or its own.

``PREFECT_API_URL`` (the environment or the active Prefect profile) names a
server: it is used as it is. Otherwise the command starts one for as long as it
runs, and configures it here rather than trusting whatever environment it was
started from (``make``'s, a cron job's, a bare shell's):

- loopback only, on a free port;
- its own Prefect home per dataset, ``OUT/_prefect`` (its SQLite database and
  block-registration memo), so runs on different output directories never
  share a database (Prefect's own temporary server uses ``~/.prefect`` for all
  of them: "database is locked" when two run at once). A second run on the same
  output directory while the first holds it gets a temporary home instead;
- analytics and telemetry off (a machine without internet would log ``Failed
  to send telemetry`` on every run), its output and WARNING-level logging in
  ``OUT/_logs/prefect-server.log``;
- tethered (``pipelines.tethered``): it stops with the command, even when the
  command is SIGKILLed;
- a start limit that fits a loaded 2-core machine: ``TRAJFORGE_PREFECT_START_TIMEOUT_S``
  seconds, 180 by default (Prefect's own temporary server gives up after 20).

Two kinds. ``generate`` needs the API only: Prefect's ephemeral mode (the API
plus the services that record task runs, events and logs), as Prefect's own
temporary server runs it. ``serve`` needs the scheduler, so it gets the full
``prefect server start``, UI included.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from schemas import ConfigError

START_TIMEOUT_ENV = "TRAJFORGE_PREFECT_START_TIMEOUT_S"
DEFAULT_START_TIMEOUT_S = 180.0
LOG_NAME = "prefect-server.log"
_TETHER = Path(__file__).with_name("tethered.py")


class ServerError(RuntimeError):
    """The local Prefect server did not come up; the message says why in one line and names its log."""


@dataclass(frozen=True)
class PrefectApi:
    """Where the Prefect API is; ``pid``, ``log`` and ``home`` only for a server this command started."""

    url: str
    pid: int | None = None
    log: Path | None = None
    home: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.pid is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` as Prefect resolves it: environment, then the active profile."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def seconds_from_env(name: str, default: float) -> float:
    """A number of seconds > 0 from the environment variable ``name``, or a one-line ConfigError naming it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name}: expected a number of seconds > 0, got {raw!r}")
    return value


def start_timeout_s() -> float:
    return seconds_from_env(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S)


@contextmanager
def prefect_api(out_dir: str | Path, scheduler: bool = False) -> Iterator[PrefectApi]:
    """The configured API, or a local server of this command's own for as long as this lasts.

    While it lasts, ``PREFECT_API_URL`` names it both in Prefect's settings and
    in ``os.environ`` (flow runs, process-pool and Ray workers are child
    processes: they read it from there).
    """
    url = configured_api_url()
    if url:
        yield PrefectApi(url)
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out = Path(out_dir)
    with _home(out) as home, local_prefect_server(home, out / "_logs" / LOG_NAME, scheduler=scheduler) as api:
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = api.url
        # Threads Prefect starts itself see the global settings, not this thread's: without the refresh, the process
        # pool's event forwarder found no API URL and started Prefect's own temporary server, so every worker's
        # task-run events went to a second, untethered server that knew none of the flow runs.
        refresh_global_settings_context()
        try:
            with temporary_settings({PREFECT_API_URL: api.url}):
                try:
                    yield api
                finally:
                    _drain_prefect_workers()
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous
            refresh_global_settings_context()


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds before their server goes (else: "All connection attempts
    failed" on stderr at exit), as Prefect's own test harness does before it stops its server."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        for result in (APILogWorker.drain_all(timeout=10), EventsWorker.drain_all(timeout=10)):
            if inspect.isawaitable(result):
                await result

    try:
        run_coro_as_sync(drain())
    except Exception:  # nothing to send, or a worker that never started: the server may go either way
        pass


@contextmanager
def _home(out: Path) -> Iterator[Path]:
    """``OUT/_prefect``, held with an exclusive lock; a temporary home when another run holds it."""
    home = out / "_prefect"
    try:
        home.mkdir(parents=True, exist_ok=True)
        lock = open(home / "lock", "w")  # held until the server is gone
    except OSError as err:
        raise ConfigError(f"{home}: cannot create the Prefect home of this dataset: {err.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        with tempfile.TemporaryDirectory(prefix="trajforge-prefect-") as tmp:
            yield Path(tmp)
        return
    try:
        yield home
    finally:
        lock.close()


def _server_command(port: int, scheduler: bool) -> tuple[list[str], dict[str, str]]:
    if scheduler:
        return ([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                 "--analytics-off"], {})
    import prefect

    # What Prefect's own temporary server runs (prefect.server.api.server.SubprocessASGIServer), under our control.
    return ([sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT_UI_ENABLED": "0"})


@contextmanager
def local_prefect_server(home: Path, log_path: Path, scheduler: bool = True, port: int | None = None,
                         timeout_s: float | None = None, env: dict[str, str] | None = None) -> Iterator[PrefectApi]:
    """Start a tethered Prefect server on 127.0.0.1 with Prefect home ``home``; yield it once ``/health`` answers."""
    from prefect.settings import get_current_settings

    timeout_s = start_timeout_s() if timeout_s is None else timeout_s
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    command, server_env = _server_command(port, scheduler)
    child_env = {**os.environ, **server_env}
    child_env.pop("PREFECT_API_URL", None)  # the server itself must not look for another one
    child_env.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    child_env.update({
        "PREFECT_HOME": str(home),
        # the user's profiles still apply (e.g. a database they configured), from where they are
        "PREFECT_PROFILES_PATH": str(get_current_settings().profiles_path),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **(env or {}),
    })
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, str(_TETHER), *command], stdin=subprocess.PIPE, stdout=log,
                                stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True)  # its own process group: stopping it stops its workers too
    try:
        deadline = time.monotonic() + timeout_s
        while not healthy(api_url):
            if proc.poll() is not None:
                raise ServerError(f"the local Prefect server exited with status {proc.returncode} before it "
                                  f"answered; see {log_path}")
            if time.monotonic() > deadline:
                raise ServerError(f"the local Prefect server did not answer on {api_url} within {timeout_s:g}s "
                                  f"(set {START_TIMEOUT_ENV} to wait longer); see {log_path}")
            time.sleep(0.5)
        yield PrefectApi(api_url, pid=proc.pid, log=log_path, home=home)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after 20 s; closing the tether's stdin ends it either way."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdin:
        proc.stdin.close()
