"""Does the backend layer keep the server busy? Streaming rollouts against a fixed-latency server.

A loopback OpenAI-compatible server (tests/loopback.py, its own process)
answers every request after a fixed latency, replaying the offline
transcripts of the run's tasks as both user simulator and assistant. One shard
of model-mode dialogues runs against it through the real endpoint layer with a
concurrency limit of 128. Measured: the mean number of requests in flight
divided by the limit (from the limit's own occupancy integral, over the whole
run, ramp-up and tail included) and trajectories/s against the ideal
``limit / (requests per trajectory × latency)``.

    .venv/bin/python bench/backend_concurrency.py [--tasks 1500] [--latency 0.2] [--limit 128]

Last line: ``backend_concurrency: utilization=<x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=1500)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--limit", type=int, default=128)
    args = p.parse_args()

    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.steps import build_steps
    from schemas import Lineage, parse_config
    from simulators.backends import open_endpoints
    from simulators.backends.managed_vllm import free_port

    port = free_port()
    data = {"name": "bench", "seed": 2, "num_tasks": args.tasks, "shard_size": args.tasks,
            "backends": {"loop": {"model": "loop-model", "base_url": f"http://127.0.0.1:{port}/v1",
                                  "max_concurrency": args.limit, "timeout_s": 30}},
            "simulation": {"mode": "model", "concurrency": 2 * args.limit, "user": {"backend": "loop"},
                           "assistant": {"backend": "loop"}}}
    config = parse_config(data)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "run.json").write_text(json.dumps(data))
        server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "--port", str(port),
                                   "--latency", str(args.latency), "--config", str(tmp / "run.json")])
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", server)
            steps = build_steps(config)
            tasks = synthesize_shard(config, 0, tmp / "tasks.parquet", steps)
            lineage = Lineage(run_id="bench", config_hash=config.config_hash(), code_version="bench", seed=2)
            endpoint = open_endpoints(config.backends, None)["loop"]
            busy_before = endpoint.limit.occupancy()
            started = time.perf_counter()
            result = rollout_shard(config, 0, tasks, tmp / "rows.parquet", lineage, steps)
            wall = time.perf_counter() - started
            busy = endpoint.limit.occupancy() - busy_before
        finally:
            server.terminate()
            server.wait(30)
    client_cpu = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = sum(u.requests for u in result.usage.values())
    errors = sum(u.errors for u in result.usage.values())
    dialogues = sum(result.counts.values())
    utilization = busy / (wall * args.limit)
    ideal = args.limit / (requests / dialogues * args.latency)
    print(f"{dialogues} dialogues ({result.counts}), {requests} requests ({errors} errors) in {wall:.1f}s")
    print(f"requests/trajectory {requests / dialogues:.1f}; trajectories/s {dialogues / wall:.1f} "
          f"vs ideal {ideal:.1f} ({dialogues / wall / ideal:.2f} of ideal)")
    print(f"cpu seconds: client {client_cpu.ru_utime + client_cpu.ru_stime:.0f}, server "
          f"{server_cpu.ru_utime + server_cpu.ru_stime:.0f} (over {wall:.0f}s wall, {os.cpu_count()} cores)")
    print(f"backend_concurrency: utilization={utilization:.2f}")


if __name__ == "__main__":
    main()
