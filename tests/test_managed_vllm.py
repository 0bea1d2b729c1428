"""The managed `vllm serve` backend: the real CPU build with a real model, and a strict stand-in where a real
model cannot be made to misbehave on demand.

The real-model lane (``tests/real_model/lane.py``, built and cached by ``make test``): vLLM's CPU wheel in its
own environment serving SmolLM2-135M-Instruct, started and stopped by runs through ``kind: vllm``. A 135M
model is a weak agent, so what is asserted is what a weak real model allows: every task ends as a row with a
specific reason and who failed, the run's request count is the server's own, cut-off replies are counted as
such, the server is gone afterwards, and a server that will not start commits nothing.

The stand-in (``tests/vllm_standin.py``) parses its argv against the real build's options, forks a child,
and can die at start or never get healthy.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from loopback import TranscriptBrain

from pipelines.flow import run_generate
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import FAULTS, BackendConfig, RunConfig, parse_config
from simulators.backends import BackendError, managed_vllm
from simulators.backends.managed_vllm import serve_command

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import vllm_standin  # noqa: E402


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_dead(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


# -- the stand-in -------------------------------------------------------------------------------------------------


def standin(tmp_path: Path, args: list[str] | None = None, timeout: float = 30, **behaviour) -> BackendConfig:
    exe = vllm_standin.write_executable(tmp_path, pid_file=str(tmp_path / "pid"), child_pid_file=str(tmp_path / "child"),
                                        argv_file=str(tmp_path / "argv"), **behaviour)
    return BackendConfig(kind="vllm", model="tiny-model", vllm={
        "executable": exe, "tool_call_parser": "hermes", "startup_timeout_s": timeout,
        "args": ["--enforce-eager", "--max-model-len", "2048", *(args or [])]})


def test_server_is_started_with_tool_parsing_and_stopped_even_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), managed_vllm("local", standin(tmp_path), tmp_path / "logs") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=5) as reply:
            assert reply.status == 200
        pid, child = int((tmp_path / "pid").read_text()), int((tmp_path / "child").read_text())
        assert alive(pid) and alive(child)
        raise RuntimeError("boom")
    # The whole process group is stopped: the server and the child it forked (vLLM's engine core is one).
    assert wait_dead(pid) and wait_dead(child)
    argv = json.loads((tmp_path / "argv").read_text())
    assert argv[:2] == ["serve", "tiny-model"]
    assert "--enable-auto-tool-choice" in argv and argv[argv.index("--tool-call-parser") + 1] == "hermes"
    # A dialogue's requests extend each other: the server's prefix cache is on, and its replies count its hits.
    assert "--enable-prefix-caching" in argv and "--enable-prompt-tokens-details" in argv
    # ... unless the config says otherwise (the stand-in parses argv as vLLM does: both forms together would fail).
    off = serve_command(standin(tmp_path, ["--no-enable-prefix-caching"]), 8000)
    assert "--no-enable-prefix-caching" in off and "--enable-prefix-caching" not in off


def test_a_command_line_vllm_would_refuse_is_a_clear_error(tmp_path):
    """The stand-in parses argv against the real build's options: a flag vLLM lacks fails the start, as it would."""
    with pytest.raises(BackendError, match=r"exited with status 2 before it was ready.*unrecognized arguments: "
                       r"--no-such-flag"), managed_vllm("local", standin(tmp_path, ["--no-such-flag"]), tmp_path / "l"):
        pass


def test_a_server_that_dies_at_start_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match=r"exited with status 3 before it was ready.*refusing to start"), \
            managed_vllm("local", standin(tmp_path, fail_start=True), tmp_path / "logs"):
        pass
    assert wait_dead(int((tmp_path / "child").read_text()))


def test_a_server_that_never_gets_healthy_is_stopped(tmp_path):
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"vllm serve not healthy after 3s .*loading forever"), \
            managed_vllm("local", standin(tmp_path, timeout=3, hang=True), tmp_path / "logs"):
        pass
    assert time.monotonic() - started < 30
    assert wait_dead(int((tmp_path / "pid").read_text())) and wait_dead(int((tmp_path / "child").read_text()))


def test_a_missing_executable_names_the_field(tmp_path):
    config = BackendConfig(kind="vllm", model="m", vllm={"executable": str(tmp_path / "nope")})
    with pytest.raises(BackendError, match=r"backends.local.vllm.executable: cannot start"), \
            managed_vllm("local", config, tmp_path / "logs"):
        pass


def _standin_config(tmp_path: Path, **behaviour) -> RunConfig:
    data = {"name": "managed", "seed": 3, "num_tasks": 6, "shard_size": 3,
            "backends": {"local": standin(tmp_path, **behaviour).model_dump(exclude_none=True)},
            "simulation": {"mode": "model", "user": {"backend": "local"}, "assistant": {"backend": "local"}}}
    return parse_config(data)


@pytest.mark.usefixtures("prefect_server")
def test_a_run_with_a_managed_server_starts_uses_and_stops_it(tmp_path):
    plain = _standin_config(tmp_path)
    (tmp_path / "run.json").write_text(plain.model_dump_json())
    config = _standin_config(tmp_path, config=str(tmp_path / "run.json"))  # the stand-in replays this run's transcripts
    TranscriptBrain(plain)  # fails here, not in the subprocess, if the config cannot be replayed
    manifest = run_generate(config, tmp_path / "ds", "run-managed")
    assert manifest.accepted == 6 and manifest.usage["assistant"].requests > 0
    assert manifest.models == {"user": "tiny-model", "assistant": "tiny-model"}
    assert wait_dead(int((tmp_path / "pid").read_text())) and wait_dead(int((tmp_path / "child").read_text()))
    assert (tmp_path / "ds" / "_logs" / "vllm-local.log").exists()
    assert DatasetStore(tmp_path / "ds").versions()[-1].run_id == "run-managed"


def _cli_generate(config: RunConfig, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "c.json"
    path.write_text(config.model_dump_json(exclude_none=True))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(path), "--out",
                           str(tmp_path / "ds"), "--no-progress"], cwd=TESTS.parent, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_reports_a_server_that_will_not_start_in_one_line_and_commits_nothing(tmp_path):
    run = _cli_generate(_standin_config(tmp_path, fail_start=True), tmp_path)
    assert run.returncode == 1, run.stderr
    # One line, no Prefect traceback: the server is started before the flow run.
    assert run.stderr.strip().splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith("trajforge: error: backends.local: vllm serve exited with status 3")
    assert not DatasetStore(tmp_path / "ds").exists() and not (tmp_path / "ds" / "_staging").exists()


# -- the real thing: vLLM's CPU build serving SmolLM2-135M-Instruct --------------------------------------------------


def smol(lane, **vllm) -> dict:
    """The backend every real-model run uses: ``kind: vllm`` on the lane's executable and model.

    Served in float32: the model's bfloat16 has no native kernels on a CPU without AVX-512 BF16 (oneDNN falls
    back to torch), where it prefilled 33 tokens/s against float32's 200 and decoded 5 streams 3x slower.
    """
    return {"kind": "vllm", "model": str(lane.model), "timeout_s": 600, "max_retries": 0, "max_concurrency": 16,
            "vllm": {"executable": str(lane.vllm), "tool_call_parser": "hermes", "startup_timeout_s": 300,
                     "args": ["--enforce-eager", "--dtype", "float32", "--max-model-len", "8192",
                              "--chat-template", str(lane.template)],
                     "env": {"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}, **vllm}}


def server_counts(metrics: Path) -> dict[str, float]:
    """What the server itself counted: chat requests by HTTP status, and finished requests by finish reason."""
    out: dict[str, float] = {}
    for line in metrics.read_text().splitlines():
        m = re.match(r'http_requests_total\{handler="/v1/chat/completions",method="POST",status="(\w+)"\} (\S+)', line)
        if m:
            out["requests"] = out.get("requests", 0) + float(m.group(2))
        m = re.match(r'vllm:request_success_total\{.*finished_reason="(\w+)".*\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def prefix_cache(metrics: Path) -> dict[str, float]:
    """The server's prefix-cache counters, in prompt tokens: queried and found cached (vLLM's V1 names)."""
    out = {"queries": 0.0, "hits": 0.0}
    for line in metrics.read_text().splitlines():
        m = re.match(r"vllm:prefix_cache_(queries|hits)(?:_total)?(?:\{.*\})? (\S+)$", line)
        if m:
            out[m.group(1)] += float(m.group(2))
    return out


def check_real_run(manifest, out: Path, lane, tasks: int) -> pl.DataFrame:
    """What holds for any run of a weak real model, whatever it said."""
    rows = pl.read_delta(str(out)).sort("index")
    assert manifest.tasks == tasks == rows.height == manifest.accepted + manifest.rejected
    rejected = rows.filter(pl.col("status") == "rejected")
    # Every rejection has a reason and who failed; accepted rows have no fault.
    assert rejected["reason"].null_count() == 0 and set(rejected["fault"]) <= set(FAULTS)
    assert rows.filter(pl.col("status") == "accepted")["fault"].null_count() == manifest.accepted
    assert sum(manifest.faults.values()) == manifest.rejected
    # A cut-off reply is reported as truncation, never as the JSON error it would cause.
    for reason in rejected["reason"]:
        assert not re.search(r"Unterminated string|EOF while parsing|Expecting .* delimiter", reason), reason
    # A dialogue that stopped keeps what it said up to the failure.
    for row in rejected.filter(pl.col("stage") == "simulation").iter_rows(named=True):
        assert row["messages"] and row["messages"][0]["role"] == "system" and row["task"], row["reason"]
    # The run's accounting is the server's own: every request it served, and every reply it cut off (each was
    # either asked again with a larger budget or refused), none served from the cache.
    served = server_counts(out / "_logs" / "vllm-smol.metrics")
    usage = manifest.usage.values()
    seen = (served, manifest.usage, rejected.select("stage", "reason").rows())  # what a failure shows
    assert served["requests"] == sum(u.requests for u in usage) > 0, seen
    assert served.get("length", 0) == sum(u.truncated + u.truncated_retries for u in usage), seen
    assert sum(u.cached for u in usage) == 0
    # The server and the processes it forked are gone.
    pids = {int(p) for p in re.findall(r"pid=(\d+)", (out / "_logs" / "vllm-smol.log").read_text())}
    assert pids and all(wait_dead(p) for p in pids)
    return rows


def show(rows: pl.DataFrame, title: str) -> None:
    """One stored dialogue with its reasons and attribution (visible with ``pytest -s``)."""
    row = rows.row(0, named=True)
    print(f"\n=== {title}: {row['status']} at {row['stage']}: {row['reason']} (fault: {row['fault']})")
    for m in row["messages"][1:]:
        calls = "; ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"] or [])
        print(f"  {m['role']:>9}: {(m['content'] or '')[:300]!r}{'  calls ' + calls if calls else ''}")
    print(f"  verdicts: {row['verdicts']}")


@pytest.mark.usefixtures("prefect_server")
def test_real_model_simulates_and_writes_blueprints(tmp_path, real_model_lane):
    """One managed server for one run: five rule blueprints simulated turn by turn (model user with reminders,
    model assistant), five blueprints written by the model and reviewed by a committee of it, a judge first
    in the filter chain."""
    lane = real_model_lane
    config = parse_config({
        "name": "real-simulate", "seed": 19, "num_tasks": 10, "shard_size": 10,
        "backends": {"smol": smol(lane)},
        "generators": [
            {"name": "blueprint", "params": {"min_requests": 1, "max_requests": 1}},
            {"name": "model_blueprint", "params": {
                "backend": "smol", "temperature": 0.3, "max_tokens": 240, "retry_max_tokens": 320, "feedback_rounds": 0,
                "few_shot": 0, "min_requests": 1, "max_requests": 1, "intents": ["order_status"],
                "committee": {"retries": 1, "reviewers": [{"backend": "smol", "max_tokens": 120},
                                                          {"backend": "smol", "max_tokens": 120, "seed": 1}]}}}],
        "simulation": {"mode": "model", "max_turns": 3, "concurrency": 10, "dialogue_timeout_s": 400,
                       "user": {"backend": "smol", "temperature": 0.7, "seed": 0, "max_tokens": 40, "reminder_every": 2},
                       "assistant": {"backend": "smol", "temperature": 0.0, "max_tokens": 64,
                                     "parallel_tool_calls": True}},
        "filters": [{"name": "simulator_leak"}, {"name": "judge", "params": {"backend": "smol", "max_tokens": 96}},
                    {"name": "format"}, {"name": "execution"}, {"name": "policy"}, {"name": "outcome"},
                    {"name": "required_outputs"}],
    })
    steps = build_steps(config)
    chosen = [random.Random(f"{config.seed}:task:{i}").choices(steps.generators, weights=steps.weights)[0].name
              for i in range(config.num_tasks)]
    assert chosen.count("blueprint") >= 5 and chosen.count("model_blueprint") >= 5
    manifest = run_generate(config, tmp_path / "ds", "run-real-simulate")
    rows = check_real_run(manifest, tmp_path / "ds", lane, 10)

    simulated = rows.filter(pl.col("generator") == "blueprint")
    assert simulated.height >= 5 and (simulated["stage"] != "synthesis").all()
    assert manifest.usage["user"].requests >= 5
    # every dialogue the assistant was asked in holds its turn; one that never got that far failed on a party's side
    asked = [r for r in simulated.iter_rows(named=True) if any(m["role"] == "assistant" for m in r["messages"])]
    assert manifest.usage["assistant"].requests >= len(asked) >= 1
    assert all(r["fault"] in ("user", "assistant") for r in simulated.iter_rows(named=True) if r not in asked)
    for row in simulated.iter_rows(named=True):
        said = [m["content"] or "" for m in row["messages"] if m["role"] == "user"]
        assert said, row["reason"]  # the model user spoke before anything failed
        assert not any("[Reminder" in s or "###" in s for s in said)  # instructions never reach stored text
    written = rows.filter(pl.col("index").is_in([i for i, g in enumerate(chosen) if g == "model_blueprint"]))
    assert written.height >= 5
    synthesis = manifest.synthesis["model_blueprint"]
    assert synthesis["blueprints"] == written.height and manifest.usage["model_blueprint"].requests >= 5
    for row in written.filter(pl.col("stage") == "synthesis").iter_rows(named=True):
        # The writer's conversation is the evidence of a blueprint that was never made.
        assert row["reason"].startswith("model_blueprint: ") and row["fault"] in ("synthesis", "judge")
        assert row["messages"][0]["role"] == "system" and len(row["messages"]) >= 2
    # Multi-turn requests hit the server's prefix cache. The managed server started with this run (its counters
    # began at 0) and was asked for its /metrics just before it stopped; prefix caching was on in its command.
    log = (tmp_path / "ds" / "_logs" / "vllm-smol.log").read_text()
    assert "'enable_prefix_caching': True" in log or "enable_prefix_caching=True" in log
    cache = prefix_cache(tmp_path / "ds" / "_logs" / "vllm-smol.metrics")
    cached = {role: u.cached_prompt_tokens for role, u in manifest.usage.items()}
    assert cache["queries"] > 0 and cache["hits"] > 0, cache
    # The replies said so too (prompt_tokens_details), per role: the assistant's requests (the policy and tools
    # every dialogue opens with, then each dialogue's earlier turns: tests/test_cost.py checks every request
    # repeats its dialogue's previous one exactly) were partly served from it.
    assert cached["assistant"] > 0 and sum(cached.values()) <= cache["hits"], (cached, cache)
    print(f"  prefix cache: {cache['hits']:.0f} of {cache['queries']:.0f} prompt tokens hit; by role {cached}")
    show(simulated, "simulate")
    show(written, "model_blueprint + committee")
    print(f"  funnel: {manifest.funnel}\n  faults: {manifest.faults}\n  synthesis: {synthesis}")


@pytest.mark.usefixtures("prefect_server")
def test_real_model_refines_skeletons_and_judges_them(tmp_path, real_model_lane):
    """skeleton_refine: one structured request per dialogue fills the masked customer turns; the judge (first
    filter) grades every dialogue that comes out whole, or says judge_error."""
    lane = real_model_lane
    config = parse_config({
        "name": "real-refine", "seed": 2, "num_tasks": 6, "shard_size": 6,
        "backends": {"smol": smol(lane)},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 1}}],
        "simulation": {"mode": "model", "strategy": "skeleton_refine", "concurrency": 6, "dialogue_timeout_s": 300,
                       "refine": {"backend": "smol", "temperature": 0.2, "max_tokens": 160, "mask_rate": 0.0,
                                  "clarify_rate": 0.0, "correction_rate": 0.0}},
        "filters": [{"name": "simulator_leak"}, {"name": "judge", "params": {"backend": "smol", "max_tokens": 96}},
                    {"name": "format"}, {"name": "execution"}, {"name": "policy"}, {"name": "outcome"},
                    {"name": "required_outputs"}],
    })
    manifest = run_generate(config, tmp_path / "ds", "run-real-refine")
    rows = check_real_run(manifest, tmp_path / "ds", lane, 6)
    assert manifest.usage["refine"].requests >= 6
    whole = rows.filter(pl.col("stage").is_null() | ~pl.col("stage").is_in(["synthesis", "simulation"]))
    leaked = [r for r in whole.iter_rows(named=True)
              if any(v["stage"] == "simulator_leak" and not v["passed"] for v in json.loads(r["verdicts"]))]
    # every whole dialogue past the leak check (the first filter) was sent to the judge
    assert whole.height >= 1 and manifest.usage["judge"].requests >= whole.height - len(leaked)
    for row in whole.iter_rows(named=True):
        verdicts = {v["stage"]: v for v in json.loads(row["verdicts"])}
        # Past the leak check every whole dialogue met the judge: a score, or a judge_error that is the judge's.
        if "simulator_leak" in verdicts and not verdicts["simulator_leak"]["passed"]:
            assert row["fault"] == "user"
            continue
        assert "judge" in verdicts or (verdicts["judge_error"]["fault"] == "judge" and row["fault"] == "judge")
    show(rows.sort(pl.col("stage").is_in(["synthesis", "simulation"])), "skeleton_refine")
    print(f"  funnel: {manifest.funnel}\n  faults: {manifest.faults}")


def test_real_vllm_that_will_not_start_is_one_line_and_commits_nothing(tmp_path, real_model_lane):
    config = parse_config({
        "name": "real-fail", "num_tasks": 2,
        "backends": {"smol": {**smol(real_model_lane), "model": str(tmp_path / "no-such-model")}},
        "simulation": {"mode": "model", "assistant": {"backend": "smol"}}})
    run = _cli_generate(config, tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith("trajforge: error: backends.smol: vllm serve exited with status")
    assert not DatasetStore(tmp_path / "ds").exists() and not (tmp_path / "ds" / "_staging").exists()


def test_the_stand_in_knows_the_real_builds_options(real_model_lane):
    """The stand-in's option list is the real build's: regenerate it when vLLM is upgraded (see vllm_standin)."""
    real = vllm_standin.option_lines(real_model_lane.serve_help.read_text())
    assert real == vllm_standin.OPTIONS.read_text().splitlines()


# -- a GPU, where there is one ---------------------------------------------------------------------------------------


def _gpu_reason() -> str | None:
    if shutil.which("vllm") is None and not os.environ.get("TRAJFORGE_VLLM"):
        return "no CUDA `vllm` executable (set TRAJFORGE_VLLM to its path)"
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        return "no NVIDIA GPU"
    return None


@pytest.mark.usefixtures("prefect_server")
def test_real_vllm_on_a_gpu(tmp_path):
    """The CUDA build end to end, with a tiny random-weight model built here (nothing is downloaded)."""
    reason = _gpu_reason()
    if reason:
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
