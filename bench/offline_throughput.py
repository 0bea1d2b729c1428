"""How fast does the offline job generate, and does memory stay flat as it grows?

Runs the real `generate` flow (temporary Prefect server, Delta commit) for 10k
and 100k trajectories, each in its own subprocess so peak memory is measured
per size, plus 10k on the thread runner for the runner comparison.

Each child cannot hang the benchmark (``guarded.run``): it has a time limit
(``--timeout``) and an optional address-space limit (``--mem-limit-gb``), the
resident memory of its whole process tree (process-pool workers, the temporary
Prefect server) is sampled, and when it exits, dies (OOM, signal) or times out,
every process it started is killed; a failed size is printed with its last RSS.

    .venv/bin/python bench/offline_throughput.py [--sizes 10000 100000] [--no-near] [--timeout 3600]

Last line: ``offline_throughput: <traj/s at the largest size> traj/s, rss_ratio=<largest/smallest peak RSS>``
(the RSS of every process of the run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import guarded

ROOT = Path(__file__).resolve().parents[1]


def child(n: int, runner: str, near: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from pipelines.flow import run_generate
    from schemas import parse_config

    config = parse_config({"name": "bench", "seed": 1, "num_tasks": n, "shard_size": 1000,
                           "simulation": {"perturb_rate": 0.1}, "runner": {"kind": runner, "workers": 2},
                           "dedup": {"near": {"enabled": near}}})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        manifest = run_generate(config, Path(tmp) / "ds", f"bench-{n}")
        seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "runner": runner, "seconds": seconds, "accepted": manifest.accepted,
                      "single_peak_mb": max(own, workers), "main_rss_mb": own}))


def measure(n: int, runner: str, near: bool, timeout: float, mem_limit_gb: float | None) -> dict:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "ERROR"}
    argv = [sys.executable, __file__, "--child", str(n), "--runner", runner] + ([] if near else ["--no-near"])
    done = guarded.run(argv, timeout, mem_limit_gb, env)
    if done.failure is not None or not done.stdout.strip():
        return {"n": n, "runner": runner, "failed": done.failure or "no output", "left_running": done.left_running}
    r = json.loads(done.stdout.strip().splitlines()[-1])
    # every process of the run at once (sampled), or the largest single one if a sample missed its spike
    return {**r, "tree_rss_mb": done.peak_rss_mb, "peak_mb": max(done.peak_rss_mb, r["single_peak_mb"]),
            "left_running": done.left_running}


def show(r: dict) -> str:
    if "failed" in r:
        return (f"{r['runner']:>7} runner  {r['n']:>7} tasks  FAILED: {r['failed']}; "
                f"processes it started, killed: {r['left_running']}")
    return (f"{r['runner']:>7} runner  {r['n']:>7} tasks  {r['seconds']:7.1f} s  {r['n'] / r['seconds']:7.0f} traj/s  "
            f"accepted {r['accepted']:>7}  peak RSS {r['peak_mb']:6.0f} MB (all processes; main process "
            f"{r['main_rss_mb']:.0f} MB; left running at its end, killed: {r['left_running']})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int)
    parser.add_argument("--runner", default="process")
    parser.add_argument("--no-near", action="store_true", help="near-duplicate dedup off (to see its share)")
    parser.add_argument("--no-thread", action="store_true", help="skip the thread-runner comparison")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per size before its run is killed")
    parser.add_argument("--mem-limit-gb", type=float, default=None, help="address-space limit per process")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runner, not args.no_near)
        return
    results = []
    for n in args.sizes:
        results.append(measure(n, "process", not args.no_near, args.timeout, args.mem_limit_gb))
        print(show(results[-1]), flush=True)
    thread = None if args.no_thread else measure(args.sizes[0], "thread", not args.no_near, args.timeout,
                                                 args.mem_limit_gb)
    if thread:
        print(show(thread), flush=True)
    small, large = results[0], results[-1]
    if thread and "failed" not in small and "failed" not in thread:
        speedup = (small["n"] / small["seconds"]) / (thread["n"] / thread["seconds"])
        print(f"process/thread runner speedup at {small['n']}: {speedup:.2f}x")
    if "failed" in small or "failed" in large:
        print(f"offline_throughput: failed ({large.get('failed') or small.get('failed')})")
        return
    print(f"offline_throughput: {large['n'] / large['seconds']:.0f} traj/s, "
          f"rss_ratio={large['peak_mb'] / small['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
