"""What does each built-in domain yield offline, and how varied and hard is it?

Runs each domain's example config (``examples/<domain>.yaml``; the store with
the settings of the demo, which mixes all three, and the same task count) shard by shard in one process,
no Prefect, commits each into a temporary dataset, and prints side by side:
accepted / tasks, the user's distinct trigrams, the top user turn's share of
dialogues, distinct tool chains, mean writes and mean difficulty, and seconds.

    .venv/bin/python bench/domains.py [--tasks 600]

Last line: ``domains_min_accepted: <fewest accepted dialogues of any domain> of <tasks>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(domain: str, tasks: int, tmp: Path) -> dict:
    from pipelines.flow import known_intents
    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.store import DatasetStore
    from schemas import DatasetManifest, Lineage, load_config, parse_config

    path = ROOT / "examples" / (f"{domain}.yaml" if domain != "store" else "demo.yaml")
    config = load_config(path, num_tasks=tasks)
    if domain == "store":  # the demo mixes the three domains: its settings, with the store alone
        config = parse_config({**config.model_dump(mode="json", exclude={"domains"}),
                               "domain": {"name": "store", "db_seed": 0}}, str(path))
    lineage = Lineage(run_id=domain, config_hash=config.config_hash(), code_version="bench", seed=config.seed)
    started = time.perf_counter()
    files = []
    for shard in range(config.num_shards):
        staged = synthesize_shard(config, shard, tmp / f"{domain}-tasks-{shard}.parquet")
        rollout_shard(config, shard, staged, tmp / f"{domain}-rows-{shard}.parquet", lineage)
        files.append(tmp / f"{domain}-rows-{shard}.parquet")
    draft = DatasetManifest(parent_version=None, run_id=domain, config_hash=lineage.config_hash, code_version="bench",
                            seed=config.seed, created_at="", tasks=0, accepted=0, rejected=0,
                            config=config.model_dump(mode="json"))
    store = DatasetStore(tmp / domain)
    manifest = store.commit(files, draft, lambda: store.deduplicator(config.dedup), known_intents=known_intents(config))
    f = manifest.diversity
    return {"domain": domain, "tasks": manifest.tasks, "accepted": manifest.accepted,
            "distinct3": f.user.distinct_3, "top_turn": f.user.top_turn_share, "chains": f.tool_chains,
            "writes": f.difficulty.mean_writes, "difficulty": f.difficulty.mean,
            "seconds": time.perf_counter() - started}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=600)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(d, args.tasks, Path(tmp)) for d in ("store", "airline", "telecom")]
    print(f"{'domain':<8} {'accepted':>12} {'distinct-3':>10} {'top turn':>9} {'chains':>7} {'writes':>7} "
          f"{'difficulty':>10} {'seconds':>8}")
    for r in results:
        print(f"{r['domain']:<8} {r['accepted']:>6}/{r['tasks']:<5} {r['distinct3']:>10.1%} {r['top_turn']:>9.2%} "
              f"{r['chains']:>7} {r['writes']:>7.2f} {r['difficulty']:>10.1f} {r['seconds']:>8.1f}")
    print(f"domains_min_accepted: {min(r['accepted'] for r in results)} of {args.tasks}")


if __name__ == "__main__":
    main()
