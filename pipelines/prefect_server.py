"""A local ``prefect server start`` for as long as a command needs one.

Scheduled runs need the server's scheduler service, which Prefect's temporary
(ephemeral) server does not run, so ``trajforge serve`` starts the real server
as a child process when no ``PREFECT_API_URL`` is configured: SQLite under
``PREFECT_HOME`` (or the database the environment names), loopback only, a
free port. It is stopped when the command ends, however it ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


class ServerError(RuntimeError):
    """The local Prefect server did not come up; the message says why in one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def local_prefect_server(log_path: Path, port: int | None = None, timeout_s: float = 180,
                         env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1 and yield its API URL once it answers ``/health``."""
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **(env or {})}
    child_env.pop("PREFECT_API_URL", None)  # the server itself must not look for another one
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
            start_new_session=True)  # its own process group: stopping it stops its workers too
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(api_url):
            if proc.poll() is not None:
                raise ServerError(f"prefect server exited with status {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise ServerError(f"prefect server did not answer on {api_url} within {timeout_s:.0f}s; see {log_path}")
            time.sleep(0.5)
        yield api_url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
