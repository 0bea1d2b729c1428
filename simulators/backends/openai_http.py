"""Any OpenAI-compatible chat endpoint over HTTP: a `vllm serve` server, a hosted API.

The wire protocol is one JSON POST to ``/chat/completions``, so this speaks it with aiohttp directly: the
``openai`` SDK's request building, httpx wrapper and pydantic reply models were more than half of the
client's CPU per request (issue 21: at 256 requests in flight the client, not the server, was the cap).
The reply is read as plain JSON into ``ChatReply`` here, checking the few fields a rollout relies on.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from schemas import ByIdentity, FunctionCall, Message, ToolCall, Usage
from simulators.backends.base import BackendError, ChatParams, ChatReply, TransientError
from simulators.backends.failures import describe_connection_error

MAX_CONNECTIONS = 4096  # the endpoint's own limit decides how many are in flight; the pool never should
# Under the 5 s after which uvicorn (so vLLM, SGLang, most Python servers) closes an idle connection. aiohttp's
# 15 s reused connections the server was closing as the request went out: on a loaded machine 67 of 800
# requests sent ~5 s after the last one failed that way, never reaching the server.
KEEPALIVE_S = 4.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
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


class MalformedReply(TransientError):
    """A 200 reply that is not a chat completion (not JSON, or a field of the wrong type): a proxy's or a
    server's fault, worth another try, and counted against the server's health."""

    def __init__(self, what: str) -> None:
        super().__init__(f"malformed reply: {what}", unhealthy=True)


class OpenAICompatible:
    """Talks to ``base_url`` over one aiohttp session per event loop (``Endpoint`` keeps one backend per loop).

    No retries here (``Endpoint`` retries); ``timeout_s`` bounds the connect (at most 10 s), the wait for a free
    connection, and each wait for the reply's bytes, as the SDK's per-operation timeouts did.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self.model, self.base_url, self.timeout_s = model, base_url, timeout_s
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": "trajforge"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=min(timeout_s, 10.0),
                                              sock_read=timeout_s)
        self._proxy = env_proxy(self._url)
        self._session: aiohttp.ClientSession | None = None  # made on first use: it binds to the running loop
        # A dialogue passes the same tool list on every turn; serializing it per request was ~5% of the client's
        # CPU at 256 in flight. Kept per list object, about as many as dialogues run at once.
        self._tools_json = ByIdentity(partial(orjson.dumps, option=orjson.OPT_NON_STR_KEYS), 4096)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Not trust_env: aiohttp would then read ~/.netrc and the proxy variables in a thread on every
            # request (a tenth of a rollout's CPU); the proxy is looked up once, in ``env_proxy``.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S),
                timeout=self._timeout)
        return self._session

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   params: ChatParams) -> ChatReply:
        """One chat completion. ``tools`` is serialized once per list object: a caller whose tools change passes
        a new list (the agents make theirs once per dialogue)."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, **params.as_request()}
        if not tools:
            body.pop("parallel_tool_calls", None)
        try:
            data = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
            if tools:  # the same bytes as with a last "tools" key, the list dumped once per dialogue
                data = b"".join((data[:-1], b',"tools":', self._tools_json(tools), b"}"))
        except orjson.JSONEncodeError as err:  # a value from a config's extra body, say: the request cannot be sent
            raise BackendError(f"request to {self.base_url} is not JSON: {err}") from None
        for resend in (True, False):
            try:
                async with self._client().post(self._url, data=data, headers=self._headers,
                                               proxy=self._proxy) as response:
                    raw = await response.read()
                    status, headers = response.status, response.headers
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
                # A pooled connection the server closed (its idle timeout, shorter than ours) as this request
                # went out: the server never saw it, so it is sent once more, on a new connection, and is no
                # failure of the server's (no retry spent, no sign of overload).
                if resend and not isinstance(err, aiohttp.ClientConnectorError):
                    continue
                raise self._connection_failed(err) from None
            except (aiohttp.ClientError, TimeoutError) as err:  # refused, timed out: the cause tells which
                raise self._connection_failed(err) from None
        if status >= 400:
            text = f"HTTP {status}: {_short(raw, status)}"
            if status in (408, 409, 429) or status >= 500:
                raise TransientError(text, retry_after_seconds(headers), unhealthy=status >= 500)
            raise BackendError(text, unhealthy=status in (401, 403, 404))
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedReply(f"HTTP {status}, not JSON: {_first_line(raw)}") from None
        return parse_completion(reply)

    def _connection_failed(self, err: BaseException) -> TransientError:
        return TransientError(f"{self.base_url}: {describe_connection_error(err, self.timeout_s)}", unhealthy=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts its host (as the
    SDK's client honoured them)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if proxy and urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy or None


def parse_completion(data: Any) -> ChatReply:
    """A chat completion's JSON as a ``ChatReply``; ``MalformedReply`` names the first field that is wrong."""
    if not isinstance(data, dict):
        raise MalformedReply(f"a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not choices:
        raise TransientError("reply without choices")
    first = _field(choices, 0, dict, "choices")
    choice = _field(first, "message", dict, "choices[0]")
    content = _optional(choice, "content", str, "choices[0].message")
    usage = _optional(data, "usage", dict, "reply") or {}
    details = _optional(usage, "prompt_tokens_details", dict, "usage") or {}
    message = Message(role="assistant", content=content,
                      tool_calls=_tool_calls(_optional(choice, "tool_calls", list, "choices[0].message"), content),
                      reasoning_content=_optional(choice, "reasoning_content", str, "choices[0].message")
                      or _optional(choice, "reasoning", str, "choices[0].message") or None)
    return ChatReply(message=message,
                     usage=Usage(prompt_tokens=_optional(usage, "prompt_tokens", int, "usage") or 0,
                                 completion_tokens=_optional(usage, "completion_tokens", int, "usage") or 0,
                                 cached_prompt_tokens=_optional(details, "cached_tokens", int,
                                                                "usage.prompt_tokens_details") or 0),
                     finish_reason=_optional(first, "finish_reason", str, "choices[0]"),
                     stop_reason=_optional(first, "stop_reason", (str, int), "choices[0]"))


def _tool_calls(raw: list[Any] | None, content: str | None) -> list[ToolCall] | None:
    if not raw:
        return None
    calls = []
    for i, call in enumerate(raw):
        where = f"choices[0].message.tool_calls[{i}]"
        if not isinstance(call, dict):
            raise MalformedReply(f"{where} is a JSON {type(call).__name__}, not an object")
        fn = _field(call, "function", dict, where)
        name = _optional(fn, "name", str, where + ".function") or ""
        arguments = _optional(fn, "arguments", str, where + ".function") or ""
        call_id = _optional(call, "id", str, where) or \
            "call_" + hashlib.sha256(f"{i}:{name}:{arguments}:{content}".encode()).hexdigest()[:16]
        # Arguments stay the exact string the model produced: a malformed call is kept to be rejected for what it is.
        calls.append(ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments)))
    return calls


def _field(obj: Any, key: Any, kind: type, where: str) -> Any:
    """``obj[key]``, which must be there and of ``kind``."""
    try:
        value = obj[key]
    except (KeyError, IndexError, TypeError):
        raise MalformedReply(f"{where} has no {key!r}") from None
    if not isinstance(value, kind):
        raise MalformedReply(f"{where}[{key!r}] is a JSON {type(value).__name__}, not {kind.__name__}")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` if present and not null, which must then be of ``kind`` (a bool is no int here)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = "/".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise MalformedReply(f"{where}.{key} is a JSON {type(value).__name__}, not {names}")
    return value


def _first_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return (text.splitlines() or ["(empty body)"])[0][:200]


def _short(raw: bytes, status: int) -> str:
    """An error body as one short line: its ``error.message`` (OpenAI, vLLM), else the JSON or the text."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        body = body.get("error", body)
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return (" ".join(text.split()) or f"Error code: {status}")[:200]
