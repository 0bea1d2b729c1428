"""KG question quality on a real published KG, measured by the independent checker.

Runs ``trajforge generate`` offline on a KG config (by default WN18RR as
published, ``examples/kg_wn18rr.yaml``; ``--path`` points it at the full
``text/train.txt``), then re-solves every accepted question from the raw
triples with ``bench/kg_check.py`` (no generator code) and prints: the share
of questions that need all their hops, name leaks, answers not unique under
the names shown, anchors described only by a first letter, the synthesis
funnel, question-building speed on the same graph, and three questions with
their paths.

    .venv/bin/python bench/kg_real.py [--config examples/kg_wn18rr.yaml] [--path FILE] [--tasks 300]

Last line: ``kg_real: all_hops=<pct> leaks=<n> non_unique=<n> letter_anchors=<n> accepted=<n> q/s=<x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kg_check import RawKG, accepted_questions, summarize  # noqa: E402


def building_rate(config: dict, seconds: float = 20.0) -> tuple[float, int]:
    """Tasks per second from the generator alone (walk, clues, checks, planned and executed calls)."""
    from generators import SynthesisError
    from pipelines.steps import build_steps
    from schemas import RunConfig

    steps = build_steps(RunConfig.model_validate(config))
    gen = steps.generators[0]
    made, seed, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and seed < 2000:
        try:
            gen.generate(random.Random(seed))
            made += 1
        except SynthesisError:
            pass
        seed += 1
    return made / (time.perf_counter() - t0), made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "examples/kg_wn18rr.yaml"))
    parser.add_argument("--path", help="the triples file (the full published one), instead of the config's")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--show", type=int, default=3, help="questions printed with their paths")
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    params = config["domain"]["params"]
    if args.path:
        params["path"] = args.path
    config.update(num_tasks=args.tasks, shard_size=max(50, args.tasks // 2))
    if args.seed is not None:
        config["seed"] = args.seed
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kg"
        config["output_dir"] = str(out)
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}  # a loaded 2-core machine
        run = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(cfg)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"trajforge generate failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
        warnings = [line for line in run.stderr.splitlines() if "skipped" in line]
        listed = subprocess.run([sys.executable, "-m", "pipelines.cli", "versions", str(out), "--json"], cwd=ROOT,
                                env=env, capture_output=True, text=True, check=True)
        manifest = json.loads(listed.stdout)[-1]
        questions = accepted_questions(str(out))
    raw = RawKG(params)
    results = [raw.check(task, question) for task, question in questions]
    s = summarize(results)
    print(f"graph: {params['path']}: {len(raw.entities):,} entities, {sum(map(len, raw.adj.values())) // 2:,} edges, "
          f"{raw.self_loops} self-loops in the file")
    for line in warnings:
        print(f"loader warning: {line}")
    print(f"run: {manifest['tasks']} tasks, {manifest['accepted']} accepted, rejected by stage {manifest['stages']}")
    print(f"synthesis funnel: {json.dumps(manifest.get('synthesis', {}), sort_keys=True)}")
    print(f"checked: {json.dumps(s)}")
    needed = {}
    for r in results:
        needed[r["needed"]] = needed.get(r["needed"], 0) + 1
    print(f"needed hops of accepted questions: {dict(sorted(needed.items()))}")
    for task, question in questions[:args.show]:
        print(f"\nQ: {question}\nA: {task['answer']}")
        for var in task["path"]:
            via = f" <-{var['relation']}({var['direction']})- {var['source']}" if "relation" in var else ""
            print(f"   {var['var']} = {var['entity']} ({var['name']}){via}; clues: {'; '.join(var['clues']) or '-'}")
    rate, made = building_rate(config)
    pct = 100 * s["all_hops"] / max(s["questions"], 1)
    print(f"\nbuilding: {made} tasks at {rate:.1f} tasks/s (generator alone, same graph)")
    print(f"kg_real: all_hops={pct:.1f}% leaks={s['leaks']} non_unique={s['non_unique']} "
          f"letter_anchors={s['letter_anchors']} accepted={s['questions']} q/s={rate:.1f}")


if __name__ == "__main__":
    main()
