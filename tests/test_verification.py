"""Verification: each filter accepts a clean offline rollout and rejects each kind of flaw at its stage;
every planted assistant mistake is caught where it should be; exact dedup."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from dedup import exact_hash
from filters import FILTERS, Context
from generators import GENERATORS
from schemas import Message, Task, ToolCall, Trajectory, Verdict
from simulators.conversation import rollout
from simulators.domains.store import StoreEnv
from simulators.environment import is_error
from simulators.scripted import ASKS_CONFIRM, PERTURBATIONS, ScriptedAssistant, ScriptedUser
from simulators.text import normalize

STAGES = ["format", "execution", "policy", "outcome", "required_outputs"]
WRITE_INTENTS = ["cancel_order", "change_order_address", "change_order_payment", "update_address"]
OUTPUT_INTENTS = ["cancel_order", "change_order_payment", "modify_items", "exchange_items", "return_items",
                  "refund_quote", "order_status"]


@pytest.fixture(scope="module")
def env() -> StoreEnv:
    return StoreEnv(0)


@pytest.fixture(scope="module")
def filters():
    return [FILTERS.get(name)() for name in STAGES]


def make_task(env, intents: list[str], seed: int, max_requests: int = 1) -> Task:
    blueprint = GENERATORS.get("blueprint")
    gen = blueprint(env, blueprint.Params(intents=intents, max_requests=max_requests))
    return gen.generate(random.Random(seed))


def simulate(env, task: Task, perturbation: str | None = None, seed: int = 0) -> Trajectory:
    """An offline rollout, as pipelines/shard.py runs it."""
    rng = random.Random(seed)
    fresh = env.fresh(task.env_seed)
    result = asyncio.run(rollout(task, fresh, ScriptedUser(task, rng), ScriptedAssistant(task, fresh, rng, perturbation)))
    return Trajectory(task_id=task.id, domain=task.domain, kind=task.kind, tools=fresh.tools(), messages=result.messages,
                      final_state_hash=result.final_state_hash)


def first_failure(filters, env, trajectory: Trajectory, task: Task) -> Verdict | None:
    """Run the filters in order and stop at the first rejection, like the shard does."""
    ctx = Context(task=task, env=env)
    for check in filters:
        verdict = check.check(trajectory, ctx)
        assert verdict.stage == check.name
        if not verdict.passed:
            return verdict
    return None


def verdict_of(stage: str, trajectory: Trajectory, task: Task, env) -> Verdict:
    return FILTERS.get(stage)().check(trajectory, Context(task=task, env=env))


def write_index(trajectory: Trajectory, task: Task) -> int:
    """Index of the assistant message that calls the task's (single) write target."""
    target = task.gold_actions[task.scenario.requests[0].actions[-1]].name
    return next(n for n, m in enumerate(trajectory.messages) if m.tool_calls and m.tool_calls[0].function.name == target)


def with_arguments(trajectory: Trajectory, index: int, arguments: str, name: str | None = None) -> Trajectory:
    bad = trajectory.model_copy(deep=True)
    call = bad.messages[index].tool_calls[0]
    call.function.arguments = arguments
    if name is not None:
        call.function.name = name
    return bad


@pytest.fixture(scope="module")
def cancel_task(env) -> Task:
    return make_task(env, ["cancel_order"], seed=3)


@pytest.fixture(scope="module")
def clean(env, cancel_task) -> Trajectory:
    return simulate(env, cancel_task)


# -- the clean trajectory ------------------------------------------------------------------------


def test_clean_rollout_is_realistic(clean, cancel_task):
    roles = [m.role for m in clean.messages]
    assert roles[0] == "system" and "user" in roles and "tool" in roles
    calls = [c.function.name for m in clean.messages for c in m.tool_calls or []]
    assert calls == [a.name for a in cancel_task.gold_actions]
    assert not any(is_error(m.content or "") for m in clean.messages if m.role == "tool")
    assert clean.final_state_hash == cancel_task.expected_state_hash


def test_clean_rollout_passes_every_filter(env, filters, clean, cancel_task):
    ctx = Context(task=cancel_task, env=env)
    verdicts = [f.check(clean, ctx) for f in filters]
    assert [v.stage for v in verdicts] == STAGES
    assert all(v.passed for v in verdicts), verdicts


@pytest.mark.parametrize("intents", [[i] for i in WRITE_INTENTS + OUTPUT_INTENTS] + [None])
def test_clean_rollouts_pass_for_every_intent(env, filters, intents):
    for seed in range(3):
        task = make_task(env, intents or sorted(env.intents), seed, max_requests=2)
        trajectory = simulate(env, task, seed=seed)
        assert first_failure(filters, env, trajectory, task) is None, (intents, seed)


# -- one mutation per rejection path ----------------------------------------------------------------


def test_format_arguments_not_json(env, filters, clean, cancel_task):
    bad = with_arguments(clean, write_index(clean, cancel_task), '{"order_id": "#W1", ')
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "format"
    assert "cancel_pending_order" in verdict.reason and "not a JSON object" in verdict.reason


def test_format_arguments_not_an_object(env, filters, clean, cancel_task):
    bad = with_arguments(clean, write_index(clean, cancel_task), '["#W1"]')
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "format" and "not a JSON object" in verdict.reason


def test_format_missing_required_key(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    args = clean.messages[n].tool_calls[0].parsed_arguments()
    del args["reason"]
    verdict = first_failure(filters, env, with_arguments(clean, n, json.dumps(args)), cancel_task)
    assert verdict.stage == "format"
    assert "must contain ['reason'] properties" in verdict.reason and f"message {n}" in verdict.reason


def test_format_invalid_enum_value(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    args = {**clean.messages[n].tool_calls[0].parsed_arguments(), "reason": "changed my mind"}
    verdict = first_failure(filters, env, with_arguments(clean, n, json.dumps(args)), cancel_task)
    assert verdict.stage == "format" and "reason" in verdict.reason


def test_format_unknown_tool(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    bad = with_arguments(clean, n, clean.messages[n].tool_calls[0].function.arguments, name="cancel_order_now")
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "format" and "unknown tool 'cancel_order_now'" in verdict.reason


def test_format_unanswered_call_and_orphan_result(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    assert clean.messages[n + 1].role == "tool"
    unanswered = clean.model_copy(deep=True)
    del unanswered.messages[n + 1]
    verdict = first_failure(filters, env, unanswered, cancel_task)
    assert verdict.stage == "format" and "unanswered" in verdict.reason

    orphan = clean.model_copy(deep=True)
    orphan.messages[n + 1].tool_call_id = "call_nobody"
    verdict = first_failure(filters, env, orphan, cancel_task)
    assert verdict.stage == "format" and "call_nobody" in verdict.reason

    empty = clean.model_copy(deep=True)
    empty.messages.append(Message(role="assistant"))
    verdict = first_failure(filters, env, empty, cancel_task)
    assert verdict.stage == "format" and "empty assistant message" in verdict.reason


def test_execution_tool_error(env, filters, clean, cancel_task):
    bad = clean.model_copy(deep=True)
    n = next(i for i, m in enumerate(bad.messages) if m.role == "tool")
    bad.messages[n].content = "Error: order #W0000000 not found"
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "execution"
    assert "1 tool error" in verdict.reason and "#W0000000 not found" in verdict.reason
    # a configured tolerance lets one recovered error through
    lenient = FILTERS.get("execution")(FILTERS.get("execution").Params(max_errors=1))
    assert lenient.check(bad, Context(task=cancel_task, env=env)).passed


def test_outcome_write_removed(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    bad = clean.model_copy(deep=True)
    del bad.messages[n:n + 2]  # the call and its result
    assert verdict_of("format", bad, cancel_task, env).passed
    assert verdict_of("policy", bad, cancel_task, env).passed
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "outcome" and "final state" in verdict.reason


def test_outcome_other_valid_argument(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    args = clean.messages[n].tool_calls[0].parsed_arguments()
    args["reason"] = {"no longer needed": "ordered by mistake", "ordered by mistake": "no longer needed"}[args["reason"]]
    bad = with_arguments(clean, n, json.dumps(args))
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "outcome" and "final state differs" in verdict.reason


def test_outcome_extra_write(env, filters, clean, cancel_task):
    """A write the task did not ask for, confirmed and in policy, still changes the final state."""
    bad = clean.model_copy(deep=True)
    customer_id = bad.messages[next(i for i, m in enumerate(bad.messages) if m.role == "tool")].content.strip('"')
    address = {"address1": "1 New St", "address2": "", "city": "Austin", "state": "TX", "zip": "78701"}
    call = ToolCall.make("call_extra", "update_customer_address", {"customer_id": customer_id, **address})
    result = env.fresh().execute_call(call)
    bad.messages[-1:-1] = [Message(role="assistant", content="Shall I also update your address?"),
                           Message(role="user", content="Yes."), Message(role="assistant", tool_calls=[call]),
                           Message(role="tool", tool_call_id="call_extra", content=result)]
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict is not None and verdict.stage == "outcome"


def test_outcome_recomputes_rather_than_trusting_the_rollout(env, clean, cancel_task):
    forged = clean.model_copy(deep=True, update={"final_state_hash": "0" * 32})
    assert verdict_of("outcome", forged, cancel_task, env).passed
    n = write_index(clean, cancel_task)
    skipped = clean.model_copy(deep=True)
    del skipped.messages[n:n + 2]
    skipped.final_state_hash = cancel_task.expected_state_hash  # a claimed hash does not help
    assert not verdict_of("outcome", skipped, cancel_task, env).passed


def test_outcome_stale_blueprint(env, filters, clean, cancel_task):
    stale = cancel_task.model_copy(update={"expected_state_hash": "f" * 32})
    verdict = first_failure(filters, env, clean, stale)
    assert verdict.stage == "outcome" and "gold actions no longer reach" in verdict.reason


def test_required_outputs_missing(env, filters, clean, cancel_task):
    assert cancel_task.expected_outputs
    output = cancel_task.expected_outputs[0]
    bad = clean.model_copy(deep=True)
    said = [m for m in bad.messages if m.role == "assistant" and m.content and output in m.content]
    assert said
    for m in said:
        m.content = m.content.replace(output, "the full amount")
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "required_outputs"
    assert output in verdict.reason


def test_required_outputs_only_counts_the_assistant(env, clean, cancel_task):
    output = cancel_task.expected_outputs[0]
    moved = clean.model_copy(deep=True)
    for m in moved.messages:
        if m.role == "assistant" and m.content:
            m.content = m.content.replace(output, "")
    moved.messages.append(Message(role="user", content=f"So I get {output} back?"))
    assert not verdict_of("required_outputs", moved, cancel_task, env).passed


def test_required_outputs_tolerates_case_and_spacing(env, clean, cancel_task):
    task = cancel_task.model_copy(update={"expected_outputs": ["Order  " + cancel_task.gold_actions[-1].arguments["order_id"]]})
    assert verdict_of("required_outputs", clean, task, env).passed


def test_policy_confirmation_removed(env, filters, clean, cancel_task):
    n = write_index(clean, cancel_task)
    assert clean.messages[n - 1].role == "user" and clean.messages[n - 2].role == "assistant"
    assert ASKS_CONFIRM.search(clean.messages[n - 2].content)
    bad = clean.model_copy(deep=True)
    del bad.messages[n - 2:n]  # the confirmation question and the user's yes
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "policy"
    assert "cancel_pending_order" in verdict.reason and "confirmation" in verdict.reason


def test_policy_authentication_removed(env, filters, clean, cancel_task):
    bad = clean.model_copy(deep=True)
    auth = next(i for i, m in enumerate(bad.messages) if m.tool_calls)
    assert bad.messages[auth].tool_calls[0].function.name.startswith("find_customer_id")
    del bad.messages[auth:auth + 2]
    verdict = first_failure(filters, env, bad, cancel_task)
    assert verdict.stage == "policy" and "authenticated" in verdict.reason


# -- planted mistakes --------------------------------------------------------------------------------

EXPECTED_STAGE = {
    "malformed_arguments": "format",
    "unknown_tool": "format",
    "skip_confirmation": "policy",
    "claim_without_call": "outcome",
    "omit_outputs": "required_outputs",
}


def test_every_perturbation_has_an_expected_stage():
    assert set(PERTURBATIONS) == set(EXPECTED_STAGE)


@pytest.mark.parametrize("perturbation", sorted(EXPECTED_STAGE))
def test_perturbation_is_rejected_at_its_stage(env, filters, perturbation):
    intents = OUTPUT_INTENTS if perturbation == "omit_outputs" else WRITE_INTENTS
    checked = 0
    for intent in intents:
        for seed in range(3):
            task = make_task(env, [intent], seed)
            if perturbation == "omit_outputs":
                assert task.expected_outputs
            clean = simulate(env, task, seed=seed)
            assert first_failure(filters, env, clean, task) is None
            bad = simulate(env, task, perturbation, seed=seed)
            assert bad.messages != clean.messages
            verdict = first_failure(filters, env, bad, task)
            assert verdict is not None, (perturbation, intent, seed)
            assert verdict.stage == EXPECTED_STAGE[perturbation], (perturbation, intent, seed, verdict)
            checked += 1
    assert checked == 3 * len(intents)


def test_perturbation_in_a_two_request_task(env, filters):
    """The mistake lands on the write even when a read-only request comes first."""
    blueprint = GENERATORS.get("blueprint")
    gen = blueprint(env, blueprint.Params(intents=["order_status", "cancel_order"], min_requests=2, max_requests=2))
    task = next(t for t in (gen.generate(random.Random(i)) for i in range(50)) if len(t.scenario.requests) == 2)
    for perturbation in ("unknown_tool", "claim_without_call", "skip_confirmation"):
        verdict = first_failure(filters, env, simulate(env, task, perturbation), task)
        assert verdict is not None and verdict.stage == EXPECTED_STAGE[perturbation], perturbation


def test_perturbed_rollouts_are_reproducible(env, cancel_task):
    for perturbation in PERTURBATIONS:
        a = simulate(env, cancel_task, perturbation, seed=5)
        b = simulate(env, cancel_task, perturbation, seed=5)
        assert a.id == b.id and a.final_state_hash == b.final_state_hash


def _task_whose_details_say_yes(env):
    for seed in range(300):
        task = make_task(env, ["modify_items", "exchange_items", "return_items"], seed)
        if "noise cancelling yes" in task.scenario.requests[0].details:
            return task, seed
    raise AssertionError("no task mentions 'noise cancelling yes'")


def test_skip_confirmation_caught_even_when_request_mentions_yes(env, filters):
    task, seed = _task_whose_details_say_yes(env)
    verdict = first_failure(filters, env, simulate(env, task, "skip_confirmation", seed=seed), task)
    assert verdict is not None and verdict.stage == "policy"


@pytest.mark.parametrize("intent", ["update_address", "change_order_address"])
def test_omit_outputs_is_not_planted_where_nothing_must_be_told(env, filters, intent):
    """Address changes are read back in the confirmation, so they have no outputs to omit: the dialogue stays clean."""
    task = make_task(env, [intent], 0)
    assert task.expected_outputs == []
    assert first_failure(filters, env, simulate(env, task, "omit_outputs"), task) is None


# -- exact dedup ------------------------------------------------------------------------------------


def small_dialogue(user_text: str, order_id: str = "#W1234567", arguments: str | None = None,
                   assistant_text: str = "Done.") -> list[Message]:
    call = ToolCall.make("call_1", "get_order_details", {"order_id": order_id})
    if arguments is not None:
        call.function.arguments = arguments
    return [Message(role="system", content="policy"), Message(role="user", content=user_text),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="call_1", content='{"status": "pending"}'),
            Message(role="assistant", content=assistant_text)]


def test_identical_dialogues_hash_equal(env, clean, cancel_task):
    again = simulate(env, cancel_task)
    assert exact_hash(again.messages) == exact_hash(clean.messages)
    assert exact_hash(small_dialogue("Where is order #W1234567?")) == exact_hash(small_dialogue("Where is order #W1234567?"))
    other = simulate(env, make_task(env, ["cancel_order"], seed=4))
    assert exact_hash(other.messages) != exact_hash(clean.messages)


def test_whitespace_and_case_in_user_text_do_not_matter():
    a = small_dialogue("Where is order #W1234567?")
    b = small_dialogue("  WHERE   is Order\t#W1234567 ? ")
    c = small_dialogue("Where is order #W1234567!")
    assert exact_hash(a) == exact_hash(b) == exact_hash(c)
    assert exact_hash(a) != exact_hash(small_dialogue("Where is my order #W1234567?"))


def test_different_order_ids_hash_differently():
    assert exact_hash(small_dialogue("Cancel #W1234")) != exact_hash(small_dialogue("Cancel #W9876"))
    same_text = "Cancel my order"
    assert exact_hash(small_dialogue(same_text, order_id="#W1234")) != exact_hash(small_dialogue(same_text, order_id="#W9876"))
    assert normalize("Order #W1234") != normalize("Order #W9876")
    assert normalize("$12.50") != normalize("$12.05")


def test_argument_key_order_does_not_matter():
    a = small_dialogue("hi", arguments='{"order_id": "#W1", "extra": [1, 2]}')
    b = small_dialogue("hi", arguments='{"extra":[1,2],"order_id":"#W1"}')
    c = small_dialogue("hi", arguments='{"extra":[2,1],"order_id":"#W1"}')
    assert exact_hash(a) == exact_hash(b)
    assert exact_hash(a) != exact_hash(c)
    # malformed arguments are hashed as written, without raising
    assert exact_hash(small_dialogue("hi", arguments="{bad")) != exact_hash(small_dialogue("hi", arguments="{bad2"))


def test_assistant_wording_and_tool_results_do_not_matter():
    a = small_dialogue("Where is order #W1234567?", assistant_text="It has shipped.")
    b = small_dialogue("Where is order #W1234567?", assistant_text="Your parcel is on its way!")
    b[3].content = '{"status": "shipped"}'
    assert exact_hash(a) == exact_hash(b)


