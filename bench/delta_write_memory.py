"""Peak memory of the commit's Delta write as the version grows: what still grows in the committing process.

Why: after near dedup was bounded, the committing process still peaked at ~920 MB in
a 10k-task ``bench/offline_throughput.py`` run, against ~310 MB while the shards ran.
This writes N real pipeline rows as one Delta version the way the store's commit does
(one ``write_deltalake`` over a ``RecordBatchReader`` streaming the shard files in
batches of 1,024 rows, row groups of ``ROW_GROUP_ROWS``), in a guarded child per size,
with the default target file size and with a small one, and prints the growth per
1,000 rows. A flat writer would show the same growth at every size.

Rows: the rows of ``--data`` Delta datasets, or demo-like offline shards made once into
``--cache`` (``near_dedup_memory.pipeline_texts``), cycled to the size.

    .venv/bin/python bench/delta_write_memory.py [--sizes 2000 6000 12000] [--data DS ...]

Last line: ``delta_write_memory: growth_ratio=<growth at the largest size / smallest> mb_per_1k_rows=<x>``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import guarded

ROOT = Path(__file__).resolve().parents[1]


def child(folder: str, n: int, target: int | None) -> None:
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import WriterProperties, write_deltalake

    from pipelines.store import ROW_GROUP_ROWS

    files = sorted(Path(folder).glob("rows-*.parquet"))
    schema = pq.ParquetFile(files[0]).schema_arrow

    def batches():
        left = n
        while left > 0:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                    batch = batch.slice(0, min(left, batch.num_rows))
                    left -= batch.num_rows
                    yield batch
                    if left <= 0:
                        return

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        write_deltalake(out, pa.RecordBatchReader.from_batches(schema, batches()), mode="error",
                        target_file_size=target,
                        writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY"))
        written = [p.stat().st_size for p in Path(out).glob("*.parquet")]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "target": target, "growth_mb": peak - base, "peak_mb": peak, "files": len(written),
                      "written_mb": sum(written) / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 6000, 12000])
    ap.add_argument("--data", nargs="*", default=[], help="Delta datasets whose rows to write")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "near-dedup-shards")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        folder, n, target = args.child
        return child(folder, int(n), int(target) or None)
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            for k, ds in enumerate(args.data):
                pl.read_delta(ds).write_parquet(Path(tmp) / f"rows-{k:05d}.parquet")
            folder = tmp
        else:
            from near_dedup_memory import pipeline_texts

            pipeline_texts([], args.cache, 2000)  # makes the shards (r<k>.parquet) once
            for f in sorted(args.cache.glob("r*.parquet")):
                (Path(tmp) / f"rows-{f.stem[1:]:0>5}.parquet").symlink_to(f)
            folder = tmp
        results = []
        for target in (0, 4_000_000):
            for n in sorted(args.sizes):
                done = guarded.run([sys.executable, __file__, "--child", folder, str(n), str(target)], args.timeout)
                if done.failure is not None or not done.stdout.strip():
                    print(f"{n:>7} rows  FAILED: {done.failure or done.stderr[-300:]}", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                results.append(r)
                print(f"{n:>7} rows  target_file_size {target or 'default':>9}  peak RSS {r['peak_mb']:6.0f} MB  "
                      f"growth {r['growth_mb']:6.0f} MB  {r['files']} file(s), {r['written_mb']:.1f} MB written",
                      flush=True)
    default = sorted((r for r in results if r["target"] is None), key=lambda r: r["n"])
    if len(default) < 2:
        print("delta_write_memory: failed")
        return
    lo, hi = default[0], default[-1]
    per_1k = (hi["growth_mb"] - lo["growth_mb"]) / ((hi["n"] - lo["n"]) / 1000)
    print(f"delta_write_memory: growth_ratio={hi['growth_mb'] / max(lo['growth_mb'], 1):.2f} "
          f"mb_per_1k_rows={per_1k:.1f}")


if __name__ == "__main__":
    main()
