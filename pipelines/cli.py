"""``trajforge``: the command line.

Errors a user can fix (a bad config, a missing dataset) are one line on stderr
and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

from schemas import ConfigError, load_config


def _run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.steps import build_steps

    config = load_config(args.config, seed=args.seed, output_dir=args.out)
    build_steps(config, str(args.config))  # fail on bad step names/params before any work
    if not config.output_dir:
        raise ConfigError(f"{args.config}: output_dir: not set; give --out DIR")
    from pipelines.flow import run_generate

    run_id = args.run_id or _run_id()
    manifest = run_generate(config, config.output_dir, run_id, progress=not args.no_progress)
    print(f"\nversion {manifest.version} committed to {Path(config.output_dir).resolve()}")
    print(f"  run {manifest.run_id}: {manifest.tasks} tasks -> {manifest.accepted} accepted, "
          f"{manifest.rejected} rejected ({manifest.total_accepted} accepted in the dataset)")
    if manifest.funnel:
        from pipelines.funnel import print_funnel

        print_funnel(manifest)
    else:
        for stage, n in manifest.stages.items():
            print(f"  rejected at {stage}: {n}")
    for role, u in manifest.usage.items():
        print(f"  {role} ({manifest.models.get(role, '?')}): {u.requests} requests, {u.cached} from cache, "
              f"{u.retries} retries, {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, "
              f"{u.latency_s:.1f}s in requests")
    print(f"  open it: polars.read_delta({str(config.output_dir)!r}, version={manifest.version})")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from pipelines.store import DatasetStore, StoreError

    try:
        versions = DatasetStore(args.dir).versions()
    except StoreError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(json.dumps([m.model_dump(exclude={"config"}) for m in versions], indent=2))
        return 0
    print(f"{'version':>7}  {'accepted':>8}  {'rejected':>8}  {'total':>7}  {'created_at':<25}  run_id")
    for m in versions:
        print(f"{m.version:>7}  {m.accepted:>8}  {m.rejected:>8}  {m.total_accepted:>7}  {m.created_at:<25}  "
              f"{m.run_id}")
    return 0


def cmd_dedup_histogram(args: argparse.Namespace) -> int:
    from pipelines.funnel import dedup_histogram

    return dedup_histogram(args.dir, args.bins)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trajforge", description="Synthetic multi-turn tool-use trajectories.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="run the generate flow and commit a new dataset version")
    g.add_argument("--config", required=True, type=Path)
    g.add_argument("--out", help="dataset directory (overrides output_dir in the config)")
    g.add_argument("--seed", type=int)
    g.add_argument("--run-id", help="name this run (default: a timestamp)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)
    v = sub.add_parser("versions", help="list the versions of a dataset")
    v.add_argument("dir", type=Path)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_versions)
    h = sub.add_parser("dedup-histogram", help="nearest-neighbour cosine similarity of the kept rows (all versions), "
                       "to choose dedup.semantic.threshold")
    h.add_argument("dir", type=Path)
    h.add_argument("--bins", type=int, default=20)
    h.set_defaults(func=cmd_dedup_histogram)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    args = parser().parse_args(argv)
    from simulators.backends import BackendError

    try:
        return args.func(args)
    except ConfigError as err:
        print(f"trajforge: error: {err}", file=sys.stderr)
        return 2
    except BackendError as err:  # e.g. a managed vLLM server that would not start; nothing was committed
        print(f"trajforge: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
