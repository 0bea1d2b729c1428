"""The shared layer every backend sits behind: concurrency and rate limits, retries, timeouts, cache, accounting.

One ``Endpoint`` per configured backend and process, shared by every shard
thread of a run (see ``open_endpoints``); a role's calls are charged to the
``Usage`` meter the caller passes, so per-dialogue and per-role totals need no
shared counters.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import replace
from typing import Any

from schemas import BackendConfig, Message, Usage
from simulators.backends.base import (
    TRUNCATED,
    Backend,
    BackendError,
    ChatParams,
    ChatReply,
    TransientError,
    TruncatedReply,
)
from simulators.backends.cache import RequestCache, request_key
from simulators.backends.health import HealthMonitor
from simulators.backends.limits import AIMD, ConcurrencyLimit, RateLimit
from simulators.backends.openai_http import OpenAICompatible


class Endpoint:
    def __init__(self, name: str, config: BackendConfig, cache: RequestCache | None = None) -> None:
        if not config.base_url:
            raise BackendError(f"backend {name!r}: no base_url (a managed vLLM server must be started first)")
        self.name = name
        self.config = config
        self.model = config.model
        self.cache = cache
        self.limit = ConcurrencyLimit(config.max_concurrency)
        adaptive = config.adaptive
        # Consulted on every request's outcome; it only resizes ``limit`` (the configured number is its ceiling).
        self.control = AIMD(self.limit, config.max_concurrency, adaptive.min_concurrency, adaptive.decrease,
                            adaptive.latency_factor, adaptive.client_busy,
                            adaptive.initial_for(config.max_concurrency)) if adaptive.enabled else None
        self.rpm = RateLimit(config.requests_per_minute) if config.requests_per_minute else None
        self.tpm = RateLimit(config.tokens_per_minute) if config.tokens_per_minute else None
        self._backends: dict[int, Backend] = {}  # one HTTP client per event loop: clients are bound to their loop
        self._lock = threading.Lock()
        self.health = HealthMonitor(name, config.base_url, config.health)  # per run: see ``open_endpoints``

    def _openai(self) -> Backend:
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        return OpenAICompatible(self.config.base_url or "", self.model, key, self.config.timeout_s)

    def _backend(self) -> Backend:
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            backend = self._backends.get(loop_id)
            if backend is None:
                backend = self._backends[loop_id] = self._openai()
            return backend

    async def release_loop(self) -> None:
        """Close this loop's HTTP client; call before the loop ends."""
        with self._lock:
            backend = self._backends.pop(id(asyncio.get_running_loop()), None)
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()

    async def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None, params: ChatParams,
                   meter: Usage, retry_max_tokens: int | None = None, accept_truncated: bool = False) -> Message:
        """One assistant-role message, from the cache when this exact request was answered before.

        A reply cut off at ``max_tokens`` (``finish_reason: length``) raises ``TruncatedReply``: its text is
        incomplete, and a structured reply would not even parse. With ``retry_max_tokens`` above the
        request's ``max_tokens`` it is asked once more with that budget first. ``accept_truncated`` is for
        callers that only scan the text (a difficulty probe), never for text that is stored or parsed.
        """
        reply = await self._cached_chat(messages, tools, params, meter)
        if reply.finish_reason == TRUNCATED and retry_max_tokens and retry_max_tokens > (params.max_tokens or 0):
            meter.truncated_retries += 1
            reply = await self._cached_chat(messages, tools, replace(params, max_tokens=retry_max_tokens), meter)
            params = replace(params, max_tokens=retry_max_tokens)
        if reply.finish_reason == TRUNCATED and not accept_truncated:
            meter.truncated += 1
            raise TruncatedReply(params.max_tokens, reply.message)
        return reply.message

    async def _cached_chat(self, messages: list[Message], tools: list[dict[str, Any]] | None, params: ChatParams,
                           meter: Usage) -> ChatReply:
        # Earlier turns' reasoning is not sent back (reasoning models' templates drop it), so it cannot change
        # the request either: cache keys stay those of the plain conversation.
        wire = [m.model_dump(exclude_none=True, exclude={"reasoning_content"}) for m in messages]
        key = request_key(self.model, wire, tools, params.as_request()) if self.cache is not None else ""
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            meter.cached += 1
            meter.saved_prompt_tokens += hit.usage.prompt_tokens
            meter.saved_completion_tokens += hit.usage.completion_tokens
            return hit
        attempt = 0
        while True:
            self.health.check()
            try:
                reply = await self._attempt(wire, tools, params, meter)
                self.health.record(None)
                break
            except TransientError as err:
                meter.errors += 1
                self.health.record(err)
                if attempt >= self.config.max_retries:
                    raise BackendError(f"{err} (gave up after {attempt} retries)", err.unhealthy) from None
                await asyncio.sleep(self._backoff(attempt, err.retry_after))
                attempt += 1
                meter.retries += 1
            except BackendError as err:
                meter.errors += 1
                self.health.record(err)
                raise
        if self.cache is not None:
            self.cache.put(key, self.model, reply)
        return reply

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """The server's ``Retry-After`` when it gave one, else exponential backoff with full jitter."""
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)  # a little spread so waiters do not return in one burst
        return random.uniform(0, min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt))

    async def _attempt(self, wire: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: ChatParams,
                       meter: Usage) -> ChatReply:
        if self.rpm:
            await self.rpm.acquire(1)
        estimate = 0
        if self.tpm:
            estimate = sum(len(str(m.get("content") or "")) for m in wire) // 4 + (params.max_tokens or 256)
            await self.tpm.acquire(estimate)
        async with self.limit:
            ticket = self.control.issued() if self.control else None
            start = time.perf_counter()
            try:
                # The HTTP client enforces the timeout; this outer guard covers a backend that has none
                # (``asyncio.timeout``, not ``wait_for``, which made a task per request).
                async with asyncio.timeout(self.config.timeout_s + 5):
                    reply = await self._backend().chat(wire, tools, params)
            except TimeoutError:
                if self.control:
                    self.control.overloaded(ticket)
                raise TransientError(f"request timed out after {self.config.timeout_s:g}s", unhealthy=True) from None
            except TransientError:  # 429, 5xx, a dropped connection: the server is telling us to slow down
                if self.control:
                    self.control.overloaded(ticket)
                raise
            finally:
                meter.requests += 1
                meter.latency_s += (elapsed := time.perf_counter() - start)
            if self.control:
                self.control.succeeded(ticket, elapsed)
        meter.prompt_tokens += reply.usage.prompt_tokens
        meter.completion_tokens += reply.usage.completion_tokens
        meter.cached_prompt_tokens += reply.usage.cached_prompt_tokens
        if self.tpm:
            self.tpm.adjust(reply.usage.prompt_tokens + reply.usage.completion_tokens - estimate)
        return reply


_OPEN: dict[str, Endpoint] = {}
_OPEN_LOCK = threading.Lock()
_SCOPES: list[str] = []  # oldest first; endpoints of long-gone runs are forgotten (shards holding one keep it)
MAX_SCOPES = 16


def open_endpoints(backends: dict[str, BackendConfig], cache_path: str | None, scope: str = "") -> dict[str, Endpoint]:
    """This process's endpoints for a run's backends, created once and shared by every shard thread.

    ``scope`` names the run (its staging folder), so each run has its own limits and health monitor:
    one run's dead backend does not stop the next run of a long-lived ``serve`` process.
    """
    out = {}
    with _OPEN_LOCK:
        if scope not in _SCOPES:
            _SCOPES.append(scope)
            while len(_SCOPES) > MAX_SCOPES:
                gone = _SCOPES.pop(0)
                for key in [k for k in _OPEN if k.startswith(gone + "|")]:
                    del _OPEN[key]
        for name, config in backends.items():
            key = f"{scope}|{name}|{config.model_dump_json()}|{cache_path}"
            if key not in _OPEN:
                _OPEN[key] = Endpoint(name, config, RequestCache(cache_path) if cache_path else None)
            out[name] = _OPEN[key]
    return out


def forget_endpoints(scope: str) -> None:
    """Drop this process's endpoints of ``scope``: a run started again (a resume) gets fresh ones."""
    with _OPEN_LOCK:
        for key in [k for k in _OPEN if k.startswith(scope + "|")]:
            del _OPEN[key]
