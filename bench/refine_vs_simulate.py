"""What does an accepted trajectory cost in model requests, from model-written blueprint to verified dialogue?

One run of the whole model path against a loopback OpenAI-compatible server on
127.0.0.1, through the real endpoint layer (request cache off, so every
request reaches the server):

1. **synthesis**: ``--tasks`` model-written blueprints (``model_blueprint``:
   writer, a committee of 3 reviewers with majority vote, 2 feedback rounds,
   10% recombination). The scripted writer (tests/blueprint_brain.py) breaks
   its first draft for 12% of users (bad JSON, an ungrounded output, an order
   that does not exist), reviewers demand a revision for 15% and never
   approve 3%; the third reviewer votes no on everything. The funnel printed
   is what the stages did with that;
2. **simulation** of the same tasks, twice:
   - ``simulate``: TranscriptBrain plays the model user and the model assistant turn by turn;
   - ``skeleton_refine``: RefineBrain fills each dialogue's masked turns in one reply.

Requests per accepted trajectory are split into synthesis (the same for both)
and simulation; accepted = verified by the demo's filter chain.

    .venv/bin/python bench/refine_vs_simulate.py [--tasks 200]

Last line: ``refine_vs_simulate: requests_per_accepted simulate=<a> skeleton_refine=<b> ratio=<a/b>``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SYNTHESIS = "model_blueprint"


def share(user: str) -> float:
    """A stable number in [0, 1) per user, so the scripted faults fall on the same users every run."""
    return int(hashlib.sha1(user.encode()).hexdigest()[:8], 16) / 2**32


def scripted_brain(config):
    from blueprint_brain import BlueprintBrain

    users = BlueprintBrain(config).users
    kinds = ("bad_json", "ungrounded", "wrong_id")
    faults = {u: kinds[int(share(u) * 1000) % 3] for u in users if share(u) < 0.12}
    demanding = {u for u in users if 0.12 <= share(u) < 0.27}
    hopeless = {u for u in users if 0.27 <= share(u) < 0.30}
    return BlueprintBrain(config, faults=faults, demanding=demanding, hopeless=hopeless, grumpy={3})


def config_for(tasks: int, url: str, simulation: dict):
    from schemas import load_config, parse_config

    base = load_config(ROOT / "examples" / "demo.yaml", num_tasks=tasks, shard_size=tasks).model_dump(
        exclude={"domains"})  # the store alone: the demo mixes three domains, the loopback writer knows the store's
    committee = {"rule": "majority", "reviewers": [{"backend": "loop", "seed": s} for s in (1, 2, 3)]}
    return parse_config({
        **base, "output_dir": None, "cache": {"enabled": False},
        "backends": {"loop": {"model": "loop-model", "base_url": url, "max_concurrency": 64, "timeout_s": 30}},
        "generators": [{"name": SYNTHESIS, "params": {"backend": "loop", "feedback_rounds": 2, "recombine_rate": 0.1,
                                                      "committee": committee}}],
        "simulation": simulation}, "bench")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=200)
    args = p.parse_args()

    from collections import Counter

    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from blueprint_brain import Router
    from loopback import LoopbackServer, RefineBrain, TranscriptBrain

    from pipelines.funnel import synthesis_lines
    from pipelines.shard import FUNNEL_KEY, read_meta, rollout_shard, synthesize_shard
    from pipelines.steps import build_steps
    from schemas import Lineage, Task

    strategies = {
        "simulate": {"mode": "model", "user": {"backend": "loop"}, "assistant": {"backend": "loop", "temperature": 0}},
        "skeleton_refine": {"mode": "model", "strategy": "skeleton_refine", "refine": {"backend": "loop"}},
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        configs = {name: config_for(args.tasks, server.url, sim) for name, sim in strategies.items()}
        writer = scripted_brain(configs["simulate"])
        server.brain = Router(writer)
        started = time.perf_counter()
        tasks_path = synthesize_shard(configs["simulate"], 0, Path(tmp) / "tasks.parquet")
        synthesis_s = time.perf_counter() - started
        table = pq.read_table(tasks_path)
        funnel = read_meta(table.schema, FUNNEL_KEY)[SYNTHESIS]
        tasks = {i: Task.model_validate_json(t) for i, t in zip(table.column("index").to_pylist(),
                                                                table.column("task").to_pylist(), strict=True) if t}
        synthesis_requests = server.requests
        brains = {"simulate": TranscriptBrain(configs["simulate"], tasks=tasks), "skeleton_refine": RefineBrain()}
        for name, config in configs.items():
            server.brain = Router(writer, brains[name])
            server.reset_counts()
            lineage = Lineage(run_id=name, config_hash=config.config_hash(), code_version="bench", seed=config.seed)
            started = time.perf_counter()
            result = rollout_shard(config, 0, tasks_path, Path(tmp) / f"{name}.parquet", lineage, build_steps(config))
            accepted = result.counts.get("accepted", 0)
            rejected = pq.read_table(Path(tmp) / f"{name}.parquet").filter(pc.field("status") == "rejected")
            reasons = Counter(f"{st}: {r[:70]}" for st, r in zip(rejected.column("stage").to_pylist(),
                                                                 rejected.column("reason").to_pylist(), strict=True))
            rows[name] = {"simulation": server.requests, "accepted": accepted, "seconds": time.perf_counter() - started,
                          "reasons": reasons}

    print(f"synthesis of {args.tasks} model-written blueprints ({synthesis_s:.1f}s, {synthesis_requests} requests):")
    for line in synthesis_lines(SYNTHESIS, funnel):
        print("  " + line)
    first_round = sum(t.provenance.get("rounds") == 1 for t in tasks.values())
    print(f"  {len(tasks)} of {args.tasks} tasks validated, {first_round} of them in their first round "
          f"({first_round / args.tasks:.0%} of tasks without feedback, {len(tasks) / args.tasks:.0%} with it)")
    print(f"\n{'strategy':<16} {'accepted':>9} {'synthesis req':>14} {'simulation req':>15} {'req/accepted':>13} "
          f"{'sim. req/dialogue':>18} {'seconds':>8}")
    for name, r in rows.items():
        r["per_accepted"] = (synthesis_requests + r["simulation"]) / max(r["accepted"], 1)
        print(f"{name:<16} {r['accepted']:>9} {synthesis_requests:>14} {r['simulation']:>15} {r['per_accepted']:>13.2f} "
              f"{r['simulation'] / max(len(tasks), 1):>18.2f} {r['seconds']:>8.1f}")
    for name, r in rows.items():
        print(f"{name} rejections: " + ("; ".join(f"{k} ({n})" for k, n in r["reasons"].most_common(4)) or "none"))
    a, b = rows["simulate"]["per_accepted"], rows["skeleton_refine"]["per_accepted"]
    print(f"refine_vs_simulate: requests_per_accepted simulate={a:.2f} skeleton_refine={b:.2f} ratio={a / b:.1f}")


if __name__ == "__main__":
    main()
