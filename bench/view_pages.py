"""How fast are `trajforge view`'s pages on a 100k-row dataset, and how much memory does the server hold?

1. A real offline run of ``examples/demo.yaml`` (``--tasks`` tasks, accepted and rejected rows with their real
   reasons and dialogues), replicated through the store's own commit into 2 versions of ``--rows``/2 rows each
   (tests/viewer_data.py), as a series of nightly runs would leave them;
2. ``trajforge view`` started on it as a user starts it (its own process, 127.0.0.1, a free port);
3. each page fetched over HTTP ``--repeat`` times: the first fetch (cold: the version's filter options are
   computed once) and the median of the others are printed, with the server's peak memory sampled meanwhile
   (anonymous memory, i.e. heap, and total RSS including mapped files), next to the size of the table's
   columns decoded (from the Parquet metadata), which the server must never hold.

    .venv/bin/python bench/view_pages.py [--rows 100000] [--tasks 1500] [--repeat 5]

Last line: ``view_pages: list=<ms> filtered=<ms> search=<ms> row=<ms> diff=<ms> peak_rss_mb=<m> (<n> rows)``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before prefect is imported: the last line is the figure
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine starts it slowly
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class Memory(threading.Thread):
    """Peak anonymous and total resident memory of a process, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.anon, self.rss, self.stop = pid, 0, 0, False

    def sample(self) -> tuple[int, int]:
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    fields[key] = int(value.split()[0]) // 1024
        return fields.get("RssAnon", 0), fields.get("VmRSS", 0)

    def run(self) -> None:
        while not self.stop:
            try:
                anon, rss = self.sample()
            except OSError:
                return
            self.anon, self.rss = max(self.anon, anon), max(self.rss, rss)
            time.sleep(0.01)


def decoded_mb(root: Path) -> tuple[float, float]:
    """Uncompressed size of all columns, and of ``messages``, of the table's files (Parquet metadata)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    total = messages = 0
    for uri in DeltaTable(str(root)).file_uris():
        meta = pq.ParquetFile(uri).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                total += column.total_uncompressed_size
                messages += column.total_uncompressed_size if column.path_in_schema.startswith("messages.") else 0
    return total / 2**20, messages / 2**20


def build(work: Path, rows: int, tasks: int) -> Path:
    from viewer_data import replicate

    from pipelines.flow import run_generate
    from schemas import load_config

    source, big = work / "source", work / "big"
    start = time.perf_counter()
    config = load_config(ROOT / "examples" / "demo.yaml").model_copy(update={"num_tasks": tasks})
    manifest = run_generate(config, source, "bench-source")
    made = time.perf_counter() - start
    replicate(source, big, rows_per_version=rows // 2, versions=2)
    print(f"dataset: {manifest.tasks} real rows ({manifest.accepted} accepted, {manifest.rejected} rejected) in "
          f"{made:.0f}s, replicated to {rows} rows in 2 versions in {time.perf_counter() - start - made:.0f}s")
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1500, help="tasks of the real run that is replicated")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import polars as pl

    with tempfile.TemporaryDirectory(prefix="view-bench-") as tmp:
        big = build(Path(tmp), args.rows, args.tasks)
        total_mb, messages_mb = decoded_mb(big)
        probe = pl.scan_delta(str(big)).filter(pl.col("status") == "rejected").select("run_id", "index").head(1).collect()
        run_id, index = probe.row(0)
        server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "view", str(big), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            banner = server.stdout.readline() + server.stdout.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
            memory = Memory(server.pid)
            idle_anon, idle_rss = memory.sample()
            memory.start()
            deep = args.rows // 50 - 1
            pages = {
                "list": "/v/1/rows",
                "list_deep": f"/v/1/rows?page={deep}",
                "filtered": "/v/1/rows?status=rejected&stage=format",
                "reason": "/v/1/rows?reason=outcome%3A+final+state+differs+from+the+gold+final+state",
                "tool": "/v/1/rows?tool=cancel_pending_order",
                "turns": "/v/1/rows?turns_min=6&turns_max=8&status=accepted",
                "search": "/v/1/rows?q=W5877336",
                "search_common": "/v/1/rows?q=refund&status=rejected",
                "row": f"/v/1/row/{run_id}/{index}",
                "version": "/v/1",
                "diff": "/diff?a=0&b=1",
            }
            timings: dict[str, tuple[float, float]] = {}
            for name, path in pages.items():
                times = []
                for _ in range(args.repeat):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                    start = time.perf_counter()
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    times.append((time.perf_counter() - start) * 1000)
                    conn.close()
                    assert response.status == 200, (path, response.status, body[-300:])
                timings[name] = (times[0], statistics.median(times[1:]) if len(times) > 1 else times[0])
                print(f"  {name:<14} first {times[0]:7.0f} ms   median {timings[name][1]:7.0f} ms   "
                      f"peak so far: heap {memory.anon} MB, rss {memory.rss} MB   {path}")
            memory.stop = True
            memory.join()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"server memory: idle heap {idle_anon} MB (rss {idle_rss} MB); peak heap {memory.anon} MB, peak rss "
          f"{memory.rss} MB; the table decoded is {total_mb:.0f} MB, its messages {messages_mb:.0f} MB")
    m = {k: round(v[1]) for k, v in timings.items()}
    print(f"view_pages: list={m['list']}ms filtered={m['filtered']}ms search={m['search']}ms row={m['row']}ms "
          f"diff={m['diff']}ms peak_rss_mb={memory.rss} ({args.rows} rows)")


if __name__ == "__main__":
    main()
