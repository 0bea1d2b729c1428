"""Cost accounting and spend budgets, in model mode against a loopback OpenAI-compatible server.

The server reports token usage for every reply it sends (and remembers what it
billed), so the run's cost is checked against the server's own bill, not against
our arithmetic; a ``max_cost`` run must stop at its budget with a committed
version; the request cache's replies cost nothing and show up as savings in the
manifest, the end-of-run summary, the card and the report.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from loopback import LoopbackServer, TranscriptBrain

from pipelines.cli import main
from pipelines.export import ExportOptions, export_version
from pipelines.report import write_report
from pipelines.store import DatasetStore
from schemas import parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")

PROMPT, COMPLETION = 3.0, 15.0  # per million tokens
GPU_HOUR, GPUS = 2.5, 4  # a self-served model: per GPU-hour, on 4 GPUs


def _data(url: str, cache: str | None = None, **over) -> dict:
    data = {"name": "cost-test", "seed": 11, "num_tasks": 8, "shard_size": 4,
            "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
            "backends": {"loop": {"model": "loopback", "base_url": url, "max_concurrency": 4, "timeout_s": 5.0,
                                  "price": {"prompt_per_1m": PROMPT, "completion_per_1m": COMPLETION}}},
            "simulation": {"mode": "model", "user": {"backend": "loop"}, "assistant": {"backend": "loop"}},
            "dedup": {"exact": True, "near": {"enabled": False}, "against_previous_versions": False},
            "runner": {"kind": "thread", "workers": 2},
            "cache": {"enabled": cache is not None, **({"path": cache} if cache else {})}}
    data.update(over)
    return data


def _generate(tmp_path, data: dict, out: str, capsys) -> str:
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["generate", "--config", str(path), "--out", str(tmp_path / out), "--run-id", out,
                 "--no-progress"]) == 0
    return capsys.readouterr().out


def test_cost_matches_the_servers_bill_and_cached_replies_are_free_savings(tmp_path, capsys):
    cache = str(tmp_path / "requests.sqlite")
    config = parse_config(_data("http://127.0.0.1:9/v1"))
    with LoopbackServer(TranscriptBrain(config)) as server:
        data = _data(server.url, cache=cache)
        first_out = _generate(tmp_path, data, "first", capsys)
        billed = sum(p * PROMPT + c * COMPLETION for p, c, _ in server.billed) / 1e6
        sent = [json.loads(key) for _, key in server.arrivals if key]
        first = DatasetStore(tmp_path / "first").versions()[-1]
        second_out = _generate(tmp_path, data, "second", capsys)  # same tasks: every reply from the cache
        second = DatasetStore(tmp_path / "second").versions()[-1]
        assert server.requests == first.usage["user"].requests + first.usage["assistant"].requests

    # A server's prefix cache only helps when a dialogue's next request repeats the last one message for
    # message. Per conversation (one role of one dialogue: its system prompt and first turn), in the order the
    # server got them, each request is the one before it, unchanged and in the same order, plus new turns.
    chains: dict[str, list[list[dict]]] = {}
    for m in sent:
        chains.setdefault(json.dumps(m[:2], sort_keys=True), []).append(m)
    assert len(chains) == 2 * first.tasks  # the user simulator's and the assistant's conversation of each dialogue
    for chain in chains.values():
        assert len(chain[0]) == 2 and len(chain) >= 2
        assert all(len(a) < len(b) and b[:len(a)] == a for a, b in zip(chain, chain[1:], strict=False)), chain
    assert sum(len(m) > 2 for m in sent) > len(sent) / 2

    c = first.cost
    assert c is not None and c.currency == "USD" and billed > 0
    assert c.total == pytest.approx(billed, rel=1e-9)
    assert sum(c.by_role.values()) == pytest.approx(c.total) and set(c.by_role) == {"user", "assistant"}
    assert c.by_stage == {"simulation": pytest.approx(c.total)}
    assert first.accepted > 0 and c.per_accepted == pytest.approx(c.total / first.accepted)
    assert c.saved == 0 and f"cost ${c.total:.4g}, ${c.per_accepted:.4g} per accepted trajectory" in first_out

    # The second run sent nothing: it cost 0, and what it would have cost is the first run's bill, as a saving.
    s = second.cost
    assert sum(u.requests for u in second.usage.values()) == 0 and second.accepted == first.accepted
    assert s.total == 0 and s.saved == pytest.approx(billed, rel=1e-9)
    assert f"the request cache saved ${s.saved:.4g}" in second_out

    # The card and the report say the same, from the manifest.
    export_version(tmp_path / "first", tmp_path / "hf", ExportOptions())
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "## Cost and yield" in card and f"${c.total:.4g}" in card and f"${c.per_accepted:.4g}" in card
    write_report(tmp_path / "first", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert f"${c.per_accepted:.4g} per accepted trajectory" in page and "Cost per accepted trajectory" in page


def test_a_max_cost_run_stops_at_its_budget_with_a_committed_version(tmp_path, capsys):
    # ~1 cent a request; 12 cents buys a handful of the 40 dialogues. One dialogue at a time, so that the
    # overshoot (dialogues already running when the budget ran out finish) is one dialogue's requests at most.
    price = {"prompt_per_1m": 30.0, "completion_per_1m": 60.0}
    config = parse_config(_data("http://127.0.0.1:9/v1"))
    with LoopbackServer(TranscriptBrain(config)) as server:
        data = _data(server.url, num_tasks=40, budget={"max_cost": 0.12},
                     runner={"kind": "thread", "workers": 1, "shards_in_flight": 1},
                     simulation={"mode": "model", "concurrency": 1, "user": {"backend": "loop"},
                                 "assistant": {"backend": "loop"}})
        data["backends"]["loop"]["price"] = price
        out = _generate(tmp_path, data, "capped", capsys)
        per_request = [(p * price["prompt_per_1m"] + c * price["completion_per_1m"]) / 1e6 for p, c, _ in server.billed]

    versions = DatasetStore(tmp_path / "capped").versions()
    assert len(versions) == 1
    m = versions[0]
    assert m.stop.reason == "max_cost" and "budget 0.12" in m.stop.detail
    assert m.cost.total == pytest.approx(sum(per_request)) and m.stop.cost == pytest.approx(m.cost.total)
    assert m.cost.total >= 0.12 and m.tasks < 40  # stopped early, over the line only by what was in flight
    assert m.stop.unstarted > 0 and m.tasks + m.stop.unstarted <= 40
    rows = DatasetStore(tmp_path / "capped").read()
    # the last dialogue ran over, no more: the requests before it (at most the longest dialogue's) were within budget
    longest = max(u["requests"] for u in rows["usage"].to_list() if u)
    assert sum(per_request[:-longest]) < 0.12, (longest, per_request)
    assert rows.height == m.tasks and rows["status"].is_in(["accepted", "rejected"]).all()
    assert "stopped early by max_cost" in out


def test_max_requests_and_max_tokens_stop_a_run_by_the_servers_own_count(tmp_path, capsys):
    config = parse_config(_data("http://127.0.0.1:9/v1"))
    one_at_a_time = {"runner": {"kind": "thread", "workers": 1, "shards_in_flight": 1},
                     "simulation": {"mode": "model", "concurrency": 1, "user": {"backend": "loop"},
                                    "assistant": {"backend": "loop"}}}
    for budget in ({"max_requests": 12}, {"max_tokens": 3000}):
        (name, limit), = budget.items()
        with LoopbackServer(TranscriptBrain(config), latency_s=0.02) as server:
            data = _data(server.url, num_tasks=40, budget=budget, **one_at_a_time)
            if name == "max_tokens":  # the same budget on a self-served model, priced per GPU-hour
                data["backends"]["loop"]["price"] = {"gpu_hour": GPU_HOUR, "gpus": GPUS}
            started = time.monotonic()
            out = _generate(tmp_path, data, name, capsys)
            wall = time.monotonic() - started
            sent, tokens = server.requests, server.tokens["prompt"] + server.tokens["completion"]
            first_sent, last_sent = server.arrivals[0][0], server.arrivals[-1][0]
        m = DatasetStore(tmp_path / name).versions()[-1]
        assert m.stop.reason == name and m.tasks < 40 and m.stop.unstarted > 0, m.stop
        assert m.stop.requests == sent and m.stop.tokens == tokens  # what the server saw, nothing left uncounted
        assert (sent if name == "max_requests" else tokens) >= limit
        assert m.cost is not None and m.cost.total > 0  # priced backends: the spend is priced too
    # Per GPU-hour: the run's generation time (its clock runs from the first shard to the commit) × gpus × the
    # price, whatever the tokens. That time holds every request the server saw and fits in the command's wall time.
    c = m.cost
    seconds = c.gpu_hours["loop"] / GPUS * 3600
    assert last_sent - first_sent <= seconds <= wall, (first_sent, last_sent, seconds, wall)
    assert c.total == pytest.approx(seconds / 3600 * GPUS * GPU_HOUR) and c.by_backend == {"loop": c.total}
    # Shared by the roles by their time in requests, per the manifest's own meters.
    busy = {role: m.usage[role].latency_s for role in ("user", "assistant")}
    assert c.by_role == {role: pytest.approx(c.total * t / sum(busy.values())) for role, t in busy.items()}
    assert c.per_accepted == (pytest.approx(c.total / m.accepted) if m.accepted else None)
    assert f"GPU-hours: loop {c.gpu_hours['loop']:.3g}" in out
