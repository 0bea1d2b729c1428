"""Does the backend layer keep the server busy, and at what CPU cost? Against fixed-latency loopback servers.

Two measurements, side by side in one run, each against a loopback OpenAI-compatible
server (tests/loopback.py, its own process, so its CPU is not the client's):

- client CPU: ``--requests`` single requests from 64 callers through the real endpoint
  layer (adaptive concurrency on, no cache) against an echo server with ``--latency``;
  the client process's CPU seconds per 1k requests, and the server's busy share
  (requests being worked on ÷ 64, over the wall time);
- multi-turn ``simulate``: one shard of model-mode dialogues (the server replays the
  offline transcripts of the run's tasks as user simulator and assistant), at 64 and at
  256 requests in flight (``--limits``). Utilization is the mean number of requests the
  server works on ÷ the limit, from the server's own integral of requests being worked on
  (``/stats``) over the whole rollout, ramp-up and the shard's tail included; trajectories/s against the ideal
  ``limit / (requests per trajectory × latency)``;
- the flow: ``trajforge``'s real Prefect flow over ``--flow-shards`` shards, two open at
  once, 64 in flight: the server's busy share from its first request to its last, shard
  boundaries included.

    .venv/bin/python bench/backend_concurrency.py [--requests 2000] [--latency 0.2] [--limits 64,256]

Last line: ``backend_concurrency: client_cpu_s_per_1k=<x> utilization_64=<x> utilization_256=<x>
    flow_utilization_64=<x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_healthy(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"loopback server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("loopback server did not become healthy")


def start_server(args: list[str]) -> tuple[subprocess.Popen, int]:
    from simulators.backends.managed_vllm import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "--port", str(port), *args],
                              stdout=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{port}/health", server)
    return server, port


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(30)


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


def server_busy(port: int) -> float:
    return server_stats(port)["busy_area"]


def loop_thread() -> tuple[float, float, float]:
    """This thread's (wall, CPU, waiting-for-a-CPU) seconds so far (Linux schedstat; elsewhere no waiting)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            ran, waited = (int(x) / 1e9 for x in f.read().split()[:2])
    except OSError:
        ran, waited = time.thread_time(), 0.0
    return time.perf_counter(), ran, waited


def loop_share(before: tuple[float, float, float]) -> str:
    """How much of the wall time the event loop's thread ran, and waited for a CPU: near 1 together, the client's
    own loop (or the machine's load on it) is what caps the figure, not the engine's scheduling."""
    wall, ran, waited = (b - a for a, b in zip(before, loop_thread(), strict=True))
    return f"client loop ran {ran / wall:.2f} and waited for a CPU {waited / wall:.2f} of the time"


def client_cpu(requests: int, latency: float, in_flight: int = 64) -> dict:
    """CPU seconds of this process per 1k requests sent through the endpoint layer."""
    import asyncio

    from schemas import BackendConfig, Message, Usage
    from simulators.backends import ChatParams
    from simulators.backends.endpoint import Endpoint

    server, port = start_server(["--latency", str(latency)])
    try:
        endpoint = Endpoint("echo", BackendConfig(model="echo", base_url=f"http://127.0.0.1:{port}/v1",
                                                  max_concurrency=in_flight, timeout_s=30))
        meter = Usage()
        todo = iter(range(requests))

        async def caller() -> None:
            for n in todo:
                await endpoint.chat([Message(role="user", content=f"request {n}")], None, ChatParams(), meter)

        async def run() -> None:
            await asyncio.gather(*(caller() for _ in range(in_flight)))
            await endpoint.release_loop()

        busy0, cpu0, started, thread0 = server_busy(port), time.process_time(), time.perf_counter(), loop_thread()
        asyncio.run(run())
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        busy, share = server_busy(port) - busy0, loop_share(thread0)
    finally:
        stop_server(server)
    return {"requests": meter.requests, "errors": meter.errors, "wall": wall, "cpu_per_1k": cpu / requests * 1000,
            "server_busy": busy / (in_flight * wall), "aimd": aimd(endpoint), "loop": share}


def simulate(limit: int, tasks: int, latency: float) -> dict:
    """One shard of multi-turn model-mode dialogues with ``limit`` requests in flight."""
    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.steps import build_steps
    from schemas import Lineage, parse_config
    from simulators.backends import open_endpoints
    from simulators.backends.managed_vllm import free_port

    port = free_port()  # the config names the server's URL, and the server reads the config: pick the port first
    data = {"name": "bench", "seed": 2, "num_tasks": tasks, "shard_size": tasks,
            "backends": {"loop": {"model": "loop-model", "base_url": f"http://127.0.0.1:{port}/v1",
                                  "max_concurrency": limit, "timeout_s": 30}},
            "simulation": {"mode": "model", "concurrency": 2 * limit, "user": {"backend": "loop"},
                           "assistant": {"backend": "loop"}}}
    config = parse_config(data)
    with loopback_for(data, port, latency) as tmp:
        steps = build_steps(config)
        tasks_path = synthesize_shard(config, 0, tmp / "tasks.parquet", steps)
        lineage = Lineage(run_id="bench", config_hash=config.config_hash(), code_version="bench", seed=2)
        # The endpoint rollout_shard itself uses (its scope is the shard's folder): for the adaptive limit's figures.
        endpoint = open_endpoints({"loop": config.backends["loop"]}, None, scope=str(tmp))["loop"]
        busy_before = server_busy(port)
        cpu0, started, thread0, mono0 = time.process_time(), time.perf_counter(), loop_thread(), time.monotonic()
        result = rollout_shard(config, 0, tasks_path, tmp / "rows.parquet", lineage, steps)  # its loop: this thread
        wall, cpu, mono1 = time.perf_counter() - started, time.process_time() - cpu0, time.monotonic()
        stats = server_stats(port)
        busy = stats["busy_area"] - busy_before  # the server's own integral of requests being worked on
        share = loop_share(thread0)
        # the shard's own time before its first request and after its last answer (one monotonic clock per machine)
        edges = stats["first_work"] - mono0, mono1 - stats["last_work"]
    requests = sum(u.requests for u in result.usage.values())
    dialogues = sum(result.counts.values())
    ideal = limit / (requests / dialogues * latency)
    return {"dialogues": dialogues, "counts": result.counts, "requests": requests, "wall": wall,
            "errors": sum(u.errors for u in result.usage.values()), "utilization": busy / (wall * limit),
            "per_traj": requests / dialogues, "rate": dialogues / wall, "ideal": ideal,
            "cpu_per_1k": cpu / requests * 1000, "aimd": aimd(endpoint), "loop": share, "edges": edges}


def aimd(endpoint) -> str:
    """Where the adaptive limit ended, and how often it moved: a limit that fell explains idle slots."""
    control = endpoint.control
    if control is None:
        return "fixed limit"
    return (f"limit {endpoint.limit.limit} of {control.ceiling}, {control.increases} increases, "
            f"{control.decreases} decreases")


@contextmanager
def loopback_for(data: dict, port: int, latency: float) -> Iterator[Path]:
    """A loopback server on ``port`` that plays the run ``data`` describes, in its own process; a scratch folder."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run.json").write_text(json.dumps(data))
        server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "--port", str(port),
                                   "--latency", str(latency), "--config", str(tmp / "run.json")],
                                  stdout=subprocess.DEVNULL)
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", server)
            yield tmp
        finally:
            stop_server(server)


def flow(limit: int, shards: int, shard_tasks: int, latency: float) -> dict:
    """The real Prefect flow over several shards (two open at once): is the server kept busy across shard
    boundaries? Measured by the server, from its first request being worked on to its last."""
    from pipelines.flow import run_generate
    from schemas import parse_config
    from simulators.backends.managed_vllm import free_port

    port = free_port()
    data = {"name": "bench-flow", "seed": 4, "num_tasks": shards * shard_tasks, "shard_size": shard_tasks,
            "backends": {"loop": {"model": "loop-model", "base_url": f"http://127.0.0.1:{port}/v1",
                                  "max_concurrency": limit, "timeout_s": 30}},
            "simulation": {"mode": "model", "concurrency": 2 * limit, "user": {"backend": "loop"},
                           "assistant": {"backend": "loop"}},
            "runner": {"kind": "thread", "workers": 2, "shards_in_flight": 2}, "cache": {"enabled": False}}
    with loopback_for(data, port, latency) as tmp:
        manifest = run_generate(parse_config(data), tmp / "ds", "bench-flow")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
            stats = json.loads(r.read())
    span = stats["last_work"] - stats["first_work"]
    return {"tasks": manifest.tasks, "requests": stats["requests"], "span": span,
            "utilization": stats["busy_area"] / (limit * span)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--limits", default="64,256")
    p.add_argument("--tasks-per-slot", type=int, default=8, help="dialogues per request slot of the shard")
    p.add_argument("--flow-shards", type=int, default=4, help="shards of the flow measurement (0: skip it)")
    args = p.parse_args()
    limits = [int(x) for x in args.limits.split(",")]

    c = client_cpu(args.requests, args.latency)
    print(f"client: {c['requests']} requests at 64 in flight, {args.latency:.2f}s server latency, in "
          f"{c['wall']:.1f}s ({c['errors']} errors): {c['cpu_per_1k']:.2f} CPU-s per 1k requests; server busy "
          f"{c['server_busy']:.2f} ({c['aimd']}; {c['loop']})")
    figures = [f"client_cpu_s_per_1k={c['cpu_per_1k']:.2f}"]
    for limit in limits:
        r = simulate(limit, args.tasks_per_slot * limit, args.latency)
        print(f"simulate at {limit} in flight: {r['dialogues']} dialogues ({r['counts']}), {r['requests']} requests "
              f"({r['errors']} errors) in {r['wall']:.1f}s; {r['per_traj']:.1f} requests/trajectory, "
              f"{r['rate']:.1f} trajectories/s vs ideal {r['ideal']:.1f} ({r['rate'] / r['ideal']:.2f} of ideal); "
              f"utilization {r['utilization']:.2f} (first request after {r['edges'][0]:.2f}s, last answer "
              f"{r['edges'][1]:.2f}s before the end); client {r['cpu_per_1k']:.2f} CPU-s per 1k requests "
              f"(dialogue loop, tools and filters included; {r['aimd']}; {r['loop']})")
        figures.append(f"utilization_{limit}={r['utilization']:.2f}")
    if args.flow_shards:
        r = flow(64, args.flow_shards, args.tasks_per_slot * 64, args.latency)
        print(f"flow, {args.flow_shards} shards, 2 open at once, 64 in flight: {r['tasks']} tasks, {r['requests']} "
              f"requests, server busy {r['utilization']:.2f} from its first request to its last ({r['span']:.1f}s)")
        figures.append(f"flow_utilization_64={r['utilization']:.2f}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("backend_concurrency: " + " ".join(figures))


if __name__ == "__main__":
    main()
