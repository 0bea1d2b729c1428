"""Validation stage 1 of a blueprint: rules written as code, before any reviewer spends a token.

APIGen-MT's first gate. Cheap and exact, so it runs first and its reason is
concrete enough to hand back to the writer as feedback:

- **format**: every call names a tool of the domain, with schema-valid arguments;
- **execution**: run on a fresh environment, no call errors, every write changes
  the state, and the state diff is recorded for the reviewers;
- **policy**: the domain's own checkable policy (e.g. no write before the user is
  authenticated), applied to the dialogue skeleton the blueprint implies;
- **outputs**: every expected output can be read in some tool result, or the
  assistant could never say it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from generators.base import SynthesisError
from schemas import Action, Message, Task, ToolCall, UserAction
from simulators.environment import Environment, ToolFault, is_error, validate_arguments
from simulators.text import normalize

STAGES = ("format", "execution", "policy", "outputs")


class RuleViolation(SynthesisError):
    """A blueprint that failed one rule; ``stage`` is one of ``STAGES`` (or ``committee``)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class Execution:
    """What running the gold actions did: each result, the state diff, the final state hash."""

    results: list[str]
    diff: dict[str, dict[str, Any]]
    final_hash: str


def execute_gold(env: Environment, gold: list[Action], user: str | None = None) -> Execution:
    """Run ``gold`` on a fresh copy of ``env``; an error or a write that changes nothing is a violation.

    ``user`` is whose device the user-side actions (dual control) act on.
    """
    env = env.fresh()
    results: list[str] = []
    for n, action in enumerate(gold):
        spec = env.spec_of(action)
        # A write whose effect the state cannot show (an MCP server whose state is not captured) is not checked.
        seen = spec is not None and spec.writes and env.unverified({action.name}) is None
        before = env.state_hash() if seen else None
        try:
            result = env.run_actions([action], user=user)[0]
        except ToolFault as err:  # the server broke, not the blueprint: not a rule the writer can fix
            raise SynthesisError(f"action {n} ({action.name}): {err}", fault="tool") from None
        if is_error(result):
            raise RuleViolation("execution", f"action {n} ({action.name}) failed: {result}")
        if before is not None and env.state_hash() == before:
            raise RuleViolation("execution", f"action {n} ({action.name}) is a write that left the state unchanged")
        results.append(result)
    execution = Execution(results=results, diff=env.db.diff(), final_hash=env.state_hash())
    env.close()
    return execution


def check_format(env: Environment, gold: list[Action]) -> None:
    specs = env.specs()
    if not gold:
        raise RuleViolation("format", "no gold actions")
    for n, action in enumerate(gold):
        spec = specs.get(action.name) if action.actor == "assistant" else env.spec_of(action)
        if spec is None:
            raise RuleViolation("format", f"action {n}: unknown {'user-side ' * (action.actor == 'user')}tool "
                                f"{action.name!r}")
        problem = validate_arguments(spec.validator, action.arguments)
        if problem:
            raise RuleViolation("format", f"action {n} ({action.name}): {problem}")


def skeleton_messages(env: Environment, task: Task, results: list[str]) -> list[Message]:
    """The dialogue a blueprint implies at its barest: the user identifies, confirms each write, calls run in order.

    Checking the domain policy on this catches what no dialogue could repair
    (a write before authentication, a write on another customer's order).
    """
    return skeleton(env, task.gold_actions, results, task.scenario.identity, _requests_said(task))[0]


def _requests_said(task: Task) -> str:
    return " ".join(f"{r.opening} {r.details}" for r in task.scenario.requests)


def skeleton(env: Environment, gold: list[Action], results: list[str], identity: str = "", said: str = ""
             ) -> tuple[list[Message], list[UserAction]]:
    """``skeleton_messages`` with the user's own actions (dual control): each asked for, done, then reported.

    ``said`` is what the user asks for (a policy may require the user to ask, as for compensation).
    """
    messages = [Message(role="system", content=env.policy)]
    if identity or said:  # where nobody signs in and nothing is said yet, the first message is the first request's
        messages.append(Message(role="user", content=" ".join(t for t in (identity, said) if t)))
    actions: list[UserAction] = []
    for n, (action, result) in enumerate(zip(gold, results, strict=True)):
        call = ToolCall.make(f"call_{n}", action.name, action.arguments)
        if action.actor == "user":
            messages.append(Message(role="assistant", content=f"Please use {action.name} on your device."))
            actions.append(UserAction(at=len(messages), call=call, result=result))
            messages.append(Message(role="user", content="Done."))
            continue
        if env.specs()[action.name].writes:
            messages += [Message(role="assistant", content=f"I will run {action.name}. Shall I proceed?"),
                         Message(role="user", content="Yes.")]
        messages += [Message(role="assistant", tool_calls=[call]),
                     Message(role="tool", tool_call_id=call.id, content=result)]
    return messages, actions


def skeleton_violations(env: Environment, gold: list[Action], results: list[str], user: str | None = None,
                        identity: str = "", said: str = "") -> list[str]:
    """The domain policy on the bare dialogue a blueprint implies (see ``skeleton``)."""
    messages, actions = skeleton(env, gold, results, identity, said)
    if env.user_specs():
        return env.check_policy(messages, user_actions=actions, user=user)
    return env.check_policy(messages)


_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[float]:
    return {abs(float(n.replace(",", ""))) for n in _NUMBER.findall(text)}


def grounded(output: str, results: str) -> bool:
    """An output the assistant could read off the results: its numbers among theirs ("$63.54" in
    ``-63.54``), or, for an output without numbers, its words."""
    numbers = _numbers(output)
    if numbers:
        return numbers <= _numbers(results)
    return normalize(output) in normalize(results)


def check_rules(env: Environment, task: Task) -> Execution:
    """All of stage 1, in order; the first violation is raised with its stage."""
    check_format(env, task.gold_actions)
    execution = execute_gold(env, task.gold_actions, user=task.user)
    if any(env.spec_of(a).writes and env.unverified({a.name}) is None for a in task.gold_actions) \
            and not execution.diff:
        raise RuleViolation("execution", "a write task whose actions leave no state diff")
    violations = skeleton_violations(env, task.gold_actions, execution.results, task.user, task.scenario.identity,
                                     _requests_said(task))
    if violations:
        raise RuleViolation("policy", "; ".join(violations))
    seen = " ".join(execution.results)
    missing = [o for o in task.expected_outputs if not grounded(o, seen)]
    if missing:
        raise RuleViolation("outputs", f"expected output {missing[0]!r} appears in no tool result")
    return execution
