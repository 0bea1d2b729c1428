"""The versioned dataset: one Delta Lake table, one commit per run.

Delta gives what a nightly dataset needs without hand-written bookkeeping: an
atomic commit (a failed run leaves no version), time travel (``pl.read_delta
(dir, version=N)``), and commit metadata, where each version's manifest lives,
so the manifest can never disagree with the data it describes.

Runs stage their shard files under ``_staging/<run_id>/`` (ignored by Delta)
and the publish step streams them into a single commit, so memory does not
grow with the dataset.

Every way into the table goes through this class, for two reasons:

- integrity: before a table is read or appended to, its log is checked
  (every entry present, non-empty, one JSON action per line) and the data
  files of the version in use are checked to exist, so a damaged dataset is
  one line naming the version and file (``DatasetError``), never a Rust
  backtrace, and a run never appends to it;
- paths: delta-rs parses a table location as a URL, so a plain path with
  ``#`` or ``?`` breaks and ``file_uris()`` come back percent-encoded (a folder
  ``a b`` is listed as ``a%20b``). The table is always opened by its
  ``file://`` URI, its files are decoded back to paths, and a folder whose
  path needs escaping is read through deltalake's own reader
  (``use_pyarrow=True``): polars' native Delta scan takes ``file_uris()`` as
  paths and fails on any such folder (pola-rs/polars#20944). delta-rs' ``history()`` also comes back empty for
  a folder with ``#`` or ``?``, so the versions' manifests are read from the
  log entries' ``commitInfo`` here, while the entries are checked anyway.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import create_table_with_add_actions

from dedup import DedupIndex, Deduplicator, ShardTexts, load_index, save_part
from pipelines.delta_parts import PartWriter
from pipelines.diversity import Diversity
from pipelines.funnel import funnel
from pipelines.rows import ACCEPTED, REJECTED, ROW_SCHEMA
from schemas import DatasetError, DatasetManifest, DedupConfig, DiversityFigures, RunFailedError, one_line

MANIFEST_KEY = "trajforge.manifest"
LOG = "_delta_log"
OWN_FOLDERS = frozenset({LOG, "_staging", "_cache", "_logs", "_dedup", "_prefect"})  # what trajforge keeps beside the data
_ENTRY = re.compile(r"(\d{20})\.json")
_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint(?:\.\d+\.\d+)?\.parquet")
_ACTIONS = frozenset({"commitInfo", "add", "remove", "metaData", "protocol", "txn", "domainMetadata", "cdc",
                      "checkpointMetadata", "sidecar"})
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Row groups of bounded size (Delta's writer default is ~1M rows): a reader that wants one row, or the rows of one
# run, decodes only the row groups whose statistics match, not a whole version's messages.
ROW_GROUP_ROWS = 4096
_ROW_DELTA_SCHEMA = DeltaSchema.from_arrow(ROW_SCHEMA).to_json()


class StoreError(DatasetError):
    """A dataset that is missing or damaged, as one line naming the folder, version or file."""


class CommitConflictError(StoreError, RunFailedError):
    """Another writer kept winning the commit: the run failed, nothing was committed, its staging is kept."""

    exit_code = 1


def table_uri(root: str | Path) -> str:
    """The ``file://`` URI delta-rs is given for a local table (see the module docstring)."""
    return Path(root).resolve().as_uri()


def local_path(uri: str) -> Path:
    """A path back from one of delta-rs' ``file_uris()`` (percent-encoded, with or without ``file://``)."""
    return Path(unquote(urlparse(uri).path if uri.startswith("file:") else uri))


def percent_escape(path: str | Path) -> str | None:
    """The first ``%XX`` in a path: delta-rs decodes it (twice), so such a folder would be read as another one."""
    m = _PERCENT_ESCAPE.search(str(path))
    return m.group() if m else None


def needs_escaping(root: str | Path) -> bool:
    """Whether a URI must escape the folder's path (a space, ``{}``, ``#``, ``?``, non-ASCII): polars' own Delta
    reader cannot open such a table (pola-rs/polars#20944), deltalake's can."""
    resolved = Path(root).resolve()
    return resolved.as_uri() != "file://" + str(resolved)


def polars_hint(root: str | Path, version: int) -> str:
    """How to open ``version`` in polars."""
    text = str(root)
    if not needs_escaping(text):
        return f"polars.read_delta({text!r}, version={version})"
    return f"polars.read_delta({text!r}, version={version}, use_pyarrow=True)"


def scan_table(table: DeltaTable, root: str | Path) -> pl.LazyFrame:
    """A lazy scan of an opened table: polars' own reader where it can open the folder (it pushes filters and
    columns into the Parquet reader), deltalake's where the path must be escaped."""
    return pl.scan_delta(table, use_pyarrow=needs_escaping(root))


# Log entries already checked in this process, by path, size and mtime (a run opens its table many times),
# with their commitInfo.
_CHECKED_ENTRIES: dict[tuple[str, int, int], dict] = {}


@dataclass
class CheckReport:
    """What ``versions --check`` found: every problem, one line each, and what was checked."""

    versions: int = 0
    files: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)


class _Conflict(Exception):
    """Another writer committed after the version this commit was built on."""


class ShortOfTarget(Exception):  # noqa: N818 (a signal the flow handles, not an error)
    """A commit asked for exactly N accepted rows found fewer after dedup (another run committed some of them
    meanwhile); nothing was written, and the run goes on for more."""

    def __init__(self, survivors: int, wanted: int) -> None:
        super().__init__(f"{survivors} rows accepted after dedup, {wanted} wanted")
        self.survivors, self.wanted = survivors, wanted


TARGET_STAGE = "target"


def _keep_first(outcome, limit: int, status: list, stage: list, reason: list, fault: list) -> None:
    """Accepted rows after the first ``limit`` become rejected at stage ``target``; the index keeps the first."""
    kept = [i for i, st in enumerate(status) if st == ACCEPTED]
    for i in kept[limit:]:
        status[i], stage[i], fault[i] = REJECTED, TARGET_STAGE, None
        reason[i] = f"target reached: the run committed its {limit} accepted rows before this one"
    if outcome is not None and len(outcome.index) > limit:
        index = outcome.index
        index.ids, index.cluster_ids, index.hashes = index.ids[:limit], index.cluster_ids[:limit], index.hashes[:limit]
        index.signatures = None if index.signatures is None else index.signatures[:limit]
        index.embeddings = None if index.embeddings is None else index.embeddings[:limit]


def reason_key(stage: str, reason: str) -> str:
    """A rejection reason with its particulars (ids, numbers, quoted names) blanked, for counting."""
    generic = re.sub(r"message \d+: ", "", reason)
    generic = re.sub(r"'[^']*'|\"[^\"]*\"|#\w+|\$[\d.]+|\b[\w.@-]*\d[\w.@-]*\b", "…", generic)
    return f"{stage}: {generic[:100]}"


def _light(path: Path) -> pa.Table:
    """The columns commit decides on; a shard staged by older code has no ``fault`` column (read as unknown)."""
    names = pq.ParquetFile(path).schema_arrow.names
    table = pq.read_table(path, columns=[c for c in ("id", "status", "stage", "reason", "dedup_hash", "fault")
                                         if c in names])
    if "fault" not in names:
        table = table.append_column("fault", pa.nulls(table.num_rows, pa.string()))
    return table


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A staged batch's column in the row schema's type; one older code did not write is all nulls."""
    target = ROW_SCHEMA.field(name).type
    if name not in batch.schema.names:
        return pa.nulls(batch.num_rows, target)
    column = batch.column(name)
    return column if column.type == target else column.cast(target)


def _row_schema(table: DeltaTable) -> bool:
    """Whether the table's schema is the row schema, so a version can be committed as add actions."""
    return table.schema().to_json() == _ROW_DELTA_SCHEMA


def _settled(manifest: DatasetManifest, accepted: int, surplus: int) -> dict:
    """What only the commit knows: the cost per accepted row, and the rows a target kept back."""
    out = {}
    if manifest.cost is not None:
        out["cost"] = manifest.cost.model_copy(update={"per_accepted": manifest.cost.total / accepted if accepted
                                                       else None})
    if manifest.stop is not None:
        out["stop"] = manifest.stop.model_copy(update={"surplus": surplus})
    return out


def _target_last(steps: dict[str, int]) -> dict[str, int]:
    """Rows kept back by a target run are decided after dedup: the funnel's last step."""
    if TARGET_STAGE in steps:
        steps[TARGET_STAGE] = steps.pop(TARGET_STAGE)
    return steps


def fault_counts(faults) -> dict[str, int]:
    """Rejections per fault, most first; rows written before faults were recorded count as ``unknown``."""
    return dict(Counter(f or "unknown" for f in faults).most_common())


class DatasetStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.commit_infos: dict[int, dict] = {}  # version -> its log entry's commitInfo, set by check_log

    def exists(self) -> bool:
        """A table is here (its log may still be damaged: ``table`` checks that)."""
        return (self.root / LOG).exists()

    # -- integrity -------------------------------------------------------------
    def check_log(self) -> int:
        """The newest version in the log, after checking the log is whole; a problem is a one-line ``StoreError``.

        Also keeps each entry's ``commitInfo`` (``commit_infos``).

        Checked: the log is a folder; every entry from the start (or the last
        checkpoint) to the newest is there, non-empty, and one JSON action per
        line. What delta-rs would otherwise report as a Rust error or a
        backtrace, named by the file.
        """
        log = self.root / LOG
        if not self.root.exists():
            raise StoreError(f"{self.root}: no such folder; no trajforge dataset here")
        if not self.root.is_dir():
            raise StoreError(f"{self.root}: is a file, not a dataset folder")
        if not log.exists():
            raise StoreError(f"{self.root}: no trajforge dataset here (no {LOG})")
        escape = percent_escape(self.root.resolve())
        if escape:
            raise StoreError(f"{self.root}: the path holds the escape {escape!r}, which Delta Lake decodes, so it "
                             "would read another folder; rename the folder")
        if not log.is_dir():
            raise StoreError(f"{log}: is not a folder; the dataset is damaged")
        entries, checkpoints = {}, set()
        for path in log.iterdir():
            if m := _ENTRY.fullmatch(path.name):
                entries[int(m[1])] = path
            elif m := _CHECKPOINT.fullmatch(path.name):
                checkpoints.add(int(m[1]))
        start = self._checkpoint(log, checkpoints)
        if not entries and start is None:
            raise StoreError(f"{log}: holds no commits; the dataset is damaged (or was never written)")
        newest = max([*entries, start or 0])
        first = 0 if start is None else start + 1
        for version in range(first, newest + 1):
            if version not in entries:
                raise StoreError(f"{log / f'{version:020d}.json'}: version {version}'s log entry is missing; "
                                 "the dataset is damaged")
        self.commit_infos = {version: self._check_entry(path, version) for version, path in sorted(entries.items())}
        return newest

    @staticmethod
    def _checkpoint(log: Path, checkpoints: set[int]) -> int | None:
        """The version of the checkpoint the log starts from, if any (``_last_checkpoint`` names it)."""
        marker = log / "_last_checkpoint"
        if not marker.exists():
            return max(checkpoints) if checkpoints else None
        try:
            version = int(json.loads(marker.read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreError(f"{marker}: not a valid checkpoint marker; the dataset is damaged") from None
        if version not in checkpoints:
            raise StoreError(f"{marker}: names the checkpoint of version {version}, which is missing; "
                             "the dataset is damaged")
        return version

    @staticmethod
    def _check_entry(path: Path, version: int) -> dict:
        """The entry's ``commitInfo``, after checking it is one Delta action per line."""
        info = path.stat()
        key = (str(path), info.st_size, info.st_mtime_ns)
        if key in _CHECKED_ENTRIES:
            return _CHECKED_ENTRIES[key]
        if info.st_size == 0:
            raise StoreError(f"{path}: version {version}'s log entry is empty; the dataset is damaged")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{path}: version {version}'s log entry is not text; the dataset is damaged") from None
        commit: dict = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                action = json.loads(line)
            except ValueError:
                raise StoreError(f"{path}: version {version}'s log entry is cut off or corrupt at line {number}; "
                                 "the dataset is damaged") from None
            if not isinstance(action, dict) or not action.keys() & _ACTIONS:
                raise StoreError(f"{path}: line {number} of version {version}'s log entry is not a Delta action; "
                                 "the dataset is damaged")
            if isinstance(action.get("commitInfo"), dict):
                commit = action["commitInfo"]
        if len(_CHECKED_ENTRIES) > 65536:
            _CHECKED_ENTRIES.clear()
        _CHECKED_ENTRIES[key] = commit
        return commit

    def table(self, version: int | None = None, check_files: bool = True) -> DeltaTable:
        """The table (at ``version``), its log checked and, unless told not to, its data files present."""
        self.check_log()
        try:
            table = DeltaTable(table_uri(self.root), version=version)
        except Exception as err:  # deltalake raises its own errors, OSError, and for a bad version ValueError
            raise StoreError(f"{self.root}: cannot open version {version if version is not None else 'latest'} "
                             f"of the Delta table: {one_line(err)}") from None
        if check_files:
            self._missing_files(table)
        return table

    def _missing_files(self, table: DeltaTable) -> None:
        for path in self.paths(table):
            if not path.is_file():
                raise self._missing(table, path)

    def _missing(self, table: DeltaTable, path: Path) -> StoreError:
        return StoreError(f"{self.root}: version {table.version()}: data file {path.name} is missing; the "
                                 f"dataset is damaged (`trajforge versions {self.root} --check` lists every problem)")

    @staticmethod
    def paths(table: DeltaTable) -> list[Path]:
        """The table's data files as local paths (``file_uris()`` are percent-encoded)."""
        return [local_path(uri) for uri in table.file_uris()]

    def data_files(self, version: int | None = None, footers: bool = False) -> list[Path]:
        """The data files of ``version`` (default: the newest), present; with ``footers``, each one readable Parquet."""
        files = self.paths(self.table(version))
        if footers:
            for path in files:
                self._footer_rows(path, version)
        return files

    def _footer_rows(self, path: Path, version: int | None) -> int:
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            at = f"version {version}" if version is not None else "the newest version"
            raise StoreError(f"{self.root}: {at}: data file {path.name} is not readable Parquet "
                             f"({one_line(err, 120)}); the dataset is damaged") from None

    def check(self) -> CheckReport:
        """``versions --check``: the log, every listed version's data files, and row counts against the manifests."""
        report = CheckReport()
        try:
            self.check_log()
            manifests = self._manifests()
            tables = [self.table(m.version, check_files=False) for m in manifests]
            newest = self.table(check_files=False)
        except StoreError as err:
            report.problems.append(str(err))
            return report
        report.versions = len(manifests)
        missing: set[Path] = set()
        for table in tables:
            for path in self.paths(table):
                if not path.is_file() and path not in missing:
                    missing.add(path)
                    report.problems.append(str(self._missing(table, path)))
        readable = []
        for path in self.paths(newest):
            report.files += 1
            if path in missing:
                continue
            try:
                report.rows += self._footer_rows(path, newest.version())
                readable.append(path)
            except StoreError as err:
                report.problems.append(str(err))
        if readable and len(readable) == report.files:
            self._check_counts(readable, manifests, report)
        return report

    def _check_counts(self, files: list[Path], manifests: list[DatasetManifest], report: CheckReport) -> None:
        """Each listed run's rows in the table (by ``run_id``) against its manifest's tasks and accepted counts."""
        frame = pl.concat([pl.read_parquet(f, columns=["run_id", "status"]) for f in files])
        counts = {(r["run_id"], r["status"]): r["len"] for r in frame.group_by("run_id", "status").len().to_dicts()}
        for m in manifests:
            rows = counts.get((m.run_id, "accepted"), 0) + counts.get((m.run_id, "rejected"), 0)
            accepted = counts.get((m.run_id, "accepted"), 0)
            if rows != m.tasks or accepted != m.accepted:
                report.problems.append(
                    f"{self.root}: version {m.version} (run {m.run_id}): the table holds {rows} rows "
                    f"({accepted} accepted), its manifest says {m.tasks} ({m.accepted} accepted)")

    # -- reading -------------------------------------------------------------
    def versions(self) -> list[DatasetManifest]:
        """Every committed version, oldest first."""
        self.table()  # checks the log (keeping its commitInfo) and the newest version's files
        return self._manifests()

    def _manifests(self) -> list[DatasetManifest]:
        """The manifests in the commitInfo ``check_log`` kept, oldest first."""
        out = []
        for version, commit in self.commit_infos.items():
            raw = commit.get(MANIFEST_KEY)
            if raw:
                try:
                    out.append(DatasetManifest.model_validate({**json.loads(raw), "version": version}))
                except ValueError as err:
                    raise StoreError(f"{self.root / LOG / f'{version:020d}.json'}: version {version}'s manifest is "
                                     f"unreadable ({one_line(err, 120)}); the dataset is damaged") from None
        return out

    def latest_version(self) -> int | None:
        return self.table(check_files=False).version() if self.exists() else None

    def scan(self, version: int | None = None) -> pl.LazyFrame:
        """A lazy scan of ``version`` (default: the newest), its log and files checked (see the module docstring)."""
        return scan_table(self.table(version), self.root)

    def read(self, version: int | None = None) -> pl.DataFrame:
        return self.scan(version).collect()

    def total_accepted(self) -> int:
        versions = self.versions() if self.exists() else []
        return versions[-1].total_accepted if versions else 0

    def deduplicator(self, config: DedupConfig, on_ray: bool = False) -> Deduplicator:
        """The dedup layers for a new commit, seeded with every committed version's index when asked to;
        ``on_ray``: the near layer's work runs as tasks on the running Ray instance (``dedup.on_ray``)."""
        prior = None
        if config.against_previous_versions and self.exists():
            prior = self.dedup_index(config)
        if on_ray and config.near.enabled:
            from dedup.on_ray import RayNear

            return Deduplicator(config, prior, near=RayNear())
        return Deduplicator(config, prior)

    def dedup_index(self, config: DedupConfig) -> DedupIndex:
        """What every committed version kept, from the persisted index parts (rebuilt from rows where missing)."""
        return load_index(self.root, self.versions(), config, self._kept_rows)

    def _kept_rows(self, manifest: DatasetManifest) -> pl.DataFrame:
        """The rows a version's run kept, in dedup order, with what dedup needs to rebuild its index part."""
        frame = self.scan(manifest.version).filter(
            (pl.col("run_id") == manifest.run_id) & (pl.col("status") == ACCEPTED))
        names = frame.collect_schema().names()
        cluster = pl.col("cluster_id") if "cluster_id" in names else pl.col("id")  # versions written before clusters
        return frame.select("id", cluster.fill_null(pl.col("id")).alias("cluster_id"), "dedup_hash", "messages",
                            "shard", "index").collect().sort("shard", "index")

    # -- writing -------------------------------------------------------------
    def staging(self, run_id: str) -> Path:
        path = self.root / "_staging" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, shard_files: list[Path], manifest: DatasetManifest,
               dedup: Deduplicator | Callable[[], Deduplicator] | None,
               retries: int = 3, accept_limit: int | None = None, exact: bool = False,
               known_intents: dict[str, list[str]] | None = None) -> DatasetManifest:
        """Dedup the staged rows in order and commit them as one new version.

        Two passes: the first reads only the small columns (and, for near and semantic
        dedup, the user turns of rows still accepted) to decide duplicates and count the
        funnel, so the manifest is complete before the commit; the second streams full
        rows into Delta. The dedup index part for this version is written just before.

        Optimistic concurrency: the commit lands only if the table is still at
        the version the dedup decisions were made against. ``known_intents``
        (domain -> intent names) lets the diversity figures state intent
        coverage. When another run
        committed in between, a ``dedup`` given as a factory is rebuilt (so it
        sees the rows just committed) and the commit retried, up to
        ``retries`` times; a ``dedup`` object cannot be rebuilt, so the run
        fails instead. Either way no version is half-written or deduplicated
        against a stale view.

        ``accept_limit`` N keeps the first N rows accepted after dedup (a target run): later accepted rows are
        committed as rejected at stage ``target``. With ``exact``, fewer than N raises ``ShortOfTarget`` and
        nothing is written.
        """
        if self.exists():
            self.data_files(footers=True)  # never append to a damaged table, whichever way the run came in
        for attempt in range(retries + 1):
            base = self.latest_version()
            try:
                return self._commit_once(shard_files, manifest, dedup() if callable(dedup) else dedup, base,
                                         accept_limit, exact, known_intents)
            except _Conflict:
                if not callable(dedup) or attempt == retries:
                    raise CommitConflictError(
                        f"{self.root}: another run committed a new version while run {manifest.run_id} was committing "
                        f"on top of version {base}; gave up after {attempt + 1} attempt(s). Nothing was committed; "
                        f"the staged shards stay under _staging/{manifest.run_id}/") from None
        raise AssertionError("unreachable")

    def _commit_once(self, shard_files: list[Path], manifest: DatasetManifest, dedup: Deduplicator | None,
                     base: int | None, accept_limit: int | None = None, exact: bool = False,
                     known_intents: dict[str, list[str]] | None = None) -> DatasetManifest:
        light = pa.concat_tables([_light(f) for f in shard_files])
        status, stage, reason, fault = (light.column(c).to_pylist() for c in ("status", "stage", "reason", "fault"))
        ids = light.column("id").to_pylist()
        cluster, layers, outcome = list(ids), {}, None
        if dedup is not None:
            outcome = dedup.run(ids, [st == ACCEPTED for st in status], light.column("dedup_hash").to_pylist(),
                                ShardTexts(shard_files))
            for i, (_layer, why) in outcome.rejected.items():
                # A duplicate is synthesis's: it proposed a task (or dialogue) the dataset already has.
                status[i], stage[i], reason[i], fault[i] = REJECTED, "dedup", why, "synthesis"
            cluster, layers = outcome.cluster_ids, outcome.counts
        if accept_limit is not None:
            survivors = sum(st == ACCEPTED for st in status)
            if exact and survivors < accept_limit:
                raise ShortOfTarget(survivors, accept_limit)
            _keep_first(outcome, accept_limit, status, stage, reason, fault)
        rejected = [i for i, st in enumerate(status) if st == REJECTED]
        accepted = len(status) - len(rejected)
        stages = Counter(stage[i] for i in rejected)
        final = manifest.model_copy(update={
            "parent_version": base,
            "tasks": len(status), "accepted": accepted, "rejected": len(rejected),
            "stages": dict(sorted(stages.items())),
            "reasons": dict(Counter(reason_key(stage[i], reason[i] or "") for i in rejected).most_common()),
            "total_accepted": self.total_accepted() + accepted,
            "funnel": _target_last(funnel(stages, layers, manifest.config)),
            # Rows kept back by a target are nobody's failure.
            "faults": fault_counts(fault[i] for i in rejected if stage[i] != TARGET_STAGE),
            "similarity_histogram": outcome.similarity_histogram if outcome else {},
            **_settled(manifest, accepted, stages.get(TARGET_STAGE, 0)),
            "diversity": self._diversity(shard_files, status, known_intents),
        })
        columns = {"status": pa.array(status, pa.string()), "stage": pa.array(stage, pa.string()),
                   "reason": pa.array(reason, pa.string()), "cluster_id": pa.array(cluster, pa.string()),
                   "fault": pa.array(fault, pa.string())}
        expected = 0 if base is None else base + 1
        if outcome is not None:
            save_part(self.root, expected, final.run_id, outcome.index, dedup.config)

        def batches() -> Iterator[pa.RecordBatch]:
            offset = 0
            for f in shard_files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                    arrays = [columns[n].slice(offset, batch.num_rows) if n in columns else _column(batch, n)
                              for n in ROW_SCHEMA.names]
                    offset += batch.num_rows
                    yield pa.RecordBatch.from_arrays(arrays, schema=ROW_SCHEMA)

        # Built on the table as of ``base`` with no retries, a concurrent commit is a conflict, not a merge; a first
        # commit uses mode="error", so a table created meanwhile is a conflict too.
        properties = CommitProperties(custom_metadata={MANIFEST_KEY: final.model_dump_json(exclude={"version"})},
                                      max_commit_retries=0)
        table = None if base is None else self.table(base, check_files=False)
        try:
            if table is not None and not _row_schema(table):
                # Only a write can change the table's schema (older code wrote fewer columns): this one commit
                # streams through delta-rs' writer, whose memory grows with the version (see delta_parts).
                write_deltalake(table, pa.RecordBatchReader.from_batches(ROW_SCHEMA, batches()), mode="append",
                                schema_mode="merge", commit_properties=properties,
                                writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS,
                                                                   compression="SNAPPY"))
            else:
                self._commit_parts(batches(), table, properties)
        except CommitFailedError as err:
            raise _Conflict from err
        except DeltaError as err:
            if base is None and "already exists" in str(err):
                raise _Conflict from err
            raise
        return final.model_copy(update={"version": expected})

    def _commit_parts(self, batches: Iterator[pa.RecordBatch], table: DeltaTable | None,
                      properties: CommitProperties) -> None:
        """Writes the version's files with pyarrow (one row group in memory) and commits them as one transaction;
        the files of a commit that fails are removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        parts = PartWriter(self.root, ROW_SCHEMA, ROW_GROUP_ROWS)
        try:
            actions = parts.write(batches).close()
            if table is None:
                create_table_with_add_actions(table_uri(self.root), DeltaSchema.from_arrow(ROW_SCHEMA), actions,
                                              mode="error", commit_properties=properties)
            else:
                table.create_write_transaction(actions, "append", ROW_SCHEMA, commit_properties=properties)
        except BaseException:
            parts.discard()
            raise

    @staticmethod
    def _diversity(shard_files: list[Path], status: list[str], known_intents: dict[str, list[str]] | None
                   ) -> DiversityFigures:
        """The version's diversity and difficulty, streamed one batch at a time with the final statuses."""
        figures = Diversity(known_intents)
        offset = 0
        for f in shard_files:
            parquet = pq.ParquetFile(f)
            columns = [c for c in Diversity.COLUMNS if c in parquet.schema_arrow.names and c != "status"]
            for batch in parquet.iter_batches(batch_size=512, columns=columns):
                rows = batch.to_pylist()
                for k, row in enumerate(rows):
                    row["status"] = status[offset + k]
                offset += len(rows)
                figures.add_batch(rows)
        return figures.finish()

    def clear_staging(self, run_id: str) -> None:
        shutil.rmtree(self.root / "_staging" / run_id, ignore_errors=True)
