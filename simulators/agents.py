"""The two speaking roles of a rollout, as one async method each.

Offline agents are scripted here; model-backed agents (user simulator,
assistant) implement the same protocol on top of an inference backend, so the
conversation loop never knows which it is talking to.
"""

from __future__ import annotations

from typing import Protocol

from schemas import Message, Tool

STOP = "###STOP###"


class UserAgent(Protocol):
    async def respond(self, messages: list[Message]) -> Message:
        """The next user message; content containing ``STOP`` ends the dialogue."""


class AssistantAgent(Protocol):
    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        """The next assistant message: text for the user, or tool calls."""
