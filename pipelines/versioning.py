"""Operations on a dataset's versions: diff two of them, expire old ones.

Versions are Delta commits (see ``pipelines.store``). The table is append-only,
so a later version always contains an earlier one's rows; a diff is computed
on row keys (run, task index) rather than assumed, so it stays right if rows are ever removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from pipelines.diversity import SCALARS
from pipelines.rows import ACCEPTED, REJECTED
from pipelines.store import DatasetStore, StoreError, reason_key
from schemas import ConfigError, DatasetManifest

ORPHAN_GRACE_HOURS = 1  # never vacuum files this young: they may belong to a commit in flight


@dataclass
class VersionDiff:
    """Rows by key (run, task index), by rejection reason, and the runs in between: a re-run with the same config
    and seed adds its rows (rejected by dedup as duplicates of the earlier run's), which the diff says."""

    a: int
    b: int
    added: dict[str, int]  # status -> rows in b and not in a
    removed: dict[str, int]  # status -> rows in a and not in b
    added_reasons: dict[str, int] = field(default_factory=dict)  # generic rejection reason -> rejected rows added
    removed_reasons: dict[str, int] = field(default_factory=dict)
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)  # name -> from, to, change
    runs: list[str] = field(default_factory=list)  # the runs committed after a, up to b
    dedup_rejected: int = 0  # rows those runs appended that dedup rejected (a re-run makes the same rows again)

    def as_dict(self) -> dict:
        return {"from": self.a, "to": self.b, "added": self.added, "removed": self.removed,
                "added_total": sum(self.added.values()), "removed_total": sum(self.removed.values()),
                "added_reasons": self.added_reasons, "removed_reasons": self.removed_reasons,
                "runs": self.runs, "dedup_rejected": self.dedup_rejected, "diversity": self.figures}


def figure_changes(a: DatasetManifest, b: DatasetManifest) -> dict[str, dict[str, float | None]]:
    """The headline diversity figures of two versions and their change (None where a version has none)."""
    out: dict[str, dict[str, float | None]] = {}
    for name, get, _fmt in SCALARS:
        old = float(get(a.diversity)) if a.diversity is not None else None
        new = float(get(b.diversity)) if b.diversity is not None else None
        out[name] = {"from": old, "to": new, "change": None if old is None or new is None else new - old}
    return out


def _known(store: DatasetStore) -> list[int]:
    return [m.version for m in store.versions()]


def _check(store: DatasetStore, version: int, known: list[int]) -> None:
    if version not in known:
        raise StoreError(f"{store.root}: no version {version}; readable versions: {', '.join(map(str, known))}")


# A row is (run, task index): unique, since a run commits once. Row ids are not: a dedup reject of a later run
# carries the id of the row it duplicates, and a re-run of the same config makes the same ids.
ROW_KEY = ["run_id", "index"]


def _rows(store: DatasetStore, version: int) -> pl.DataFrame:
    return store.scan(version).select(*ROW_KEY, "status", "stage", "reason").collect()


def reason_groups(rows: pl.DataFrame | pl.LazyFrame) -> dict[str, tuple[int, list[tuple[str, str]]]]:
    """Rejected rows per generic reason (``reason_key``), most frequent first, with the (stage, reason) pairs
    each key stands for. The key is computed once per distinct pair, not per row."""
    pairs = rows.lazy().filter(pl.col("status") == REJECTED).group_by("stage", "reason").len().collect().rows()
    groups: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    for stage, reason, n in pairs:
        key = reason_key(stage or "", reason or "")
        count, members = groups.get(key, (0, []))
        groups[key] = (count + n, [*members, (stage, reason)])
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0])))


def reason_counts(rows: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    return {key: n for key, (n, _) in reason_groups(rows).items()}


def diff_versions(store: DatasetStore, a: int, b: int) -> VersionDiff:
    """Rows added and removed going from version ``a`` to version ``b``, by status and by rejection reason."""
    manifests = store.versions()
    known = [m.version for m in manifests]
    for v in (a, b):
        _check(store, v, known)
    old, new = _rows(store, a), _rows(store, b)
    between = [m for m in manifests if a < m.version <= b]

    def count(frame: pl.DataFrame) -> dict[str, int]:
        return {s: frame.filter(pl.col("status") == s).height for s in (ACCEPTED, REJECTED)}

    added = new.join(old, on=ROW_KEY, how="anti")
    removed = old.join(new, on=ROW_KEY, how="anti")
    by_version = {m.version: m for m in manifests}
    return VersionDiff(a=a, b=b, added=count(added), removed=count(removed),
                       added_reasons=reason_counts(added), removed_reasons=reason_counts(removed),
                       runs=[m.run_id for m in between], dedup_rejected=sum(m.stages.get("dedup", 0) for m in between),
                       figures=figure_changes(by_version[a], by_version[b]))


@dataclass
class RetainResult:
    kept: list[int]
    expired: list[int]
    vacuumed: list[str]


def retain_versions(store: DatasetStore, keep: int) -> RetainResult:
    """Keep the newest ``keep`` versions readable; expire the older ones.

    What stays: the newest ``keep`` versions can still be read by number
    (``read(version)``, ``export --version``) and are listed with their
    manifests. What goes: older versions' log entries, so those numbers can no
    longer be read or listed; their rows are not lost, because every later
    version contains them (append-only), and ``total_accepted`` carries on in
    the kept manifests. A checkpoint at the oldest kept version is written
    first, so the kept versions never depend on removed entries. Then data
    files that no version references (left by failed or lost commits) and
    older than an hour are vacuumed.
    """
    if keep < 1:
        raise ConfigError(f"--retain: must keep at least 1 version, got {keep}")
    known = _known(store)
    kept, expired = known[-keep:], known[:-keep]
    log = store.root / "_delta_log"
    if expired:
        oldest = kept[0]
        store.table(oldest).create_checkpoint()
        for path in log.iterdir():
            number = path.name.split(".", 1)[0]
            if number.isdigit() and int(number) < oldest and path.name.endswith((".json", ".checkpoint.parquet", ".crc")):
                path.unlink()
    vacuumed = store.table().vacuum(retention_hours=ORPHAN_GRACE_HOURS, dry_run=False,
                                                  enforce_retention_duration=False, full=True)
    return RetainResult(kept=kept, expired=expired, vacuumed=vacuumed)
