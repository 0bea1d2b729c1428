"""Rows of a dataset version, queried where they lie.

Every page asks the Delta table for what it shows and nothing more: polars'
``scan_delta`` at the version (Delta time travel, the table's own file list)
with the filters pushed into the Parquet reader and only the listed columns
read, so a list page decodes a dozen small columns and a row page the row
groups whose statistics can hold that row. Free-text search has to read the
messages; it reads them a few row groups at a time. "Tool used" reads only the tool-name leaf of the
nested messages (pyarrow can project a leaf of a list of structs; polars
reads the whole column). Polars rather than DuckDB: it is already a
dependency, reads Delta natively at any version, and DuckDB's Delta reader is
an extension it downloads at run time.

Versions are immutable, so what is computed about one (its filter options,
its reason keys) is cached per version; rows are never cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from pipelines.rows import ACCEPTED, REJECTED
from pipelines.store import DatasetStore, StoreError, scan_table
from pipelines.versioning import ROW_KEY, VersionDiff, diff_versions, reason_groups
from schemas import DatasetError, DatasetManifest

PAGE_SIZE = 50
LIST_COLUMNS = ["id", "task_id", "status", "stage", "reason", "domain", "kind", "generator", "num_turns",
                "num_tool_calls", "run_id", "index", "cluster_id"]
FAULT = "fault"  # who failed (assistant, user, tool, judge, ...): a column of rows written since it exists
FACETS = ("stage", "domain", "kind", "generator", FAULT)
CACHED_VERSIONS = 8  # versions whose filter options are kept (a long tail of reasons can be large)
TOOL_NAME_LEAF = ("messages", "tool_calls", "function", "name")  # the path, without Parquet's list levels
SNIPPET = 160
SEARCH_GROUPS = 4  # row groups a search decodes at once: some parallelism, memory still bounded by a few groups


class ViewError(DatasetError):
    """Something the user asked for that is not there (no dataset, no such version); one line."""


class BadRequest(ValueError):
    """A query parameter that is not what its field takes."""


@dataclass(frozen=True)
class Filters:
    """What the row list is narrowed to; each field is a query parameter of the list page."""

    status: str | None = None
    stage: str | None = None
    reason: str | None = None  # a generic reason, as ``reason_key`` counts them
    domain: str | None = None
    kind: str | None = None
    generator: str | None = None
    tool: str | None = None  # a tool the dialogue called
    fault: str | None = None
    turns_min: int | None = None
    turns_max: int | None = None
    added: int | None = None  # the version that added the rows
    after: int | None = None  # rows added after this version
    id: str | None = None  # a row id, task id or cluster id
    q: str | None = None  # free text in the dialogue

    INTS = ("turns_min", "turns_max", "added", "after")

    @classmethod
    def parse(cls, params: Any) -> Filters:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (params.get(f.name) or "").strip()
            if not raw:
                continue
            if f.name in cls.INTS:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise BadRequest(f"{f.name}: not a whole number: {raw[:40]!r}") from None
            else:
                values[f.name] = raw
        return cls(**values)

    def items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]

    def query(self, **extra: Any) -> str:
        """The query string of these filters (plus ``extra``), for links that keep them."""
        return urlencode(self.items() + [(k, v) for k, v in extra.items() if v is not None])

    def __bool__(self) -> bool:
        return bool(self.items())


@dataclass
class Facets:
    """The values a version's rows take, for the filter form; computed once per version."""

    values: dict[str, list[str]]  # column -> distinct values, for the columns the version has
    reasons: dict[str, int]  # generic reason -> rejected rows
    reason_pairs: dict[str, list[tuple[str, str]]]  # generic reason -> the (stage, reason) pairs it stands for
    tools: list[str]  # tools called in some dialogue
    has_fault: bool


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    number: int  # 1-based
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return (self.number - 1) * self.size + len(self.rows)


@dataclass
class Dataset:
    """A dataset folder as the viewer reads it: versions from the Delta log, rows by pushed-down queries."""

    root: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _log_state: tuple = field(default=(), repr=False)
    _versions: list[DatasetManifest] = field(default_factory=list, repr=False)
    _tables: dict[int, DeltaTable] = field(default_factory=dict, repr=False)
    _facets: dict[int, Facets] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @cached_property
    def store(self) -> DatasetStore:
        return DatasetStore(self.root)

    # -- versions ------------------------------------------------------------------------------------------
    def versions(self) -> list[DatasetManifest]:
        """Committed versions, oldest first; re-read only when the Delta log changes (a run committed)."""
        log = self.root / "_delta_log"
        try:
            state = tuple(sorted(p.name for p in log.iterdir()))
        except OSError:
            state = ()
        with self._lock:
            if state != self._log_state or not self._versions:
                self._versions = self._read_versions()
                self._log_state = state
            return list(self._versions)

    def _read_versions(self) -> list[DatasetManifest]:
        try:
            versions = self.store.versions()
        except StoreError as err:  # a damaged dataset is named as such; a first run still staging is not damage
            if (self.root / "_staging").is_dir() and not self.store.exists():
                raise ViewError(f"{self.root}: no committed version yet (a run is staging under _staging/)") from None
            raise ViewError(str(err)) from None
        except (DeltaError, OSError) as err:  # a _delta_log folder without a first commit yet, or unreadable
            raise ViewError(f"{self.root}: no committed version yet ({str(err).splitlines()[0][:120]})") from None
        if not versions:
            raise ViewError(f"{self.root}: no committed version")
        return versions

    def manifest(self, version: int) -> DatasetManifest:
        versions = self.versions()
        for m in versions:
            if m.version == version:
                return m
        raise ViewError(f"{self.root}: no version {version}; readable versions: "
                        f"{', '.join(str(m.version) for m in versions)}")

    def newest(self) -> int:
        return self.versions()[-1].version  # type: ignore[return-value]

    def run_versions(self, version: int) -> dict[str, int]:
        """Run id -> the version it committed, for the versions up to ``version``."""
        return {m.run_id: m.version for m in self.versions() if m.version <= version}  # type: ignore[operator]

    def added_by(self, version: int, run_id: str) -> int | None:
        return self.run_versions(version).get(run_id)

    # -- the table -----------------------------------------------------------------------------------------
    def table(self, version: int) -> DeltaTable:
        self.manifest(version)
        with self._lock:
            if version not in self._tables:
                self._tables[version] = self.store.table(version)  # log checked, data files present
            return self._tables[version]

    def scan(self, version: int) -> pl.LazyFrame:
        return scan_table(self.table(version), self.root)

    def columns(self, version: int) -> list[str]:
        return self.scan(version).collect_schema().names()

    def facets(self, version: int) -> Facets:
        with self._lock:
            cached = self._facets.get(version)
        if cached is not None:
            return cached
        names = self.columns(version)
        present = [c for c in FACETS if c in names]
        scan = self.scan(version)
        distinct = scan.select(pl.col(c).drop_nulls().unique().sort().implode() for c in present).collect()
        values = {c: [str(v) for v in distinct[c][0]] for c in present}
        groups = reason_groups(scan)
        facets = Facets(values=values, reasons={k: n for k, (n, _) in groups.items()},
                        reason_pairs={k: pairs for k, (_, pairs) in groups.items()},
                        tools=sorted(self._tool_names(version)), has_fault=FAULT in names)
        with self._lock:
            self._facets[version] = facets
            while len(self._facets) > CACHED_VERSIONS:
                self._facets.pop(next(iter(self._facets)))
        return facets

    # -- tool names: read from the one leaf of the nested messages -----------------------------------------
    def _tool_batches(self, version: int):
        """(run_id, index, messages with only tool-call names) batches of the version's files."""
        for path in self.store.paths(self.table(version)):
            with open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                yield from parquet.iter_batches(batch_size=8192, columns=["run_id", "index", _leaf(parquet, TOOL_NAME_LEAF)])

    @staticmethod
    def _names(batch) -> tuple[Any, Any]:
        """Per tool call in the batch: its name, and the batch row it belongs to."""
        messages = batch.column("messages")
        calls = pc.struct_field(pc.list_flatten(messages), "tool_calls")
        message_row = pc.list_parent_indices(messages)
        call_message = pc.list_parent_indices(calls)
        names = pc.struct_field(pc.struct_field(pc.list_flatten(calls), "function"), "name")
        return names, pc.take(message_row, call_message)

    def _tool_names(self, version: int) -> set[str]:
        out: set[str] = set()
        for batch in self._tool_batches(version):
            names, _ = self._names(batch)
            out.update(v for v in pc.unique(names).to_pylist() if v is not None)
        return out

    def _rows_calling(self, version: int, tool: str) -> pl.DataFrame:
        """The keys of rows in which some assistant message calls ``tool``."""
        parts = []
        for batch in self._tool_batches(version):
            names, rows = self._names(batch)
            hit = pc.unique(pc.filter(rows, pc.equal(names, tool)))
            if len(hit):
                parts.append(pl.DataFrame({"run_id": batch.column("run_id").take(hit).to_pylist(),
                                           "index": batch.column("index").take(hit).to_pylist()},
                                          schema={"run_id": pl.String, "index": pl.Int64}))
        return pl.concat(parts) if parts else pl.DataFrame(schema={"run_id": pl.String, "index": pl.Int64})

    # -- the row list --------------------------------------------------------------------------------------
    def _filtered(self, version: int, f: Filters) -> pl.LazyFrame:
        scan = self.scan(version)
        where: list[pl.Expr] = []
        for name in ("status", "stage", "domain", "kind", "generator"):
            value = getattr(f, name)
            if value is not None:
                where.append(pl.col(name) == value)
        if f.fault is not None:
            if FAULT not in self.columns(version):
                raise BadRequest(f"fault: version {version} has no fault column")
            where.append(pl.col(FAULT) == f.fault)  # files written before the column lack it: scan_delta fills in nulls
        if f.reason is not None:
            pairs = self.facets(version).reason_pairs.get(f.reason, [])
            by_stage: dict[str, list[str]] = {}
            for stage, reason in pairs:
                by_stage.setdefault(stage, []).append(reason)
            where.append((pl.col("status") == REJECTED) & pl.any_horizontal(
                [(pl.col("stage") == s) & pl.col("reason").is_in(rs) for s, rs in by_stage.items()] or [pl.lit(False)]))
        if f.turns_min is not None:
            where.append(pl.col("num_turns") >= f.turns_min)
        if f.turns_max is not None:
            where.append(pl.col("num_turns") <= f.turns_max)
        runs = self.run_versions(version)
        if f.added is not None:
            where.append(pl.col("run_id").is_in([r for r, v in runs.items() if v == f.added]))
        if f.after is not None:
            where.append(pl.col("run_id").is_in([r for r, v in runs.items() if v > f.after]))
        if f.id is not None:
            where.append((pl.col("id") == f.id) | (pl.col("task_id") == f.id) | (pl.col("cluster_id") == f.id))
        if where:
            scan = scan.filter(pl.all_horizontal(where))
        if f.tool is not None:
            scan = scan.join(self._rows_calling(version, f.tool).lazy(), on=ROW_KEY, how="semi")
        if f.q is not None:
            scan = scan.join(self._search(version, f.q, where).lazy(), on=ROW_KEY, how="inner")
        return scan

    def _search(self, version: int, text: str, where: list[pl.Expr] = ()) -> pl.DataFrame:
        """Keys and a snippet of the rows whose dialogue mentions ``text``, a few Parquet row groups at a time.

        A few row groups at a time, because that is what bounds memory: polars' own
        engines (streaming included) hold a version's messages at once, which
        grows with the table. Snippets are new strings (``concat_str``), so
        they do not keep a row group's decoded messages alive. The other
        filters (``where``) are applied first where a file has their columns,
        so a narrowed search decodes the messages of fewer rows; the caller
        applies them all again, so a file without a column is still right.
        """
        groups: list[pl.LazyFrame] = []
        for path in self.store.paths(self.table(version)):
            with open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                meta, names = parquet.metadata, set(parquet.schema_arrow.names)
            narrow = [e for e in where if set(e.meta.root_names()) <= names]
            start = 0
            for i in range(meta.num_row_groups):
                rows = meta.row_group(i).num_rows
                group = pl.scan_parquet(path).slice(start, rows)
                groups.append(_mentions(group.filter(pl.all_horizontal(narrow)) if narrow else group, text))
                start += rows
        parts: list[pl.DataFrame] = []
        for first in range(0, len(groups), SEARCH_GROUPS):
            parts += pl.collect_all(groups[first:first + SEARCH_GROUPS])
        return pl.concat(parts) if parts else pl.DataFrame(schema={"run_id": pl.String, "index": pl.Int64,
                                                                   "snippet": pl.String})

    def page(self, version: int, f: Filters, number: int = 1) -> Page:
        """One page of the filtered rows, newest version first, then in task order; and how many rows match."""
        if number < 1:
            raise BadRequest(f"page: must be 1 or more, got {number}")
        runs = self.run_versions(version)
        names = self.columns(version)
        columns = [c for c in LIST_COLUMNS if c in names] + ([FAULT] if FAULT in names else [])
        base = self._filtered(version, f)
        shown = base.select(*columns, *(["snippet"] if f.q else []))
        ordered = (shown.with_columns(pl.col("run_id").replace_strict(runs, default=-1, return_dtype=pl.Int64)
                                      .alias("_added"))
                   .sort(["_added", "index"], descending=[True, False])
                   .slice((number - 1) * PAGE_SIZE, PAGE_SIZE))
        total, rows = pl.collect_all([base.select(pl.len()), ordered])
        page_rows = rows.rename({"_added": "added"}).to_dicts()
        return Page(rows=page_rows, total=int(total.item()), number=number)

    # -- one row -------------------------------------------------------------------------------------------
    def row(self, version: int, run_id: str, index: int) -> dict[str, Any] | None:
        found = self.scan(version).filter((pl.col("run_id") == run_id) & (pl.col("index") == index)).collect()
        return found.row(0, named=True) if found.height else None

    # -- two versions --------------------------------------------------------------------------------------
    def diff(self, a: int, b: int) -> VersionDiff:
        self.manifest(a), self.manifest(b)
        return diff_versions(self.store, a, b)


def _leaf(parquet: pq.ParquetFile, path: tuple[str, ...]) -> str:
    """The Parquet column path of a nested leaf; writers name list levels differently (``element``, ``item``)."""
    for i in range(parquet.metadata.num_columns):
        column = parquet.schema.column(i).path
        parts = column.split(".")
        if tuple(p for j, p in enumerate(parts) if not (p == "list" or (j and parts[j - 1] == "list"))) == path:
            return column
    raise ViewError(f"{parquet.metadata}: no column {'.'.join(path)}")


def _mentions(rows: pl.LazyFrame, text: str, width: int = SNIPPET) -> pl.LazyFrame:
    """Keys of ``rows`` with a message other than the system prompt whose content or tool-call arguments contain
    ``text`` (any case), with ``width`` characters around the first mention in a content as ``snippet``.

    One row per message (explode), which polars filters faster than a per-row ``list.eval``. The snippet is
    built with ``concat_str``, a new string, so it keeps no decoded row group alive.
    """
    pattern = "(?i)" + pl.escape_regex(text)
    messages = (rows.select(pl.col("run_id"), pl.col("index").cast(pl.Int64), "messages").explode("messages")
                .select("run_id", "index", *(pl.col("messages").struct.field(f) for f in ("role", "content", "tool_calls"))))
    in_content = pl.col("content").str.contains(pattern).fill_null(False)
    in_arguments = pl.col("tool_calls").list.eval(
        pl.element().struct.field("function").struct.field("arguments").str.contains(pattern).fill_null(False)
    ).list.any().fill_null(False)
    content = pl.col("content").filter(in_content).first()
    before, after = width // 3, max(width - width // 3 - len(text), 0)
    cut = content.str.extract(f"(?is)(.{{0,{before}}}{pl.escape_regex(text)}.{{0,{after}}})", 1)
    snippet = pl.concat_str([pl.when(content.str.starts_with(cut)).then(pl.lit("")).otherwise(pl.lit("…")), cut,
                             pl.when(content.str.ends_with(cut)).then(pl.lit("")).otherwise(pl.lit("…"))])
    return (messages.filter((pl.col("role") != "system") & (in_content | in_arguments))
            .group_by("run_id", "index", maintain_order=True).agg(snippet.alias("snippet")))


STATUSES = (ACCEPTED, REJECTED)
