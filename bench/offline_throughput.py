"""How fast does the offline job generate, and does memory stay flat as it grows?

Runs the real `generate` flow (temporary Prefect server, Delta commit) for 10k
and 100k trajectories, each in its own subprocess so peak memory is measured
per size, plus 10k on the thread runner for the runner comparison.

    .venv/bin/python bench/offline_throughput.py [--sizes 10000 100000]

Last line: ``offline_throughput: <traj/s at the largest size> traj/s, rss_ratio=<largest/smallest peak RSS>``.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(n: int, runner: str) -> None:
    sys.path.insert(0, str(ROOT))
    from pipelines.flow import run_generate
    from schemas import parse_config

    config = parse_config({"name": "bench", "seed": 1, "num_tasks": n, "shard_size": 1000,
                           "simulation": {"perturb_rate": 0.1}, "runner": {"kind": runner, "workers": 2}})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        manifest = run_generate(config, Path(tmp) / "ds", f"bench-{n}")
        seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "runner": runner, "seconds": seconds, "accepted": manifest.accepted,
                      "peak_rss_mb": max(own, workers), "main_rss_mb": own}))


def measure(n: int, runner: str) -> dict:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "ERROR"}
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--runner", runner], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int)
    parser.add_argument("--runner", default="process")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runner)
        return
    results = [measure(n, "process") for n in args.sizes]
    thread = measure(args.sizes[0], "thread")
    for r in [*results, thread]:
        print(f"{r['runner']:>7} runner  {r['n']:>7} tasks  {r['seconds']:7.1f} s  {r['n'] / r['seconds']:7.0f} traj/s  "
              f"accepted {r['accepted']:>7}  peak RSS {r['peak_rss_mb']:6.0f} MB (main process {r['main_rss_mb']:.0f} MB)")
    small, large = results[0], results[-1]
    speedup = (small["n"] / small["seconds"]) / (thread["n"] / thread["seconds"])
    print(f"process/thread runner speedup at {small['n']}: {speedup:.2f}x")
    print(f"offline_throughput: {large['n'] / large['seconds']:.0f} traj/s, "
          f"rss_ratio={large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
