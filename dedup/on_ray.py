"""The near layer's heavy work as Ray tasks, over the same shard Parquet files: ``runner.kind: ray``.

What is parallel runs on the Ray instance the run already has (the one its shards ran
on, local or a cluster): one task per shard file reads that file's user turns and
computes their MinHash signatures, next to the data, so no message text passes
through the driver; one task per LSH band groups that band's keys into capped buckets
and verifies the candidate pairs (``near.band_verified``), the signatures shared
through Ray's object store. What is sequential stays in the driver: the greedy pass
(first kept representative wins, in shard/index order) over the merged pairs. The
tasks compute exactly what the local path computes, and the merge is the local one
(``near._once``), so rejections and cluster ids are the same as on any other runner.

Why tasks, not a Ray Data pipeline: a dedup pass is a few dozen tasks over arrays
that already exist; a Ray Data job adds its executor's start-up to every commit and
does not keep row order within a file, which the decisions need. Files are read by
path, so on a cluster the dataset's staging folder must be shared storage (as it is
for the shards themselves, ``pipelines.ray_runner``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import ray

from dedup.minhash import TOKEN_HASH, MinHasher
from dedup.near import InMemoryCandidates, NearWork, PriorKeys, _once, band_verified
from dedup.stacked import Stacked
from dedup.steps import Rows
from dedup.text import ShardTexts, shard_user_texts

log = logging.getLogger("trajforge.dedup")


@ray.remote
def _sign_shard(path: str, rows: list[int], num_perm: int, ngram: int, seed: int) -> tuple[int, str, np.ndarray]:
    """(worker pid, token hash, signatures) of the given rows of one shard file."""
    return os.getpid(), TOKEN_HASH, MinHasher(num_perm, ngram, seed).signatures(shard_user_texts(Path(path), rows))


@ray.remote
def _band(every: np.ndarray, keys: np.ndarray, band: int, m: int, cap: int, threshold: float,
          eligible: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray, bool]:
    return (os.getpid(), *band_verified(every, keys, band, m, cap, threshold, eligible))


class RayNear(NearWork):
    """Signatures per shard file and candidate pairs per band as Ray tasks; ``pids`` and ``tasks`` say where and
    how many (logged when the step finishes)."""

    def __init__(self) -> None:
        if not ray.is_initialized():
            raise RuntimeError("dedup on Ray needs a running Ray instance (a run with runner.kind ray has one)")
        self.pids: set[int] = set()
        self.tasks: Counter[str] = Counter()

    def signatures(self, hasher: MinHasher, rows: Rows) -> np.ndarray:
        if not isinstance(rows.source, ShardTexts):  # rows that are not in files (a caller's own texts): here
            return super().signatures(hasher, rows)
        parts = rows.source.by_file(rows.positions)
        done = ray.get([_sign_shard.remote(str(path), local, hasher.num_perm, hasher.ngram, hasher.seed)
                        for path, local, _ in parts])
        out = np.empty((len(rows.positions), hasher.num_perm), dtype=np.uint32)
        for (_, _, at), (pid, token_hash, sig) in zip(parts, done, strict=True):
            if token_hash != TOKEN_HASH:  # a cluster node with another polars: its signatures match nothing here
                raise RuntimeError(f"a Ray worker hashes tokens with {token_hash}, this process with {TOKEN_HASH}: "
                                   "install the same polars release on every node")
            out[at] = sig
            self.pids.add(pid)
        self.tasks["signature"] += len(parts)
        return out

    def candidates(self, prior: np.ndarray | Stacked | None, new: np.ndarray, bucket_cap: int,
                   prior_keys: PriorKeys | None = None) -> RayCandidates:
        return RayCandidates(prior, new, bucket_cap, self, prior_keys)

    def finished(self, rows: int) -> None:
        log.info("near dedup on Ray: %d rows, %d signature tasks (one per shard file), %d band tasks, worker pids %s",
                 rows, self.tasks["signature"], self.tasks["band"], sorted(self.pids))


class RayCandidates(InMemoryCandidates):
    """``InMemoryCandidates`` whose per-band grouping and verification run as one Ray task per band."""

    def __init__(self, prior: np.ndarray | Stacked | None, new: np.ndarray, bucket_cap: int, work: RayNear,
                 prior_keys: PriorKeys | None = None) -> None:
        super().__init__(prior, new, bucket_cap, prior_keys)
        self.work = work

    def verified(self, every: np.ndarray, keys: np.ndarray, m: int, threshold: float, eligible: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
        shared = ray.put(every), ray.put(keys), ray.put(eligible)  # once in the object store, read by every band
        done = ray.get([_band.remote(shared[0], shared[1], band, m, self.bucket_cap, threshold, shared[2])
                        for band in range(keys.shape[1])])
        self.work.tasks["band"] += len(done)
        self.work.pids.update(pid for pid, *_ in done)
        codes, sims = _once(np.concatenate([np.zeros(0, np.int64), *(c for _, c, _, _ in done)]),
                            np.concatenate([np.zeros(0, np.float32), *(s for _, _, s, _ in done)]))
        return codes, sims, any(o for *_, o in done)
