"""A task of a dataset version as a resettable RL environment whose reward is the verifier that accepted it.

``TaskEnvironment.from_row(row)`` rebuilds, from one exported ``rl`` row, the
stateful domain at the task's initial state (``env_config`` names the domain
and its parameters; ``task`` the seed, scenario and gold), the simulated user
(the kind's scripted user, or any ``UserAgent`` such as the LLM user), and the
kind's verifiers. The loop is the one generation ran (``simulators.conversation``):

- ``reset()`` → the opening messages (system policy, the user's first turn);
  ``tools`` are the OpenAI schemas offered;
- ``step(assistant_message)`` → with tool calls: their results, executed on the
  domain and validated exactly as in generation (a malformed or unknown call
  comes back as an ``Error: ...`` result, never an exception); without: the
  user's next turn, ``done`` once the user ends the dialogue;
- ``reward()`` → 1.0 when every verifier of the kind passes and the rollout
  kept the domain's checkable policy (the ``policy`` filter: authentication,
  the user's explicit yes before each write, ownership), else 0.0, with each
  verdict and the first failure's reason (the same words the filters write
  into a rejected row). ``policy=False`` leaves the policy out, for versions
  made by runs without the policy filter.

A policy in training emits anything, so nothing it sends raises: a message
that is not an assistant message, a call after the end, or a rollout past its
step budget is an observation with ``error`` set (the last two end the episode).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipelines.reward import averify_trajectory
from pipelines.rl.bundle import resolve_files
from schemas import Message, Task, Trajectory, UserAction, Verdict
from simulators.agents import STOP, UserAgent
from simulators.conversation import RolloutError, user_turn
from simulators.environment import DOMAINS, Environment
from simulators.kinds import kind_of

UserFactory = Callable[[Task], UserAgent]
_LOOPS = threading.local()
MAX_MESSAGE_CHARS = 64_000  # an assistant message longer than this is refused (a runaway generation)


def scripted_user(task: Task, env: Environment | None = None) -> UserAgent:
    """The task kind's offline user, seeded by the task: deterministic, free, needs no model.
    ``env`` is the episode's domain, which a dual-control user acts on (``TaskEnvironment`` passes it)."""
    return kind_of(task).scripted_user(task, env)


@dataclass
class Observation:
    """What the environment answers one assistant message with."""

    messages: list[dict[str, Any]]  # tool results or the user's turn, role-exact OpenAI messages
    done: bool
    error: str | None = None  # why the message was refused (nothing ran), or why the episode ended early

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "done": self.done, "error": self.error}


@dataclass
class Reward:
    """The outcome reward and what it is made of: one entry per verifier of the task's kind."""

    value: float
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None  # the first failing verifier's reason, as a rejected row would carry it

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "components": self.components, "reason": self.reason}


def build_domain(environment: dict[str, Any], root: str | Path | None = None) -> type[Environment]:
    """The domain class a row's ``environment`` names, bound to its parameters (bundled files under ``root``)."""
    domain = DOMAINS.get(environment["domain"])
    params = resolve_files(environment, Path(root or "."))
    return domain.configure(domain.Params.model_validate(params))


class TaskEnvironment:
    """One episode of one task; ``reset()`` starts it again from the task's initial state."""

    def __init__(self, task: Task, domain: type[Environment], user: UserFactory = scripted_user,
                 max_turns: int = 40, max_steps_per_turn: int = 12, opening: str | None = None,
                 policy: bool = True) -> None:
        self.task = task
        self.policy = policy
        # the exported prompt's user turn: the trainer's prompt and the episode open with the same words
        self.opening = opening
        self.domain = domain
        self.user_factory = user
        self.max_turns = max_turns
        self.max_steps_per_turn = max_steps_per_turn
        self.tools = [t.model_dump(mode="json") for t in domain.tools()]
        self.env = domain(task.env_seed)
        self.messages: list[Message] = []
        self.user_actions: list[UserAction] = []  # dual control: what the simulated user did on their own device
        self.done, self.end_reason = True, "not started"

    @classmethod
    def from_row(cls, row: dict[str, Any], user: UserFactory = scripted_user, root: str | Path | None = None,
                 policy: bool = True, **limits: int) -> TaskEnvironment:
        """The environment of an exported ``rl`` row (as ``datasets`` or pyarrow returns it).

        ``root`` is the export folder, where files the domain's parameters name
        were bundled (``environment/``); a row without bundled files needs none.
        """
        missing = [k for k in ("env_config", "task") if not row.get(k)]
        if missing:
            raise ValueError(f"row {row.get('id')}: no {' or '.join(missing)} column; export it again with this "
                             f"trajforge to get an rl view that rebuilds its environment")
        environment, task = (json.loads(row[k]) if isinstance(row[k], str) else row[k] for k in ("env_config", "task"))
        prompt = row.get("prompt") or []
        prompt = json.loads(prompt) if isinstance(prompt, str) else prompt
        # one JSON text per message where pyarrow read the column, or the export was made with --json-as-text
        prompt = [json.loads(m) if isinstance(m, str) else m for m in prompt]
        opening = next((m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"), None)
        return cls(Task.model_validate(task), build_domain(environment, root), user=user, opening=opening,
                   policy=policy, **limits)

    # -- the episode -----------------------------------------------------------------------------------------
    def reset(self) -> list[dict[str, Any]]:
        """Start over: a fresh domain at the task's seed, a fresh user; the opening messages."""
        return self._run(self.areset())

    async def areset(self) -> list[dict[str, Any]]:
        self.env = self.domain(self.task.env_seed)
        self.user = (scripted_user(self.task, self.env) if self.user_factory is scripted_user
                     else self.user_factory(self.task))
        self.messages: list[Message] = [Message(role="system", content=self.env.policy)]
        self.user_actions = []
        self.done = False
        self.turns = 0
        self.steps_this_turn = 0
        self.end_reason: str | None = None
        opening = await self._user_turn()
        if self.opening and opening.messages and self.messages[-1].role == "user":
            self.messages[-1] = Message(role="user", content=self.opening)
            opening.messages[-1] = self.messages[-1].to_openai()
        return [m.to_openai() for m in self.messages[:1]] + opening.messages

    def step(self, message: dict[str, Any] | Message) -> Observation:
        """The environment's answer to one assistant message (see the module docstring)."""
        return self._run(self.astep(message))

    async def astep(self, message: dict[str, Any] | Message) -> Observation:
        """``step`` for callers already inside an event loop (the HTTP server)."""
        if self.done:
            return Observation([], True, f"episode is over ({self.end_reason}); reset to start one")
        parsed, problem = _assistant_message(message)
        if parsed is None:
            return Observation([], False, problem)
        self.messages.append(parsed)
        if parsed.tool_calls:
            self.steps_this_turn += 1
            if self.steps_this_turn > self.max_steps_per_turn:
                return self._end(f"more than {self.max_steps_per_turn} tool steps in one turn")
            out = []
            for call in parsed.tool_calls:
                result = self.env.execute_call(call)
                self.messages.append(Message(role="tool", tool_call_id=call.id, name=call.function.name,
                                             content=result))
                out.append(self.messages[-1].to_openai())
            return Observation(out, False)
        return await self._user_turn()

    async def _user_turn(self) -> Observation:
        if self.turns >= self.max_turns:
            return self._end(f"dialogue did not end within {self.max_turns} turns")
        self.turns += 1
        self.steps_this_turn = 0
        try:  # in a dual-control domain the user may act on their phone first, then speak
            said = await user_turn(self.task, self.env, self.user, self.messages, self.user_actions,
                                   self.max_steps_per_turn)
        except RolloutError as err:
            return self._end(str(err))
        text = (said.content or "").replace(STOP, "").strip()
        out = []
        if text:
            self.messages.append(Message(role="user", content=text))
            out.append(self.messages[-1].to_openai())
        if STOP in (said.content or ""):
            self.done, self.end_reason = True, "the user ended the dialogue"
        return Observation(out, self.done)

    def _end(self, reason: str) -> Observation:
        self.done, self.end_reason = True, reason
        return Observation([], True, reason)

    @staticmethod
    def _run(coro):
        """Run a coroutine to its end on this thread's loop (kept: ``asyncio.run``'s set-up per step costs more
        than a scripted step). Callers inside a running loop use the ``a``-methods instead."""
        loop = getattr(_LOOPS, "loop", None)
        if loop is None or loop.is_closed():
            loop = _LOOPS.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)

    # -- the reward ------------------------------------------------------------------------------------------
    def trajectory(self) -> Trajectory:
        return Trajectory(task_id=self.task.id, domain=self.task.domain, kind=self.task.kind,
                          messages=list(self.messages), tools=self.domain.tools(),
                          user_tools=self.domain.user_tools(), user_actions=list(self.user_actions),
                          final_state_hash=self.env.state_hash())

    def reward(self) -> Reward:
        """The policy and the kind's verifiers on the dialogue so far (call it when ``done``; earlier it scores a
        partial one). Components in that order, the run's filter order; ``reason`` is the first failure's."""
        return self._run(self.areward())

    async def areward(self) -> Reward:
        verdicts: list[Verdict] = await averify_trajectory(self.task, self.trajectory(), self.domain(self.task.env_seed),
                                                           also=("policy",) if self.policy else ())
        failed = next((v for v in verdicts if not v.passed), None)
        return Reward(value=0.0 if failed or not verdicts else 1.0,
                      components={v.stage: {"passed": v.passed, "reason": v.reason} for v in verdicts},
                      reason=failed.reason if failed else None)

    def transcript(self) -> list[dict[str, Any]]:
        return [m.to_openai() for m in self.messages]


def _assistant_message(message: Any) -> tuple[Message | None, str | None]:
    """The policy's message as an assistant ``Message``, or None and one line saying why it is not one.

    Tool-call arguments may be an object or its JSON text; text that is not
    JSON is kept as sent, so the domain answers it as generation would
    (``Error: arguments are not valid JSON``).
    """
    if isinstance(message, Message):
        message = message.model_dump(exclude_none=True)
    if not isinstance(message, dict):
        return None, f"a step takes an assistant message (a JSON object), got {type(message).__name__}"
    if message.get("role", "assistant") != "assistant":
        return None, f"a step takes an assistant message, got role {message.get('role')!r}"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return None, "content: must be a string"
    if len(content or "") > MAX_MESSAGE_CHARS:
        return None, f"content: {len(content)} characters, more than the {MAX_MESSAGE_CHARS} allowed"
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        return None, "tool_calls: must be a list"
    fixed = []
    for n, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None, f"tool_calls[{n}].function.name: missing"
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        if len(arguments) > MAX_MESSAGE_CHARS:
            return None, f"tool_calls[{n}].function.arguments: more than {MAX_MESSAGE_CHARS} characters"
        fixed.append({"id": str(call.get("id") or f"call_{n}"), "type": "function",
                      "function": {"name": function["name"], "arguments": arguments}})
    if not content and not fixed:
        return None, "an assistant message needs content or tool_calls"
    try:
        return Message(role="assistant", content=content, tool_calls=fixed or None), None
    except ValidationError as err:
        return None, f"not an assistant message: {err.errors()[0]['msg']}"
