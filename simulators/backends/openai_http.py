"""Any OpenAI-compatible chat endpoint over HTTP: a `vllm serve` server, a hosted API."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion

from schemas import FunctionCall, Message, ToolCall, Usage
from simulators.backends.base import BackendError, ChatParams, ChatReply, TransientError
from simulators.backends.failures import describe_connection_error


def retry_after_seconds(headers: httpx.Headers | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare from model servers and is ignored)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _tool_calls(raw: list[Any] | None, content: str | None) -> list[ToolCall] | None:
    if not raw:
        return None
    calls = []
    for i, call in enumerate(raw):
        fn = call.function
        call_id = call.id or "call_" + hashlib.sha256(f"{i}:{fn.name}:{fn.arguments}:{content}".encode()).hexdigest()[:16]
        # Arguments stay the exact string the model produced: a malformed call is kept to be rejected for what it is.
        calls.append(ToolCall(id=call_id, function=FunctionCall(name=fn.name or "", arguments=fn.arguments or "")))
    return calls


class OpenAICompatible:
    """Talks to ``base_url`` with the ``openai`` async client; the client's own retries are off (Endpoint retries)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self.model, self.base_url, self.timeout_s = model, base_url, timeout_s
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", max_retries=0,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            # aiohttp's pool: httpx's scans every pooled connection on each request, which at 128
            # requests in flight costs more CPU than everything else a rollout does.
            http_client=openai.DefaultAioHttpClient(
                limits=httpx.Limits(max_connections=4096, max_keepalive_connections=512)))  # the endpoint limits

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   params: ChatParams) -> ChatReply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, **params.as_request()}
        if tools:
            body["tools"] = tools
        else:
            body.pop("parallel_tool_calls", None)
        try:
            # The documented low-level `post`: the messages are already plain JSON, and the client's typed
            # `create` would walk every message of every request again (half the client's CPU at 128 in flight).
            response = await self._client.post("/chat/completions", cast_to=ChatCompletion, body=body)
        except openai.APIConnectionError as err:  # APITimeoutError too: read the cause, it tells refused from slow
            raise TransientError(f"{self.base_url}: {describe_connection_error(err, self.timeout_s)}",
                                 unhealthy=True) from None
        except openai.APIStatusError as err:
            status = err.status_code
            text = f"HTTP {status}: {_short(err)}"
            if status in (408, 409, 429) or status >= 500:
                raise TransientError(text, retry_after_seconds(err.response.headers), unhealthy=status >= 500) from None
            raise BackendError(text, unhealthy=status in (401, 403, 404)) from None
        if not response.choices:
            raise TransientError("reply without choices")
        first = response.choices[0]
        choice = first.message
        details = getattr(response.usage, "prompt_tokens_details", None)
        usage = Usage(prompt_tokens=getattr(response.usage, "prompt_tokens", 0) or 0,
                      completion_tokens=getattr(response.usage, "completion_tokens", 0) or 0,
                      cached_prompt_tokens=getattr(details, "cached_tokens", 0) or 0)
        message = Message(role="assistant", content=choice.content,
                          tool_calls=_tool_calls(choice.tool_calls, choice.content),
                          reasoning_content=_extra(choice, "reasoning_content", "reasoning") or None)
        return ChatReply(message=message, usage=usage, finish_reason=first.finish_reason,
                         stop_reason=_extra(first, "stop_reason"))

    async def aclose(self) -> None:
        await self._client.close()


def _extra(obj: Any, *names: str) -> Any:
    """A field the OpenAI types do not declare (vLLM's ``stop_reason``, ``reasoning`` / ``reasoning_content``)."""
    extra = getattr(obj, "model_extra", None) or {}
    for name in names:
        value = getattr(obj, name, None) if name in type(obj).model_fields else extra.get(name)
        if value is not None:
            return value
    return None


def _short(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return (text or err.message)[:200]
