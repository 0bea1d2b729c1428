"""A dataset version as a Hugging Face datasets folder: Parquet shards per config and split, plus a card.

Layout (what the Hub's loader expects, and what the card's YAML declares)::

    FOLDER/README.md
    FOLDER/data/<config>/<split>-00000-of-00002.parquet

Two passes over the version's data files keep memory flat: the first reads
only small columns to assign splits and count shards; the second streams full
rows, one file and one batch at a time, into the shard writers. The folder is
built beside its destination and renamed into place, so a failed export
leaves no half-written folder.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from pipelines.card import render_card
from pipelines.export_request import ExportError, ExportOptions, ExportSummary, resolve_version
from pipelines.rl.bundle import bundle_environments
from pipelines.rows import ACCEPTED, REJECTED
from pipelines.splits import TEST, TRAIN, assign_splits
from pipelines.store import DatasetStore
from pipelines.views import Views, decoded, sft_record

__all__ = ["ExportError", "ExportOptions", "ExportSummary", "export_version", "resolve_version"]

# Which rows feed which config; rl and sft are the same rows, so their splits agree row by row.
SOURCES = {"sft": ACCEPTED, "rl": ACCEPTED, "sharegpt": ACCEPTED, "rejects": REJECTED}
_LIGHT = ["id", "task_id", "status", "domain", "kind", "num_turns", "run_id", "shard", "index"]
_BATCH = 512


class _ShardWriter:
    """Writes one config/split as ``<split>-xxxxx-of-yyyyy.parquet`` files of at most ``shard_rows`` rows each."""

    def __init__(self, folder: Path, views: Views, view: str, split: str, total: int, shard_rows: int) -> None:
        self.folder, self.views, self.view, self.split = folder, views, view, split
        self.shards = max(1, -(-total // shard_rows))
        self.shard_rows = shard_rows
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.index, self.in_shard = -1, 0
        self.paths: list[str] = []

    def add(self, record: dict[str, Any]) -> None:
        self.buffer.append(record)
        if self.in_shard + len(self.buffer) >= self.shard_rows or len(self.buffer) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        while self.buffer:
            if self.writer is None or self.in_shard >= self.shard_rows:
                self._next_file()
            take = self.buffer[: self.shard_rows - self.in_shard]
            del self.buffer[: len(take)]
            self.writer.write_table(self.views.table(self.view, take))
            self.in_shard += len(take)

    def _next_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.index += 1
        rel = f"data/{self.view}/{self.split}-{self.index:05d}-of-{self.shards:05d}.parquet"
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(path, self.views.schemas[self.view], compression="zstd")
        self.paths.append(rel)
        self.in_shard = 0

    def close(self) -> list[str]:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        if len(self.paths) != self.shards:
            raise RuntimeError(f"{self.view}/{self.split}: wrote {len(self.paths)} shards, planned {self.shards}")
        return self.paths


def _light_rows(files: list[str], run_order: dict[str, int]) -> pl.DataFrame:
    """The small columns of every row, with its file and position, ordered by run, shard and index."""
    frames = []
    for n, path in enumerate(files):
        names = pq.read_schema(path).names
        columns = _LIGHT + (["cluster_id"] if "cluster_id" in names else [])
        frame = pl.from_arrow(pq.read_table(path, columns=columns))
        frames.append(frame.with_columns(pl.lit(n).alias("_file"), pl.int_range(pl.len()).alias("_row")))
    rows = pl.concat(frames, how="diagonal_relaxed")
    order = rows.group_by("_file").agg(
        pl.col("run_id").first().replace_strict(run_order, default=len(run_order)).alias("_run"),
        pl.col("shard").min(), pl.col("index").min()).sort("_run", "shard", "index")
    rank = {f: i for i, f in enumerate(order["_file"])}
    return rows.with_columns(pl.col("_file").replace_strict(rank).alias("_order")).sort("_order", "_row")


def export_version(dataset_dir: str | Path, to: str | Path, options: ExportOptions | None = None,
                   force: bool = False) -> ExportSummary:
    """Write ``options.version`` of the dataset at ``dataset_dir`` as an HF datasets folder at ``to``."""
    options = options or ExportOptions()
    if options.load_path is None and options.repo_id is None:
        options = replace(options, load_path=str(to))
    if not 0.0 <= options.test_ratio < 1.0:
        raise ExportError(f"--test-ratio: must be in [0, 1), got {options.test_ratio}")
    if options.shard_rows < 1:
        raise ExportError(f"--shard-rows: must be at least 1, got {options.shard_rows}")
    store = DatasetStore(dataset_dir)
    version, manifests = resolve_version(store, options.version)
    dest = Path(to)
    if dest.exists() and not dest.is_dir():  # --force replaces a folder; a file there is a mistake, not a folder
        raise ExportError(f"{dest}: is a file, not a folder; give a folder")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ExportError(f"{dest}: exists and is not empty; choose another folder or pass --force to replace it")

    unknown = options.strip_reasoning - set(options.configs())
    if unknown:
        raise ExportError(f"--strip-reasoning: no config {', '.join(sorted(unknown))} in this export "
                          f"(configs: {', '.join(options.configs())})")
    files = [str(p) for p in store.data_files(version, footers=True)]
    run_order = {m.run_id: m.version for m in manifests}
    light = _light_rows(files, run_order)
    light = light.with_columns(assign_splits(light, options.test_ratio, options.salt))
    try:
        views = Views(light["kind"].drop_nulls().unique().to_list(), json_as_text=options.json_as_text)
    except ValueError as err:  # a kind whose plug-in is not installed here, or two kinds at odds
        raise ExportError(f"{store.root}: {err}") from None
    reports, dropped = _check_templates(files, light, options)
    if dropped:  # the row leaves every accepted config, so sft, rl and sharegpt keep the same rows and splits
        light = light.with_columns(pl.when(pl.col("id").is_in(list(dropped))).then(pl.lit("unrenderable"))
                                   .otherwise(pl.col("status")).alias("status"))
    accepted = light.filter(pl.col("status") == ACCEPTED)
    summary = ExportSummary(
        dataset_dir=str(store.root), version=version,
        name=options.name or manifests[-1].config.get("name") or store.root.resolve().name,
        manifests=manifests, options=options, total_rows=light.height,
        by_domain=dict(Counter(accepted["domain"].to_list()).most_common()),
        by_kind=dict(Counter(accepted["kind"].to_list()).most_common()),
        by_turns=dict(sorted(Counter(accepted["num_turns"].to_list()).items())),
        templates=[r.summary() for r in reports], dropped=dropped,
        json_fields={v: views.json_fields(v) for v in options.configs()})

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        counts = Counter((v, s) for v in options.configs()
                         for st, s in zip(light["status"], light["split"], strict=True) if st == SOURCES[v])
        environments = bundle_environments(manifests, work) if "rl" in options.configs() else {}
        writers = _write_views(files, light, views, options, counts, work, environments)
        for (view, split), writer in writers.items():
            summary.files.setdefault(view, {})[split] = writer.close()
            summary.rows.setdefault(view, {})[split] = counts[(view, split)]
        work.mkdir(parents=True, exist_ok=True)  # a view may be empty (every row dropped as unrenderable)
        summary.split_bytes = {view: {split: sum(p.stat().st_size for p in (work / "data" / view).glob(f"{split}-*.parquet"))
                                      for split in splits} for view, splits in summary.rows.items()}
        summary.view_bytes = {view: sum(sizes.values()) for view, sizes in summary.split_bytes.items()}
        summary.bytes = sum(summary.view_bytes.values())
        (work / "README.md").write_text(render_card(summary))
        if dest.exists():
            trash = dest.parent / f".{dest.name}.old-{os.getpid()}"
            dest.rename(trash)
            shutil.rmtree(trash)
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _stream(files: list[str], light: pl.DataFrame):
    """Every stored row with its light row's split and status (a dropped row is no longer accepted), in export order."""
    for frame in light.partition_by("_order", maintain_order=True):
        path = files[frame["_file"][0]]
        marks = iter(frame.sort("_row").select("split", "status").iter_rows())
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                split, status = next(marks)
                yield row, split, status


def _check_templates(files: list[str], light: pl.DataFrame, options: ExportOptions):
    """Every accepted row's sft record through every ``--chat-template``; the rows that fail, or an ExportError."""
    if not options.chat_templates:
        return [], {}
    from pipelines.template_check import check_records, load_template

    templates = [load_template(spec) for spec in options.chat_templates]

    def rows():
        for row, _, status in _stream(files, light):
            if status == ACCEPTED:
                record = decoded(sft_record(row, reasoning="sft" not in options.strip_reasoning), "sft")
                yield record["id"], record["messages"], record["tools"]

    reports = check_records(templates, rows())
    dropped: dict[str, str] = {}
    for report in reports:
        for row_id, problem in report.failed.items():
            dropped.setdefault(row_id, f"{report.template.name}: {problem}")
    if dropped and not options.drop_unrenderable:
        report = next(r for r in reports if r.failed)
        row_id, problem = next(iter(report.failed.items()))
        raise ExportError(f"--chat-template {report.template.name}: row {row_id} does not render: {problem} "
                          f"({len(report.failed)} of {report.rows} rows fail; --drop-unrenderable drops them)")
    return reports, dropped


def _write_views(files: list[str], light: pl.DataFrame, schemas: Views, options: ExportOptions, counts: Counter,
                 work: Path, environments: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], _ShardWriter]:
    """Stream every data file once, in order, into the writers of the configs each row feeds.

    ``environments`` is each run's domains (by run id and domain name), which an ``rl`` row carries.
    """
    views = options.configs()
    writers = {(v, s): _ShardWriter(work, schemas, v, s, counts[(v, s)], options.shard_rows)
               for v in views for s in (TRAIN, TEST) if counts[(v, s)]}
    for row, split, status in _stream(files, light):
        for v in views:
            if status == SOURCES[v]:
                if v == "rl":
                    row = {**row, "env_config": environments.get((row["run_id"], row["domain"]))}
                writers[(v, split)].add(schemas.record(v, row, reasoning=v not in options.strip_reasoning))
    return writers
