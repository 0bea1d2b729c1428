"""Near dedup on templated rows stays linear: capped LSH buckets reject (nearly) the same rows as uncapped ones."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np

from dedup import DedupIndex, Deduplicator
from dedup.minhash import MinHasher, band_keys, bucket_pair_blocks, bucket_pairs, candidate_pairs
from dedup.near import KeyFilter
from dedup.stacked import Stacked
from schemas import DedupConfig

WORDS = "order package refund address card jacket shoes return cancel exchange tracking size color gift".split()


def templated(n: int, seed: int = 0) -> list[str]:
    """Pipeline-like user turns: one opener and a slot that differs, and a few distinct dialogues between."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        if k % 5 == 0:
            out.append(" ".join(rng.choices(WORDS, k=30)) + f" #{k}")
        else:
            out.append(f"Hi there. I want to cancel an order please.\nMy zip code is 43297 and my name is Liam Novak.\n"
                       f"It's order #W{rng.randrange(10**7)}. Yes, please go ahead. Thanks, that is all for today.")
    return out


def run(config: DedupConfig, texts: list[str]):
    ids = [f"r{i}" for i in range(len(texts))]
    return Deduplicator(config).run(ids, [True] * len(texts), ids, lambda pos: [texts[p] for p in pos])


def test_a_huge_bucket_gives_linear_pairs_from_its_first_rows():
    keys = np.array([7] * 1000 + list(range(1000, 2000)), dtype=np.uint64)  # one bucket of 1000 rows, 1000 singletons
    pairs = bucket_pairs(keys, cap=4)
    assert len(pairs) == 1 + 2 + 3 + 4 * 996  # the r-th row pairs with the first min(r, 4): not 1000*999/2
    assert set(pairs[:, 0].tolist()) == {0, 1, 2, 3} and (pairs[:, 0] < pairs[:, 1]).all()
    full = bucket_pairs(keys, cap=10_000)
    assert len(full) == 1000 * 999 // 2


def test_bucket_pair_blocks_are_each_rows_pairs_with_its_buckets_first_eligible_rows_in_bounded_blocks():
    """Against the definition, row by row: each row j >= later_from with every earlier row of its bucket that is
    among the bucket's first ``cap`` eligible rows; no block larger than the rows given; overflow where a bucket
    with such a row had more eligible rows than the cap."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n, cap = int(rng.integers(2, 400)), int(rng.integers(1, 12))
        keys = rng.integers(0, max(1, n // int(rng.integers(1, 60))), n).astype(np.uint64)  # a few huge buckets
        eligible = rng.random(n) < 0.7 if trial % 2 else None
        later_from = int(rng.integers(0, n))
        blocks, overflow = bucket_pair_blocks(keys, cap, eligible, later_from)
        got = list(blocks)
        assert all(len(b) <= n for b in got)
        pairs = [tuple(p) for b in got for p in b.tolist()]
        want, over = set(), False
        for key in set(keys.tolist()):
            members = np.flatnonzero(keys == key).tolist()
            if len(members) < 2 or members[-1] < later_from:
                continue
            ok = [r for r in members if eligible is None or eligible[r]]
            reps, over = ok[:cap], over or len(ok) > cap
            want |= {(r, j) for r in reps for j in members if j > r and j >= later_from}
        assert len(pairs) == len(set(pairs)) and set(pairs) == want and overflow == over


def test_the_key_filter_lets_through_every_row_sharing_a_key_and_few_others():
    """The prefilter before the exact check of which earlier rows share a bucket with a new one: a row it drops
    would be a near duplicate never compared."""
    rng = np.random.default_rng(3)
    new = rng.integers(0, 2**64 - 1, size=(3000, 14), dtype=np.uint64)
    earlier = rng.integers(0, 2**64 - 1, size=(20000, 14), dtype=np.uint64)
    band = rng.integers(0, 14, 2000)
    earlier[np.arange(0, 20000, 10), band] = new[rng.integers(0, 3000, 2000), band]  # every tenth shares one key
    maybe = KeyFilter(new).any_of(earlier)
    assert maybe[::10].all()
    others = np.delete(maybe, np.arange(0, 20000, 10))
    assert others.mean() < 0.002  # ~0.01% through: a key passes only where both of its halves were seen
    assert not KeyFilter(new[:0]).any_of(earlier).any()


def test_capped_buckets_decide_like_uncapped_ones_on_templated_rows():
    texts = templated(600)
    sig = MinHasher().signatures(texts)
    keys = band_keys(sig, 32, 4)
    capped, uncapped = candidate_pairs(keys, cap=8), candidate_pairs(keys, cap=10**6)
    assert len(capped) <= len(texts) * 8 * 2 < len(uncapped) / 4  # uncapped: quadratic in the templated rows
    small = run(DedupConfig.model_validate({"near": {"bucket_cap": 8}}), texts)
    full = run(DedupConfig.model_validate({"near": {"bucket_cap": 10**6}}), texts)
    # a bucket's representatives are its first kept rows: nearly the same rows are duplicates, of kept rows
    assert len(set(small.rejected) ^ set(full.rejected)) <= len(full.rejected) / 50 and len(full.rejected) >= 300
    kept = {f"r{i}" for i in range(len(texts))} - {f"r{i}" for i in small.rejected}
    assert all(why.split(" ")[3] in kept for _, why in small.rejected.values())
    again = run(DedupConfig.model_validate({"near": {"bucket_cap": 8}}), texts)
    assert again.rejected == small.rejected and again.cluster_ids == small.cluster_ids  # deterministic


def test_versions_against_memory_mapped_parts_decide_as_one_run(tmp_path):
    """Three versions, each against the earlier ones' parts (memory-mapped, streamed), reject what one run over
    all their rows rejects: an earlier version's kept rows are exactly the rows one run would have kept."""
    texts = templated(900, seed=1)
    texts += [texts[5].replace("cancel", "change"), texts[401] + " Thanks again."]
    config = DedupConfig()
    whole = run(config, texts)
    parts: list[DedupIndex] = []
    rejected: dict[int, str] = {}
    clusters: list[str] = []
    for k, (lo, hi) in enumerate(((0, 300), (300, 600), (600, len(texts)))):
        ids = [f"r{i}" for i in range(lo, hi)]
        prior = DedupIndex.concat(parts) if parts else None
        out = Deduplicator(config, prior).run(ids, [True] * len(ids), ids, lambda pos, lo=lo: [texts[lo + p] for p in pos])
        np.save(tmp_path / f"{k}.npy", out.index.signatures)
        parts.append(replace(out.index, signatures=np.load(tmp_path / f"{k}.npy", mmap_mode="r")))
        rejected |= {lo + i: why.replace("an earlier version: ", "") for i, (_, why) in out.rejected.items()}
        clusters += out.cluster_ids
        assert k == 0 or any("an earlier version" in why for _, why in out.rejected.values())
    assert rejected == {i: why for i, (_, why) in whole.rejected.items()} and clusters == whole.cluster_ids
    stacked = DedupIndex.concat([DedupIndex.concat(parts[:2]), parts[2]]).signatures  # an index of indexes, too
    assert isinstance(stacked, Stacked) and len(stacked.parts) == 3 and len(stacked) == sum(len(p) for p in parts)
    assert (stacked.take(np.array([len(parts[0]) + 1, 0])) == np.asarray(stacked)[[len(parts[0]) + 1, 0]]).all()


def test_rows_read_from_shard_files_one_at_a_time_get_the_same_decisions(tmp_path):
    """A commit's rows lie in shard files (``ShardTexts``): the near layer signs them one file at a time (so it
    never holds every row's text) and decides exactly what it decides over the whole batch of texts."""
    import polars as pl

    from dedup import ShardTexts

    texts = templated(300, seed=3)
    files = []
    for k, lo in enumerate(range(0, 300, 70)):  # uneven shards: the last one is short
        path = tmp_path / f"rows-{k:05d}.parquet"
        pl.DataFrame({"messages": [[{"role": "system", "content": "policy"}, {"role": "user", "content": t},
                                    {"role": "assistant", "content": "ok"}] for t in texts[lo:lo + 70]]}
                     ).write_parquet(path)
        files.append(path)
    ids = [f"r{i}" for i in range(300)]
    accepted = [i % 7 != 3 for i in range(300)]  # rows rejected earlier are never read
    in_memory = Deduplicator(DedupConfig()).run(ids, accepted, ids, lambda pos: [texts[p] for p in pos])
    from_files = Deduplicator(DedupConfig()).run(ids, accepted, ids, ShardTexts(files))
    assert in_memory.rejected == from_files.rejected and in_memory.counts["near"] > 0
    assert in_memory.cluster_ids == from_files.cluster_ids
    assert np.array_equal(in_memory.index.signatures, from_files.index.signatures)
