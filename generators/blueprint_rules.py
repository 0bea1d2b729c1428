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
from schemas import Action, Message, Task, ToolCall
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


def execute_gold(env: Environment, gold: list[Action]) -> Execution:
    """Run ``gold`` on a fresh copy of ``env``; an error or a write that changes nothing is a violation."""
    env = env.fresh()
    results: list[str] = []
    for n, action in enumerate(gold):
        # A write whose effect the state cannot show (an MCP server whose state is not captured) is not checked.
        seen = env.specs()[action.name].writes and env.unverified({action.name}) is None
        before = env.state_hash() if seen else None
        try:
            result = env.execute(action.name, action.arguments)
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
        spec = specs.get(action.name)
        if spec is None:
            raise RuleViolation("format", f"action {n}: unknown tool {action.name!r}")
        problem = validate_arguments(spec.validator, action.arguments)
        if problem:
            raise RuleViolation("format", f"action {n} ({action.name}): {problem}")


def skeleton_messages(env: Environment, task: Task, results: list[str]) -> list[Message]:
    """The dialogue a blueprint implies at its barest: the user identifies, confirms each write, calls run in order.

    Checking the domain policy on this catches what no dialogue could repair
    (a write before authentication, a write on another customer's order).
    """
    messages = [Message(role="system", content=env.policy)]
    if task.scenario.identity:
        messages.append(Message(role="user", content=task.scenario.identity))
    for n, (action, result) in enumerate(zip(task.gold_actions, results, strict=True)):
        if env.specs()[action.name].writes:
            messages += [Message(role="assistant", content=f"I will run {action.name}. Shall I proceed?"),
                         Message(role="user", content="Yes.")]
        call = ToolCall.make(f"call_{n}", action.name, action.arguments)
        messages += [Message(role="assistant", tool_calls=[call]),
                     Message(role="tool", tool_call_id=call.id, content=result)]
    return messages


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
    execution = execute_gold(env, task.gold_actions)
    if any(env.specs()[a.name].writes and env.unverified({a.name}) is None for a in task.gold_actions) \
            and not execution.diff:
        raise RuleViolation("execution", "a write task whose actions leave no state diff")
    violations = env.check_policy(skeleton_messages(env, task, execution.results))
    if violations:
        raise RuleViolation("policy", "; ".join(violations))
    seen = " ".join(execution.results)
    missing = [o for o in task.expected_outputs if not grounded(o, seen)]
    if missing:
        raise RuleViolation("outputs", f"expected output {missing[0]!r} appears in no tool result")
    return execution
