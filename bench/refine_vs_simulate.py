"""How many model requests does an accepted trajectory cost: turn-by-turn simulation vs skeleton + refine?

Both strategies run on the same offline blueprints (examples/demo.yaml's
shape: store domain, 1-3 requests per task, its filter chain) against a
loopback OpenAI-compatible server on 127.0.0.1, through the real endpoint
layer (request cache off, so every request reaches the server):

- ``simulate``: TranscriptBrain plays the model user and the model assistant,
  replaying the offline transcripts (so the dialogues are the skeletons);
- ``skeleton_refine``: RefineBrain fills every dialogue's slots in one reply
  (the default rates: half the user turns, 30% clarifications, 20% corrections).

Counted: HTTP requests the server received, and accepted rows of the shard
(simulation + verification; dedup is not part of the question).

    .venv/bin/python bench/refine_vs_simulate.py [--tasks 200]

Last line: ``refine_vs_simulate: requests_per_accepted simulate=<a> skeleton_refine=<b> ratio=<a/b>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def measure(config, brain, tmp: Path, name: str) -> dict[str, float]:
    from loopback import LoopbackServer

    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.steps import build_steps
    from schemas import Lineage, RunConfig

    with LoopbackServer(brain) as server:
        data = config.model_dump()
        data["backends"]["loop"]["base_url"] = server.url
        config = RunConfig.model_validate(data)
        steps = build_steps(config)
        tasks = synthesize_shard(config, 0, tmp / f"{name}-tasks.parquet", steps)
        lineage = Lineage(run_id=name, config_hash=config.config_hash(), code_version="bench", seed=config.seed)
        started = time.perf_counter()
        result = rollout_shard(config, 0, tasks, tmp / f"{name}-rows.parquet", lineage, steps)
        seconds = time.perf_counter() - started
        requests = server.requests
    accepted = result.counts.get("accepted", 0)
    tokens = sum(u.prompt_tokens + u.completion_tokens for u in result.usage.values())
    return {"requests": requests, "accepted": accepted, "per_accepted": requests / max(accepted, 1),
            "tokens_per_accepted": tokens / max(accepted, 1), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=200)
    args = p.parse_args()

    from loopback import RefineBrain, TranscriptBrain

    from schemas import load_config

    base = load_config(ROOT / "examples" / "demo.yaml", num_tasks=args.tasks, shard_size=args.tasks).model_dump()
    backend = {"loop": {"model": "loop-model", "base_url": "http://127.0.0.1:9/v1", "max_concurrency": 64,
                        "timeout_s": 30}}
    common = {**base, "backends": backend, "cache": {"enabled": False}, "output_dir": None}
    simulate = load_config_from(common, {"mode": "model", "user": {"backend": "loop"},
                                         "assistant": {"backend": "loop", "temperature": 0.0}})
    refine = load_config_from(common, {"mode": "model", "strategy": "skeleton_refine",
                                       "refine": {"backend": "loop", "temperature": 0.7}})
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["simulate"] = measure(simulate, TranscriptBrain(simulate), Path(tmp), "simulate")
        rows["skeleton_refine"] = measure(refine, RefineBrain(), Path(tmp), "refine")
    print(f"{'strategy':<16} {'requests':>9} {'accepted':>9} {'req/accepted':>13} {'tokens/accepted':>16} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<16} {r['requests']:>9} {r['accepted']:>9} {r['per_accepted']:>13.2f} "
              f"{r['tokens_per_accepted']:>16.0f} {r['seconds']:>8.1f}")
    a, b = rows["simulate"]["per_accepted"], rows["skeleton_refine"]["per_accepted"]
    print(f"refine_vs_simulate: requests_per_accepted simulate={a:.2f} skeleton_refine={b:.2f} ratio={a / b:.1f}")


def load_config_from(common: dict, simulation: dict):
    from schemas import parse_config

    return parse_config({**common, "simulation": simulation}, "bench")


if __name__ == "__main__":
    main()
