"""Adaptive concurrency (AIMD) through the real endpoint layer, against loopback servers over real HTTP.

Two kinds of overload a real server shows: one that admits only K requests at once
and answers 429 above that (a hosted API's concurrency cap), and one that works on K
at once and queues the rest, so latency grows with load (vLLM beyond its batch size).
The configured ``max_concurrency`` is far above K in both; the adaptive limit must
find K, and cost far fewer 429s than the fixed limit does on the same workload.
"""

from __future__ import annotations

import asyncio

from loopback import LoopbackServer

from schemas import BackendConfig, Message, Usage
from simulators.backends import ChatParams
from simulators.backends.endpoint import Endpoint

CAPACITY, CEILING, CALLERS, REQUESTS = 6, 48, 48, 360


def _drive(url: str, adaptive: bool, **settings) -> tuple[Endpoint, Usage, list[int]]:
    config = BackendConfig(model="loop", base_url=url, max_concurrency=CEILING, max_retries=1000, backoff_s=0.02,
                           backoff_max_s=0.2, timeout_s=10, adaptive={"enabled": adaptive, **settings})
    endpoint, meter, limits = Endpoint("loop", config), Usage(), []
    todo = iter(range(REQUESTS))

    async def caller() -> None:
        for n in todo:
            reply = await endpoint.chat([Message(role="user", content=f"request {n}")], None, ChatParams(), meter)
            assert reply.content == f"echo: request {n}"
            limits.append(endpoint.limit.limit)

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        await endpoint.release_loop()

    asyncio.run(main())
    return endpoint, meter, limits


def test_aimd_finds_a_429_servers_capacity_with_far_fewer_errors_than_a_fixed_limit():
    # 100 ms a reply: well above the jitter of a loaded test machine, which the latency rule would read as queueing.
    with LoopbackServer(latency_s=0.1, capacity=CAPACITY) as server:
        endpoint, meter, limits = _drive(server.url, adaptive=True)
        adaptive_429 = server.statuses[429]
    with LoopbackServer(latency_s=0.1, capacity=CAPACITY) as server:
        _, fixed_meter, fixed_limits = _drive(server.url, adaptive=False)
        fixed_429 = server.statuses[429]
    # Every request got its answer in the end, both ways (``caller`` checks each reply); a 429 is an error retried.
    assert len(limits) == len(fixed_limits) == REQUESTS and meter.errors == adaptive_429
    assert set(fixed_limits) == {CEILING}
    settled = limits[len(limits) // 2:]  # the second half of the run
    assert max(settled) <= CAPACITY + 2 and min(settled) >= 2, settled
    assert endpoint.control.decreases >= 1 and endpoint.control.increases >= 1  # it probes upward again
    assert adaptive_429 * 3 < fixed_429, (adaptive_429, fixed_429, settled)


def test_aimd_backs_off_when_a_queueing_servers_latency_grows():
    # No 429s at all: the server works on CAPACITY requests at once and queues the rest.
    # latency_factor 3 tolerates a queue up to about 3 × the batch the server works on (a model server's
    # latency grows with its batch anyway): the limit settles there, far below the configured ceiling.
    # The subject is the server's latency: on a loaded test machine this client's loop waits for a CPU much of the
    # time, which by default (``client_busy``) discounts latency growth as the client's own lag; here it never does.
    with LoopbackServer(latency_s=0.1, slots=CAPACITY) as server:
        endpoint, meter, limits = _drive(server.url, adaptive=True, client_busy=1.0)
        assert server.statuses[429] == 0
    assert meter.errors == 0 and endpoint.control.decreases >= 1, limits
    settled = limits[len(limits) // 2:]
    assert sum(settled) / len(settled) <= 3.5 * CAPACITY and max(settled) <= 0.6 * CEILING, settled


def test_slow_start_begins_at_an_eighth_of_the_ceiling_at_least_8_unless_configured():
    """At 256 in flight, starting at 8 spent five round trips mostly idle before the ceiling (bench/backend_concurrency.py)."""
    def first_limit(ceiling: int, **adaptive) -> int:
        config = BackendConfig(model="loop", base_url="http://127.0.0.1:9/v1", max_concurrency=ceiling,
                               adaptive=adaptive)
        return Endpoint("loop", config).limit.limit

    assert (first_limit(256), first_limit(64), first_limit(48), first_limit(4)) == (32, 8, 8, 4)
    assert first_limit(256, initial_concurrency=8) == 8 and first_limit(16, initial_concurrency=64) == 16
