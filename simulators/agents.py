"""The two speaking roles of a rollout, as one async method each.

Offline agents are scripted here; model-backed agents (user simulator,
assistant) implement the same protocol on top of an inference backend, so the
conversation loop never knows which it is talking to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas import Message, Tool, UserAction

STOP = "###STOP###"


class UserAgent(Protocol):
    async def respond(self, messages: list[Message], actions: Sequence[UserAction] = ()) -> Message:
        """The next user message; content containing ``STOP`` ends the dialogue.

        Dual control: in a domain with user-side tools the loop also passes the
        user's own actions so far (with their results), and the reply may carry
        ``tool_calls`` instead of text: the loop runs them on the user's side and
        asks again, so the user speaks after seeing what they did. Elsewhere the
        loop calls ``respond(messages)`` alone.
        """


class AssistantAgent(Protocol):
    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        """The next assistant message: text for the user, or tool calls."""
