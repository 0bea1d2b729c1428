"""Task kinds: one declaration per kind, validated where tasks are born; a dataset written before kinds were
open (by main at f3181e4, in tests/data/legacy-dataset) still loads, re-verifies, exports the same and appends."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from dedup import exact_hash
from generators import GENERATORS, Generator
from pipelines.export import ExportOptions, export_version
from pipelines.flow import run_generate
from pipelines.reward import verify_row
from pipelines.rows import row_task
from pipelines.shard import synthesize_shard
from pipelines.steps import Steps, build_environment, build_steps
from pipelines.store import DatasetStore
from schemas import Message, Task, UserScenario, parse_config
from simulators import KINDS, TaskKindError, kind_of

DATA = Path(__file__).parent / "data"


def scenario() -> UserScenario:
    return UserScenario(persona="p", instruction="Which city?", identity="-")


def test_kinds_are_found_by_name_and_an_unknown_one_is_one_line():
    assert {"blueprint", "kg_question"} <= set(KINDS.names())
    assert kind_of("kg_question").reward == "answer" and kind_of("blueprint").verifiers == ("outcome", "required_outputs")
    with pytest.raises(TaskKindError, match=r"^unknown task kind 'quiz'; known: blueprint, kg_question"):
        kind_of(Task(kind="quiz", domain="kg", env_seed=0, scenario=scenario()))
    with pytest.raises(ValidationError, match="kind"):
        Task(kind="not a name", domain="kg", env_seed=0, scenario=scenario())


def test_a_kinds_fields_are_validated_by_its_own_model():
    kg = Task(kind="kg_question", domain="kg", env_seed=0, scenario=scenario(), answer="Paris",
              answer_aliases=["City of Light"], path=[{"var": "A", "name": "Paris"}])
    assert kind_of(kg).validate(kg) is kg and kind_of(kg).fields(kg).answer_aliases == ["City of Light"]
    assert kind_of(kg).answer(kg) == ("Paris", ["City of Light"])
    assert kind_of("blueprint").answer(Task(domain="store", env_seed=0, scenario=scenario())) is None
    for task, problem in [
        (kg.model_copy(update={"answer": None}), "kind 'kg_question': answer: Input should be a valid string"),
        (Task(kind="kg_question", domain="kg", env_seed=0, scenario=scenario()), "answer: Field required"),
        (kg.model_copy(update={"answer_aliases": "Paris"}), "answer_aliases: Input should be a valid list"),
        (Task(domain="store", env_seed=0, scenario=scenario(), answr="x"), "answr: Extra inputs are not permitted"),
    ]:
        with pytest.raises(TaskKindError, match=problem):
            kind_of(task).validate(task)


def test_tasks_written_before_kinds_were_open_keep_their_ids_and_fit_their_kind():
    rows = pl.read_delta(str(DATA / "legacy-dataset")).filter(pl.col("task").is_not_null())
    assert set(rows["kind"]) == {"blueprint", "kg_question"}
    for row in rows.to_dicts():
        stored = json.loads(row["task"])
        assert {"answer", "answer_aliases", "path"} <= set(stored)  # every task carried every kind's fields
        task = Task.model_validate({k: v for k, v in stored.items() if k != "id"})
        assert task.id == row["task_id"]  # the id is recomputed exactly as main computed it
        fitted = kind_of(task).validate(task)
        assert fitted.id == task.id
        if task.kind == "blueprint":  # the empty leftovers of the KG fields are not fields of a blueprint
            assert fitted.model_extra == {}
        else:
            assert fitted.answer == stored["answer"] and fitted.path == stored["path"]


class Relabel(Generator):
    """Built-in blueprints relabelled: as an unknown kind, or as a KG question without its answer."""

    name = "relabel"

    def generate(self, rng: random.Random) -> Task:
        task = GENERATORS.get("blueprint")(self.env, GENERATORS.get("blueprint").Params()).generate(rng)
        return Task.model_validate({**task.model_dump(exclude={"id"}), "kind": "quiz" if rng.random() < 0.5
                                    else "kg_question"})


def test_synthesis_rejects_a_task_that_does_not_fit_its_kind(tmp_path, small_config):
    config = small_config(num_tasks=10, shard_size=10)
    env = build_environment(config)
    out = synthesize_shard(config, 0, tmp_path / "tasks.parquet", steps=Steps(env, [Relabel(env, Relabel.Params())],
                                                                              [1.0], []))
    table = pq.read_table(out).to_pylist()
    assert len(table) == 10 and all(r["task"] is None for r in table)
    reasons = {r["error"] for r in table}
    assert any(r.startswith("relabel: unknown task kind 'quiz'; known: blueprint, kg_question") for r in reasons)
    assert "relabel: kind 'kg_question': answer: Field required" in reasons


@pytest.mark.usefixtures("prefect_server")
def test_a_dataset_from_before_kinds_loads_reverifies_exports_the_same_and_appends(tmp_path):
    root = tmp_path / "legacy"
    shutil.copytree(DATA / "legacy-dataset", root)
    store = DatasetStore(root)
    versions = store.versions()
    assert [m.run_id for m in versions] == ["legacy-store", "legacy-kg"]

    # every row re-verifies as its kind's verifiers say, and agrees with the verdict stored on it
    envs = {m.run_id: build_steps(parse_config(m.config)).env for m in versions}
    rows = store.read().filter(pl.col("task").is_not_null() & (pl.col("messages").list.len() > 0)).to_dicts()
    for row in rows:
        verdicts = verify_row(row, envs[row["run_id"]])
        assert [v.stage for v in verdicts] == list(kind_of(row_task(row)).verifiers)
        if row["status"] == "accepted":
            assert all(v.passed for v in verdicts), (row["id"], verdicts)
        elif row["stage"] in {v.stage for v in verdicts}:  # rejected by a verifier: the reward says no too
            assert next(v for v in verdicts if v.stage == row["stage"]).reason == row["reason"]
    assert {r["kind"] for r in rows if r["status"] == "accepted"} == {"blueprint", "kg_question"}

    # the RL view's reward_spec is what main exported, field for field (with the KG fields, for every row)
    expected = json.loads((DATA / "legacy-dataset-rl.json").read_text())
    export_version(root, tmp_path / "hf", ExportOptions(test_ratio=0.25))
    files = sorted((tmp_path / "hf" / "data" / "rl").glob("*.parquet"))
    # ... plus the one field dual control added (issue 22): who makes each gold action, the assistant on every
    # task written before
    actor = "arguments: extension<arrow.json>"
    assert str(pq.read_schema(files[0]).field("reward_spec")) == expected["reward_spec_field"].replace(
        actor, f"{actor}, actor: string")
    got = sorted(({"id": r["id"], "kind": r["kind"], "split": f.name.split("-")[0], "reward_spec": r["reward_spec"]}
                  for f in files for r in pq.read_table(f).to_pylist()), key=lambda r: r["id"])
    for r in expected["rl"]:
        r["reward_spec"]["gold_actions"] = [{**a, "actor": "assistant"} for a in r["reward_spec"]["gold_actions"]]
    assert got == expected["rl"]

    # main's index parts are what the new code's dedup sees: every kept row, hashed as the new code hashes it
    config = parse_config(versions[0].config)
    kept = store.read().filter(pl.col("status") == "accepted").to_dicts()
    prior = store.dedup_index(config.dedup)
    assert sorted(prior.ids) == sorted(r["id"] for r in kept)
    assert set(prior.hashes) == {exact_hash([Message.model_validate(m) for m in r["messages"]]) for r in kept}

    # and the new code appends to it: the same config again, deduplicated against main's index parts
    again = run_generate(parse_config(versions[0].config), root, "after-kinds")
    assert again.version == 2
    # the sampler may since draw some tasks differently, and the offline phrasing is new (issue 22), so most (here:
    # all) dialogues are new; each dialogue main already accepted that comes again is a duplicate now (the index
    # checks above are what makes this hold for any that do)
    legacy = set(store.read(version=0).filter(pl.col("status") == "accepted")["dedup_hash"])
    new = DatasetStore(root).read().filter(pl.col("run_id") == "after-kinds")
    repeated = new.filter(pl.col("dedup_hash").is_in(list(legacy)))
    assert set(repeated["stage"]) <= {"dedup"} and new.filter(pl.col("status") == "accepted").height > 0
    assert again.funnel["dedup.exact"] == repeated.height
    assert new.filter(pl.col("status") == "accepted")["dedup_hash"].is_in(list(legacy)).sum() == 0
