"""strategy: skeleton_refine — scripted skeleton, one refine request per dialogue, offline re-verification.

The loopback server's RefineBrain reads the slot list of each prompt and
answers with natural rewrites, or with a scripted fault for chosen dialogues,
so every row's outcome is known in advance.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from loopback import LoopbackServer, RefineBrain, synthesized_tasks

from pipelines.flow import run_generate
from pipelines.shard import _agents
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import ConfigError, RunConfig, parse_config
from schemas.config import RefineConfig
from simulators.conversation import rollout
from simulators.skeleton_refine import Slot, _plan, facts

RATES = {"mask_rate": 1.0, "assistant_mask_rate": 1.0, "clarify_rate": 0.5, "correction_rate": 0.5}
BRAIN_USER = (*RefineBrain.USER_OPENERS, "Yes, that all sounds right", "Sure, I mean exactly", "Oh sorry, I mistyped")
BRAIN_ASSISTANT = ("Alright. ", "Just so I get this right", "Just to double-check")


def refine_config(url: str = "http://127.0.0.1:9/v1", num_tasks: int = 16, cache: dict | None = None,
                  **refine) -> RunConfig:
    return parse_config({
        "name": "refine-test", "seed": 5, "num_tasks": num_tasks, "shard_size": 8,
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "backends": {"loop": {"model": "loop-model", "base_url": url, "max_concurrency": 4, "timeout_s": 5}},
        "simulation": {"mode": "model", "strategy": "skeleton_refine",
                       "refine": {"backend": "loop", "temperature": 0.7, **RATES, **refine}},
        "runner": {"kind": "thread", "workers": 2},
        "cache": cache or {},
    }, "refine-test")


def rows(out) -> dict[int, dict]:
    return {r["index"]: r for r in DatasetStore(out).read().to_dicts()}


def _faults(config: RunConfig) -> dict[int, str]:
    """One dialogue per fault, chosen by what its task makes possible."""
    tasks = synthesized_tasks(config)
    writes = {"cancel_order", "change_order_address", "change_order_payment", "modify_items", "exchange_items",
              "return_items", "update_address"}
    order = sorted(tasks)
    carrier = next(i for i in order if any(not any(c.isdigit() for c in o) for o in tasks[i].expected_outputs))
    consent = next(i for i in order if i != carrier and {r.intent for r in tasks[i].scenario.requests} & writes)
    rest = [i for i in order if i not in (carrier, consent)]
    return {carrier: "drop_output", consent: "refuse_consent", rest[0]: "drop_id", rest[1]: "invalid_json",
            rest[2]: "invent_id", rest[3]: "missing_slot"}


@pytest.mark.usefixtures("prefect_server")
def test_refined_runs_take_one_request_per_dialogue_and_faults_end_with_their_reason(tmp_path):
    faults = _faults(refine_config())
    by_fault = {kind: i for i, kind in faults.items()}
    brain = RefineBrain(refine_config(), faults)
    cache = tmp_path / "requests.sqlite"
    with LoopbackServer(brain) as server:
        config = refine_config(server.url, cache={"path": str(cache)})
        manifest = run_generate(config, tmp_path / "a", "run-a")
        got = rows(tmp_path / "a")
        first_requests = server.requests

        assert manifest.tasks == 16 and len(got) == 16 and manifest.accepted + manifest.rejected == 16
        drop_id, drop_out = got[by_fault["drop_id"]], got[by_fault["drop_output"]]
        assert drop_id["stage"] == "simulation"
        assert drop_id["reason"].startswith("refined turn ") and " dropped '" in drop_id["reason"]
        assert drop_out["stage"] == "required_outputs" and drop_out["reason"].startswith("assistant never said: ")
        refused = got[by_fault["refuse_consent"]]
        assert refused["stage"] == "policy" and "without an explicit confirmation" in refused["reason"]
        bad_json = got[by_fault["invalid_json"]]
        assert bad_json["stage"] == "simulation" and bad_json["reason"].startswith("refine: the reply is not the fills")
        invented = got[by_fault["invent_id"]]
        assert invented["stage"] == "simulation" and "introduced '#W0000001'" in invented["reason"]
        missing = got[by_fault["missing_slot"]]
        assert missing["stage"] == "simulation" and missing["reason"].startswith("refine: no fill for slot(s) ")
        accepted = {i for i, r in got.items() if r["status"] == "accepted"}
        assert accepted == set(range(16)) - set(faults)

        # Accepted dialogues carry the model's texts (every user and assistant text turn was masked), while
        # tool calls and results are the skeleton's, recomputed and checked by the outcome filter.
        inserted = {"clarify": 0, "correction": 0}
        for i in accepted:
            messages = got[i]["messages"]
            said = [m for m in messages if m["role"] == "user"]
            texts = [m for m in messages if m["role"] == "assistant" and m["content"]]
            assert said and all(m["content"].startswith(BRAIN_USER) for m in said)
            assert texts and all(m["content"].startswith(BRAIN_ASSISTANT) for m in texts)
            assert all("###STOP###" not in (m["content"] or "") for m in messages)
            inserted["clarify"] += any(m["content"].startswith("Just so I get this right") for m in texts)
            inserted["correction"] += any(m["content"].startswith("Just to double-check") for m in texts)
            verdicts = json.loads(got[i]["verdicts"])
            assert verdicts[-1]["stage"] == "required_outputs" and all(v["passed"] for v in verdicts)
        assert inserted["clarify"] and inserted["correction"]  # rates 0.5 over 10 dialogues: both kinds occur

        # One request per dialogue reached the server (synthesis is offline), charged to the refine role.
        assert first_requests == 16 and set(brain.requests_by_index.values()) == {1}
        assert set(manifest.usage) == {"refine"} and manifest.usage["refine"].requests == 16
        assert manifest.models == {"refine": "loop-model"}

        server.reset_counts()
        again = run_generate(config, tmp_path / "b", "run-b")
        assert server.requests == 0 and again.usage["refine"].cached == 16

        # Without the cache the same config asks the same questions and gets the same dialogues.
        fresh = run_generate(refine_config(server.url, cache={"enabled": False}), tmp_path / "c", "run-c")
        assert server.requests == 16 and fresh.accepted == manifest.accepted
    ids = {i: r["id"] for i, r in got.items()}
    assert {i: r["id"] for i, r in rows(tmp_path / "b").items()} == ids
    assert {i: r["id"] for i, r in rows(tmp_path / "c").items()} == ids


def _skeletons(config: RunConfig, count: int):
    steps = build_steps(config)
    for index, task in list(synthesized_tasks(config, steps).items())[:count]:
        env = steps.env.fresh(task.env_seed)
        dialogue = _agents(config.model_copy(update={"simulation": config.simulation.model_copy(
            update={"mode": "offline"})}), {}, task, env, index)
        yield task, env, asyncio.run(rollout(task, env, dialogue.user, dialogue.assistant)).messages


def test_slots_never_split_a_confirmation_or_a_tool_run():
    config = refine_config(num_tasks=30)
    always = RefineConfig(backend="loop", mask_rate=0.0, assistant_mask_rate=0.5, clarify_rate=1.0,
                          correction_rate=1.0)
    seen = {"clarify_question": 0, "correction_wrong": 0}
    for task, env, messages in _skeletons(config, 30):
        plan, slots = _plan(messages, env, random.Random(task.id), always)
        again, _ = _plan(messages, env, random.Random(task.id), always)
        assert [getattr(x, "kind", x) for x in plan] == [getattr(x, "kind", x) for x in again]  # seeded
        assert sum(s.kind == "rewrite" and s.role == "user" for s in slots) + \
            sum(s.kind == "correction_wrong" for s in slots) >= 1  # at least one user turn, even at rate 0
        for s in slots:
            seen[s.kind] = seen.get(s.kind, 0) + 1
        for n, item in enumerate(plan):
            if isinstance(item, Slot) or item.role != "assistant" or not item.tool_calls:
                continue
            if env.specs()[item.tool_calls[0].function.name].writes:
                consent = plan[n - 1]  # the customer's yes, masked or not, right after the confirmation question
                assert consent.role == "user" and getattr(consent, "kind", "rewrite") == "rewrite"
                assert not isinstance(plan[n - 2], Slot) or plan[n - 2].kind == "rewrite"
            after = plan[n + 1]  # a call is answered at once: no inserted turn inside a tool run
            assert not isinstance(after, Slot) and after.role == "tool"
    assert seen["clarify_question"] == 30 and seen["correction_wrong"] > 20


def test_facts_are_the_details_a_rewrite_must_keep():
    text = "It's order #W1283628 (size 11, 2-person), zip 80225. Email ava.silva78@example.com; refund $143.09."
    assert facts(text) == {"#W1283628", "11", "2-person", "80225", "ava.silva78@example.com", "143.09"}
    assert facts("Yes, please go ahead.") == set()


def test_refine_config_errors_name_the_field():
    loop = {"loop": {"model": "m", "base_url": "http://127.0.0.1:1/v1"}}
    with pytest.raises(ConfigError, match=r"c.yaml: .*simulation.refine: required when simulation.strategy"):
        parse_config({"num_tasks": 1, "backends": loop,
                      "simulation": {"mode": "model", "strategy": "skeleton_refine"}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"simulation.refine.backend: unknown backend 'nope'; known: loop"):
        parse_config({"num_tasks": 1, "backends": loop,
                      "simulation": {"mode": "model", "strategy": "skeleton_refine", "refine": {"backend": "nope"}}})
    with pytest.raises(ConfigError, match=r"simulation.assistant: not used when simulation.strategy is 'skeleton_refine'"):
        parse_config({"num_tasks": 1, "backends": loop,
                      "simulation": {"mode": "model", "strategy": "skeleton_refine", "refine": {"backend": "loop"},
                                     "assistant": {"backend": "loop"}}})
    with pytest.raises(ConfigError, match=r"simulation.refine.mask_rate: Input should be less than or equal to 1"):
        parse_config({"num_tasks": 1, "backends": loop, "simulation": {
            "mode": "model", "strategy": "skeleton_refine", "refine": {"backend": "loop", "mask_rate": 1.5}}})
    with pytest.raises(ConfigError, match=r"simulation.strategy: Input should be 'simulate' or 'skeleton_refine'"):
        parse_config({"num_tasks": 1, "simulation": {"strategy": "refine"}})
    config = refine_config()
    assert set(config.roles()) == {"refine"} and config.model_users() == {"refine": "loop"}
    assert config.config_hash() != refine_config(mask_rate=0.9).config_hash()  # refine settings shape the data
    offline = parse_config({"num_tasks": 1, "simulation": {"strategy": "skeleton_refine"}})
    assert offline.roles() == {}  # offline, the scripted skeleton alone is the dialogue


def test_the_example_refine_config_is_valid():
    from pathlib import Path

    from schemas import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "refine.yaml")
    assert config.simulation.strategy == "skeleton_refine" and set(config.roles()) == {"refine"}
