"""KG questions end to end: the real Prefect flow, offline, on the shipped KG, into the versioned store."""

from __future__ import annotations

import json

import polars as pl
import pytest

from filters import FILTERS, Context
from pipelines.flow import run_generate
from pipelines.rows import row_messages, row_task
from pipelines.steps import build_steps
from schemas import Tool, Trajectory, load_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_offline_run_gives_200_verified_kg_dialogues(tmp_path):
    config = load_config("examples/kg.yaml", num_tasks=260, shard_size=130)
    manifest = run_generate(config, tmp_path / "kg", "kg-run")
    assert manifest.tasks == 260 and manifest.accepted + manifest.rejected == 260
    assert manifest.accepted >= 200
    assert manifest.rejected > 0 and set(manifest.stages) <= {"synthesis", "format", "execution", "outcome",
                                                               "answer_match", "dedup"}

    df = pl.read_delta(str(tmp_path / "kg"))
    assert df.height == 260 and set(df["kind"].drop_nulls()) == {"kg_question"}
    accepted = df.filter(pl.col("status") == "accepted")
    assert accepted.height == manifest.accepted
    steps = build_steps(config)
    answer_match = FILTERS.get("answer_match")()
    for row in accepted.to_dicts():
        task = row_task(row)
        assert task.answer and len(task.path) >= 3 and "answer_attribute" in task.path[-1]
        messages = row_messages(row)
        assert messages[1].role == "user" and messages[-1].role == "user"
        assert sum(m.role == "user" for m in messages) >= 2 and row["num_tool_calls"] >= 3
        traj = Trajectory(task_id=task.id, domain=task.domain, kind=task.kind,
                          tools=[Tool.model_validate(t) for t in json.loads(row["tools"])], messages=messages)
        assert answer_match.check(traj, Context(task=task, env=steps.env)).passed  # the RL reward, from storage
    reasons = df.filter(pl.col("stage") == "answer_match")["reason"].to_list()
    assert reasons and all("does not match" in r or "not grounded" in r for r in reasons)


def test_default_filters_check_the_answer_of_kg_tasks(tmp_path, small_config):
    """required_outputs (a default filter) matches a KG answer with its aliases instead of expected outputs."""
    config = small_config(num_tasks=40, shard_size=40, domain={"name": "kg", "params": {"source": "countries"}},
                          generators=[{"name": "kg_question"}], simulation={"perturb_rate": 0.5})
    manifest = run_generate(config, tmp_path / "kg", "kg-defaults")
    assert manifest.accepted + manifest.rejected == 40 and manifest.accepted > 0
    assert manifest.stages.get("required_outputs", 0) > 0
    answer_reasons = [r for r in manifest.reasons if r.startswith("required_outputs: ")]
    assert answer_reasons and all("does not match" in r or "never gives" in r for r in answer_reasons)
    assert all(r.split(":")[0] in {"synthesis", "format", "execution", "policy", "outcome", "required_outputs"}
               for r in manifest.reasons)
