"""Skeleton + mask-and-fill refinement (ToolACE-MT style): one model request per dialogue.

Turn-by-turn simulation pays one request per user turn and per assistant step.
Here the scripted agents build the whole dialogue offline (the skeleton: its
tool calls are the gold ones and already ran on a real environment), a seeded
plan masks some user turns (and optionally assistant text turns), may insert a
clarification exchange or a user correction, and a single structured-output
request fills every slot at once. The model never writes a tool call or a tool
result; those stay the skeleton's, and every tool result is recomputed on a
fresh environment afterwards, so the usual filter chain (format, execution,
policy, outcome, required outputs ...) judges the refined dialogue exactly
like any other.

Before that, a cheap check compares the "facts" (ids, numbers, emails,
amounts) of each rewritten turn with its original: a fill that drops one, or
invents one the dialogue never mentioned, is a ``RolloutError`` that names the
turn, because an id that silently changed would make the tool calls that
follow it unjustified.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import fastjsonschema

from schemas import Message, Task, Usage, UserAction
from schemas.config import RefineConfig
from simulators.agents import STOP, AssistantAgent, UserAgent
from simulators.backends import Endpoint, TruncatedReply
from simulators.conversation import Rollout, RolloutError, rollout
from simulators.environment import Environment
from simulators.model_agents import chat_params
from simulators.structured_output import json_object
from simulators.text import facts

Kind = Literal["rewrite", "clarify_question", "clarify_answer", "correction_wrong", "correction_check",
               "correction_fix"]

# The refiner writes the customer's side of the dialogue: a reply it botches is the user simulator's failure
# (a botched assistant slot is the assistant's).
REFINER = "user"
SLOTS_HEADER = "SLOTS:"  # the slot list follows this line as JSON (machine-readable for any model or test double)
RESULT_CHARS = 300  # tool results are shown shortened: context for the writer, not material to copy

FILLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"fills": {"type": "array", "items": {
        "type": "object",
        "properties": {"slot": {"type": "integer"}, "text": {"type": "string"}},
        "required": ["slot", "text"], "additionalProperties": False}}},
    "required": ["fills"], "additionalProperties": False,
}
_validate_fills = fastjsonschema.compile(FILLS_SCHEMA)
FILL_CHARS = 600  # a turn, not an essay


def fills_schema(slots: list[Slot]) -> dict[str, Any]:
    """The reply asked for: exactly one fill per slot, of bounded length. A server with guided decoding then
    ends the JSON when the slots are filled (small models otherwise add fills, or one endless text, until
    ``max_tokens`` cuts them off); the reply is still checked against ``FILLS_SCHEMA`` and the slots."""
    item = {"type": "object", "properties": {"slot": {"type": "integer", "enum": [s.number for s in slots]},
                                             "text": {"type": "string", "minLength": 1, "maxLength": FILL_CHARS}},
            "required": ["slot", "text"], "additionalProperties": False}
    return {"type": "object", "properties": {"fills": {"type": "array", "items": item, "minItems": len(slots),
                                                       "maxItems": len(slots)}},
            "required": ["fills"], "additionalProperties": False}


INSTRUCTIONS: dict[str, str] = {
    "rewrite_user": "Rewrite this customer message in the customer's own voice (the persona): natural, not "
                    "templated, same meaning and same request. Keep every item of `keep` exactly as written.",
    "consent": "This is the customer's answer to the assistant's request for permission: it must begin with an "
               "explicit yes (e.g. 'Yes, ...').",
    "rewrite_assistant": "Rephrase this assistant message naturally and politely, same meaning. Keep every item of "
                         "`keep` exactly as written; a question stays a question, and a request for permission still "
                         "asks whether to proceed.",
    "clarify_question": "A new assistant message: a short clarifying question about the customer's previous message "
                        "(no tool use, no promise, no request for permission).",
    "clarify_answer": "The customer answers that clarifying question briefly, restating what they meant; no new "
                      "details.",
    "correction_wrong": "The customer says the same as the original, but gets exactly one item of `keep` wrong "
                        "(a typo or a mix-up, e.g. one digit changed).",
    "correction_check": "A new assistant message: read the detail back and ask the customer to double-check it "
                        "(no tool use).",
    "correction_fix": "The customer apologises and corrects the detail: the message must contain every item of "
                      "`keep` exactly as written.",
}


def folded(items: set[str] | list[str]) -> set[str]:
    return {item.casefold() for item in items}


@dataclass
class Slot:
    """One text the model writes: a masked turn (``original`` set) or an inserted one."""

    number: int
    role: Literal["user", "assistant"]
    kind: Kind
    instruction: str
    original: str | None = None
    keep: list[str] = field(default_factory=list)
    source: int | None = None  # the index of the skeleton message it rewrites (None: an inserted turn)


@dataclass
class Refiner:
    """The refining model of one dialogue: its endpoint, settings, usage meter and seeded slot planner."""

    endpoint: Endpoint
    role: RefineConfig
    meter: Usage
    rng: random.Random


async def refine_rollout(task: Task, env: Environment, user: UserAgent, assistant: AssistantAgent,
                         refiner: Refiner, max_turns: int = 40, transcript: list[Message] | None = None) -> Rollout:
    """Skeleton from the scripted ``user``/``assistant`` on ``env`` (fresh, mutated), refined by one request,
    then every tool call re-executed on another fresh environment.

    ``transcript`` holds the evidence if refinement fails: the skeleton, then the refined dialogue once the
    fills are in (so a fill that dropped a fact is seen in place).
    """
    transcript = transcript if transcript is not None else []
    skeleton = await rollout(task, env, user, assistant, max_turns=max_turns, transcript=transcript)
    plan, slots = _plan(skeleton.messages, env, refiner.rng, refiner.role)
    fills = await _fill(task, plan, slots, refiner)
    messages = _assemble(plan, fills)
    transcript[:] = messages
    _check_facts(skeleton.messages, plan, slots, fills)
    return _reexecute(messages, env.fresh(task.env_seed), _moved(skeleton, plan), task.user)


# -- 1. which turns the model writes ------------------------------------------------------------------------------

Plan = list["Message | Slot"]


def _plan(messages: list[Message], env: Environment, rng: random.Random, cfg: RefineConfig) -> tuple[Plan, list[Slot]]:
    """The refined dialogue's layout: kept messages and slots, in order; slots numbered as they appear."""
    specs = env.specs()
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    texts = [i for i, m in enumerate(messages) if m.role == "assistant" and m.content and not m.tool_calls]
    consent = {i for i in users if _precedes_write(messages, i, specs)}
    masked = set(rng.sample(users, max(1, round(cfg.mask_rate * len(users))))) if users else set()
    masked_assistant = set(rng.sample(texts, round(cfg.assistant_mask_rate * len(texts))))
    # Insertions follow a user turn that is not a consent (so no exchange lands between a confirmation question
    # and the yes, nor between a yes and its write) and not the last turn; tool runs are never split.
    open_points = [i for i in users if i not in consent and i != len(messages) - 1]
    clarify = rng.choice(open_points) if open_points and rng.random() < cfg.clarify_rate else None
    correctable = [i for i in open_points if i != clarify and facts(messages[i].content or "")]
    correction = rng.choice(correctable) if correctable and rng.random() < cfg.correction_rate else None

    plan: Plan = []
    slots: list[Slot] = []

    def slot(role: Literal["user", "assistant"], kind: Kind, instruction: str, original: str | None = None,
             keep: set[str] | None = None, source: int | None = None) -> None:
        s = Slot(len(slots), role, kind, instruction, original, sorted(keep or ()), source)
        slots.append(s)
        plan.append(s)

    for i, m in enumerate(messages):
        text = m.content or ""
        if i == correction:
            slot("user", "correction_wrong", INSTRUCTIONS["correction_wrong"], text, facts(text), source=i)
            slot("assistant", "correction_check", INSTRUCTIONS["correction_check"])
            slot("user", "correction_fix", INSTRUCTIONS["correction_fix"], text, facts(text))
        elif i in masked:
            extra = " " + INSTRUCTIONS["consent"] if i in consent else ""
            slot("user", "rewrite", INSTRUCTIONS["rewrite_user"] + extra, text, facts(text), source=i)
        elif i in masked_assistant:
            slot("assistant", "rewrite", INSTRUCTIONS["rewrite_assistant"], text, facts(text), source=i)
        else:
            plan.append(m)
        if i == clarify:
            slot("assistant", "clarify_question", INSTRUCTIONS["clarify_question"])
            slot("user", "clarify_answer", INSTRUCTIONS["clarify_answer"])
    return plan, slots


def _precedes_write(messages: list[Message], i: int, specs: dict[str, Any]) -> bool:
    """A user turn answered at once by a writing tool call: the customer's consent to that write."""
    nxt = messages[i + 1] if i + 1 < len(messages) else None
    return bool(nxt is not None and nxt.tool_calls and any(
        (spec := specs.get(c.function.name)) is not None and spec.writes for c in nxt.tool_calls))


# -- 2. one request fills every slot --------------------------------------------------------------------------------

SYSTEM = (
    "You refine synthetic customer-support dialogues. The dialogue below is complete except for numbered slots "
    "(<<SLOT n>>). Write the text of every slot so that the whole dialogue reads like a real conversation: the "
    "customer speaks as the persona, the assistant stays professional. Never invent ids, numbers, emails, "
    "amounts or names that the dialogue does not contain. Tool calls and results are fixed; do not describe new "
    'ones. Reply with JSON only: {"fills": [{"slot": 0, "text": "..."}, ...]}, one entry per slot.'
)


def _render(task: Task, plan: Plan, slots: list[Slot]) -> str:
    lines = []
    for n, item in enumerate(plan[1:], 1):  # the system prompt (policy) is not shown
        if isinstance(item, Slot):
            who = "customer" if item.role == "user" else "assistant"
            lines.append(f"[{n}] {who}: <<SLOT {item.number}>>")
        elif item.role == "user":
            lines.append(f"[{n}] customer: {item.content}")
        elif item.role == "assistant" and item.tool_calls:
            calls = "; ".join(f"{c.function.name}({c.function.arguments})" for c in item.tool_calls)
            lines.append(f"[{n}] assistant calls {calls}")
        elif item.role == "assistant":
            lines.append(f"[{n}] assistant: {item.content}")
        elif item.role == "tool":
            result = item.content or ""
            lines.append(f"[{n}] tool result: {result[:RESULT_CHARS]}{' ...' if len(result) > RESULT_CHARS else ''}")
    spec = [{"slot": s.number, "speaker": "customer" if s.role == "user" else "assistant", "kind": s.kind,
             "instruction": s.instruction, "original": s.original, "keep": s.keep} for s in slots]
    return (f"Persona of the customer: {task.scenario.persona}\nThe customer's goal: {task.scenario.instruction}\n\n"
            "Dialogue:\n" + "\n".join(lines) + f"\n\n{SLOTS_HEADER}\n{json.dumps(spec, ensure_ascii=False)}")


async def _fill(task: Task, plan: Plan, slots: list[Slot], refiner: Refiner) -> dict[int, str]:
    prompt = [Message(role="system", content=SYSTEM), Message(role="user", content=_render(task, plan, slots))]
    fmt = {"type": "json_schema", "json_schema": {"name": "dialogue_fills", "schema": fills_schema(slots)}}
    role = refiner.role
    budget = role.retry_max_tokens if role.retry_max_tokens is not None else \
        (2 * role.max_tokens if role.max_tokens else None)
    try:
        reply = await refiner.endpoint.chat(prompt, None, chat_params(role, response_format=fmt), refiner.meter,
                                            retry_max_tokens=budget)
    except TruncatedReply as err:
        raise RolloutError(f"truncated: the refiner's reply was cut off at {err.limit}", fault=REFINER) from None
    text = reply.content or ""
    try:
        data = _validate_fills(json.loads(json_object(text)))
    except ValueError as err:  # JSONDecodeError and JsonSchemaException are both ValueErrors
        raise RolloutError(f"refine: the reply is not the fills JSON ({str(err)[:120]}): {text[:80]!r}",
                           fault=REFINER) from None
    fills: dict[int, str] = {}
    for fill in data["fills"]:
        number, said = fill["slot"], fill["text"].replace(STOP, "").strip()
        if not 0 <= number < len(slots):
            raise RolloutError(f"refine: fill for unknown slot {number}", fault=REFINER)
        if number in fills:
            raise RolloutError(f"refine: slot {number} filled twice", fault=REFINER)
        if not said:
            raise RolloutError(f"refine: slot {number} filled with empty text", fault=REFINER)
        fills[number] = said
    missing = [s.number for s in slots if s.number not in fills]
    if missing:
        raise RolloutError(f"refine: no fill for slot(s) {', '.join(map(str, missing))}", fault=REFINER)
    return fills


def _assemble(plan: Plan, fills: dict[int, str]) -> list[Message]:
    return [Message(role=item.role, content=fills[item.number]) if isinstance(item, Slot) else item for item in plan]


# -- 3. cheap offline checks, then re-execution ---------------------------------------------------------------------


def _check_facts(skeleton: list[Message], plan: Plan, slots: list[Slot], fills: dict[int, str]) -> None:
    """Every fact of a rewritten original survives; no turn brings a fact the speaker could not know."""
    said = folded(set().union(*(facts(m.content or "") for m in skeleton if m.role in ("user", "assistant"))))
    seen = said | folded(set().union(*(facts(m.content or "") for m in skeleton if m.role == "tool"),
                                     *(facts(c.function.arguments) for m in skeleton for c in m.tool_calls or [])))
    wrong = folded(set().union(*(facts(fills[s.number]) for s in slots if s.kind == "correction_wrong")))
    turn = {item.number: n for n, item in enumerate(plan) if isinstance(item, Slot)}
    for s in slots:
        got, n = folded(facts(fills[s.number])), turn[s.number]
        if s.kind == "correction_wrong":
            if got == folded(s.keep):
                raise RolloutError(f"refined turn {n}: the correction's first statement gets no detail wrong", fault=s.role)
            continue
        dropped = [f for f in s.keep if f.casefold() not in got]
        if dropped and s.kind in ("rewrite", "correction_fix"):
            raise RolloutError(f"refined turn {n} dropped {dropped[0]!r}", fault=s.role)
        allowed = (seen if s.role == "assistant" else said) | (wrong if s.kind.startswith("correction") else set())
        invented = sorted(f for f in facts(fills[s.number]) if f.casefold() not in allowed)
        if invented:
            raise RolloutError(f"refined turn {n} introduced {invented[0]!r}, which the dialogue never mentions", fault=s.role)


def _moved(skeleton: Rollout, plan: Plan) -> list[UserAction]:
    """The skeleton's device actions (dual control) placed in the refined layout: before the same message."""
    where: dict[int, int] = {}
    index = {id(m): i for i, m in enumerate(skeleton.messages)}
    for pos, item in enumerate(plan):
        source = item.source if isinstance(item, Slot) else index.get(id(item))
        if source is not None:
            where.setdefault(source, pos)
    end = len(skeleton.messages)
    return [a.model_copy(update={"at": where.get(a.at, len(plan)) if a.at < end else len(plan)})
            for a in skeleton.user_actions]


def _reexecute(messages: list[Message], env: Environment, user_actions: list[UserAction] = (),
               user: str | None = None) -> Rollout:
    """Tool results recomputed on a fresh environment, the user's device actions too: the refined dialogue is
    judged on what its calls do."""
    results, user_results = env.replay(messages, user_actions, user)
    out: list[Message] = []
    for m in messages:
        if m.role == "tool":
            if m.tool_call_id not in results:
                raise RolloutError(f"refined dialogue: tool result {m.tool_call_id} answers no call")
            m = Message(role="tool", tool_call_id=m.tool_call_id, content=results[m.tool_call_id])
        out.append(m)
    actions = [a.model_copy(update={"result": r}) for a, r in zip(user_actions, user_results, strict=True)]
    return Rollout(messages=out, final_state_hash=env.state_hash(), user_actions=actions)
