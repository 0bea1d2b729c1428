"""Near dedup on templated rows stays linear: capped LSH buckets reject (nearly) the same rows as uncapped ones."""

from __future__ import annotations

import random

import numpy as np

from dedup import Deduplicator
from dedup.minhash import MinHasher, band_keys, bucket_pairs, candidate_pairs
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
