"""KG questions end to end: the real Prefect flow, offline, on the shipped KG and on WN18RR as published,
into the versioned store; the stored questions re-solved by the independent checker; difficulty in card and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from filters import FILTERS, Context
from pipelines.export import export_version
from pipelines.flow import run_generate
from pipelines.report import write_report
from pipelines.rows import row_messages, row_task
from pipelines.steps import build_steps
from schemas import Tool, Trajectory, load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from kg_check import RawKG, accepted_questions, summarize  # noqa: E402  (shares no code with the generator)

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
    counts = manifest.synthesis["kg_question"]
    made = manifest.tasks - manifest.stages.get("synthesis", 0)
    assert counts["questions"] == made and sum(v for k, v in counts.items() if k.startswith("needed_hops=")) == made
    assert counts["shortcut"] > 0 and counts["walks"] > made


def test_wn18rr_as_published_through_the_flow_passes_the_independent_checker(tmp_path):
    """The real sample, loaded by the config's mapping; what is stored re-solves from the raw triples alone."""
    config = load_config(str(ROOT / "examples/kg_wn18rr.yaml"), num_tasks=120, shard_size=60)
    manifest = run_generate(config, tmp_path / "wn", "wn-run")
    assert manifest.accepted >= 90 and manifest.accepted + manifest.rejected == 120
    raw = RawKG(yaml.safe_load((ROOT / "examples/kg_wn18rr.yaml").read_text())["domain"]["params"])
    stored = accepted_questions(str(tmp_path / "wn"))
    assert len(stored) == manifest.accepted
    results = [raw.check(task, question) for task, question in stored]
    assert summarize(results) == {"questions": len(stored), "all_hops": len(stored), "leaks": 0, "non_unique": 0,
                                  "wrong_answer": 0, "letter_anchors": 0, "unshown": 0}
    for task, _ in stored:
        assert task["provenance"]["difficulty"]["needed_hops"] == len(task["path"]) - 1

    summary = export_version(tmp_path / "wn", tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    hops = {int(k.split("=")[1]): v for k, v in manifest.synthesis["kg_question"].items() if k.startswith("needed_hops=")}
    section = card.split("## KG question difficulty")[1].split("\n## ")[0]
    assert f"{manifest.synthesis['kg_question']['questions']} KG questions were built" in section
    assert "- hops needed: " + ", ".join(f"{n} hops: {c}" for n, c in sorted(hops.items())) in section
    assert "without tools" not in section  # the difficulty filter did not run
    assert summary.version == manifest.version
    page = tmp_path / "report.html"
    write_report(tmp_path / "wn", page)
    assert f"KG question difficulty ({manifest.synthesis['kg_question']['questions']} questions)" in page.read_text()


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
