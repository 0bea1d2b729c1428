"""Model-backed agents: the user simulator, the assistant and the tool simulator.

They speak the same protocols as the scripted agents (``simulators.agents``),
so the conversation loop cannot tell them apart. Nothing a model returns is
executed or trusted: tool calls keep their raw argument text and are checked
by the environment and the format filter; simulated tool results are checked
against the tool's result schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import fastjsonschema

from schemas import (
    AssistantRoleConfig,
    Message,
    RoleConfig,
    Task,
    Tool,
    Usage,
    UserAction,
    UserRoleConfig,
    canonical_json,
)
from simulators.agents import STOP
from simulators.backends import ChatParams, Endpoint, TruncatedReply
from simulators.conversation import RolloutError
from simulators.tool_simulator import SimulatedCall

GREETING = "Hi! How can I help you today?"
REMINDER = "[Reminder, not part of the chat:"
_REMINDER_ECHO = re.compile(re.escape(REMINDER) + r".*?(?:\]|$)", re.S)
TOOL_SIMULATOR_ERROR = "Error: the tool simulator's"  # how every result the tool simulator could not give begins


def chat_params(role: RoleConfig, **more: Any) -> ChatParams:
    return ChatParams(temperature=role.temperature, top_p=role.top_p, max_tokens=role.max_tokens, seed=role.seed,
                      extra_body=dict(role.extra_body), **more)


DEVICE_RULES = (
    "\n\nYou hold your own device, and the tools you are given act on it (check a status, toggle a setting, "
    "restart). Use a tool only when the assistant asks you to do that on your device, or to look at something "
    "you would naturally look at; then tell the assistant in plain words what you did and what you saw. Never "
    "claim to have done something you did not do with a tool, and never describe results you have not seen.")


def user_system_prompt(task: Task, device: bool = False) -> str:
    s = task.scenario
    known = "\n".join(f"- {k}: {v}" for k, v in s.known_info.items()) or "- (nothing beyond your goal)"
    unknown = "\n".join(f"- {u}" for u in s.unknown_info) or "- anything not listed above"
    return (
        "You are role-playing a user who is chatting with an assistant (customer service, a search assistant, ...). "
        "You are the user, never the assistant.\n\n"
        f"Persona: {s.persona}\n\n"
        f"Your goal: {s.instruction}\n\n"
        f"What you know (reveal it a piece at a time, only when it is needed or asked for; never all at once):\n{known}\n"
        f"How you prove who you are, when asked: {s.identity}\n\n"
        f"What you do not know (if asked, say you don't know; never make it up):\n{unknown}\n\n"
        "Rules: write only the customer's next message, short and natural. Bring up one request at a time. "
        "Do not invent names, numbers or details that are not given above. Answer a question about a change "
        "with a clear yes only if it matches your goal. When every request is handled, or cannot be handled, "
        f"say a brief goodbye and end that message with {STOP}."
        + (DEVICE_RULES if device else "")
    )


def simulator_instructions(task: Task) -> list[tuple[str, str, int]]:
    """What the user simulator is told and must never say back, as ``(what, text, n)``: a user turn that shares
    ``n`` consecutive words with ``text`` echoes it (``filters.leaks``). The prompt's own wording is matched on
    short spans; the goal only on long ones, since a customer naturally restates it in their own words."""
    s = task.scenario
    blank = task.model_copy(update={"scenario": s.model_copy(update={
        "persona": "", "instruction": "", "known_info": {}, "unknown_info": [], "identity": ""})})
    return [("the user simulator's prompt", user_system_prompt(blank), 5),
            ("the reminder", f"{REMINDER} you are the user. Your goal: Reveal only what is asked. End with {STOP} "
                             "when done.]", 4),
            ("the persona", s.persona, 6),
            ("the scenario's instruction", s.instruction, 8)]


class LLMUser:
    """A user simulator: sees the dialogue from the customer's side, with roles swapped.

    Dual control: given ``tools`` (the user's own, on their device), it may call
    them; in its view its own calls are assistant tool calls and their results
    tool messages, placed where they happened, so a chat template renders the
    user simulator's side like any tool-using agent's.
    """

    is_model = True  # a dialogue it never ends is its failure (``conversation.rollout``)

    def __init__(self, task: Task, endpoint: Endpoint, role: UserRoleConfig, meter: Usage,
                 tools: list[Tool] | None = None) -> None:
        self.endpoint, self.role, self.meter = endpoint, role, meter
        self.tools = [t.model_dump() for t in tools or []] or None
        self.system = user_system_prompt(task, device=bool(self.tools))
        self.goal = task.scenario.instruction
        self.params = chat_params(role)

    def _view(self, messages: list[Message], actions: Sequence[UserAction] = ()) -> list[Message]:
        view = [Message(role="system", content=self.system), Message(role="user", content=GREETING)]
        by_position: dict[int, list[UserAction]] = {}
        for a in actions:
            by_position.setdefault(a.at, []).append(a)
        for i, m in enumerate([*messages, None]):
            for a in by_position.get(i, []):
                view += [Message(role="assistant", tool_calls=[a.call]),
                         Message(role="tool", tool_call_id=a.call.id, content=a.result)]
            if m is None:
                break
            if m.role == "assistant" and m.content:
                view.append(Message(role="user", content=m.content))
            elif m.role == "user":
                view.append(Message(role="assistant", content=m.content))
        turns = sum(m.role == "assistant" for m in view)
        every = self.role.reminder_every
        if every and turns and turns % every == 0 and view[-1].role == "user":
            reminder = (f"\n\n{REMINDER} you are the user. Your goal: {self.goal} "
                        f"Reveal only what is asked. End with {STOP} when done.]")
            view[-1] = Message(role="user", content=(view[-1].content or "") + reminder)
        return view

    async def respond(self, messages: list[Message], actions: Sequence[UserAction] = ()) -> Message:
        try:
            reply = await self.endpoint.chat(self._view(messages, actions), self.tools, self.params, self.meter)
        except TruncatedReply as err:
            raise RolloutError(f"truncated: the user simulator's turn was cut off at {err.limit}",
                               fault="user", partial=Message(role="user", content=err.partial.content)) from None
        # A small model echoes the reminder it was given: it is an instruction, never part of the stored turn.
        return Message(role="user", content=_REMINDER_ECHO.sub("", reply.content or "").strip(),
                       tool_calls=reply.tool_calls if self.tools else None)


class LLMAssistant:
    """The assistant under simulation: the domain policy is already the dialogue's system message."""

    def __init__(self, endpoint: Endpoint, role: AssistantRoleConfig, meter: Usage) -> None:
        self.endpoint, self.meter = endpoint, meter
        self.params = chat_params(role, parallel_tool_calls=role.parallel_tool_calls)
        self._wire: tuple[list[Tool], list[dict[str, Any]]] | None = None

    def _wire_tools(self, tools: list[Tool]) -> list[dict[str, Any]]:
        """The tools as JSON, dumped once per dialogue: a rollout passes the same list every turn, and dumping
        it on every request was a visible share of the client's CPU per request (issue 21)."""
        if self._wire is None or self._wire[0] is not tools:
            self._wire = (tools, [t.model_dump() for t in tools])
        return self._wire[1]

    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        wire_tools = self._wire_tools(tools)
        try:
            reply = await self.endpoint.chat(messages, wire_tools, self.params, self.meter)
        except TruncatedReply as err:  # a cut-off turn is never accepted: half a sentence, or half a tool call
            raise RolloutError(f"truncated: the assistant's turn was cut off at {err.limit}", fault="assistant",
                               partial=err.partial) from None
        return Message(role="assistant", content=reply.content, tool_calls=reply.tool_calls,
                       reasoning_content=reply.reasoning_content)


class ModelToolSimulator:
    """Answers calls to tools that only have a schema, with a model and structured output.

    The environment validates the call and caches results per dialogue (the
    same call is never asked twice); earlier calls and results are shown to the
    model so that ids and facts stay coherent; a reply that does not parse or
    does not match the result schema becomes an error result that the
    assistant has to deal with (and the execution filter sees).
    """

    def __init__(self, endpoint: Endpoint, role: RoleConfig, meter: Usage) -> None:
        self.endpoint, self.role, self.meter = endpoint, role, meter

    async def simulate(self, request: SimulatedCall) -> str:
        tool = request.tool
        schema = request.response_schema or {"type": "object"}
        history = "\n".join(f"{name}({canonical_json(args)}) -> {result}" for name, args, result in request.history)
        prompt = [
            Message(role="system", content=(
                "You simulate a software tool. Reply with the tool's result only, as JSON matching the result "
                "schema. Be realistic and consistent with earlier results in this session (same ids, same facts).")),
            Message(role="user", content=(
                f"Tool: {tool.name}\nDescription: {tool.function.description}\n"
                f"Parameters schema: {canonical_json(tool.function.parameters)}\n"
                f"Result schema: {canonical_json(schema)}\nEarlier calls and results:\n{history or '(none)'}\n\n"
                f"Call: {tool.name}({canonical_json(request.arguments)})")),
        ]
        fmt = {"type": "json_schema", "json_schema": {"name": f"{tool.name}_result"[:64], "schema": schema}}
        try:
            reply = await self.endpoint.chat(prompt, None, chat_params(self.role, response_format=fmt), self.meter)
        except TruncatedReply as err:
            return f"{TOOL_SIMULATOR_ERROR} result was cut off at {err.limit}"
        return _checked(reply.content or "", schema)


def _checked(text: str, schema: dict[str, Any]) -> str:
    try:
        value = json.loads(text)
        fastjsonschema.validate(schema, value)
    except (ValueError, fastjsonschema.JsonSchemaException) as err:
        return f"{TOOL_SIMULATOR_ERROR} result does not match the result schema ({str(err)[:160]})"
    return canonical_json(value)
