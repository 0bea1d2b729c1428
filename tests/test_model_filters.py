"""Filters that call a model (rubric judge, KG difficulty) in real runs against a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from loopback import LoopbackServer, Reply, synthesized_tasks

from pipelines.flow import run_generate
from pipelines.store import DatasetStore
from schemas import ConfigError, load_config, parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[1]


def backends(url: str) -> dict:
    return {"judge": {"model": "judge-model", "base_url": url, "max_retries": 1, "backoff_s": 0.01}}


def test_judge_scores_every_verified_dialogue_and_rejects_low_scores(tmp_path):
    def brain(body):
        assert body["response_format"]["json_schema"]["name"] == "judge_verdict"
        dialogue = body["messages"][-1]["content"]
        if "cancel_pending_order" in dialogue:
            return Reply(content=json.dumps({"score": 2, "rationale": "cancelled without stating the refund"}))
        return Reply(content=json.dumps({"score": 5, "rationale": "correct and complete"}))

    with LoopbackServer(brain) as server:
        config = parse_config({
            "name": "judged", "seed": 3, "num_tasks": 40, "shard_size": 20, "backends": backends(server.url),
            "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
            "filters": [{"name": "format"}, {"name": "outcome"}, {"name": "judge", "params": {"backend": "judge"}}]})
        manifest = run_generate(config, tmp_path / "ds", "run-judge")
        judged = server.requests
    rows = DatasetStore(tmp_path / "ds").read()
    low = rows.filter(pl.col("stage") == "judge")
    assert low.height > 0 and set(low["reason"]) == {"score 2/5 below 4: cancelled without stating the refund"}
    assert all("cancel_pending_order" in json.dumps(m) for m in low["messages"].to_list())
    accepted = rows.filter(pl.col("status") == "accepted")
    assert accepted.height > 0
    for verdicts in accepted["verdicts"]:
        judge = [v for v in json.loads(verdicts) if v["stage"] == "judge"]
        assert judge == [{"stage": "judge", "passed": True, "reason": "score 5/5: correct and complete"}]
    # Every trajectory that got past format and outcome was judged exactly once; the calls are on the manifest.
    assert judged == accepted.height + low.height == manifest.usage["judge"].requests
    assert manifest.models == {"judge": "judge-model"}


def test_difficulty_drops_kg_questions_a_model_answers_without_tools(tmp_path):
    config = load_config(ROOT / "examples" / "kg.yaml", num_tasks=24, shard_size=12)
    answers = {task.scenario.requests[0].opening: (i, task) for i, task in synthesized_tasks(config).items()}

    def brain(body):
        index, task = answers[body["messages"][-1]["content"]]
        return Reply(content=task.answer if index % 2 == 0 else "Unknown.")  # (not "I am...": "am" is Amharic)

    with LoopbackServer(brain) as server:
        data = config.model_dump()
        data.update(backends=backends(server.url), simulation={"perturb_rate": 0.0})
        data["filters"].append({"name": "difficulty", "params": {"backend": "judge", "attempts": 2}})
        manifest = run_generate(parse_config(data), tmp_path / "ds", "run-hard")
    rows = {r["index"]: r for r in DatasetStore(tmp_path / "ds").read().to_dicts()}
    easy = {i for i, r in rows.items() if r["stage"] == "difficulty"}
    assert easy and all(i % 2 == 0 for i in easy)
    assert {rows[i]["reason"] for i in easy} == {"answered without tools on attempt 1 of 2"}
    hard = {i for i, r in rows.items() if r["status"] == "accepted"}
    assert hard and all(i % 2 == 1 for i in hard)
    assert manifest.usage["difficulty"].requests == len(easy) + 2 * len(hard)
    from pipelines.kg_difficulty import difficulty, markdown

    before = ("synthesis", "simulation", "format", "execution", "outcome", "answer_match")  # kg.yaml's filters
    reached = len(rows) - sum(1 for r in rows.values() if r["stage"] in before)
    measured = difficulty([manifest])
    assert measured.solved_without_tools == (len(easy), reached) and reached == len(easy) + len(hard)
    assert (f"answered without tools by the `difficulty` filter's model: {len(easy)} of {reached} "
            f"({100 * len(easy) / reached:.1f}%)") in markdown(measured)


def test_a_filter_backend_must_be_defined():
    with pytest.raises(ConfigError, match=r"filters\[0\].params.backend: unknown backend 'gpt'; known: none defined"):
        parse_config({"num_tasks": 1, "filters": [{"name": "judge", "params": {"backend": "gpt"}}]}, "c.yaml")


def test_kg_model_writer_rewrites_questions_and_drops_ones_that_name_the_path(tmp_path):
    config = load_config(ROOT / "examples" / "kg.yaml", num_tasks=16, shard_size=8)
    templates = {task.scenario.requests[0].opening: (i, task) for i, task in synthesized_tasks(config).items()}

    def brain(body):
        template = body["messages"][-1]["content"]
        index, task = templates[template]
        if index % 2 == 0:
            return Reply(content=f"{template} (Hint: it involves {task.path[0]['name']}.)")
        return Reply(content=f"Plainly put: {template}")

    with LoopbackServer(brain) as server:
        data = config.model_dump()
        data.update(backends=backends(server.url), simulation={"perturb_rate": 0.0})
        data["generators"][0]["params"].update(writer="model", backend="judge")
        manifest = run_generate(parse_config(data), tmp_path / "ds", "run-writer")
    rows = {r["index"]: r for r in DatasetStore(tmp_path / "ds").read().to_dicts()}
    leaked = {i for i, r in rows.items() if r["stage"] == "synthesis"
              and "model writer: leak: the question shows" in r["reason"] and "an entity of the path" in r["reason"]}
    assert leaked == {i for i, _ in templates.values() if i % 2 == 0}
    rewritten = [r for r in rows.values() if r["status"] == "accepted"]
    assert rewritten and len(rewritten) == len(templates) - len(leaked)
    for r in rewritten:
        first_user = next(m["content"] for m in r["messages"] if m["role"] == "user")
        assert first_user.startswith("Plainly put: ")
        assert json.loads(r["task"])["scenario"]["requests"][0]["opening"] == first_user
    assert manifest.usage["kg_question"].requests == len(templates)
    assert manifest.models == {"kg_question": "judge-model"}
