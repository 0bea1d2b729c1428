"""Peak memory of near dedup on real pipeline dialogues, the code before and after, side by side at several sizes.

Why real pipeline output: ``bench/near_dedup.py``'s random documents do not see the
growth, because the pipeline's dialogues are templated and similar — their LSH buckets
are huge and uncapped buckets pair every member with every other. Here the rows are
the accepted dialogues of real offline runs (``--data``: Delta datasets written by
``trajforge generate``; without it, shards of the demo-like offline config are made
with the flow's own per-shard code into ``--cache``), with a near copy (one word
replaced) of 2% of them planted at a later position, so recall is known.

Every measurement is a child process in its own process group, under an address-space
limit (``--mem-limit-gb``: a runaway child fails with MemoryError instead of pushing a
shared machine into the OOM killer) and a time limit (``--timeout``): on timeout the
whole group is killed and the row says so with the child's last RSS. Nothing it
started outlives it. "before" is the ``dedup/`` package of ``--before`` (a git
revision; default: main before issue 17), "after" is this tree's; datasketch's MinHashLSH
runs on the first ``--datasketch-rows`` for reference (its pairs, no greedy pass).

    .venv/bin/python bench/near_dedup_memory.py --data DS1 DS2 ... [--sizes 9000 18000 36000]

Last line: ``near_dedup_memory: after_rss_ratio=<peak RSS at the largest size / smallest> before_rss_ratio=<same>
after_vs_before_rss_at_<n>=<x>``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import guarded

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "27674dc"  # main before issue 17 (uncapped LSH buckets)
PLANT_SHARE = 0.02


def pipeline_texts(datasets: list[str], cache: Path, need: int) -> list[str]:
    """Accepted dialogues' user turns from the given datasets, or from freshly made demo-like offline shards."""
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from dedup import user_texts

    texts: list[str] = []
    for ds in datasets:
        frame = pl.read_delta(ds).filter(pl.col("status") == "accepted").sort("shard", "index")
        texts += user_texts(frame)
    if datasets:
        return texts
    from pipelines.shard import rollout_shard, synthesize_shard
    from pipelines.steps import build_steps
    from schemas import Lineage, parse_config

    config = parse_config({"name": "bench", "seed": 1, "num_tasks": int(need * 1.15) + 1000, "shard_size": 1000,
                           "simulation": {"perturb_rate": 0.1}})
    steps = build_steps(config)
    lineage = Lineage(run_id="bench", config_hash="bench", code_version="bench", seed=1)
    cache.mkdir(parents=True, exist_ok=True)
    for shard in range(config.num_shards):
        rows = cache / f"r{shard}.parquet"
        if not rows.exists():
            synthesize_shard(config, shard, cache / f"t{shard}.parquet", steps)
            rollout_shard(config, shard, cache / f"t{shard}.parquet", rows, lineage, steps)
        texts += user_texts(pl.read_parquet(rows).filter(pl.col("status") == "accepted"))
        if len(texts) >= need:
            break
    return texts


def with_planted(texts: list[str], seed: int = 0) -> tuple[list[str], list[bool]]:
    """The texts with a one-word-edited copy of ``PLANT_SHARE`` of them inserted somewhere after their source.

    Only copies whose true word-3-gram Jaccard with their source is >= 0.85 are planted
    (as in ``near_dedup.py``): a one-word edit of a short dialogue is not a near duplicate.
    """
    from near_dedup import true_jaccard

    rng = random.Random(seed)
    out, planted = list(texts), [False] * len(texts)
    for src in sorted(rng.sample(range(len(texts)), int(len(texts) * PLANT_SHARE * 3)), reverse=True):
        words = texts[src].split(" ")
        words[rng.randrange(len(words))] = "zebra"
        if true_jaccard(texts[src], " ".join(words)) < 0.85 or rng.random() > 1 / 3:
            continue
        at = rng.randint(src + 1, len(out))
        out.insert(at, " ".join(words))
        planted.insert(at, True)
    return out, planted


def child(code: str, data: str, n: int) -> None:
    """One measurement: this ``dedup`` package (from ``code``) over the first ``n`` rows of ``data``."""
    sys.path[:0] = [code, str(ROOT)]
    import polars as pl

    frame = pl.read_parquet(data).head(n)
    texts, planted = frame["text"].to_list(), frame["planted"].to_list()
    if code == "datasketch":
        return datasketch_child(texts, planted)
    from dedup import Deduplicator
    from schemas import DedupConfig

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ids = [f"r{i}" for i in range(len(texts))]
    start = time.perf_counter()
    out = Deduplicator(DedupConfig()).run(ids, [True] * len(texts), ids, lambda pos: [texts[p] for p in pos])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    caught = sum(planted[i] for i, (layer, _) in out.rejected.items() if layer == "near")
    print(json.dumps({"n": len(texts), "seconds": seconds, "peak_mb": peak, "growth_mb": peak - base,
                      "near": out.counts.get("near", 0), "clusters": len(set(out.cluster_ids)),
                      "recall": caught / max(sum(planted), 1),
                      "unplanted_rejected": sum(not planted[i] for i in out.rejected)}))


def datasketch_child(texts: list[str], planted: list[bool]) -> None:
    """datasketch's MinHashLSH on the same rows (``near_dedup.with_datasketch``): a row is caught when it has an
    earlier partner at estimated Jaccard >= 0.8 (no greedy pass: an upper bound on what it would reject)."""
    from near_dedup import with_datasketch

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found, seconds = with_datasketch(texts, 128, 0.8)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    later = {j for _, j in found}
    print(json.dumps({"n": len(texts), "seconds": seconds, "peak_mb": peak, "growth_mb": peak - base,
                      "near": len(later), "clusters": -1, "recall": sum(planted[j] for j in later) / max(sum(planted), 1),
                      "unplanted_rejected": sum(not planted[j] for j in later)}))


def measure(label: str, code: str, data: Path, n: int, timeout: float, mem_limit_gb: float) -> dict:
    """One child (``guarded.run``: time-limited, its process tree killed afterwards)."""
    done = guarded.run([sys.executable, __file__, "--child", code, str(data), str(n)], timeout, mem_limit_gb)
    if done.failure is None and done.stdout.strip():
        return {"label": label, **json.loads(done.stdout.strip().splitlines()[-1])}
    return {"label": label, "n": n, "failed": done.failure or "no output"}


def before_tree(rev: str, into: Path) -> str:
    """The ``dedup/`` package of git revision ``rev``, unpacked into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "dedup"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", default=[], help="Delta datasets written by trajforge generate")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "near-dedup-shards")
    ap.add_argument("--sizes", type=int, nargs="+", default=[9000, 18000, 36000])
    ap.add_argument("--before", default=BEFORE, help="git revision whose dedup/ is 'before'")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    ap.add_argument("--mem-limit-gb", type=float, default=8.0, help="address-space limit per measurement")
    ap.add_argument("--datasketch-rows", type=int, default=9000,
                    help="datasketch's MinHashLSH on this many rows too (0: not at all)")
    ap.add_argument("--child", nargs=3, metavar=("CODE", "DATA", "N"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    import polars as pl

    texts = pipeline_texts(args.data, args.cache, max(args.sizes))
    texts, planted = with_planted(texts)
    sizes = [n for n in args.sizes if n <= len(texts)]
    print(f"{len(texts)} real pipeline dialogues ({sum(planted)} planted near copies); sizes {sizes}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "texts.parquet"
        pl.DataFrame({"text": texts, "planted": planted}).write_parquet(data)
        old = before_tree(args.before, Path(tmp))
        results = []
        runs = [(n, label, code) for n in sizes for label, code in (("before", old), ("after", str(ROOT)))]
        if args.datasketch_rows:
            runs.insert(2, (min(args.datasketch_rows, len(texts)), "datasketch", "datasketch"))
        for n, label, code in runs:
            r = measure(label, code, data, n, args.timeout, args.mem_limit_gb)
            results.append(r)
            if "failed" in r:
                print(f"{label:>10} {n:>7} rows  FAILED: {r['failed']}", flush=True)
            else:
                print(f"{label:>10} {r['n']:>7} rows  {r['seconds']:7.1f} s  peak RSS {r['peak_mb']:6.0f} MB "
                      f"(dedup +{r['growth_mb']:5.0f} MB)  near dups {r['near']:>5}  clusters {r['clusters']:>6}  "
                      f"planted recall {r['recall']:.4f}  other rejected {r['unplanted_rejected']}", flush=True)
    ok = {(r["label"], r["n"]): r for r in results if "failed" not in r}

    def ratio(label: str) -> str:
        lo, hi = ok.get((label, sizes[0])), ok.get((label, sizes[-1]))
        return f"{hi['peak_mb'] / lo['peak_mb']:.2f}" if lo and hi else "failed"

    big = sizes[-1]
    vs = (f"{ok[('after', big)]['peak_mb'] / ok[('before', big)]['peak_mb']:.2f}"
          if ("after", big) in ok and ("before", big) in ok else "before_failed")
    print(f"ratios: peak RSS at {sizes[-1]} rows over {sizes[0]} (rows grew {sizes[-1] / sizes[0]:.1f}x)")
    print(f"near_dedup_memory: after_rss_ratio={ratio('after')} before_rss_ratio={ratio('before')} "
          f"after_vs_before_rss_at_{big}={vs}")


if __name__ == "__main__":
    main()
