"""The plug-in's own tests: run with trajforge importable and this package installed (its entry points visible)."""

from __future__ import annotations

import json
import random

import pytest
from trajforge_library.domain import LibraryEnv, days_late
from trajforge_library.generator import OverdueReturns

from generators import GENERATORS, SynthesisError
from schemas import Message, ToolCall, parse_config
from simulators import DOMAINS


def test_entry_points_resolve_to_this_package():
    assert DOMAINS.get("library") is LibraryEnv
    assert GENERATORS.get("overdue_returns") is OverdueReturns
    assert "library" in DOMAINS.names() and "overdue_returns" in GENERATORS.names()


def library(members: int = 40, seed: int = 1) -> LibraryEnv:
    return LibraryEnv.configure(LibraryEnv.Params(members=members))(seed)


def test_params_shape_the_data_and_are_validated():
    assert len(library(members=12).users()) == 12
    assert len(library(members=30).users()) == 30
    with pytest.raises(ValueError):
        LibraryEnv.Params(members=2)


def test_return_charges_the_late_fee_and_closes_the_loan():
    env = library()
    loan = next(loan for _, loan in env.db.scan("loans") if days_late(loan) >= 4)
    before = env.state_hash()
    result = json.loads(env.execute("return_book", {"loan_id": loan["loan_id"]}))
    assert result["late_fee"] == round(days_late(loan) * 0.25, 2)
    assert env.state_hash() != before
    assert env.execute("return_book", {"loan_id": loan["loan_id"]}).startswith("Error: ")
    assert env.execute("renew_loan", {"loan_id": loan["loan_id"]}).startswith("Error: ")


def test_overdue_loans_cannot_be_renewed_and_bad_arguments_are_errors():
    env = library()
    late = next(loan for _, loan in env.db.scan("loans") if days_late(loan) > 0)
    assert "cannot be renewed" in env.execute("renew_loan", {"loan_id": late["loan_id"]})
    assert "invalid arguments" in env.execute("renew_loan", {"loan": late["loan_id"]})


def test_policy_flags_a_write_without_authentication_or_confirmation():
    env = library()
    loan_id = next(key for key, _ in env.db.scan("loans"))
    call = ToolCall.make("c1", "return_book", {"loan_id": loan_id})
    messages = [Message(role="user", content="return it"), Message(role="assistant", tool_calls=[call]),
                Message(role="tool", tool_call_id="c1", content="{}")]
    problems = env.check_policy(messages)
    assert any("before the member was authenticated" in p for p in problems)
    assert any("without an explicit confirmation" in p for p in problems)


def test_generator_tasks_replay_to_their_state_and_are_reproducible():
    env = library()
    gen = OverdueReturns(env, OverdueReturns.Params(min_days_late=3))
    tasks = [gen.generate(random.Random(i)) for i in range(10)]
    assert [t.id for t in tasks] == [gen.generate(random.Random(i)).id for i in range(10)]
    for task in tasks:
        replay = env.fresh()
        results = replay.run_actions(task.gold_actions)
        assert not any(r.startswith("Error: ") for r in results)
        assert replay.state_hash() == task.expected_state_hash
        assert task.expected_outputs[0].startswith("$") and task.expected_outputs[0] != "$0.00"


def test_generator_refuses_a_threshold_no_loan_meets():
    with pytest.raises(ValueError, match="no loan is 400"):
        OverdueReturns(library(), OverdueReturns.Params(min_days_late=400))
    assert SynthesisError  # the error a failed attempt raises, recorded as a rejected row


def test_run_config_validates_domain_params():
    from pipelines.steps import build_steps
    from schemas import ConfigError

    config = parse_config({"num_tasks": 1, "domain": {"name": "library", "params": {"members": 1}},
                           "generators": [{"name": "overdue_returns"}]})
    with pytest.raises(ConfigError, match=r"domain\.params\.members"):
        build_steps(config)


def test_fee_quote_tasks_fit_their_kind_and_replay_to_an_unchanged_state():
    from trajforge_library.fee_quote import FeeQuote, FeeQuotes

    from simulators import KINDS, kind_of

    env = library(members=200)
    assert GENERATORS.get("fee_quotes") is FeeQuotes and KINDS.get("fee_quote") is FeeQuote  # its entry points
    gen = FeeQuotes(env, FeeQuotes.Params())
    for seed in range(10):
        task = gen.generate(random.Random(seed))
        assert kind_of(task).validate(task) is task and task.owed.startswith("$") and task.overdue_loans
        replay = env.fresh()
        assert not any(r.startswith("Error: ") for r in replay.run_actions(task.gold_actions))
        assert replay.state_hash() == task.expected_state_hash  # a quote is read-only
    with pytest.raises(ValueError, match="fee_quotes needs the library domain"):
        FeeQuotes(DOMAINS.get("store")(0), FeeQuotes.Params())


def test_the_scripted_pair_quotes_the_fee_and_its_filter_catches_an_under_quote():
    import asyncio

    from trajforge_library.fee_quote import FeeQuotes, FeeStated

    from filters import FILTERS, Context
    from schemas import Trajectory
    from simulators import kind_of
    from simulators.conversation import rollout

    env = library(members=200)
    gen = GENERATORS.get("fee_quotes")(env, FeeQuotes.Params())
    assert FILTERS.get("fee_stated") is FeeStated
    # a member whose last loan looked up is overdue: forgetting it changes the total
    task = next(t for t in (gen.generate(random.Random(s)) for s in range(50))
                if t.gold_actions[-1].arguments["loan_id"] in t.overdue_loans)
    verdicts = {}
    for mistake in (None, "omit_outputs"):
        kind = kind_of(task)
        result = asyncio.run(rollout(task, env.fresh(), kind.User(task, random.Random(0)),
                                     kind.Assistant(task, env, random.Random(0), mistake)))
        trajectory = Trajectory(task_id=task.id, domain=task.domain, kind=task.kind, tools=env.tools(),
                                messages=result.messages)
        verdicts[mistake] = FeeStated().check(trajectory, Context(task=task, env=env))
        assert result.final_state_hash == task.expected_state_hash
    assert verdicts[None].passed, verdicts[None].reason
    assert not verdicts["omit_outputs"].passed and f"owed {task.owed}" in verdicts["omit_outputs"].reason
