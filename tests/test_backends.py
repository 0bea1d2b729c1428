"""The shared backend layer against a real HTTP server on 127.0.0.1: retries, timeouts, limits, cache."""

from __future__ import annotations

import asyncio
import threading

import pytest
from loopback import LoopbackServer, Reply, echo_brain

from schemas import BackendConfig, Message, Usage
from simulators.backends import BackendError, ChatParams, Endpoint, RequestCache
from simulators.backends.limits import ConcurrencyLimit, RateLimit

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
