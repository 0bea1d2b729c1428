"""The managed `vllm serve` lifecycle, with a stand-in executable, and the real thing where a GPU is present.

The stand-in is this suite's loopback server behind the exact command line the
run builds (``EXE serve MODEL --host --port --enable-auto-tool-choice
--tool-call-parser P ...``), so start, health wait, use and stop are all real
processes and real HTTP; only the model is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import TranscriptBrain

from pipelines.flow import run_generate
from pipelines.store import DatasetStore
from schemas import BackendConfig, RunConfig, parse_config
from simulators.backends import BackendError, managed_vllm

TESTS = Path(__file__).resolve().parent


def fake_vllm(tmp_path: Path) -> str:
    exe = tmp_path / "vllm"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                   "import loopback\nloopback.main()\n")
    exe.chmod(0o755)
    return str(exe)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def managed(tmp_path: Path, *args: str) -> BackendConfig:
    return BackendConfig(kind="vllm", model="tiny-model", vllm={
        "executable": fake_vllm(tmp_path), "tool_call_parser": "hermes", "startup_timeout_s": 30,
        "args": ["--pid-file", str(tmp_path / "pid"), "--argv-file", str(tmp_path / "argv"), *args]})


def test_server_is_started_with_tool_parsing_and_stopped_even_on_error(tmp_path):
    import urllib.request

    with pytest.raises(RuntimeError, match="boom"), managed_vllm("local", managed(tmp_path), tmp_path / "logs") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=5) as reply:
            assert reply.status == 200
        pid = int((tmp_path / "pid").read_text())
        assert alive(pid)
        raise RuntimeError("boom")
    assert not alive(pid)
    argv = json.loads((tmp_path / "argv").read_text())
    assert argv[:2] == ["serve", "tiny-model"]
    assert "--enable-auto-tool-choice" in argv and argv[argv.index("--tool-call-parser") + 1] == "hermes"


def test_a_server_that_dies_at_start_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match=r"exited with status 3 before it was ready.*refusing to start"), \
            managed_vllm("local", managed(tmp_path, "--fail-start"), tmp_path / "logs"):
        pass


def test_a_missing_executable_names_the_field(tmp_path):
    config = BackendConfig(kind="vllm", model="m", vllm={"executable": str(tmp_path / "nope")})
    with pytest.raises(BackendError, match=r"backends.local.vllm.executable: cannot start"), \
            managed_vllm("local", config, tmp_path / "logs"):
        pass


def _config(tmp_path: Path, **extra) -> RunConfig:
    data = {"name": "managed", "seed": 3, "num_tasks": 6, "shard_size": 3,
            "backends": {"local": managed(tmp_path).model_dump(exclude_none=True)},
            "simulation": {"mode": "model", "user": {"backend": "local"}, "assistant": {"backend": "local"}}}
    data.update(extra)
    return parse_config(data)


@pytest.mark.usefixtures("prefect_server")
def test_a_run_with_a_managed_server_starts_uses_and_stops_it(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "run.json").write_text(config.model_dump_json())
    config.backends["local"].vllm.args += ["--config", str(tmp_path / "run.json")]  # replay this run's transcripts
    # The stand-in replays the transcripts of this run's tasks (TranscriptBrain), as a real model would answer.
    TranscriptBrain(config)  # fails here, not in the subprocess, if the config cannot be replayed
    manifest = run_generate(config, tmp_path / "ds", "run-managed")
    assert manifest.accepted == 6 and manifest.usage["assistant"].requests > 0
    assert manifest.models == {"user": "tiny-model", "assistant": "tiny-model"}
    assert not alive(int((tmp_path / "pid").read_text()))
    assert (tmp_path / "ds" / "_logs" / "vllm-local.log").exists()
    assert DatasetStore(tmp_path / "ds").versions()[-1].run_id == "run-managed"


def test_cli_reports_a_server_that_will_not_start_and_commits_nothing(tmp_path):
    config = _config(tmp_path)
    config.backends["local"].vllm.args.append("--fail-start")
    path = tmp_path / "c.json"
    path.write_text(config.model_dump_json(exclude_none=True))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(path), "--out",
                          str(tmp_path / "ds"), "--no-progress"], cwd=TESTS.parent, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("trajforge: error: backends.local: vllm serve exited")
    assert not DatasetStore(tmp_path / "ds").exists()


def _gpu_reason() -> str | None:
    if shutil.which("vllm") is None and not os.environ.get("TRAJFORGE_VLLM"):
        return "no `vllm` executable (set TRAJFORGE_VLLM to its path)"
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        return "no NVIDIA GPU"
    return None


@pytest.mark.usefixtures("prefect_server")
def test_real_vllm_on_a_gpu(tmp_path):
    """End to end through `vllm serve` with a tiny random-weight model built here (nothing is downloaded)."""
    reason = _gpu_reason()
    if reason:
        print(f"SKIPPED test_real_vllm_on_a_gpu: {reason}")
        pytest.skip(reason)
    from tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    exe = os.environ.get("TRAJFORGE_VLLM") or shutil.which("vllm")
    config = parse_config({
        "name": "gpu", "seed": 1, "num_tasks": 8, "shard_size": 4,
        "backends": {"gpu": {"kind": "vllm", "model": str(model_dir), "timeout_s": 60, "max_retries": 1, "vllm": {
            "executable": exe, "tool_call_parser": "hermes", "startup_timeout_s": 600,
            "args": ["--max-model-len", "2048", "--gpu-memory-utilization", "0.3", "--enforce-eager"]}}},
        "simulation": {"mode": "model", "max_turns": 4, "dialogue_timeout_s": 120,
                       "user": {"backend": "gpu", "max_tokens": 32}, "assistant": {"backend": "gpu", "max_tokens": 64}},
    })
    manifest = run_generate(config, tmp_path / "ds", "run-gpu")
    # Random weights say nonsense: what is checked is that every task ends as a row and the server answered.
    assert manifest.tasks == 8 and manifest.accepted + manifest.rejected == 8
    assert manifest.usage["assistant"].requests > 0 and manifest.usage["assistant"].completion_tokens > 0
