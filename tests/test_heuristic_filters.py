"""Heuristic filters: each passes a clean offline rollout and rejects its own kind of flaw, with a reason."""

from __future__ import annotations

import asyncio
import random

import pytest

from filters import FILTERS, Context
from generators import GENERATORS
from pipelines.steps import build_steps
from schemas import ConfigError, Message, ToolCall, Trajectory
from simulators.conversation import rollout
from simulators.domains.store import StoreEnv
from simulators.scripted import ScriptedAssistant, ScriptedUser

HEURISTICS = ["turn_count", "repetition", "control_tokens", "language", "secrets"]


@pytest.fixture(scope="module")
def env() -> StoreEnv:
    return StoreEnv(0)


@pytest.fixture(scope="module")
def clean(env) -> tuple[Trajectory, Context]:
    blueprint = GENERATORS.get("blueprint")
    task = blueprint(env, blueprint.Params(intents=["change_order_address"])).generate(random.Random(3))
    fresh = env.fresh(task.env_seed)
    rng = random.Random(0)
    result = asyncio.run(rollout(task, fresh, ScriptedUser(task, rng), ScriptedAssistant(task, fresh, rng)))
    traj = Trajectory(task_id=task.id, domain=task.domain, tools=fresh.tools(), messages=result.messages)
    return traj, Context(task=task, env=env)


def check(name: str, traj: Trajectory, ctx: Context, **params):
    cls = FILTERS.get(name)
    verdict = cls(cls.Params(**params)).check(traj, ctx)
    assert verdict.stage == name
    return verdict


def with_messages(traj: Trajectory, extra: list[Message]) -> Trajectory:
    return traj.model_copy(update={"messages": traj.messages + extra})


@pytest.mark.parametrize("name", HEURISTICS)
def test_clean_rollout_passes(name, clean):
    traj, ctx = clean
    verdict = check(name, traj, ctx)
    assert verdict.passed, verdict.reason


def test_turn_count_bounds(clean):
    traj, ctx = clean
    users = sum(m.role == "user" for m in traj.messages)
    assert "fewer than" in check("turn_count", traj, ctx, min_user_turns=users + 1).reason
    assert "more than" in check("turn_count", traj, ctx, max_user_turns=users - 1).reason
    assert check("turn_count", traj, ctx, max_messages=3).reason.endswith("more than 3")
    assert check("turn_count", traj, ctx, min_user_turns=users, max_user_turns=users).passed


def test_repetition_of_assistant_text_and_tool_calls(clean):
    traj, ctx = clean
    loop = Message(role="assistant", content="I am sorry, I could not find that order in our system.")
    assert "assistant message repeated 3 times" in check("repetition", with_messages(traj, [loop] * 3), ctx).reason
    assert check("repetition", with_messages(traj, [loop] * 2), ctx).passed
    call = ToolCall.make("c9", "get_order_details", {"order_id": "#W1"})
    calls = [Message(role="assistant", tool_calls=[call.model_copy(update={"id": f"c{i}"})]) for i in range(3)]
    reason = check("repetition", with_messages(traj, calls), ctx).reason
    assert "tool call repeated 3 times" in reason and "get_order_details" in reason
    short = [Message(role="assistant", content="Done.")] * 5  # short acknowledgements may repeat
    assert check("repetition", with_messages(traj, short), ctx).passed


@pytest.mark.parametrize("token", ["<|im_start|>", "<|eot_id|>", "[INST]", "</s>", "<tool_call>"])
def test_control_tokens_in_stored_text(clean, token):
    traj, ctx = clean
    leaked = with_messages(traj, [Message(role="assistant", content=f"Sure thing. {token} assistant")])
    verdict = check("control_tokens", leaked, ctx)
    assert not verdict.passed and token in verdict.reason
    in_args = with_messages(traj, [Message(role="assistant", tool_calls=[
        ToolCall.make("c1", "get_order_details", {"order_id": f"#W1{token}"})])])
    assert not check("control_tokens", in_args, ctx).passed


def test_language(clean):
    traj, ctx = clean
    german = [Message(role="user", content="Ich möchte meine Bestellung stornieren, bitte. Die Lieferung ist "
                                           "viel zu spät und der Artikel wird nicht mehr gebraucht, danke schön."),
              Message(role="assistant", content="Gerne storniere ich die Bestellung für Sie, einen Moment bitte.")]
    only = traj.model_copy(update={"messages": german})
    assert "common English words" in check("language", only, ctx).reason
    cyrillic = traj.model_copy(update={"messages": [Message(role="user", content="Здравствуйте, где мой заказ?")]})
    assert "Latin script" in check("language", cyrillic, ctx).reason


def test_secrets_and_pii_that_are_not_domain_data(clean):
    traj, ctx = clean
    cases = {
        "api key": "my key is sk-" + "A1b2C3d4" * 4,
        "email": "write to jane.doe@gmail.com",
        "card number": "card 4111 1111 1111 1111 please",
        "private key": "-----BEGIN RSA PRIVATE KEY-----",
    }
    for kind, text in cases.items():
        verdict = check("secrets", with_messages(traj, [Message(role="user", content=text)]), ctx)
        assert not verdict.passed and kind in verdict.reason, kind
        assert "sk-" not in verdict.reason and "gmail" not in verdict.reason and "4111" not in verdict.reason


def test_secrets_allow_domain_data(clean):
    traj, ctx = clean
    # a 16-digit number failing the Luhn check is an id, not a card; reserved example domains are not people
    ok = with_messages(traj, [Message(role="user", content="tracking 1234567812345678, mail me at x@example.com")])
    assert check("secrets", ok, ctx).passed
    # an email that the environment returned (domain data) may be repeated back
    mail = "someone.real@store-customers.net"
    said = with_messages(traj, [Message(role="tool", tool_call_id="t", content=f'{{"email":"{mail}"}}'),
                                Message(role="assistant", content=f"Your email on file is {mail}.")])
    assert check("secrets", said, ctx).passed
    assert not check("secrets", with_messages(traj, [Message(role="assistant", content=f"Mail {mail}")]), ctx).passed


def test_bad_filter_params_name_the_field(small_config):
    config = small_config(filters=[{"name": "secrets", "params": {"kinds": ["ssn"]}}])
    with pytest.raises(ConfigError, match=r"filters\[0\]\.params: .*unknown kinds"):
        build_steps(config, "x.yaml")
    config = small_config(filters=[{"name": "control_tokens", "params": {"patterns": ["("]}}])
    with pytest.raises(ConfigError, match=r"filters\[0\]\.params"):
        build_steps(config, "x.yaml")
