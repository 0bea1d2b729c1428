"""Peak memory of a commit's dedup as the run grows: its rows signed one shard file at a time, or all at once.

Why: ``bench/offline_throughput.py``'s 100k/10k peak-RSS ratio counts the committing
process, and the commit's near layer used to read the user turns of *every* accepted
row and tokenize and sign them as one batch: texts, tokens and shingle arrays that grow
with the run (tens of MB at 10k rows, hundreds at 100k). Now rows that lie in shard
files (``dedup.ShardTexts``, what the commit passes) are signed one file at a time,
so only the signatures (512 bytes a row) grow. This measures both side by side, in
guarded children (``guarded.run``: time-limited, killed with everything they started),
on the same shard files of 1,000 rows each, as the store's commit lays them out.

Rows are real pipeline dialogues (``near_dedup_memory.pipeline_texts``: ``--data``
Delta datasets, or demo-like offline shards made into ``--cache``), cycled to the size
with a reference number appended to each copy: distinct for the exact layer, near
duplicates of one another for the near layer (templated dialogues, capped buckets).

    .venv/bin/python bench/commit_dedup_memory.py [--sizes 10000 100000] [--data DS ...]

Last line: ``commit_dedup_memory: files_growth_ratio=<x> batch_growth_ratio=<x> files_vs_batch_peak_at_<n>=<x>``
(growth: peak RSS over the child's RSS before dedup, at the largest size over the smallest).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import guarded

ROOT = Path(__file__).resolve().parents[1]
SHARD_ROWS = 1000


def child(mode: str, folder: str, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    from dedup import Deduplicator, ShardTexts
    from schemas import DedupConfig

    files = sorted(Path(folder).glob("rows-*.parquet"))[: -(-n // SHARD_ROWS)]
    ids = [f"r{i}" for i in range(n)]
    source = ShardTexts(files)
    texts_for = source if mode == "files" else (lambda positions: source(positions))  # noqa: PLW0108 (all at once)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    out = Deduplicator(DedupConfig()).run(ids, [True] * n, ids, texts_for)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "mode": mode, "seconds": seconds, "peak_mb": peak, "growth_mb": peak - base,
                      "near": out.counts.get("near", 0)}))


def write_shards(texts: list[str], n: int, into: Path) -> None:
    import polars as pl

    for lo in range(0, n, SHARD_ROWS):
        rows = [texts[k % len(texts)] + f" Ref #R{k}." for k in range(lo, min(lo + SHARD_ROWS, n))]
        pl.DataFrame({"messages": [[{"role": "user", "content": t}] for t in rows]}).write_parquet(
            into / f"rows-{lo // SHARD_ROWS:05d}.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--data", nargs="*", default=[], help="Delta datasets whose accepted rows to use")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "near-dedup-shards")
    ap.add_argument("--distinct", type=int, default=3000, help="distinct dialogues to cycle (without --data)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--mem-limit-gb", type=float, default=8.0)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        mode, folder, n = args.child
        return child(mode, folder, int(n))
    from near_dedup_memory import pipeline_texts

    texts = pipeline_texts(args.data, args.cache, args.distinct)
    sizes = sorted(args.sizes)
    print(f"{len(texts)} real pipeline dialogues, cycled to {sizes} rows in shard files of {SHARD_ROWS}")
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(texts, sizes[-1], Path(tmp))
        for n in sizes:
            for mode in ("batch", "files"):
                done = guarded.run([sys.executable, __file__, "--child", mode, tmp, str(n)], args.timeout,
                                   args.mem_limit_gb)
                if done.failure is not None or not done.stdout.strip():
                    print(f"{mode:>6} {n:>7} rows  FAILED: {done.failure or done.stderr[-300:]}", flush=True)
                    continue
                r = results[(mode, n)] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{mode:>6} {n:>7} rows  {r['seconds']:7.1f} s  peak RSS {r['peak_mb']:6.0f} MB  "
                      f"growth {r['growth_mb']:6.0f} MB  near duplicates {r['near']}", flush=True)

    def ratio(mode: str) -> str:
        lo, hi = results.get((mode, sizes[0])), results.get((mode, sizes[-1]))
        return f"{hi['growth_mb'] / max(lo['growth_mb'], 1):.2f}" if lo and hi else "failed"

    big = sizes[-1]
    vs = (f"{results[('files', big)]['peak_mb'] / results[('batch', big)]['peak_mb']:.2f}"
          if ("files", big) in results and ("batch", big) in results else "failed")
    print(f"commit_dedup_memory: files_growth_ratio={ratio('files')} batch_growth_ratio={ratio('batch')} "
          f"files_vs_batch_peak_at_{big}={vs}")


if __name__ == "__main__":
    main()
