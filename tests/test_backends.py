"""The shared backend layer against a real HTTP server on 127.0.0.1: retries, timeouts, limits, cache."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from loopback import LoopbackServer, Reply, echo_brain
from starlette.responses import Response

from schemas import BackendConfig, Message, Usage
from simulators.backends import BackendError, ChatParams, Endpoint, RequestCache, openai_http
from simulators.backends.limits import ConcurrencyLimit, RateLimit
from simulators.backends.openai_http import OpenAICompatible

HELLO = [Message(role="user", content="hello")]


def endpoint(server: LoopbackServer, cache: RequestCache | None = None, **settings) -> Endpoint:
    config = BackendConfig(model="loop-model", base_url=server.url, **{"max_retries": 3, "backoff_s": 0.01, **settings})
    return Endpoint("loop", config, cache)


def chat(ep: Endpoint, meter: Usage, messages=HELLO, tools=None, params=ChatParams()) -> Message:
    async def go():
        try:
            return await ep.chat(messages, tools, params, meter)
        finally:
            await ep.release_loop()

    return asyncio.run(go())


class Scripted:
    """Answers from a list, one per request, then echoes."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def __call__(self, body):
        return self.replies.pop(0) if self.replies else echo_brain(body)


def test_reply_tokens_and_cache(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    with LoopbackServer() as server:
        ep, meter = endpoint(server, cache), Usage()
        first = chat(ep, meter)
        assert first.content == "echo: hello"
        assert meter.requests == 1 and meter.prompt_tokens == server.tokens["prompt"] > 0
        again = chat(ep, meter)
        assert again == first and server.requests == 1 and meter.cached == 1
        other = chat(ep, meter, params=ChatParams(temperature=0.5))  # sampling params are part of the key
        assert other.content == "echo: hello" and server.requests == 2
    assert len(cache) == 2


def test_429_waits_for_retry_after_then_succeeds():
    brain = Scripted(Reply(status=429, headers={"Retry-After": "0.6"}), Reply(status=429, headers={"Retry-After": "0.6"}))
    with LoopbackServer(brain) as server:
        meter = Usage()
        assert chat(endpoint(server), meter).content == "echo: hello"
        times = [t for t, _ in server.arrivals]
    assert server.statuses == {429: 2, 200: 1}
    assert meter.retries == 2 and meter.requests == 3 and meter.errors == 2
    assert times[1] - times[0] >= 0.6 and times[2] - times[1] >= 0.6


def test_5xx_retried_then_given_up():
    with LoopbackServer(lambda body: Reply(status=503, error="overloaded")) as server:
        meter = Usage()
        with pytest.raises(BackendError, match=r"HTTP 503.*gave up after 3 retries"):
            chat(endpoint(server), meter)
    assert server.requests == 4 and meter.retries == 3


def test_timeout_is_retried():
    brain = Scripted(Reply(content="late", delay_s=1.5))
    with LoopbackServer(brain) as server:
        meter = Usage()
        assert chat(endpoint(server, timeout_s=0.5), meter).content == "echo: hello"
    assert meter.retries == 1 and server.requests == 2


def test_timeouts_every_time_fail_with_reason():
    with LoopbackServer(lambda body: Reply(content="late", delay_s=1.0)) as server:
        with pytest.raises(BackendError, match="timed out"):
            chat(endpoint(server, timeout_s=0.3, max_retries=1), Usage())
        assert server.requests == 2


def test_client_errors_are_not_retried():
    with LoopbackServer(lambda body: Reply(status=400, error="bad request: unknown field")) as server:
        meter = Usage()
        with pytest.raises(BackendError, match="HTTP 400: bad request"):
            chat(endpoint(server), meter)
    assert server.requests == 1 and meter.retries == 0


def test_malformed_tool_call_json_is_kept_verbatim():
    call = {"id": "c1", "type": "function", "function": {"name": "cancel", "arguments": '{"order_id": "#W1'}}
    with LoopbackServer(Scripted(Reply(tool_calls=[call]))) as server:
        reply = chat(endpoint(server), Usage(), tools=[{"type": "function", "function": {"name": "cancel"}}])
    assert reply.tool_calls[0].function.arguments == '{"order_id": "#W1'
    with pytest.raises(ValueError):
        reply.tool_calls[0].parsed_arguments()


class RawReplies(LoopbackServer):
    """Answers the first requests with the given raw 200 bodies (what a proxy or a server's own fields look like),
    then as the loopback does."""

    def __init__(self, *bodies: bytes) -> None:
        super().__init__()
        self.bodies = list(bodies)

    async def _completions(self, request):
        if not self.bodies:
            return await super()._completions(request)
        await request.body()
        with self._lock:
            self.requests += 1
            raw = self.bodies.pop(0)
        return Response(raw, media_type="application/json")


VLLM_REPLY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "loop-model",
    "choices": [{"index": 0, "finish_reason": "stop", "stop_reason": 128001, "logprobs": None,
                 "message": {"role": "assistant", "content": "Hi.", "reasoning_content": "Greet back.",
                             "tool_calls": []}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
              "prompt_tokens_details": {"cached_tokens": 8}}}).encode()


def test_a_vllm_reply_is_read_with_its_own_fields():
    """Reasoning, cached prompt tokens and vLLM's ``stop_reason`` (a token id here) come from the reply's JSON."""
    with RawReplies(VLLM_REPLY) as server:
        client = OpenAICompatible(server.url, "loop-model", None, timeout_s=5)

        async def go():
            try:
                return await client.chat([{"role": "user", "content": "hello"}], None, ChatParams())
            finally:
                await client.aclose()

        reply = asyncio.run(go())
    assert reply.message.content == "Hi." and reply.message.reasoning_content == "Greet back."
    assert reply.message.tool_calls is None  # an empty list is no call
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cached_prompt_tokens) == (12, 3, 8)
    assert reply.finish_reason == "stop" and reply.stop_reason == 128001


def test_a_malformed_reply_is_retried_and_then_named():
    """A 200 that is no chat completion (a proxy's HTML page, a field of the wrong type) is a transient fault of the
    server: tried again, and when it persists the reason names what was wrong."""
    with RawReplies(b"<html>502 Bad Gateway</html>") as server:
        meter = Usage()
        assert chat(endpoint(server), meter).content == "echo: hello"
    assert meter.retries == 1 and meter.errors == 1 and server.requests == 2
    wrong = json.loads(VLLM_REPLY)
    wrong["choices"][0]["message"]["tool_calls"] = "cancel_order"
    with RawReplies(*[json.dumps(wrong).encode()] * 2) as server:
        with pytest.raises(BackendError, match=r"malformed reply: choices\[0\]\.message\.tool_calls is a JSON str, "
                                               r"not list \(gave up after 1 retries\)"):
            chat(endpoint(server, max_retries=1), Usage())


class ClosesIdleConnections:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers one request per connection and closes the connection
    when the next request arrives on it, unanswered: what the client sees when a server's idle timeout closes
    a kept-alive connection just as a request goes out (uvicorn's 5 s, so vLLM's)."""

    def __init__(self) -> None:
        self.served = self.dropped = self.connections = 0
        self.port = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for answered in (False, True):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if answered:
                self.dropped += 1
                break
            self.served += 1
            body = VLLM_REPLY
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aexit__(self, *exc) -> None:
        self._server.close()


def test_a_request_on_a_connection_the_server_closed_is_sent_again_not_failed():
    """The CI failure this fixes: with ``max_retries: 0`` a dialogue against a busy vLLM failed "the server closed
    the connection" for requests the server never saw, and the run counted requests the server did not serve."""
    server = ClosesIdleConnections()

    async def go():
        async with server as url:
            ep = Endpoint("loop", BackendConfig(model="loop-model", base_url=url, max_retries=0), None)
            meter = Usage()
            try:
                replies = [await ep.chat(HELLO, None, ChatParams(), meter) for _ in range(3)]
            finally:
                await ep.release_loop()
            return replies, meter

    replies, meter = asyncio.run(go())
    assert [r.content for r in replies] == ["Hi."] * 3
    # Each request after the first went out on the kept-alive connection, was dropped, and went again on a new one.
    assert (server.served, server.dropped, server.connections) == (3, 2, 3)
    assert (meter.requests, meter.errors, meter.retries) == (3, 0, 0)


def test_a_connection_idle_longer_than_the_keepalive_is_not_reused(monkeypatch):
    """Idle connections are dropped by the client before a server's usual idle timeout would close them."""
    monkeypatch.setattr(openai_http, "KEEPALIVE_S", 0.2)
    server = ClosesIdleConnections()

    async def go():
        async with server as url:
            client = OpenAICompatible(url, "loop-model", None, timeout_s=5)
            try:
                for _ in range(2):
                    await client.chat([{"role": "user", "content": "hello"}], None, ChatParams())
                    await asyncio.sleep(0.4)
            finally:
                await client.aclose()

    asyncio.run(go())
    assert (server.served, server.dropped, server.connections) == (2, 0, 2)


def test_concurrency_limit_holds_across_threads_and_loops():
    """Shards run in threads with their own loops; the endpoint's limit is for all of them together."""
    with LoopbackServer(latency_s=0.05) as server:
        ep = endpoint(server, max_concurrency=3)

        def shard(n: int) -> None:
            async def go():
                await asyncio.gather(*(ep.chat([Message(role="user", content=f"{n}-{i}")], None, ChatParams(), Usage())
                                       for i in range(15)))
                await ep.release_loop()

            asyncio.run(go())

        threads = [threading.Thread(target=shard, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert server.requests == 45
    assert server.max_in_flight == 3
    assert ep.limit.in_use == 0


def test_api_key_is_sent_but_never_cached(tmp_path, monkeypatch):
    seen = {}

    class Spy(LoopbackServer):
        async def _completions(self, request):
            seen["auth"] = request.headers.get("authorization")
            return await super()._completions(request)

    monkeypatch.setenv("LOOP_KEY", "sk-test-secret-123")
    with Spy() as server:
        cache = RequestCache(tmp_path / "c.sqlite")
        chat(endpoint(server, cache, api_key_env="LOOP_KEY"), Usage())
    assert seen["auth"] == "Bearer sk-test-secret-123"
    assert b"sk-test-secret" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_rate_limit_reserves_in_order():
    limit = RateLimit(per_minute=60)  # one per second, a minute's burst
    assert limit.reserve(60) == 0.0
    assert limit.reserve(1) == pytest.approx(1.0, abs=0.05)
    assert limit.reserve(1) == pytest.approx(2.0, abs=0.05)
    limit.adjust(-2)  # the last two turned out cheaper: the balance comes back
    assert limit.reserve(1) == pytest.approx(1.0, abs=0.05)


def test_concurrency_limit_survives_cancellation():
    async def go():
        limit = ConcurrencyLimit(1)
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        limit.release()
        await asyncio.wait_for(limit.acquire(), 1)  # the slot was not lost to the cancelled waiter
        return limit.in_use

    assert asyncio.run(go()) == 1


def test_model_tool_simulator_answers_schema_only_tools_in_a_dialogue(tmp_path):
    """A schema-only domain (pet store OpenAPI spec) with the model tool simulator: structured output requested,
    each distinct valid call asked once, invalid calls never reach the model, writes logged in the state."""
    import json

    from test_tool_specs import PETSTORE

    from pipelines.steps import build_steps
    from schemas import RoleConfig, ToolCall, parse_config
    from simulators.conversation import rollout
    from simulators.model_agents import ModelToolSimulator

    spec = tmp_path / "pets.json"
    spec.write_text(json.dumps(PETSTORE))
    env = build_steps(parse_config({"num_tasks": 1, "domain": {"name": "schema_only", "params": {"spec": str(spec)}},
                                    "generators": [{"name": "tool_calls"}]})).env.fresh()
    pet_schema = env.schema_tools["getPet"].response_schema
    bodies = []

    def brain(body):
        bodies.append(body)
        call = body["messages"][-1]["content"].rsplit("Call: ", 1)[1]
        if call.startswith("getPet"):
            return Reply(content=json.dumps({"id": 7, "name": "Rex", "owner": {"name": "Ada"}}))
        return Reply(content='{"status": 12}' if call.startswith("create_pet") else '{"ok": true}')

    calls = [ToolCall.make("c1", "getPet", {"petId": 7}), ToolCall.make("c2", "getPet", {"petId": 7}),
             ToolCall.make("c3", "getPet", {"petId": 0}), ToolCall.make("c4", "create_pet", {"name": "Rex"})]

    class OneTurnUser:
        def __init__(self):
            self.n = 0

        async def respond(self, messages):
            self.n += 1
            return Message(role="user", content="look up pet 7" if self.n == 1 else "thanks ###STOP###")

    class CallingAssistant:
        def __init__(self):
            self.steps = [Message(role="assistant", tool_calls=calls), Message(role="assistant", content="done")]

        async def respond(self, messages, tools):
            return self.steps.pop(0) if self.steps else Message(role="assistant", content="bye")

    with LoopbackServer(brain) as server:
        meter = Usage()
        sim = ModelToolSimulator(endpoint(server), RoleConfig(backend="loop", temperature=0.0), meter)
        before = env.state_hash()

        async def go():
            try:
                return await rollout(None, env, OneTurnUser(), CallingAssistant(), tool_simulator=sim)
            finally:
                await sim.endpoint.release_loop()

        result = asyncio.run(go())
    results = [m.content for m in result.messages if m.role == "tool"]
    # the repeated call (results[1]) came from the dialogue's cache
    assert results[0] == results[1] == '{"id":7,"name":"Rex","owner":{"name":"Ada"}}'
    assert results[2].startswith("Error: invalid arguments for getPet")  # never sent to the model
    assert results[3].startswith("Error: the tool simulator's result does not match the result schema")
    assert server.requests == meter.requests == 2
    assert bodies[0]["response_format"]["json_schema"]["schema"] == pet_schema
    assert "getPet" in bodies[1]["messages"][-1]["content"].split("Call: ")[0]  # earlier results shown for consistency
    assert result.final_state_hash != before  # the create_pet write is in the state


# -- rate limits over real HTTP -----------------------------------------------------------------------------------


def _send(ep: Endpoint, n: int, max_tokens: int = 8) -> float:
    """``n`` distinct requests through ``ep``, all at once; the monotonic time they began."""
    async def one(i: int) -> None:
        await ep.chat([Message(role="user", content=f"request {i:03d}")], None, ChatParams(max_tokens=max_tokens),
                      Usage())

    async def go():
        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await ep.release_loop()

    start = time.monotonic()
    asyncio.run(go())
    return start


def test_requests_per_minute_hold_over_http():
    """60 a minute: a minute's burst goes at once, then one a second, measured where the requests arrive."""
    with LoopbackServer() as server:
        start = _send(endpoint(server, requests_per_minute=60, max_concurrency=100), 63)
    arrived = sorted(t - start for t, _ in server.arrivals)
    assert len(arrived) == 63
    for i, t in enumerate(arrived):  # by time t at most the burst (60) plus one per second have been sent
        assert i + 1 <= 60 + t + 0.05, (i, t)
    assert arrived[59] < 5  # the burst was not held back (a slow machine still sends 60 requests in seconds)


def test_tokens_per_minute_hold_over_http():
    """The tokens the server bills stay under the limit: one request's bill is measured first and the limit set
    to sixty such bills a minute, so of 61 requests sent at once the last must wait a second."""
    with LoopbackServer(lambda body: Reply(content="a long answer " * 30)) as server:  # bills mostly completion
        _send(endpoint(server), 1)
        each = sum(server.billed[0][:2])
        server.reset_counts()
        # max_tokens = one bill: the endpoint's estimate is then never below what the server bills
        start = _send(endpoint(server, tokens_per_minute=60 * each, max_concurrency=100), 61, max_tokens=each)
        arrived = sorted(t - start for t, _ in server.arrivals)
        billed = [p + c for p, c, _ in server.billed]
    assert len(arrived) == 61 and set(billed) == {each}  # every request bills the same
    for i, t in enumerate(arrived):  # what was sent by time t was earned by then: a minute's burst plus the rate
        assert (i + 1) * each <= 60 * each + each * t + 0.05 * each, (i, t)
    assert arrived[40] < 5  # most of the burst was not held back


# -- the request cache key --------------------------------------------------------------------------------------


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def test_cache_key_covers_everything_that_decides_the_reply(tmp_path):
    """Each of model, messages, tools and every sampling or output option makes a new request; the URL, the key
    and the timeout do not (a moved server or a renewed key keeps the cache warm)."""
    cache = RequestCache(tmp_path / "cache.sqlite")
    base = {"messages": HELLO, "tools": None, "params": ChatParams(temperature=0.0)}
    variants = {
        "model": {"model": "other-model"},
        "messages": {"messages": [Message(role="user", content="hello!")]},
        "message role": {"messages": [Message(role="system", content="hello")]},
        "earlier turn": {"messages": [Message(role="user", content="hi"), Message(role="assistant", content="yes"),
                                      *HELLO]},
        "tools": {"tools": [TOOL]},
        "tool schema": {"tools": [{**TOOL, "function": {**TOOL["function"], "description": "find it"}}]},
        "temperature": {"params": ChatParams(temperature=0.5)},
        "top_p": {"params": ChatParams(temperature=0.0, top_p=0.9)},
        "max_tokens": {"params": ChatParams(temperature=0.0, max_tokens=64)},
        "seed": {"params": ChatParams(temperature=0.0, seed=3)},
        "parallel_tool_calls": {"params": ChatParams(temperature=0.0, parallel_tool_calls=False)},
        "response_format": {"params": ChatParams(temperature=0.0, response_format={"type": "json_object"})},
        "extra_body": {"params": ChatParams(temperature=0.0, extra_body={"top_k": 5})},
    }
    with LoopbackServer() as server, LoopbackServer() as moved:
        def ask(srv: LoopbackServer, model: str = "loop-model", **request) -> None:
            config = BackendConfig(model=model, base_url=srv.url, max_retries=0, **request.pop("settings", {}))
            req = {**base, **request}
            chat(Endpoint("loop", config, cache), Usage(), req["messages"], req["tools"], req["params"])

        ask(server)
        ask(server)
        assert server.requests == 1  # the same request again: from the cache
        for n, (what, change) in enumerate(variants.items(), start=2):
            ask(server, **change)
            assert server.requests == n, f"changing {what} did not change the cache key"
        ask(moved, settings={"timeout_s": 7.0, "api_key_env": "NO_SUCH_KEY_VARIABLE"})
        for change in variants.values():
            ask(moved, **change)
        assert moved.requests == 0  # another URL, timeout and key: every answer came from the cache
    assert len(cache) == 1 + len(variants)
