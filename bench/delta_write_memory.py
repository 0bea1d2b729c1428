"""Peak memory of the commit's Delta write as the version grows: delta-rs' writer against the store's own.

Why: after near dedup was bounded, the committing process still peaked at ~920 MB in
a 10k-task ``bench/offline_throughput.py`` run, against ~310 MB while the shards ran:
deltalake's ``write_deltalake`` over a stream (the way the store committed) keeps what it
wrote until the commit. The store now writes its files with pyarrow and commits them as
add actions (``pipelines.delta_parts``). This writes N real pipeline rows as one Delta
version both ways, in a guarded child per size and writer (batches of 1,024 rows, row
groups of ``ROW_GROUP_ROWS``), and prints each writer's growth per 1,000 rows. A flat
writer shows the same growth at every size.

Rows: the rows of ``--data`` Delta datasets, or demo-like offline shards made once into
``--cache`` (``near_dedup_memory.pipeline_texts``), cycled to the size.

    .venv/bin/python bench/delta_write_memory.py [--sizes 2000 12000 40000] [--data DS ...]

Last line: ``delta_write_memory: store_growth_ratio=<largest/smallest> store_mb_per_1k_rows=<x>
delta_rs_mb_per_1k_rows=<y>``.
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


def child(folder: str, n: int, writer: str) -> None:
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import CommitProperties, WriterProperties, write_deltalake

    from pipelines.rows import ROW_SCHEMA
    from pipelines.store import ROW_GROUP_ROWS, DatasetStore, _column

    files = sorted(Path(folder).glob("rows-*.parquet"))

    def batches():
        left = n
        while left > 0:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                    batch = batch.slice(0, min(left, batch.num_rows))
                    left -= batch.num_rows
                    yield pa.RecordBatch.from_arrays([_column(batch, c) for c in ROW_SCHEMA.names], schema=ROW_SCHEMA)
                    if left <= 0:
                        return

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        if writer == "delta-rs":
            write_deltalake(out, pa.RecordBatchReader.from_batches(ROW_SCHEMA, batches()), mode="error",
                            writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY"))
        else:  # the store's commit path: its own Parquet files, committed as add actions
            DatasetStore(out)._commit_parts(batches(), None, CommitProperties())
        written = [p.stat().st_size for p in Path(out).glob("*.parquet")]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "writer": writer, "growth_mb": peak - base, "peak_mb": peak, "files": len(written),
                      "written_mb": sum(written) / 2**20}))


def per_1k(results: list[dict], writer: str) -> tuple[float, float] | None:
    """(growth ratio largest/smallest size, MB per 1,000 rows between them) of one writer."""
    mine = sorted((r for r in results if r["writer"] == writer), key=lambda r: r["n"])
    if len(mine) < 2:
        return None
    lo, hi = mine[0], mine[-1]
    return hi["growth_mb"] / max(lo["growth_mb"], 1), (hi["growth_mb"] - lo["growth_mb"]) / ((hi["n"] - lo["n"]) / 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 12000, 40000])
    ap.add_argument("--data", nargs="*", default=[], help="Delta datasets whose rows to write")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "near-dedup-shards")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        folder, n, writer = args.child
        return child(folder, int(n), writer)
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
        for writer in ("store", "delta-rs"):
            for n in sorted(args.sizes):
                done = guarded.run([sys.executable, __file__, "--child", folder, str(n), writer], args.timeout)
                if done.failure is not None or not done.stdout.strip():
                    print(f"{writer:>8}  {n:>7} rows  FAILED: {done.failure or done.stderr[-300:]}", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                results.append(r)
                print(f"{writer:>8}  {n:>7} rows  peak RSS {r['peak_mb']:6.0f} MB  growth {r['growth_mb']:6.0f} MB  "
                      f"{r['files']} file(s), {r['written_mb']:.1f} MB written", flush=True)
    store, delta_rs = per_1k(results, "store"), per_1k(results, "delta-rs")
    if store is None or delta_rs is None:
        print("delta_write_memory: failed")
        return
    print(f"delta_write_memory: store_growth_ratio={store[0]:.2f} store_mb_per_1k_rows={store[1]:.1f} "
          f"delta_rs_mb_per_1k_rows={delta_rs[1]:.1f}")

if __name__ == "__main__":
    main()
