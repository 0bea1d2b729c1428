"""Operations on a dataset's versions: diff two of them, expire old ones.

Versions are Delta commits (see ``pipelines.store``). The table is append-only,
so a later version always contains an earlier one's rows; a diff is computed
on row ids rather than assumed, so it stays right if rows are ever removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.rows import ACCEPTED, REJECTED
from pipelines.store import DatasetStore, StoreError

ORPHAN_GRACE_HOURS = 1  # never vacuum files this young: they may belong to a commit in flight


@dataclass
class VersionDiff:
    """Rows by id, and what the runs in between committed: a run with the same config and seed re-makes the
    very rows (ids are content hashes, not run ids), so "+0 rows" alone would read as "nothing happened"."""

    a: int
    b: int
    added: dict[str, int]  # status -> rows in b and not in a
    removed: dict[str, int]  # status -> rows in a and not in b
    runs: list[str]  # the runs committed after a, up to b
    committed: int  # rows those runs appended
    dedup_rejected: int  # of them, rejected as duplicates

    def as_dict(self) -> dict:
        added = sum(self.added.values())
        return {"from": self.a, "to": self.b, "added": self.added, "removed": self.removed,
                "added_total": added, "removed_total": sum(self.removed.values()),
                "runs": self.runs, "committed": self.committed, "remade": max(0, self.committed - added),
                "dedup_rejected": self.dedup_rejected}


def _known(store: DatasetStore) -> list[int]:
    return [m.version for m in store.versions()]


def _check(store: DatasetStore, version: int, known: list[int]) -> None:
    if version not in known:
        raise StoreError(f"{store.root}: no version {version}; readable versions: {', '.join(map(str, known))}")


def _ids(store: DatasetStore, version: int) -> pl.DataFrame:
    return store.scan(version).select("id", "status").collect()


def diff_versions(store: DatasetStore, a: int, b: int) -> VersionDiff:
    """Rows added and removed going from version ``a`` to version ``b``, by status."""
    manifests = store.versions()
    known = [m.version for m in manifests]
    for v in (a, b):
        _check(store, v, known)
    old, new = _ids(store, a), _ids(store, b)
    between = [m for m in manifests if a < m.version <= b]

    def count(frame: pl.DataFrame) -> dict[str, int]:
        return {s: frame.filter(pl.col("status") == s).height for s in (ACCEPTED, REJECTED)}

    added = new.join(old, on="id", how="anti")
    removed = old.join(new, on="id", how="anti")
    return VersionDiff(a=a, b=b, added=count(added), removed=count(removed), runs=[m.run_id for m in between],
                       committed=sum(m.tasks for m in between),
                       dedup_rejected=sum(m.stages.get("dedup", 0) for m in between))


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
        raise StoreError(f"--retain: must keep at least 1 version, got {keep}")
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
