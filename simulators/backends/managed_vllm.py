"""A `vllm serve` process owned by one run: started, awaited until healthy, and always stopped.

On the way out the server's ``/metrics`` are saved beside its log (``vllm-NAME.metrics``), so a run's
request accounting can be checked against the server's own count.

vLLM pins a fastapi range that Prefect's server cannot share, so it runs as
its own process (from its own virtual environment if need be) and is reached
over the OpenAI protocol like any other server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas import BackendConfig
from simulators.backends.base import BackendError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# On unless the config's ``args`` say otherwise: a dialogue's every request repeats the one before it and adds a
# turn, so the server's prefix cache skips re-reading the conversation; and each reply then says how many prompt
# tokens came from that cache (``usage.prompt_tokens_details.cached_tokens``: the run's ``cached_prompt_tokens``).
DEFAULT_FLAGS = ("--enable-prefix-caching", "--enable-prompt-tokens-details")


def serve_command(config: BackendConfig, port: int) -> list[str]:
    v = config.vllm
    assert v is not None
    given = {a.split("=", 1)[0].replace("--no-", "--", 1) for a in v.args}
    defaults = [flag for flag in DEFAULT_FLAGS if flag not in given]
    return [v.executable, "serve", config.model, "--host", "127.0.0.1", "--port", str(port),
            "--enable-auto-tool-choice", "--tool-call-parser", v.tool_call_parser, *defaults, *v.args]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _save_metrics(base: str, path: Path) -> None:
    """The server's own Prometheus counters (requests by status and finish reason, tokens), kept beside its log
    before it stops: what the run's accounting can be checked against."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            path.write_bytes(reply.read())
    except (urllib.error.URLError, OSError):
        pass


def _stop(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the whole process group (vLLM forks workers), then SIGKILL what is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@contextmanager
def managed_vllm(name: str, config: BackendConfig, log_dir: Path) -> Iterator[str]:
    """Yield the server's ``/v1`` base URL while ``vllm serve`` runs; stop it on the way out, error or not."""
    v = config.vllm
    assert v is not None
    port = v.port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"vllm-{name}.log"
    command = serve_command(config, port)
    with open(log_path, "ab") as log:
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **v.env})
        except OSError as err:
            raise BackendError(f"backends.{name}.vllm.executable: cannot start {v.executable!r}: {err.strerror}") from None
    base = f"http://127.0.0.1:{port}"
    ready = False
    try:
        deadline = time.monotonic() + v.startup_timeout_s
        while not _healthy(base):
            if process.poll() is not None:
                raise BackendError(f"backends.{name}: vllm serve exited with status {process.returncode} "
                                   f"before it was ready ({log_path}: {_tail(log_path)})")
            if time.monotonic() > deadline:
                raise BackendError(f"backends.{name}: vllm serve not healthy after {v.startup_timeout_s:g}s "
                                   f"({log_path}: {_tail(log_path)})")
            time.sleep(0.5)
        ready = True
        yield f"{base}/v1"
    finally:
        if ready and process.poll() is None:
            _save_metrics(base, log_dir / f"vllm-{name}.metrics")
        _stop(process)
