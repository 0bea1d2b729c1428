"""Model-mode runs through the real Prefect flow, against a loopback OpenAI-compatible server.

The server replays the offline transcripts of the run's own tasks as both the
user simulator and the assistant, with faults planted in chosen dialogues, so
every outcome is known in advance and checked exactly.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from loopback import LoopbackServer, TranscriptBrain

from pipelines.flow import run_generate
from pipelines.store import DatasetStore
from schemas import RunConfig, parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")

MALFORMED, RATE_LIMITED, FLAKY, SLOW = 1, 3, 4, 5


def model_config(url: str = "http://127.0.0.1:9/v1", num_tasks: int = 12, cache: dict | None = None,
                 **simulation) -> RunConfig:
    return parse_config({
        "name": "model-test", "seed": 5, "num_tasks": num_tasks, "shard_size": 4,
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "backends": {"loop": {"model": "loop-model", "base_url": url, "max_concurrency": 4, "timeout_s": 1.0,
                              "max_retries": 3, "backoff_s": 0.05}},
        "simulation": {"mode": "model", "user": {"backend": "loop", "reminder_every": 3},
                       "assistant": {"backend": "loop", "temperature": 0.0}, **simulation},
        "runner": {"kind": "thread", "workers": 3},
        "cache": cache or {},
    }, "model-test")


def rows(out) -> dict[int, dict]:
    return {r["index"]: r for r in DatasetStore(out).read().to_dicts()}


def _with_a_write(config: RunConfig, taken: set[int]) -> int:
    """A task the scripted mistakes can be planted in (they go on a write), other than those already used."""
    from loopback import synthesized_tasks

    from pipelines.steps import build_steps

    env = build_steps(config).env
    for i, task in sorted(synthesized_tasks(config).items()):
        if i not in taken and any(env.spec_of(a).writes for a in task.gold_actions):
            return i
    raise AssertionError("no task with a write")


def test_every_case_ends_with_its_reason_and_a_rerun_is_served_from_cache(tmp_path):
    config = model_config()
    UNKNOWN = _with_a_write(config, {MALFORMED, RATE_LIMITED, FLAKY, SLOW})  # noqa: N806
    brain = TranscriptBrain(config, perturb={MALFORMED: "malformed_json", UNKNOWN: "unknown_tool"},
                            faults={RATE_LIMITED: ("429", 2), FLAKY: ("500", 2), SLOW: ("slow", 1)}, slow_s=1.6)
    cache = tmp_path / "requests.sqlite"
    with LoopbackServer(brain) as server:
        config = model_config(server.url, cache={"path": str(cache)})
        manifest = run_generate(config, tmp_path / "a", "run-a")
        # A reply that arrived after the client's timeout was billed by the server but never received.
        received = [(p, c) for p, c, delay in server.billed if delay < config.backends["loop"].timeout_s]
        first_requests = server.requests
        got = rows(tmp_path / "a")

        assert manifest.tasks == 12 and len(got) == 12
        assert got[MALFORMED]["stage"] == "format" and "arguments are not a JSON object" in got[MALFORMED]["reason"]
        assert got[UNKNOWN]["stage"] == "format" and "unknown tool" in got[UNKNOWN]["reason"]
        accepted = {i for i, r in got.items() if r["status"] == "accepted"}
        assert accepted == set(range(12)) - {MALFORMED, UNKNOWN}
        # Accepted dialogues are exactly the transcripts the server was replaying, policy prompt first.
        for i in accepted:
            stored = [{k: v for k, v in m.items() if v is not None} for m in got[i]["messages"]]
            assert stored[0]["role"] == "system" and stored[1:] == brain.transcripts[i]
            assert all("###STOP###" not in (m.get("content") or "") for m in stored)

        # Accounting: every HTTP request is counted once, by role, with the tokens the server reported.
        usage = manifest.usage
        assert set(usage) == {"user", "assistant"}
        assert usage["user"].requests + usage["assistant"].requests == first_requests
        assert usage["assistant"].retries == 5  # two 429s, two 500s, one timeout
        assert sum(u.prompt_tokens for u in usage.values()) == sum(p for p, _ in received)
        assert sum(u.completion_tokens for u in usage.values()) == sum(c for _, c in received)
        assert manifest.models == {"user": "loop-model", "assistant": "loop-model"}
        assert server.statuses[429] == 2 and server.statuses[500] == 2
        assert any("[Reminder, not part of the chat" in k for _, k in server.arrivals)  # reminder_every: 3
        assert 1 < server.max_in_flight <= 4  # streamed in parallel, never over the endpoint's limit
        # The 429s asked for one second; the client waited at least that long before each retry.
        key = brain.fault_keys[RATE_LIMITED]
        times = [t for t, k in server.arrivals if k == key]
        assert len(times) == 3 and all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))

        server.reset_counts()
        again = run_generate(config, tmp_path / "b", "run-b")
        assert server.requests == 0
        assert again.accepted == manifest.accepted and again.rejected == manifest.rejected
        assert again.usage["assistant"].requests == 0 and again.usage["assistant"].cached > 0
    second = rows(tmp_path / "b")
    assert {i: r["id"] for i, r in second.items()} == {i: r["id"] for i, r in got.items()}


def test_backend_failures_become_rejected_rows(tmp_path):
    config = model_config(num_tasks=8)
    brain = TranscriptBrain(config, faults={0: ("500", 0), 1: ("slow", 0)}, slow_s=1.5)
    with LoopbackServer(brain) as server:
        config = model_config(server.url, num_tasks=8, cache={"enabled": False})
        manifest = run_generate(config, tmp_path / "ds", "run-fail")
    got = rows(tmp_path / "ds")
    assert got[0]["stage"] == "simulation" and "HTTP 500" in got[0]["reason"] and "gave up after 3" in got[0]["reason"]
    assert got[1]["stage"] == "simulation" and "timed out" in got[1]["reason"]
    assert manifest.accepted == 6 and manifest.stages == {"simulation": 2}
    assert manifest.usage["assistant"].errors == 8
    assert not (tmp_path / "ds" / "_cache").exists()


def test_time_budget_and_scripted_user_with_model_assistant(tmp_path):
    """With no user role the scripted user talks to the model assistant; a tight budget ends slow dialogues."""
    data = model_config(num_tasks=4).model_dump()
    data["simulation"]["user"] = None
    config = RunConfig.model_validate(data)
    brain = TranscriptBrain(config)
    with LoopbackServer(brain, latency_s=0.3) as server:
        data["backends"]["loop"]["base_url"] = server.url
        data["simulation"]["dialogue_timeout_s"] = 1.0
        manifest = run_generate(RunConfig.model_validate(data), tmp_path / "ds", "run-slow")
    df = DatasetStore(tmp_path / "ds").read()
    assert manifest.tasks == 4 and set(manifest.usage) == {"assistant"}
    assert df.filter(pl.col("status") == "rejected")["reason"].to_list() == \
        ["dialogue exceeded its time budget of 1s"] * 4


def test_model_config_errors_name_the_field():
    from schemas import ConfigError

    with pytest.raises(ConfigError, match=r"simulation.assistant: required"):
        parse_config({"num_tasks": 1, "simulation": {"mode": "model"}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"simulation.user.backend: unknown backend 'nope'; known: loop"):
        parse_config({"num_tasks": 1, "backends": {"loop": {"model": "m", "base_url": "http://127.0.0.1:1/v1"}},
                      "simulation": {"mode": "model", "assistant": {"backend": "loop"}, "user": {"backend": "nope"}}})
    with pytest.raises(ConfigError, match=r"backends.loop: Value error, base_url is required"):
        parse_config({"num_tasks": 1, "backends": {"loop": {"model": "m"}}})


def test_secrets_stay_out_of_the_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOP_API_KEY", "sk-live-do-not-store")
    config = model_config(num_tasks=4)
    brain = TranscriptBrain(config)
    with LoopbackServer(brain) as server:
        data = model_config(server.url, num_tasks=4).model_dump()
        data["backends"]["loop"]["api_key_env"] = "LOOP_API_KEY"
        manifest = run_generate(RunConfig.model_validate(data), tmp_path / "ds", "run-key")
    assert manifest.accepted == 4
    blob = b"".join(p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file())
    assert b"sk-live-do-not-store" not in blob
    assert "base_url" not in json.dumps(manifest.config)


def test_the_example_model_config_is_valid():
    from pathlib import Path

    from schemas import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "model.yaml")
    assert set(config.roles()) == {"user", "assistant"} and config.backends["managed"].vllm.tool_call_parser == "hermes"
