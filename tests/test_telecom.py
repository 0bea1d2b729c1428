"""The telecom domain and dual control: the account and the user's phone, both sides' tools, the policy that
spans them, the scripted user acting on what it is told, the state that verification hashes, and exports."""

from __future__ import annotations

import json
import random

import pytest
from domain_helpers import first_failure, make_task, simulate

from schemas import Action, Message, ToolCall, UserAction
from simulators.domains.telecom import TelecomEnv
from simulators.domains.telecom.device import data_blocker, has_service
from simulators.domains.telecom.intents import INTENTS, VOICE
from simulators.domains.telecom.voice import STEPS, WHY
from simulators.environment import is_error
from simulators.intents import Intent
from simulators.scripted import ASKS_CONFIRM, ASKS_IDENTITY, OFFERS_MORE


@pytest.fixture(scope="module")
def env() -> TelecomEnv:
    return TelecomEnv(0)


def customer_with(env, intent: str):
    """A customer whose phone or line has exactly the fault the intent fixes."""
    for key, _ in env.db.scan("customers"):
        if INTENTS[intent].ground(env, random.Random(0), env.user_record(key)) is not None:
            return key
    raise AssertionError(f"no customer for {intent}")


def phone(env, customer_id):
    c = env.db.get("customers", customer_id)
    line = env.db.get("lines", env.db.get("phones", c["phone_in_hand"])["line_id"])
    return env.db.get("devices", c["phone_in_hand"]), line


# -- data and tools -------------------------------------------------------------------------------------------------


def test_hundreds_of_entities_and_the_tool_inventory(env):
    assert len(list(env.db.scan("customers"))) == 300 and len(list(env.db.scan("lines"))) > 350
    assert len(list(env.db.scan("bills"))) == 900 and len(list(env.db.scan("devices"))) == 300
    specs, user_specs = env.specs(), env.user_specs()
    assert len(specs) >= 12 and sum(s.writes for s in specs.values()) >= 5
    assert len(user_specs) >= 12 and sum(s.writes for s in user_specs.values()) >= 5
    assert not set(specs) & set(user_specs)
    assert TelecomEnv(0).state_hash() == env.state_hash() != TelecomEnv(1).state_hash()


def test_every_seeded_fault_has_a_customer_and_shows_its_symptom(env):
    for name in INTENTS:
        if name in ("change_plan", "pay_bill", "suspend_lost"):
            continue
        device, line = phone(env, customer_with(env, name))
        plan = env.db.get("plans", line["plan_id"])
        if name.startswith("no_service") or name.startswith("suspended"):
            assert not has_service(device)
        elif name in ("mobile_data_off", "roaming_device", "apn_broken", "roaming_line", "data_exhausted"):
            assert data_blocker(device, line, plan) is not None


def test_each_side_runs_only_its_own_tools(env):
    e = env.fresh()
    who = customer_with(env, "no_service_airplane")
    assert e.execute("toggle_airplane_mode", {}) == "Error: unknown tool 'toggle_airplane_mode'"
    assert e.execute_user(who, "get_line_details", {"line_id": "x"}) == "Error: unknown tool 'get_line_details'"
    assert is_error(e.execute_user(None, "toggle_airplane_mode", {}))
    assert e.execute_user(who, "set_network_mode", {"mode": "6g"}).startswith("Error: invalid arguments")


def test_the_state_covers_the_device_and_the_sides_are_told_apart(env):
    who = customer_with(env, "no_service_airplane")
    e = env.fresh()
    before = e.state_hash()
    assert json.loads(e.execute_user(who, "check_status_bar", {}))["airplane_mode"] is True
    assert e.state_hash() == before  # a check changes nothing
    e.execute_user(who, "toggle_airplane_mode", {})
    assert e.state_hash() != before
    sides = e.state_sides()
    assert sides["account"] == {} and list(sides["device"]["devices"]) == [env.db.get("customers", who)["phone_in_hand"]]
    assert json.loads(e.execute_user(who, "check_status_bar", {}))["signal"] == "4 bars"


def test_a_resumed_line_needs_a_restart_after_it_not_before(env):
    """Cross-side order: the phone registers on the network when it boots, so only resume-then-restart works."""
    who = customer_with(env, "suspended_overdue")
    line = phone(env, who)[1]
    bill = next(b for b in env.db.get("customers", who)["bills"] if env.db.get("bills", b)["status"] == "overdue")
    card = sorted(env.db.get("customers", who)["payment_methods"])[0]
    right, wrong = env.fresh(), env.fresh()
    for e in (right, wrong):
        assert not is_error(e.execute("pay_bill", {"bill_id": bill, "payment_method_id": card}))
    wrong.execute_user(who, "reboot_device", {})
    wrong.execute("resume_line", {"line_id": line["line_id"]})
    right.execute("resume_line", {"line_id": line["line_id"]})
    right.execute_user(who, "reboot_device", {})
    assert json.loads(right.execute_user(who, "check_status_bar", {}))["signal"] == "4 bars"
    assert json.loads(wrong.execute_user(who, "check_status_bar", {}))["signal"] == "no signal"
    assert right.state_hash() != wrong.state_hash()


def test_replay_runs_user_actions_where_they_happened(env):
    who = customer_with(env, "suspended_overdue")
    line = phone(env, who)[1]["line_id"]
    resume = ToolCall.make("c1", "resume_line", {"line_id": line})
    reboot = ToolCall.make("u1", "reboot_device", {})
    messages = [Message(role="system", content=""), Message(role="user", content="hi"),
                Message(role="assistant", tool_calls=[resume]), Message(role="tool", tool_call_id="c1", content=""),
                Message(role="assistant", content="Please restart your phone."), Message(role="user", content="ok")]
    early, late = env.fresh(), env.fresh()
    early.replay(messages, [UserAction(at=1, call=reboot, result="")], user=who)  # before the resume
    late.replay(messages, [UserAction(at=5, call=reboot, result="")], user=who)  # after it
    assert early.state_hash() != late.state_hash()
    device = late.db.get("devices", env.db.get("customers", who)["phone_in_hand"])
    assert device["registered"] is True


# -- the policy, both sides ---------------------------------------------------------------------------------------


def _walk(env, who, calls, user_actions=()):
    """A dialogue: authenticated, every write asked for and confirmed, ``calls`` in order."""
    c = env.db.get("customers", who)
    auth = ToolCall.make("a", "find_customer_by_phone", {"phone_number": c["phone_in_hand"]})
    messages = [Message(role="system", content=""), Message(role="user", content="hi"),
                Message(role="assistant", tool_calls=[auth]), Message(role="tool", tool_call_id="a", content=f'"{who}"')]
    for n, (name, args) in enumerate(calls):
        messages += [Message(role="assistant", content="Shall I proceed?"), Message(role="user", content="Yes.")]
        call = ToolCall.make(f"c{n}", name, args)
        messages += [Message(role="assistant", tool_calls=[call]), Message(role="tool", tool_call_id=call.id, content="")]
    return env.check_policy(messages, user_actions=list(user_actions), user=who)


def test_policy_resume_only_after_the_overdue_bill_and_never_after_contract_end(env):
    who = customer_with(env, "suspended_overdue")
    line = phone(env, who)[1]["line_id"]
    assert any("overdue" in v for v in _walk(env, who, [("resume_line", {"line_id": line})]))
    ended = customer_with(env, "suspended_contract")
    violations = _walk(env, ended, [("resume_line", {"line_id": phone(env, ended)[1]["line_id"]})])
    assert any("contract ended" in v for v in violations)
    assert any("restart the phone" in v for v in violations)  # and no restart was guided after it


def test_policy_refuel_cap_and_unchecked_device_change(env):
    who = customer_with(env, "data_exhausted")
    line = phone(env, who)[1]["line_id"]
    assert any("at most 2 GB" in v for v in _walk(env, who, [("refuel_data", {"line_id": line, "gb": 3.0})]))
    assert _walk(env, who, [("refuel_data", {"line_id": line, "gb": 2.0})]) == []
    toggle = UserAction(at=4, call=ToolCall.make("u", "toggle_mobile_data", {}), result="{}")
    check = UserAction(at=4, call=ToolCall.make("v", "run_speed_test", {}), result="{}")
    assert any("never checked" in v for v in _walk(env, who, [], [toggle]))
    assert _walk(env, who, [], [toggle, check]) == []


# -- dialogues, offline -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("intent", sorted(INTENTS))
def test_clean_dialogues_pass_every_filter(env, intent):
    for seed in range(2):
        task = make_task(env, [intent], seed)
        trajectory = simulate(env, task, seed=seed)
        assert first_failure(env, trajectory, task) is None, (intent, seed)
        assert trajectory.final_state_hash == task.expected_state_hash
        gold_user = [a for a in task.gold_actions if a.actor == "user"]
        done = [Action(name=a.call.function.name, arguments=a.call.parsed_arguments(), actor="user")
                for a in trajectory.user_actions]
        assert done == gold_user  # the user did exactly what the assistant asked, in order
        assert not any(m.tool_calls for m in trajectory.messages if m.role == "user")


@pytest.mark.parametrize("perturbation, stage, text", [
    ("wrong_device_step", "outcome", "(device)"), ("skip_device_check", "policy", "never checked"),
    ("break_rule", "policy", "contract ended"), ("skip_confirmation", "policy", "confirmation")])
def test_dual_control_mistakes_are_caught_where_they_should_be(env, perturbation, stage, text):
    intents = {"wrong_device_step": ["no_service_airplane", "mobile_data_off", "slow_vpn"],
               "skip_device_check": ["no_service_sim", "apn_broken"], "break_rule": ["suspended_contract"],
               "skip_confirmation": ["change_plan", "pay_bill"]}[perturbation]
    for seed, intent in enumerate(intents):
        task = make_task(env, [intent], seed)
        verdict = first_failure(env, simulate(env, task, perturbation, seed=seed), task)
        assert verdict is not None and verdict.stage == stage and text in verdict.reason, (intent, verdict)


# -- how device actions are put into words -------------------------------------------------------------------------


def test_every_instruction_parses_back_to_its_actions():
    rng = random.Random(0)
    for name in STEPS:
        args = {"set_network_mode": {"mode": "4g_5g"}, "grant_app_permission": {"app": "messages",
                                                                               "permission": "storage"},
                "check_app_permissions": {"app": "messages"}}.get(name, {})
        action = Action(name=name, arguments=args, actor="user")
        other = Action(name="run_speed_test", actor="user")
        for _ in range(40):
            text = VOICE.guide([action, other], rng, [])
            assert VOICE.parse(text) == [action, other], text


def test_explanations_reports_and_other_asks_are_not_instructions(env):
    rng = random.Random(1)
    texts = [t for group in WHY.values() for t in group] + [env.ask_identity(rng) for _ in range(30)]
    for intent in INTENTS.values():
        texts += [intent.ask(rng) for _ in range(5)] + [intent.report(Action(name="x", arguments={
            "line_id": "L1", "plan_id": "p", "bill_id": "B1", "payment_method_id": "m", "gb": 1.0}), ["$1.00"], rng)]
    for text in texts:
        assert VOICE.parse(text) == [], text
    assert all(ASKS_IDENTITY.search(env.ask_identity(rng)) for _ in range(30))
    confirms = [i.confirm(Action(name=i.target_tool, arguments={"line_id": "L1", "plan_id": "p", "bill_id": "B1",
                                                                  "payment_method_id": "m", "gb": 1.0}), rng)
                for i in INTENTS.values() if type(i).confirm is not Intent.confirm]
    assert confirms and all(ASKS_CONFIRM.search(c) and not OFFERS_MORE.search(c) for c in confirms)
