"""The one contract every inference backend meets, and the errors it may raise.

A backend only turns a request into a reply; limits, retries, timeouts, the
cache and accounting live once, in ``Endpoint``, for every backend alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import Message, Usage


@dataclass(frozen=True)
class ChatParams:
    """Sampling and output options; ``None`` leaves the server's default in place."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)

    def as_request(self) -> dict[str, Any]:
        """The request fields these params set, as the OpenAI API names them."""
        out = {k: v for k, v in self.__dict__.items() if v is not None and k != "extra_body"}
        out.update(self.extra_body)
        return out


@dataclass
class ChatReply:
    message: Message
    usage: Usage
    finish_reason: str | None = None  # "stop", "length", "tool_calls", ...; None when the server did not say
    stop_reason: str | int | None = None  # vLLM: the stop string or token id that ended the reply


TRUNCATED = "length"  # the finish_reason of a reply cut off at max_tokens (or at the context length)


class Backend(Protocol):
    model: str

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   params: ChatParams) -> ChatReply:
        """One completion; raises ``TransientError`` when trying again may help, ``BackendError`` otherwise."""


class BackendError(RuntimeError):
    """A request that failed for good; the dialogue becomes a rejected row with this text as its reason.

    ``unhealthy``: a failure a working server does not produce (no connection, no answer, 5xx, a key or model it
    refuses), counted by the run's health monitor; a request refused for its content is not.
    """

    def __init__(self, message: str, unhealthy: bool = False) -> None:
        super().__init__(message)
        self.unhealthy = unhealthy


class TruncatedReply(BackendError):
    """A reply the server cut off (``finish_reason: length``): its text is incomplete and is never used.

    A ``BackendError`` so that every caller that handles a failed request handles it too; callers that
    know the role say whose reply it was (``truncated: the assistant's turn ...``).
    """

    def __init__(self, max_tokens: int | None, message: Message) -> None:
        self.limit = f"{f'max_tokens={max_tokens}' if max_tokens else 'the context length'} (finish_reason 'length')"
        super().__init__(f"reply cut off at {self.limit}")
        self.max_tokens = max_tokens
        self.partial = message


class TransientError(BackendError):
    """Rate limits, 5xx, dropped connections, timeouts: worth another try, after ``retry_after`` if the server said."""

    def __init__(self, message: str, retry_after: float | None = None, unhealthy: bool = False) -> None:
        super().__init__(message, unhealthy)
        self.retry_after = retry_after
