"""Diversity and difficulty figures: the bounded-memory counters, exact figures on hand-made rows, the figures a
commit stores against an independent recount of the committed rows, and what the card and ``versions --diff`` show."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from export_helpers import draft_manifest

from pipelines.cli import main
from pipelines.diversity import DistinctCounter, Diversity, FrequentNames, format_change
from pipelines.export import export_version
from pipelines.shard import rollout_shard, synthesize_shard
from pipelines.store import DatasetStore
from pipelines.versioning import figure_changes
from schemas import Lineage, canonical_json, parse_config
from simulators.text import normalize


def test_distinct_counts_are_exact_below_the_cap_and_estimated_above_it():
    exact = DistinctCounter(cap=10_000)
    for chunk in np.array_split(np.arange(5_000, dtype=np.uint64) * np.uint64(2654435761), 5):
        exact.add(chunk)
        exact.add(chunk)  # duplicates do not count
    assert exact.is_exact and exact.count() == 5_000
    sketch = DistinctCounter(cap=1_000)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**63, size=200_000, dtype=np.uint64)
    for chunk in np.array_split(values, 20):
        sketch.add(chunk)
    assert not sketch.is_exact and abs(sketch.count() - 200_000) / 200_000 < 0.03


def test_frequent_names_keep_the_heavy_hitter_when_over_the_cap():
    names, truth = FrequentNames(cap=50), Counter()
    for i in range(5_000):
        name = "yes" if i % 10 == 0 else "ok" if i % 25 == 1 else f"turn {i % 700}"
        names.add(name)
        truth[name] += 1
    assert not names.exact and names.distinct() is None and len(names.counts) <= 50
    assert [n for n, _ in names.top(2)] == ["yes", "ok"]
    assert 0 < names.floor <= 5_000 / 25  # the lossy-counting bound: total / (cap / 2)
    for name, n in names.counts.items():  # an overestimate, by at most the floor
        assert truth[name] <= n <= truth[name] + names.floor


def _row(i: int, users: list[str], calls: list[str], intent: str, status: str = "accepted", **more) -> dict:
    messages = [{"role": "system", "content": "policy"}]
    for n, text in enumerate(users):
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": f"reply {n}",
                         "tool_calls": [{"id": f"c{n}", "type": "function",
                                         "function": {"name": calls[n], "arguments": "{}"}}] if n < len(calls) else None})
    task = {"domain": "store", "scenario": {"persona": f"persona {i % 2}", "requests": [{"intent": intent}]}}
    return {"id": f"row{i}", "status": status, "domain": "store", "messages": messages, "task": json.dumps(task),
            "verdicts": json.dumps(more.pop("verdicts", [])), "tool_chain": " > ".join(calls), **more}


def test_figures_of_hand_made_rows():
    rows = [_row(0, ["Hi there", "yes go ahead now"], ["a", "b"], "cancel", num_writes=1, difficulty=4.0),
            _row(1, ["Hi there", "please cancel it now"], ["a", "b"], "return", num_writes=2, difficulty=12.0),
            _row(2, ["HI THERE!", "ok"], ["a"], "cancel", num_writes=0, difficulty=2.0,
                 verdicts=[{"stage": "judge", "passed": True, "reason": "score 5/5: fine"}]),
            _row(3, ["rejected text here"], [], "cancel", status="rejected",
                 verdicts=[{"stage": "judge", "passed": False, "reason": "score 2/5 below 4: bad"}])]
    d = Diversity({"store": ["cancel", "return", "exchange", "refund"]})
    d.add_batch(rows)
    f = d.finish()
    assert f.dialogues == 3 and f.exact
    # whitespace words, lowercased, punctuation attached ("there!" is not "there"): 15 tokens, 11 distinct; the
    # trigrams are "yes go ahead", "go ahead now", "please cancel it", "cancel it now" ("hi there" has none)
    assert f.user.distinct_3 == pytest.approx(4 / 4) and f.user.distinct_1 == pytest.approx(11 / 15)
    assert f.user.top_turns[0] == ("hi there", 3) and f.user.top_turn_share == 1.0  # folded: "HI THERE!" too
    assert f.tool_chains == 2 and f.top_tool_chains[0] == ("a > b", 2)
    assert f.intents == {"store:cancel": 2, "store:return": 1} and f.intent_coverage == 0.5
    assert f.turns_per_dialogue == {2: 3} and f.tool_calls_per_dialogue == {1: 1, 2: 2}
    assert f.writes_per_dialogue == {0: 1, 1: 1, 2: 1} and f.difficulty.p50 == 4.0 and f.difficulty.mean == 6.0
    assert f.judge_scores == {"2": 1, "5": 1}  # every row the judge saw, rejected ones too
    assert f.personas == {"persona 0": 2, "persona 1": 1}


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A small store run, synthesized and rolled out shard by shard, then committed twice (two versions)."""
    root = tmp_path_factory.mktemp("div")
    config = parse_config({"name": "div", "seed": 3, "num_tasks": 40, "shard_size": 20,
                           "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
                           "simulation": {"perturb_rate": 0.2}}, "div-test")
    lineage = Lineage(run_id="r", config_hash=config.config_hash(), code_version="test", seed=3)
    files = []
    for shard in range(config.num_shards):
        tasks = synthesize_shard(config, shard, root / f"tasks-{shard}.parquet")
        rollout_shard(config, shard, tasks, root / f"rows-{shard}.parquet", lineage)
        files.append(root / f"rows-{shard}.parquet")
    store = DatasetStore(root / "ds")
    first = store.commit(files, draft_manifest("run-1"), None, known_intents={"store": ["cancel_order"]})
    second = store.commit(files, draft_manifest("run-2"), None)
    return store, first, second


def test_commit_figures_match_an_independent_recount(committed):
    store, first, _ = committed
    rows = [r for r in store.read(first.version).to_dicts() if r["status"] == "accepted"]
    grams: set = set()
    total = 0
    turns: Counter[str] = Counter()
    for r in rows:
        users = [m["content"] for m in r["messages"] if m["role"] == "user"]
        turns.update({normalize(u) for u in users})
        for u in users:
            w = u.lower().split()
            grams |= {tuple(w[i:i + 3]) for i in range(len(w) - 2)}
            total += max(len(w) - 2, 0)
    f = first.diversity
    assert f.dialogues == len(rows) == first.accepted
    assert f.user.distinct_3 == pytest.approx(len(grams) / total)
    assert f.user.top_turn_share == pytest.approx(turns.most_common(1)[0][1] / len(rows))
    assert f.tool_chains == len({r["tool_chain"] for r in rows})
    assert f.writes_per_dialogue == dict(sorted(Counter(r["num_writes"] for r in rows).items()))
    assert f.intent_coverage == 1.0 and 0 < f.user.compression_similarity < 1


def test_old_versions_say_not_measured_and_the_diff_shows_the_change(committed, capsys):
    store, first, second = committed
    old = first.model_copy(update={"diversity": None})
    change = figure_changes(old, second)["user distinct-3"]
    assert change["from"] is None and change["change"] is None
    assert format_change("user distinct-3", change) == f"not measured -> {second.diversity.user.distinct_3:.1%}"
    assert main(["versions", str(store.root), "--diff", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "user distinct-3: " in out and "(+0.0 points)" in out and "distinct tool chains: " in out
    assert main(["versions", str(store.root), "--diff", "0", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["diversity"]
    assert figures["user top turn share"]["to"] == pytest.approx(second.diversity.user.top_turn_share)


def test_the_card_states_the_figures(committed, tmp_path):
    store, first, _ = committed
    summary = export_version(store.root, tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    section = card.split("## Diversity and difficulty", 1)[1].split("\n## ", 1)[0]
    assert f"| user distinct-3 | {summary.manifest.diversity.user.distinct_3:.1%} |" in section
    assert "Per version:" in section and "Most frequent tool chains" in section
    assert canonical_json(summary.manifest.diversity.model_dump()) == canonical_json(
        DatasetStore(store.root).versions()[-1].diversity.model_dump())
