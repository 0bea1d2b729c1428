"""OpenAI chat wire format: tools, tool calls and messages.

Stored canonically with ``arguments`` as a JSON string, exactly as the OpenAI
API sends it, so a malformed model output survives storage unchanged and can be
rejected with the real reason; exporters parse it when a template wants a dict.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from schemas.hashing import canonical_json


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(BaseModel):
    """An OpenAI function tool: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionSpec

    @property
    def name(self) -> str:
        return self.function.name


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def make(cls, call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
        return cls(id=call_id, function=FunctionCall(name=name, arguments=canonical_json(arguments)))

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments as a dict; raises ValueError when they are not a JSON object."""
        value = json.loads(self.function.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("arguments are not a JSON object")
        return value


class Message(BaseModel):
    """One chat message. ``name`` on a tool message is the function it answers (Hermes-style templates need it);
    ``reasoning_content`` is an assistant turn's reasoning as vLLM's reasoning parsers return it."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    reasoning_content: str | None = Field(
        default=None, description="assistant only: the reasoning a server returned beside the reply "
        "(vLLM reasoning parsers), kept per turn; never sent back to a model")

    def to_openai(self) -> dict[str, Any]:
        """The dict the OpenAI API accepts (unset fields left out)."""
        return self.model_dump(exclude_none=True)


class Action(BaseModel):
    """A gold tool call: name plus arguments as a dict (a plan, not a wire message).

    ``actor`` is who makes the call: the assistant (the default, left out of the
    serialized form so existing tasks keep their ids), or, in a dual-control
    domain, the user on their own device.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    actor: Literal["assistant", "user"] = "assistant"

    @model_serializer(mode="wrap")
    def _drop_default_actor(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("actor") == "assistant":
            del data["actor"]
        return data

    def key(self) -> str:
        who = "user:" if self.actor == "user" else ""
        return f"{who}{self.name}:{canonical_json(self.arguments)}"
