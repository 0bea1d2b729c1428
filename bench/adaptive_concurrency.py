"""Does adaptive concurrency find a server's real capacity? AIMD against a fixed limit set too high, side by side.

A loopback OpenAI-compatible server (tests/loopback.py, its own process) admits only
``--capacity`` K requests at once and answers 429 to any request above that (no
Retry-After: the client's exponential backoff with jitter). The same workload runs
twice through the real endpoint layer with the configured ``max_concurrency`` far
above K: once with adaptive concurrency (AIMD, the default), once with the fixed
limit. Measured by the server: the share of its capacity used (requests being
worked on, integrated over time, ÷ K × wall time) and the 429s it sent; by the
client: where the adaptive limit settled. A third run with the limit set to exactly
K (an oracle that knows the capacity) shows what this machine allows at best: on a
loaded machine the client's and server's CPU, not the limit, caps the absolute figure.

    .venv/bin/python bench/adaptive_concurrency.py [--capacity 32] [--ceiling 256] [--requests 3000]

Last line: ``adaptive_concurrency: capacity_used=<x> of_oracle=<x> settled_of_capacity=<x>
    errors=<adaptive>/<fixed>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backend_concurrency import wait_healthy  # noqa: E402


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


def run_client(port: int, ceiling: int, adaptive: bool, requests: int, demand: int) -> dict:
    """``requests`` chat requests from ``demand`` concurrent callers; the endpoint's limit decides what is sent."""
    from schemas import BackendConfig, Message, Usage
    from simulators.backends import ChatParams
    from simulators.backends.endpoint import Endpoint

    config = BackendConfig(model="loop", base_url=f"http://127.0.0.1:{port}/v1", max_concurrency=ceiling,
                           max_retries=1000, backoff_s=0.05, backoff_max_s=1.0, timeout_s=30,
                           adaptive={"enabled": adaptive})
    endpoint = Endpoint("loop", config)
    meter = Usage()
    limits: list[tuple[float, int]] = []
    todo = iter(range(requests))

    async def caller() -> None:
        for n in todo:
            await endpoint.chat([Message(role="user", content=f"request {n}")], None, ChatParams(), meter)

    async def sample(started: float) -> None:
        while True:
            limits.append((time.perf_counter() - started, endpoint.limit.limit))
            await asyncio.sleep(0.05)

    async def main() -> float:
        started = time.perf_counter()
        sampler = asyncio.create_task(sample(started))
        await asyncio.gather(*(caller() for _ in range(demand)))
        sampler.cancel()
        await endpoint.release_loop()
        return time.perf_counter() - started

    before = server_stats(port)
    wall = asyncio.run(main())
    after = server_stats(port)
    busy = after["busy_area"] - before["busy_area"]
    rejected = after["statuses"].get("429", 0) - before["statuses"].get("429", 0)
    tail = [limit for t, limit in limits if t > wall / 2]
    return {"wall": wall, "busy": busy, "429": rejected, "errors": meter.errors, "requests": meter.requests,
            "settled": sum(tail) / len(tail) if tail else ceiling, "limit_min": min(x for _, x in limits),
            "decreases": endpoint.control.decreases if endpoint.control else 0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--capacity", type=int, default=32)
    p.add_argument("--ceiling", type=int, default=256)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--latency", type=float, default=0.5)
    args = p.parse_args()

    from simulators.backends.managed_vllm import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "--port", str(port),
                               "--latency", str(args.latency), "--capacity", str(args.capacity)])
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", server)
        results = {}
        for name, ceiling, adaptive in (("adaptive", args.ceiling, True), ("fixed", args.ceiling, False),
                                        ("oracle", args.capacity, False)):
            r = results[name] = run_client(port, ceiling, adaptive, args.requests, demand=2 * args.ceiling)
            used = r["busy"] / (args.capacity * r["wall"])
            print(f"{name:>8}: {args.requests} requests in {r['wall']:.1f}s, capacity used {used:.2f}, "
                  f"{r['429']} 429s from the server ({r['requests']} attempts), limit settled at "
                  f"{r['settled']:.1f} (min {r['limit_min']}, {r['decreases']} decreases; ceiling {ceiling}, "
                  f"capacity {args.capacity})")
            r["used"] = used
    finally:
        server.terminate()
        server.wait(30)
    a, f, o = results["adaptive"], results["fixed"], results["oracle"]
    print(f"ideal: {args.requests * args.latency / args.capacity:.1f}s at full capacity")
    print(f"adaptive_concurrency: capacity_used={a['used']:.2f} of_oracle={a['used'] / o['used']:.2f} "
          f"settled_of_capacity={a['settled'] / args.capacity:.2f} errors={a['429']}/{f['429']}")


if __name__ == "__main__":
    main()
