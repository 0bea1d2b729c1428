"""Near-duplicate detection at scale: trajforge's numpy MinHash + LSH against datasketch's MinHashLSH.

100k synthetic dialogues (user turns: template openers plus Zipf-distributed words) with
planted near-duplicate pairs (a copy with a few words replaced, true word-3-gram Jaccard
>= 0.85), so the ground truth is known. Both sides get the same texts, the same
tokenizer and 3-gram shingles, the same num_perm and threshold, and both
verify LSH candidates by their estimated Jaccard >= threshold. Banding: datasketch picks
its own (bands, rows) for the threshold (equal false-positive/negative weights);
trajforge's default weighs recall (see dedup.minhash.optimal_bands), both are printed. Timed end to end from raw
text to verified pairs. Precision counts every reported pair that was not planted.

    python bench/near_dedup.py [--docs 100000] [--datasketch-docs N]

``--datasketch-docs`` times datasketch on the first N documents only (its time is then
scaled linearly to --docs for the speedup; recall and precision are measured on those N
against the pairs planted within them). The last line is
``dedup: speedup_vs_datasketch=<x> recall=<r> precision=<p>`` (ours).

(Not called ``dedup.py``: a script of that name on ``sys.path`` would shadow the ``dedup`` package.)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedup.minhash import MinHasher, band_keys, candidate_pairs, jaccard, optimal_bands, tokenize  # noqa: E402

OPENERS = ["hi, I need help with my order", "hello, can you check something for me", "hey there, quick question",
           "I want to return an item", "my package has not arrived yet", "can I change the address on an order",
           "please cancel my last order", "yes, please go ahead", "thanks, that is all", "my email is on file"]


def shingle_set(text: str, n: int = 3) -> set[str]:
    toks = tokenize(text)
    return {" ".join(toks[i:i + n]) for i in range(max(len(toks) - n + 1, 1))}


def true_jaccard(a: str, b: str) -> float:
    x, y = shingle_set(a), shingle_set(b)
    return len(x & y) / len(x | y)


def make_corpus(n_docs: int, seed: int = 0) -> tuple[list[str], set[tuple[int, int]]]:
    """``n_docs`` dialogues' user text; about 5% are near copies of an earlier one. Returns texts and planted pairs."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "he", "ja", "qu"]
    vocab = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(30000)})
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9
    weights /= weights.sum()
    n_planted = n_docs // 20
    n_base = n_docs - n_planted
    words = nprng.choice(len(vocab), size=n_base * 60, p=weights)
    texts, pos = [], 0
    for _ in range(n_base):
        turns = []
        for _ in range(rng.randint(3, 5)):
            k = rng.randint(8, 16)
            body = " ".join(vocab[w] for w in words[pos:pos + k])
            pos += k
            turns.append(f"{rng.choice(OPENERS)} {body}" if rng.random() < 0.3 else body)
        texts.append("\n".join(turns))
    copies = []
    for src in rng.sample(range(n_base), n_planted):  # distinct sources: each planted group is one pair
        toks = texts[src].split(" ")
        while True:
            copy = list(toks)
            for _ in range(rng.randint(1, 2)):
                copy[rng.randrange(len(copy))] = rng.choice(vocab)
            text = " ".join(copy)
            if text != texts[src] and true_jaccard(texts[src], text) >= 0.85:
                break
        copies.append((src, len(texts)))
        texts.append(text)
    order = list(range(n_docs))  # shuffle so planted copies sit anywhere
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    planted = {tuple(sorted((where[a], where[b]))) for a, b in copies}
    return [texts[old] for old in order], planted


def ours(texts: list[str], num_perm: int, threshold: float, bands: int, rows: int) -> tuple[set, float]:
    start = time.perf_counter()
    sig = MinHasher(num_perm=num_perm, ngram=3, seed=1).signatures(texts)
    pairs = candidate_pairs(band_keys(sig, bands, rows))
    keep = jaccard(sig[pairs[:, 0]], sig[pairs[:, 1]]) >= threshold if len(pairs) else np.zeros(0, bool)
    found = {(int(i), int(j)) for i, j in pairs[keep]}
    return found, time.perf_counter() - start


def with_datasketch(texts: list[str], num_perm: int, threshold: float) -> tuple[set, float]:
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([s.encode() for s in shingle_set(text)])
        lsh.insert(i, m)
        hashes.append(m)
    found = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j > i and m.jaccard(hashes[j]) >= threshold:
                found.add((i, j))
    return found, time.perf_counter() - start


def score(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(truth), 1), (hit / len(found) if found else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--datasketch-docs", type=int, default=None, help="time datasketch on the first N docs only")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    texts, truth = make_corpus(args.docs)
    bands, rows = optimal_bands(args.threshold, args.num_perm)
    from datasketch import MinHashLSH

    ds = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm)
    print(f"{len(texts)} dialogues, {len(truth)} planted near-duplicate pairs; num_perm={args.num_perm} "
          f"threshold={args.threshold}; bands x rows: trajforge {bands}x{rows} (recall-weighted), "
          f"datasketch {ds.b}x{ds.r} (its default for this threshold)")

    found, t_ours = ours(texts, args.num_perm, args.threshold, bands, rows)
    r_ours, p_ours = score(found, truth)
    print(f"trajforge   {len(texts):>7} docs  {t_ours:8.2f} s  {len(texts) / t_ours:>9.0f} docs/s  "
          f"recall={r_ours:.4f} precision={p_ours:.4f}")

    n_ds = min(args.datasketch_docs or args.docs, args.docs)
    sub_truth = {(i, j) for i, j in truth if j < n_ds}
    found_ds, t_ds = with_datasketch(texts[:n_ds], args.num_perm, args.threshold)
    r_ds, p_ds = score(found_ds, sub_truth)
    print(f"datasketch  {n_ds:>7} docs  {t_ds:8.2f} s  {n_ds / t_ds:>9.0f} docs/s  "
          f"recall={r_ds:.4f} precision={p_ds:.4f}")
    if n_ds < args.docs:
        sub_found, t_sub = ours(texts[:n_ds], args.num_perm, args.threshold, bands, rows)
        r_sub, p_sub = score(sub_found, sub_truth)
        print(f"trajforge   {n_ds:>7} docs  {t_sub:8.2f} s  {n_ds / t_sub:>9.0f} docs/s  "
              f"recall={r_sub:.4f} precision={p_sub:.4f}  (same subset as datasketch)")
        print(f"datasketch measured on {n_ds} docs; docs/s compared for the speedup")
    speedup = (len(texts) / t_ours) / (n_ds / t_ds)
    print(f"dedup: speedup_vs_datasketch={speedup:.1f} recall={r_ours:.4f} precision={p_ours:.4f}")


if __name__ == "__main__":
    main()
