"""Does deduplicating the k-th nightly version against versions 0..k-1 cost what the first did?

Appends ``--versions`` versions of ``--rows`` real pipeline dialogues each (the rows of
``near_dedup_memory.py``: accepted dialogues of real offline runs, with planted near
copies) through the real cross-version path: each version is a fresh child process
(``guarded.run``: time-limited, nothing survives it), as a nightly run is, that loads
the persisted index parts of every earlier version (``dedup.load_index``: the parts,
not the rows), dedups its rows against them (``Deduplicator``) and writes its own part
(``dedup.save_part``). Per version: seconds of load + dedup + save (the fastest of ``--repeat``
children, each doing the same), and peak RSS (the highest).

    .venv/bin/python bench/dedup_versions.py --data DS1 DS2 ... [--versions 10] [--rows 10000] [--repeat 3]

Last line: ``dedup_versions: seconds_ratio=<x> rss_ratio=<x>``: the last version over version 1 (the first
that loads an earlier part; version 0 loads none, its ratio is printed above it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import guarded
from near_dedup_memory import ROOT, pipeline_texts, with_planted


def manifest(version: int, rows: int):
    from schemas import DatasetManifest

    return DatasetManifest(version=version, parent_version=version - 1 if version else None, run_id=f"night-{version}",
                           config_hash="bench", code_version="bench", seed=version, created_at="2026-01-01T00:00:00Z",
                           tasks=rows, accepted=rows, rejected=0)


def child(root: str, data: str, version: int, rows: int) -> None:
    """One nightly version: load the earlier parts, dedup this version's rows against them, write its part."""
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from dedup import Deduplicator, load_index, save_part
    from schemas import DedupConfig

    texts = pl.read_parquet(data).slice(version * rows, rows)["text"].to_list()
    config = DedupConfig()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()

    def no_rows(m):
        raise AssertionError(f"version {m.version}'s part is missing: the benchmark would read rows")

    prior = load_index(root, [manifest(v, rows) for v in range(version)], config, no_rows)
    loaded = time.perf_counter() - start
    ids = [f"v{version}-{i}" for i in range(len(texts))]
    hashes = [hashlib.sha1(t.encode()).hexdigest()[:32] for t in texts]
    out = Deduplicator(config, prior).run(ids, [True] * len(texts), hashes, lambda pos: [texts[p] for p in pos])
    save_part(Path(root), version, f"night-{version}", out.index, config)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"version": version, "prior_rows": len(prior), "seconds": seconds, "load_seconds": loaded,
                      "peak_mb": peak, "growth_mb": peak - base, "rejected": len(out.rejected),
                      "against_earlier": sum("earlier version" in why for _, why in out.rejected.values())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", default=[], help="Delta datasets written by trajforge generate")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "near-dedup-shards")
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--rows", type=int, default=10000, help="rows per version")
    ap.add_argument("--repeat", type=int, default=3, help="children per version: its fastest seconds, its highest "
                                                         "peak (a second is noisy on a shared machine)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per version")
    ap.add_argument("--mem-limit-gb", type=float, default=8.0)
    ap.add_argument("--child", nargs=4, metavar=("ROOT", "DATA", "VERSION", "ROWS"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    import polars as pl

    texts, _ = with_planted(pipeline_texts(args.data, args.cache, args.versions * args.rows))
    versions = min(args.versions, len(texts) // args.rows)
    print(f"{versions} versions x {args.rows} real pipeline dialogues, each deduplicated against all earlier ones")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "texts.parquet"
        pl.DataFrame({"text": texts}).write_parquet(data)
        for v in range(versions):
            tries = []
            for _ in range(args.repeat):  # a version again rewrites its own part as it was: the same input
                done = guarded.run([sys.executable, __file__, "--child", str(Path(tmp) / "ds"), str(data), str(v),
                                    str(args.rows)], args.timeout, args.mem_limit_gb)
                if done.failure is not None:
                    print(f"version {v:>3}  FAILED: {done.failure}")
                    print(f"dedup_versions: failed at version {v}")
                    return
                tries.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = min(tries, key=lambda t: t["seconds"])
            r["peak_mb"] = max(t["peak_mb"] for t in tries)
            results.append(r)
            print(f"version {v:>3}  against {r['prior_rows']:>7} earlier rows  {r['seconds']:6.2f} s "
                  f"(loading parts {r['load_seconds']:.2f} s)  peak RSS {r['peak_mb']:5.0f} MB (dedup "
                  f"+{r['growth_mb']:4.0f} MB)  rejected {r['rejected']:>4} ({r['against_earlier']} of an earlier version)",
                  flush=True)
    first, second, last = results[0], results[min(1, len(results) - 1)], results[-1]
    print(f"version {last['version']} over version 0 (which loads no earlier part): seconds "
          f"{last['seconds'] / first['seconds']:.2f}x, peak RSS {last['peak_mb'] / first['peak_mb']:.2f}x")
    print(f"dedup_versions: seconds_ratio={last['seconds'] / second['seconds']:.2f} "
          f"rss_ratio={last['peak_mb'] / second['peak_mb']:.2f} (version {last['version']} over version 1, "
          f"the first deduplicated against an earlier one)")


if __name__ == "__main__":
    main()
