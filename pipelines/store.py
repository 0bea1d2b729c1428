"""The versioned dataset: one Delta Lake table, one commit per run.

Delta gives what a nightly dataset needs without hand-written bookkeeping: an
atomic commit (a failed run leaves no version), time travel (``pl.read_delta
(dir, version=N)``), and commit metadata, where each version's manifest lives,
so the manifest can never disagree with the data it describes.

Runs stage their shard files under ``_staging/<run_id>/`` (ignored by Delta)
and the publish step streams them into a single commit, so memory does not
grow with the dataset.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from dedup import DedupIndex, Deduplicator, load_index, save_part, user_texts
from pipelines.funnel import funnel
from pipelines.rows import ACCEPTED, REJECTED, ROW_SCHEMA
from schemas import DatasetManifest, DedupConfig

MANIFEST_KEY = "trajforge.manifest"
# Row groups of bounded size (Delta's writer default is ~1M rows): a reader that wants one row, or the rows of one
# run, decodes only the row groups whose statistics match, not a whole version's messages.
ROW_GROUP_ROWS = 4096


class StoreError(RuntimeError):
    pass


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

    def exists(self) -> bool:
        return (self.root / "_delta_log").is_dir()

    def _table(self) -> DeltaTable:
        if not self.exists():
            raise StoreError(f"{self.root}: no trajforge dataset here (no _delta_log)")
        return DeltaTable(str(self.root))

    # -- reading -------------------------------------------------------------
    def versions(self) -> list[DatasetManifest]:
        """Every committed version, oldest first."""
        out = []
        for entry in self._table().history():
            raw = entry.get(MANIFEST_KEY)
            if raw:
                out.append(DatasetManifest.model_validate({**json.loads(raw), "version": entry["version"]}))
        return sorted(out, key=lambda m: m.version)

    def latest_version(self) -> int | None:
        return self._table().version() if self.exists() else None

    def read(self, version: int | None = None) -> pl.DataFrame:
        if version is not None:
            return pl.read_delta(str(self.root), version=version)
        return pl.read_delta(str(self.root))

    def total_accepted(self) -> int:
        versions = self.versions() if self.exists() else []
        return versions[-1].total_accepted if versions else 0

    def deduplicator(self, config: DedupConfig) -> Deduplicator:
        """The dedup layers for a new commit, seeded with every committed version's index when asked to."""
        prior = None
        if config.against_previous_versions and self.exists():
            prior = self.dedup_index(config)
        return Deduplicator(config, prior)

    def dedup_index(self, config: DedupConfig) -> DedupIndex:
        """What every committed version kept, from the persisted index parts (rebuilt from rows where missing)."""
        return load_index(self.root, self.versions(), config, self._kept_rows)

    def _kept_rows(self, manifest: DatasetManifest) -> pl.DataFrame:
        """The rows a version's run kept, in dedup order, with what dedup needs to rebuild its index part."""
        frame = pl.scan_delta(str(self.root), version=manifest.version).filter(
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
               retries: int = 3, accept_limit: int | None = None, exact: bool = False) -> DatasetManifest:
        """Dedup the staged rows in order and commit them as one new version.

        Two passes: the first reads only the small columns (and, for near and semantic
        dedup, the user turns of rows still accepted) to decide duplicates and count the
        funnel, so the manifest is complete before the commit; the second streams full
        rows into Delta. The dedup index part for this version is written just before.

        Optimistic concurrency: the commit lands only if the table is still at
        the version the dedup decisions were made against. When another run
        committed in between, a ``dedup`` given as a factory is rebuilt (so it
        sees the rows just committed) and the commit retried, up to
        ``retries`` times; a ``dedup`` object cannot be rebuilt, so the run
        fails instead. Either way no version is half-written or deduplicated
        against a stale view.

        ``accept_limit`` N keeps the first N rows accepted after dedup (a target run): later accepted rows are
        committed as rejected at stage ``target``. With ``exact``, fewer than N raises ``ShortOfTarget`` and
        nothing is written.
        """
        for attempt in range(retries + 1):
            base = self.latest_version()
            try:
                return self._commit_once(shard_files, manifest, dedup() if callable(dedup) else dedup, base,
                                         accept_limit, exact)
            except _Conflict:
                if not callable(dedup) or attempt == retries:
                    raise StoreError(
                        f"{self.root}: another run committed a new version while run {manifest.run_id} was committing "
                        f"on top of version {base}; gave up after {attempt + 1} attempt(s). Nothing was committed; "
                        f"the staged shards stay under _staging/{manifest.run_id}/") from None
        raise AssertionError("unreachable")

    def _commit_once(self, shard_files: list[Path], manifest: DatasetManifest, dedup: Deduplicator | None,
                     base: int | None, accept_limit: int | None = None, exact: bool = False) -> DatasetManifest:
        light = pa.concat_tables([_light(f) for f in shard_files])
        status, stage, reason, fault = (light.column(c).to_pylist() for c in ("status", "stage", "reason", "fault"))
        ids = light.column("id").to_pylist()
        cluster, layers, outcome = list(ids), {}, None
        if dedup is not None:
            outcome = dedup.run(ids, [st == ACCEPTED for st in status], light.column("dedup_hash").to_pylist(),
                                lambda positions: self._user_texts(shard_files, positions))
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

        reader = pa.RecordBatchReader.from_batches(ROW_SCHEMA, batches())
        # Writing through the table as of ``base`` with no retries makes a concurrent commit a conflict, not a merge.
        # A first commit uses mode="error", so a table created meanwhile is a conflict too.
        target = str(self.root) if base is None else DeltaTable(str(self.root), version=base)
        try:
            write_deltalake(target, reader, mode="error" if base is None else "append", schema_mode="merge",
                            writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY"),
                            commit_properties=CommitProperties(
                                custom_metadata={MANIFEST_KEY: final.model_dump_json(exclude={"version"})},
                                max_commit_retries=0))
        except CommitFailedError as err:
            raise _Conflict from err
        except DeltaError as err:
            if base is None and "already exists" in str(err):
                raise _Conflict from err
            raise
        return final.model_copy(update={"version": expected})

    @staticmethod
    def _user_texts(shard_files: list[Path], positions: list[int]) -> list[str]:
        """User turns of the rows at ``positions`` (in shard-file order), one shard file in memory at a time."""
        wanted, out, offset = sorted(positions), {}, 0
        for f in shard_files:
            n = pq.ParquetFile(f).metadata.num_rows
            local = [p - offset for p in wanted if offset <= p < offset + n]
            if local:
                frame = pl.read_parquet(f, columns=["messages"])[local]
                out.update(zip((offset + p for p in local), user_texts(frame), strict=True))
            offset += n
        return [out[p] for p in positions]

    def clear_staging(self, run_id: str) -> None:
        shutil.rmtree(self.root / "_staging" / run_id, ignore_errors=True)
