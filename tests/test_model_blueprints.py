"""Model-written blueprints (APIGen-MT): rules, committee, feedback rounds, recombination, the funnel.

The writer and the reviewers are a scripted model (tests/blueprint_brain.py)
behind the real loopback HTTP server; the blueprints that survive are then
simulated offline and verified like any other task, so "validated" is checked
end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from blueprint_brain import DEADLINE, BlueprintBrain, Router
from loopback import LoopbackServer, RefineBrain

from generators.blueprint_rules import RuleViolation, check_rules
from generators.blueprints import BlueprintGenerator, BlueprintParams
from generators.committee import CommitteeParams, Review, decide
from generators.model_blueprints import WrittenBlueprint
from pipelines.export import export_version
from pipelines.flow import run_generate
from pipelines.funnel import print_funnel
from pipelines.report import write_report
from pipelines.shard import FUNNEL_KEY, read_meta, synthesize_shard
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import (
    Action,
    BackendHealthConfig,
    CacheConfig,
    ConfigError,
    RunConfig,
    SimulationConfig,
    load_config,
    parse_config,
)
from simulators.backends import BackendUnhealthyError
from simulators.domains.store import StoreEnv

N, K = 24, 2


def config(url: str = "http://127.0.0.1:9/v1", rule: str = "majority", concurrency: int = 8, **params) -> RunConfig:
    return parse_config({
        "name": "model-blueprints", "seed": 7, "num_tasks": N, "shard_size": 12,
        "generators": [{"name": "model_blueprint", "params": {
            "backend": "writer", "feedback_rounds": K, "pool_lag": 4, "recombine_rate": 0.25, **params,
            "committee": {"rule": rule, "reviewers": [{"backend": "writer", "seed": s} for s in (1, 2, 3)]}}}],
        "backends": {"writer": {"model": "writer-model", "base_url": url, "max_concurrency": 8, "max_retries": 0,
                                "timeout_s": 5}},
        "simulation": {"concurrency": concurrency},
    }, "model-blueprints")


def funnel_adds_up(c: dict[str, int], tasks: int, synthesis_rejects: int) -> None:
    """Every count of the synthesis funnel accounted for, exactly."""
    rule_failures = sum(c.get(f"failed_{s}", 0) for s in ("format", "execution", "policy", "outputs"))
    lost = c.get("failed_backend", 0) + c.get("failed_judge", 0)  # end the loop at once, without a rewrite
    assert c["generated"] == c["blueprints"] + c.get("regenerated", 0)
    assert c["generated"] == rule_failures + c.get("failed_truncated", 0) + c.get("failed_backend", 0) + c["passed_rules"]
    assert c["passed_rules"] == c.get("failed_committee", 0) + c.get("failed_judge", 0) + c["passed_committee"]
    assert c["blueprints"] == c["passed_committee"] + c.get("dropped", 0) + lost
    assert c.get("recombinations", 0) == c.get("recombined", 0) + c.get("recombination_conflicts", 0)
    # An index ends as one validated blueprint (a single, or a recombination), or rejected with its reason;
    # the second component written for a recombination is validated but is not a task of its own.
    assert synthesis_rejects == c.get("dropped", 0) + lost + c.get("contexts_failed", 0)
    assert tasks - synthesis_rejects == c["passed_committee"] - c.get("second_components", 0)


def users_in_contexts(brain: BlueprintBrain, cfg: RunConfig, tmp: Path) -> list[str]:
    """The users the run's contexts are about, in the order the writer first saw them."""
    for shard in range(cfg.num_shards):
        synthesize_shard(cfg, shard, tmp / f"probe-{shard}.parquet")
    return list(dict.fromkeys(brain.seen))


@pytest.mark.usefixtures("prefect_server")
def test_committee_feedback_and_recombination_end_to_end(tmp_path, capsys):
    probe = BlueprintBrain(config())
    with LoopbackServer(probe) as server:
        users = users_in_contexts(probe, config(server.url), tmp_path)
    assert len(users) >= 10
    faults = {users[0]: "bad_json", users[1]: "ungrounded", users[2]: "bad_json"}
    demanding, hopeless = set(users[3:6]), {users[6]}
    brain = BlueprintBrain(config(), faults=faults, demanding=demanding, hopeless=hopeless, grumpy={3})
    with LoopbackServer(brain) as server:
        manifest = run_generate(config(server.url), tmp_path / "out", "run-1")
        served = server.requests
    rows = DatasetStore(tmp_path / "out").read().to_dicts()
    assert len(rows) == manifest.tasks == N and manifest.accepted + manifest.rejected == N

    c = manifest.synthesis["model_blueprint"]
    synthesis_rejects = manifest.stages.get("synthesis", 0)
    funnel_adds_up(c, N, synthesis_rejects)
    assert c["failed_format"] >= 2 and c["failed_outputs"] >= 1 and c["regenerated"] >= 3
    assert c["failed_committee"] >= (K + 1) + len(demanding)  # every round of the hopeless user, a first of each demanding one
    # Every request the server saw is in the manifest, charged to the writer or to one reviewer.
    assert served == sum(u.requests for u in manifest.usage.values())
    assert set(manifest.usage) == {"model_blueprint", *(f"model_blueprint.committee.reviewers.{k}" for k in range(3))}

    tasks = {r["index"]: json.loads(r["task"]) for r in rows if r["task"] and r["stage"] != "synthesis"}
    dropped = [r for r in rows if r["stage"] == "synthesis"]
    # A dropped blueprint keeps its evidence: the writer's conversation (with the last feedback) and the last
    # candidate task, and is the synthesis step's fault.
    for r in dropped:
        assert r["fault"] == "synthesis" and r["task"] and r["messages"][0]["role"] == "system"
        assert "reviewers rejected" in r["messages"][-1]["content"]
    assert dropped and all(r["reason"] == f"model_blueprint: dropped after {K + 1} rounds; last: committee: "
                           "0 of 3 reviewers approved" for r in dropped)
    assert c["dropped"] == len(dropped)
    # Approved after feedback: rejected in round 1 for want of a deadline, which round 2 added.
    revised = [t for t in tasks.values() if t["provenance"].get("rounds") == 2 and DEADLINE in t["scenario"]["instruction"]]
    assert revised
    # The grumpy reviewer voted no on everything; the majority still passed.
    for t in tasks.values():
        assert [r["approve"] for r in t["provenance"]["reviews"]] == [True, True, False]
        assert t["provenance"]["state_diff"] or not any(
            StoreEnv.specs()[a["name"]].writes for a in t["gold_actions"])
    # Few-shot examples come from the pool: validated single blueprints, in the writer's own format.
    assert [len(x) for x in brain.examples[:4]] == [0, 0, 0, 0] and max(map(len, brain.examples)) == 2
    assert all(WrittenBlueprint.model_validate_json(e) for x in brain.examples for e in x)
    combined = [t for t in tasks.values() if "components" in t["provenance"]]
    assert combined and c["recombined"] == len(combined)
    assert all(len(t["scenario"]["requests"]) >= 2 and " After that, " in t["scenario"]["instruction"]
               for t in combined)
    # Validated means executable: every blueprint that left synthesis passed the offline dialogue's verification.
    assert manifest.accepted == N - synthesis_rejects
    assert {r["generator"] for r in rows if r["status"] == "accepted"} == {"model_blueprint"}
    capsys.readouterr()
    print_funnel(manifest)  # the end-of-run summary
    summary = capsys.readouterr().out
    assert f"stage 2 committee -{c['failed_committee']} -> {c['passed_committee']} validated" in summary
    assert f"recombination: {c['recombinations']} tried -> {c['recombined']} recombined" in summary
    export_version(tmp_path / "out", tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"model_blueprint: {c['blueprints']} blueprints, {c['generated']} written" in card
    write_report(tmp_path / "out", tmp_path / "report.html")
    assert "Task synthesis: model_blueprint" in (tmp_path / "report.html").read_text()

    # Same config, same seed: the same blueprints, every request answered by the first run's cache.
    again = config(server.url).model_copy(update={"cache": CacheConfig(
        path=str(tmp_path / "out" / "_cache" / "requests.sqlite"))})
    with LoopbackServer(brain) as server:
        second = run_generate(again, tmp_path / "out2", "run-2")
        assert server.requests == 0
    assert second.synthesis == manifest.synthesis
    assert sorted((r["index"], r["task_id"]) for r in DatasetStore(tmp_path / "out2").read().to_dicts()) == \
        sorted((r["index"], r["task_id"]) for r in rows)


@pytest.mark.usefixtures("prefect_server")
def test_model_blueprints_simulated_by_skeleton_refine(tmp_path):
    """The cheap path end to end: written, reviewed, then one refine request per dialogue."""
    refine = {"mode": "model", "strategy": "skeleton_refine", "refine": {"backend": "writer"}}
    with LoopbackServer(Router(BlueprintBrain(config()), RefineBrain())) as server:
        cfg = config(server.url).model_copy(update={"simulation": SimulationConfig.model_validate(refine)})
        manifest = run_generate(cfg, tmp_path / "out", "run-1")
        served = server.requests
    dialogues = N - manifest.stages.get("synthesis", 0)
    assert manifest.usage["refine"].requests == dialogues and manifest.accepted == dialogues
    writing = sum(u.requests for k, u in manifest.usage.items() if k.startswith("model_blueprint"))
    assert served == writing + dialogues and writing >= 4 * dialogues  # a writer and three reviewers at least


def test_the_pool_makes_synthesis_deterministic_whatever_finishes_first(tmp_path):
    brain = BlueprintBrain(config(), grumpy={3}, jitter_s=0.03)
    with LoopbackServer(brain) as server:
        a = synthesize_shard(config(server.url, concurrency=2), 0, tmp_path / "a.parquet")
        b = synthesize_shard(config(server.url, concurrency=12), 0, tmp_path / "b.parquet")
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("task").to_pylist() == tb.column("task").to_pylist()
    assert read_meta(ta.schema, FUNNEL_KEY) == read_meta(tb.schema, FUNNEL_KEY)
    assert read_meta(ta.schema, FUNNEL_KEY)["model_blueprint"]["recombined"] >= 1


def test_mean_rule_and_an_unreachable_writer(tmp_path):
    brain = BlueprintBrain(config(), grumpy={3})
    with LoopbackServer(brain) as server:  # scores 5, 5, 2: mean 4.0 passes at 4.0, fails at 4.5
        at_4 = synthesize_shard(config(server.url, rule="mean"), 0, tmp_path / "a.parquet")
        cfg = config(server.url, rule="mean")
        cfg.generators[0].params["committee"]["threshold"] = 4.5
        at_45 = synthesize_shard(cfg, 0, tmp_path / "b.parquet")
    assert read_meta(pq.read_table(at_4).schema, FUNNEL_KEY)["model_blueprint"].get("failed_committee", 0) == 0
    strict = pq.read_table(at_45)
    c = read_meta(strict.schema, FUNNEL_KEY)["model_blueprint"]
    assert "passed_committee" not in c and c["dropped"] == c["blueprints"] == 12
    assert set(strict.column("error").to_pylist()) == {
        f"model_blueprint: dropped after {K + 1} rounds; last: committee: mean score 4.00 vs threshold 4.5"}

    # Nothing listens on port 9: the run-health check stops the shard, naming the backend, and stages nothing ...
    with pytest.raises(BackendUnhealthyError, match="backend 'writer' at http://127.0.0.1:9/v1 kept failing"):
        synthesize_shard(config(), 0, tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()
    # ... and with that check relaxed, every task ends as a rejected row that says why.
    relaxed = config()
    relaxed.backends["writer"].health = BackendHealthConfig(max_error_rate=1, max_consecutive_failures=10**6)
    down = synthesize_shard(relaxed, 0, tmp_path / "d.parquet")
    table = pq.read_table(down)
    c = read_meta(table.schema, FUNNEL_KEY)["model_blueprint"]
    assert c["failed_backend"] == c["blueprints"] == 12
    assert all(e.startswith("model_blueprint: ") and "gave up" in e for e in table.column("error").to_pylist())


# -- stage 1 and stage 2 as functions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_task():
    env = StoreEnv(0)
    gen = BlueprintGenerator(env, BlueprintParams(intents=["cancel_order"]))
    return env, gen.generate(random.Random(3))


def _with(task, **changes):
    data = task.model_dump(exclude={"id"})
    data.update(changes)
    return type(task).model_validate(data)


def test_rules_name_the_stage_that_failed(offline_task):
    env, task = offline_task
    check_rules(env, task)  # the rule-built blueprint passes
    gold = [a.model_dump() for a in task.gold_actions]
    cases = {
        "format": [*gold[:-1], {"name": "cancel_everything", "arguments": {}}],
        "execution": [*gold[:-1], {**gold[-1], "arguments": {**gold[-1]["arguments"], "order_id": "#W0000000"}}],
        "policy": [gold[-1], *gold[:-1]],  # the cancellation before the customer is authenticated
    }
    for stage, actions in cases.items():
        with pytest.raises(RuleViolation) as err:
            check_rules(env, _with(task, gold_actions=actions))
        assert err.value.stage == stage, err.value
    with pytest.raises(RuleViolation, match="before the customer was authenticated"):
        check_rules(env, _with(task, gold_actions=cases["policy"]))
    with pytest.raises(RuleViolation, match=r"outputs: expected output '\$99999.99' appears in no tool result"):
        check_rules(env, _with(task, expected_outputs=[*task.expected_outputs, "$99999.99"]))
    bad_args = [*gold[:-1], {**gold[-1], "arguments": {"order_id": 5}}]
    with pytest.raises(RuleViolation, match=r"format: action \d+ \(cancel_pending_order\): arguments"):
        check_rules(env, _with(task, gold_actions=bad_args))
    execution = check_rules(env, task)
    assert execution.diff["orders"] and execution.final_hash != env.fresh().state_hash()
    assert all(isinstance(a, Action) for a in task.gold_actions)


def _review(score: int, approve: bool) -> Review:
    return Review(correctness=score, completeness=score, realism=score, approve=approve, feedback=f"f{score}")


def test_committee_votes_by_majority_or_by_mean():
    three = CommitteeParams(reviewers=[{"backend": "b"}] * 3)
    votes = [_review(5, True), _review(4, True), _review(2, False)]
    assert decide(three, votes).passed and decide(three, votes).summary == "2 of 3 reviewers approved"
    assert not decide(three, [_review(5, True), None, _review(2, False)]).passed  # an invalid review is a no
    verdict = decide(three, [_review(5, True), None, _review(2, False)])
    assert "reviewer 2: (reply was not a valid review)" in verdict.feedback and "reviewer 3 (" in verdict.feedback
    mean = three.model_copy(update={"rule": "mean", "threshold": 3.6})
    assert decide(mean, votes).passed and decide(mean, votes).mean == pytest.approx(11 / 3)
    assert not decide(mean.model_copy(update={"threshold": 4.0}), votes).passed
    assert not decide(mean, [*votes[:2], None]).passed  # the mean needs every reviewer


def test_every_model_a_step_names_is_checked_and_metered():
    with pytest.raises(ConfigError, match=r"generators\[0\]\.params\.committee\.reviewers\.1\.backend: unknown "
                                          r"backend 'nope'; known: writer"):
        parse_config({**config().model_dump(exclude={"generators"}), "generators": [{"name": "model_blueprint",
                      "params": {"backend": "writer", "committee": {"reviewers": [{"backend": "writer"},
                                                                                  {"backend": "nope"}]}}}]})
    example = load_config(Path(__file__).resolve().parents[1] / "examples" / "model_blueprints.yaml")
    assert build_steps(example).generators[0].name == "model_blueprint"
    assert example.model_users()["model_blueprint.committee.reviewers.2"] == "reviewer"
    assert config().model_users() == {"model_blueprint": "writer", **{
        f"model_blueprint.committee.reviewers.{k}": "writer" for k in range(3)}}


def test_structured_replies_are_read_out_of_fences_and_prose():
    from simulators.structured_output import parse_structured

    review = '{"correctness": 5, "completeness": 4, "realism": 4, "approve": true, "feedback": ""}'
    assert parse_structured(Review, f"Here you go:\n```json\n{review}\n```").completeness == 4
    assert parse_structured(Review, f"Sure. {review} Hope it helps.").approve
    with pytest.raises(ValueError, match="reply is not a valid Review: correctness: Input should be less than or equal"):
        parse_structured(Review, review.replace('"correctness": 5', '"correctness": 9'))
