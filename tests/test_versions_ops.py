"""Versions: diff, reading a past version, retention, and two runs committing to one dataset at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from export_helpers import commit_worker, draft_manifest, stage_rows, two_versions

from dedup import Deduplicator
from pipelines.cli import main
from pipelines.delta_parts import PartWriter
from pipelines.export import export_version
from pipelines.rows import ROW_SCHEMA
from pipelines.store import DatasetStore, StoreError
from pipelines.versioning import diff_versions
from schemas import DedupConfig

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, prefect_server):
    return two_versions(tmp_path_factory.mktemp("versions") / "ds")


def test_diff_and_past_versions(dataset, capsys):
    store = DatasetStore(dataset)
    v0, v1 = store.versions()
    diff = diff_versions(store, 0, 1)
    assert diff.added == {"accepted": v1.accepted, "rejected": v1.rejected}
    assert diff.removed == {"accepted": 0, "rejected": 0}
    back = diff_versions(store, 1, 0)
    assert back.removed == diff.added and sum(back.added.values()) == 0

    assert main(["versions", str(dataset), "--diff", "0", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["added_total"] == v1.tasks and printed["from"] == 0 and printed["to"] == 1
    assert main(["versions", str(dataset), "--diff", "0", "1"]) == 0
    assert f"+{v1.tasks} rows" in capsys.readouterr().out
    assert main(["versions", str(dataset), "--diff", "0", "5"]) == 2
    assert "no version 5" in capsys.readouterr().err

    assert store.read(0).height == v0.tasks
    assert store.read(1).height == v0.tasks + v1.tasks
    assert set(store.read(0)["id"]) < set(store.read(1)["id"])


def test_retention_keeps_the_newest_versions_and_vacuums_orphans(dataset, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    store = DatasetStore(root)
    v0, v1 = store.versions()
    files = stage_rows(store.read(0).to_arrow(), tmp_path / "staged")
    v2 = store.commit(files, draft_manifest("run-c"), store.deduplicator(DedupConfig()))
    assert v2.version == 2 and v2.parent_version == 1 and v2.accepted == 0  # all duplicates of version 0
    data_file = next(root.glob("part-*.parquet"))
    old_orphan, young_orphan = root / "part-orphan-old.parquet", root / "part-orphan-young.parquet"
    shutil.copy(data_file, old_orphan)
    shutil.copy(data_file, young_orphan)
    two_hours_ago = time.time() - 7200
    os.utime(old_orphan, (two_hours_ago, two_hours_ago))
    rows_before = store.read().height

    assert main(["versions", str(root), "--retain", "2"]) == 0
    out = capsys.readouterr().out
    assert "kept versions 1, 2" in out and "expired 1 older version(s) (0)" in out and "vacuumed 1" in out
    assert [m.version for m in store.versions()] == [1, 2]
    assert store.read().height == rows_before  # nothing lost from the newest version
    assert store.read(1).height == v0.tasks + v1.tasks
    with pytest.raises(Exception):  # noqa: B017  (deltalake's error type for a version whose log is gone)
        store.read(0)
    assert not old_orphan.exists() and young_orphan.exists()
    summary = export_version(root, tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert summary.version == 2 and "Versions before 1 have expired" in card
    assert v1.run_id in card and f"| {v0.run_id} |" not in card

    # retaining again is a no-op; a new commit after retention builds on the kept history
    assert main(["versions", str(root), "--retain", "2"]) == 0
    assert "expired 0" in capsys.readouterr().out
    young_orphan.unlink()
    v3 = store.commit(files, draft_manifest("run-d"), store.deduplicator(DedupConfig()))
    # vacuum's own commits take version numbers (without a manifest), so the next version may skip some
    assert [m.version for m in store.versions()] == [1, 2, v3.version] and v3.parent_version == v3.version - 1
    assert main(["versions", str(root), "--retain", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_two_processes_committing_at_once_one_wins_the_other_retries_and_dedups(dataset, tmp_path):
    files = [str(p) for p in stage_rows(DatasetStore(dataset).read(0).to_arrow(), tmp_path / "staged")]
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=commit_worker, args=(root, files, run, barrier, results)) for run in ("left", "right")]
    for p in procs:
        p.start()
    got = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(r["ok"] for r in got), got
    winner, loser = sorted(got, key=lambda r: r["manifest"]["version"])
    assert winner["attempts"] == [0]  # both pinned the empty table ...
    assert len(loser["attempts"]) == 2 and loser["attempts"][0] == 0 and loser["attempts"][1] > 0  # ... one retried
    w, lo = winner["manifest"], loser["manifest"]
    assert (w["version"], w["parent_version"]) == (0, None)
    assert (lo["version"], lo["parent_version"]) == (1, 0)
    assert w["accepted"] > 0 and lo["accepted"] == 0  # the retry deduplicated against the winner's rows
    assert lo["stages"] == {**w["stages"], "dedup": w["accepted"]}
    assert lo["total_accepted"] == w["total_accepted"] == w["accepted"]
    store = DatasetStore(root)
    assert [m.run_id for m in store.versions()] == [winner["run_id"], loser["run_id"]]
    assert store.read().height == w["tasks"] + lo["tasks"]
    assert len(set(store.read().filter(store.read()["status"] == "accepted")["dedup_hash"])) == w["accepted"]


class _MeetingDedup(Deduplicator):
    """Dedup that waits for the other committer when it decides (after the base version is pinned)."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__(DedupConfig())
        self.barrier = barrier

    def run(self, *args, **kwargs):
        self.barrier.wait(timeout=60)
        return super().run(*args, **kwargs)


def test_two_threads_with_a_fixed_dedup_one_fails_clearly_nothing_half_written(dataset, tmp_path):
    files = stage_rows(DatasetStore(dataset).read(0).to_arrow(), tmp_path / "staged")
    root = tmp_path / "shared"
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = DatasetStore(root).commit(files, draft_manifest(name), _MeetingDedup(barrier))
        except StoreError as err:
            outcomes[name] = err

    threads = [threading.Thread(target=run, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [o for o in outcomes.values() if isinstance(o, StoreError)]
    assert len(outcomes) == 2 and len(errors) == 1
    message = str(errors[0])
    assert "another run committed a new version" in message and "Nothing was committed" in message
    store = DatasetStore(root)
    assert len(store.versions()) == 1
    assert store.read().height == DatasetStore(dataset).versions()[0].tasks
    assert _parquet_files(root) == {p.name for p in store.data_files()}  # the loser removed the files it had written


def test_a_commit_that_keeps_losing_gives_up_and_keeps_its_staged_shards(dataset, tmp_path):
    """Another run commits each time this one has pinned its base version (a real second writer, real Delta
    conflicts): after its retries it fails naming the run, commits nothing, leaves its staged shards byte for byte,
    and those shards commit once the other writer stops."""
    source = DatasetStore(dataset)
    root = tmp_path / "shared"
    ours, theirs = DatasetStore(root), DatasetStore(root)
    staged = stage_rows(source.read(0).to_arrow(), ours.staging("run-loser"))
    before = {p: p.read_bytes() for p in staged}
    their_files = stage_rows(source.read(1).filter(source.read(1)["run_id"] == "run-b").to_arrow(), tmp_path / "theirs")
    won: list[int] = []

    def dedup_then_lose() -> Deduplicator:
        seen = ours.deduplicator(DedupConfig())  # this attempt's view, pinned on the version it will commit on
        won.append(theirs.commit(their_files, draft_manifest(f"other-{len(won)}"), None).version)
        return seen

    with pytest.raises(StoreError) as err:
        ours.commit(staged, draft_manifest("run-loser"), dedup_then_lose)
    message = str(err.value)
    assert "run run-loser" in message and "gave up after 4 attempt(s)" in message and "Nothing was committed" in message
    assert "_staging/run-loser/" in message and "\n" not in message
    assert won == [0, 1, 2, 3]  # three retries, each lost to a commit made meanwhile
    assert [m.run_id for m in DatasetStore(root).versions()] == [f"other-{n}" for n in range(4)]
    assert {p: p.read_bytes() for p in staged} == before  # the staged shards are still there, untouched
    assert DatasetStore(root).read().height == 4 * sum(pq.ParquetFile(f).metadata.num_rows for f in their_files)
    assert _parquet_files(root) == {p.name for p in DatasetStore(root).data_files()}  # no file of the four lost attempts is left

    # the other writer is done: the same staged shards commit, deduplicated against everything committed meanwhile
    landed = ours.commit(staged, draft_manifest("run-loser"), lambda: ours.deduplicator(DedupConfig()))
    assert (landed.version, landed.parent_version) == (4, 3)
    assert landed.tasks == source.versions()[0].tasks
    assert [m.run_id for m in DatasetStore(root).versions()][-1] == "run-loser"


def _parquet_files(root) -> set[str]:
    """The Parquet files in a table's folder (trajforge's own folders are below it)."""
    return {p.name for p in root.glob("*.parquet")}


def test_a_version_is_written_by_pyarrow_and_committed_with_delta_stats(dataset, tmp_path):
    """The commit writes its own Parquet files (bounded memory) and commits them as add actions: the files roll over
    at the target size in whole row groups, the add actions carry the footers' row counts and bounds, and both
    readers (polars', deltalake's for a folder whose path needs escaping) see every row."""
    rows = DatasetStore(dataset).read(0).to_arrow().select(ROW_SCHEMA.names).cast(ROW_SCHEMA)
    parts = PartWriter(tmp_path, ROW_SCHEMA, row_group_rows=16, target_file_bytes=20_000)
    actions = parts.write(rows.to_batches(max_chunksize=5)).close()
    assert len(actions) > 1 and sum(json.loads(a.stats)["numRecords"] for a in actions) == rows.num_rows
    for action in actions:
        meta = pq.ParquetFile(tmp_path / action.path).metadata
        assert {meta.row_group(g).num_rows for g in range(meta.num_row_groups - 1)} <= {16}
        stats = json.loads(action.stats)
        shard = pq.read_table(tmp_path / action.path, columns=["id", "num_turns", "reason"])
        assert stats["minValues"]["id"] == min(shard["id"].to_pylist())
        assert stats["maxValues"]["num_turns"] == max(shard["num_turns"].to_pylist())
        assert stats["nullCount"]["reason"] == shard["reason"].null_count
        assert "messages" not in stats["minValues"]  # nested columns have no bounds
    parts.discard()
    assert not list(tmp_path.glob("*.parquet"))

    root = tmp_path / "a b"  # deltalake's reader, not polars'
    store = DatasetStore(root)
    first = store.commit(stage_rows(rows, tmp_path / "staged"), draft_manifest("run-x"), None)
    table = store.table()
    added = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    assert sum(added["num_records"]) == first.tasks == rows.num_rows
    assert added["min.run_id"] == added["max.run_id"] == ["run-a"]
    assert table.schema().to_arrow() == DeltaTable(dataset).schema().to_arrow()  # as delta-rs' writer made it
    assert store.read().sort("id").equals(DatasetStore(dataset).read(0).sort("id"))
