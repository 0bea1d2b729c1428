"""MinHash signatures and LSH banding over whole batches of documents at once, in numpy.

Why not one ``MinHash`` object per document (datasketch's shape): the per-document
Python work (hashing every shingle, a small numpy call per document, a dict insert
per band) dominates at 10^5 documents. Here a batch is one long token array:

- tokens are found by polars (a Rust regex) and hashed by polars' string hash, with a
  fixed seed: the same on every run of one polars release (persisted indexes record
  the release and are rebuilt when it changes);
- word n-gram shingles are mixed from token hashes with vectorized arithmetic;
- each permutation is a multiply-add in uint32 (a random odd multiplier: a bijection
  of the 32-bit shingle hashes), and ``np.minimum.reduceat`` takes every document's
  minimum in one call;
- LSH buckets are found by sorting band keys, not by dict inserts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

TOKEN_PATTERN = r"[#$]?\w+(?:[.@-]\w+)*"
_TOKEN = re.compile(TOKEN_PATTERN)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def tokenize(text: str) -> list[str]:
    """Lower-cased words; '#W123', '$4.50' and 'a@b.com' stay one token each (one text; see ``tokenize_many``)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def tokenize_many(texts: Sequence[str]) -> pl.Series:
    """``tokenize`` for a whole batch in polars (Rust regex): a list[str] Series, one entry per text."""
    series = pl.Series(list(texts), dtype=pl.String).fill_null("")
    wide = series.str.contains(r"[^\x00-\x7F]")  # NFKC is costly and a no-op on ASCII: apply it where needed
    if wide.any():
        series = series.scatter(wide.arg_true(), series.filter(wide).str.normalize("NFKC"))
    return series.str.to_lowercase().str.extract_all(TOKEN_PATTERN)


TOKEN_HASH = f"polars-{pl.__version__}"
"""Which token hash signatures were made with: polars' string hash is stable within a polars
release only, so a persisted index records this and is rebuilt when it changes."""


def hash_tokens(tokens: pl.Series) -> np.ndarray:
    """A 64-bit hash per token, vectorized in Rust (fixed seed; see TOKEN_HASH)."""
    return tokens.hash(seed=0x5EED).to_numpy().astype(np.uint64, copy=False)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.1, fn_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimizing the weighted false positive and negative areas.

    datasketch's criterion, but weighted toward recall by default: every LSH candidate is
    verified against the threshold afterwards, so a false candidate costs one comparison
    while a missed pair is a duplicate in the dataset.
    """
    s = np.linspace(0.0, 1.0, 2001)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            below, above = s <= threshold, s >= threshold
            fp = np.trapezoid(p[below], s[below])
            fn = np.trapezoid(1.0 - p[above], s[above])
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


class MinHasher:
    """Signatures of shape (n_docs, num_perm), uint32; the permutations are fixed by ``seed``."""

    def __init__(self, num_perm: int = 128, ngram: int = 3, seed: int = 1) -> None:
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 2**32, num_perm, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
        self.b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
        self.mult = rng.integers(1, 2**63, ngram, dtype=np.uint64) | np.uint64(1)

    def shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All documents' shingle hashes (uint32) concatenated, and each document's start offset.

        A document shorter than ``ngram`` tokens is one shingle of what it has; an empty
        document gets one fixed shingle, so that all empty texts count as duplicates.
        """
        tokens = tokenize_many(texts)
        lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
        tok = hash_tokens(tokens.filter(tokens.list.len() > 0).explode())
        n, docs, total_tokens = self.ngram, len(lengths), len(tok)
        counts = np.maximum(lengths - n + 1, 1)  # shingles per document
        offsets = np.zeros(docs, dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        starts = np.zeros(docs, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        acc = np.empty(int(counts.sum()), dtype=np.uint64)
        with np.errstate(over="ignore"):
            long_docs = lengths >= n
            if total_tokens >= n:  # sliding windows over the token stream, kept where they stay inside one document
                doc_of = np.repeat(np.arange(docs), lengths)
                windows = np.full(total_tokens - n + 1, np.uint64(n), dtype=np.uint64)
                for k in range(n):
                    windows += tok[k:total_tokens - n + 1 + k] * self.mult[k]
                acc[np.repeat(long_docs, counts)] = windows[doc_of[: total_tokens - n + 1] == doc_of[n - 1:]]
            short = np.flatnonzero(~long_docs)  # fewer than n tokens: one shingle of what there is
            if len(short):
                padded = np.concatenate([tok, np.zeros(n, dtype=np.uint64)])
                part = lengths[short].astype(np.uint64)
                for k in range(n):
                    part += np.where(lengths[short] > k, padded[starts[short] + k] * self.mult[k], np.uint64(0))
                acc[offsets[short]] = part
            acc ^= acc >> np.uint64(31)
            acc *= _MIX
            acc ^= acc >> np.uint64(29)
        return (acc >> np.uint64(32)).astype(np.uint32), offsets

    def signatures(self, texts: Sequence[str], chunk: int = 1 << 16) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        values, offsets = self.shingles(texts)
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        a, b = self.a[:, None], self.b[:, None]
        # Chunks of whole documents, about `chunk` shingles each, keep the (num_perm, chunk) block in cache.
        bounds = np.searchsorted(offsets, np.arange(0, len(values), chunk), side="right") - 1
        edges = sorted(set(bounds.tolist()) | {len(texts)})
        buf = np.empty((self.num_perm, chunk * 2), dtype=np.uint32)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            s0, s1 = offsets[lo], (offsets[hi] if hi < len(texts) else len(values))
            block = buf[:, : s1 - s0] if s1 - s0 <= buf.shape[1] else np.empty((self.num_perm, s1 - s0), np.uint32)
            np.multiply(a, values[None, s0:s1], out=block)
            np.add(block, b, out=block)
            out[lo:hi] = np.minimum.reduceat(block, offsets[lo:hi] - s0, axis=1).T
        return out


def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity: the share of equal signature slots (row-wise for 2-D inputs)."""
    return (sig_a == sig_b).mean(axis=-1)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): the band's ``rows`` values mixed; shape (n_docs, bands)."""
    n = signatures.shape[0]
    sig = signatures[:, : bands * rows].reshape(n, bands, rows)
    weights = (np.arange(1, rows + 1, dtype=np.uint64) * _MIX) | np.uint64(1)
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        # One pass per row of the band (the same sum, mod 2^64): a reduction over a short last axis was 2-4x
        # slower, and every earlier version's keys are made again each night (``InMemoryCandidates.touching``).
        for r in range(rows):
            keys += sig[:, :, r] * weights[r]
        keys ^= keys >> np.uint64(33)
        keys *= _MIX
        keys ^= np.arange(bands, dtype=np.uint64) * np.uint64(0xFF51AFD7ED558CCD)
    return keys


def bucket_pairs(keys: np.ndarray, cap: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Pairs (rep, j), rep < j, sharing a bucket of one band's ``keys``: each row with its bucket's representatives,
    the first ``cap`` rows of the bucket that are ``eligible`` (all rows when None).

    Why capped: templated dialogues (one domain's flows, one persona bank) land in a
    few huge buckets, and pairing every member with every other grows quadratically —
    the 40k-task run that peaked at 4.8 GB and the 100k one the OOM killer ended. The
    caller passes the rows it kept as ``eligible``, so a bucket's representatives are
    its earliest kept rows, the ones a later member can be a duplicate of. At most
    ``len(keys) * cap`` pairs, however similar the rows are.
    """
    return capped_bucket_pairs(keys, cap, eligible)[0]


def capped_bucket_pairs(keys: np.ndarray, cap: int, eligible: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """``bucket_pairs``, and whether the cap left out any eligible row (a bucket had more than ``cap``)."""
    blocks, overflow = bucket_pair_blocks(keys, cap, eligible)
    out = list(blocks)
    return (np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)), overflow


def bucket_pair_blocks(keys: np.ndarray, cap: int, eligible: np.ndarray | None = None, later_from: int = 0
                       ) -> tuple[Iterator[np.ndarray], bool]:
    """``capped_bucket_pairs`` as blocks of at most ``len(keys)`` pairs (a representative's pairs are never split),
    made as they are consumed: a caller that verifies each block before the next holds that many pairs at once,
    not ``len(keys) * cap``.

    Only pairs whose later row is ``>= later_from`` (this run's rows, after the earlier versions'), so only
    buckets holding such a row are paired. A block is made in a few array operations however many
    representatives it has: one pass per representative rank made ~10 numpy calls per rank and band, which
    grew with the buckets the earlier versions filled."""
    n = len(keys)
    if n < 2:
        return iter(()), False
    order = np.argsort(keys, kind="stable")  # stable: within a bucket, rows ascend
    sorted_keys = keys[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    bucket = np.cumsum(starts) - 1
    later = np.bincount(bucket, weights=order >= later_from)
    keep = (np.bincount(bucket) > 1)[bucket] & (later > 0)[bucket]  # singletons, and buckets of earlier rows only
    order, bucket = order[keep], bucket[keep]
    ok = np.ones(len(order), dtype=bool) if eligible is None else eligible[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = bucket[1:] != bucket[:-1]
    heads = np.flatnonzero(first)
    sizes = np.diff(np.append(heads, len(order)))
    run = np.cumsum(ok)  # rank of each eligible row among its bucket's eligible rows
    rank = run - 1 - np.repeat((run - ok)[first], sizes)
    overflow = bool((ok & (rank >= cap)).any())
    reps = np.flatnonzero(ok & (rank < cap))  # positions of the representatives
    after = (np.repeat(heads + sizes, sizes) - 1 - np.arange(len(order)))[reps]  # rows after each in its bucket
    total = np.cumsum(after)

    def blocks() -> Iterator[np.ndarray]:
        lo, done = 0, 0
        while lo < len(reps):
            hi = max(int(np.searchsorted(total, done + n, side="right")), lo + 1)
            r, c = reps[lo:hi], after[lo:hi]
            rep = np.repeat(r, c)
            member = rep + 1 + np.arange(len(rep)) - np.repeat(np.cumsum(c) - c, c)
            pairs = np.stack([order[rep], order[member]], axis=1)
            yield pairs[pairs[:, 1] >= later_from]
            lo, done = hi, int(total[hi - 1])

    return blocks(), overflow


def candidate_pairs(keys: np.ndarray, cap: int = 32) -> np.ndarray:
    """Pairs (i, j), i < j, that share a bucket in at least one band (``bucket_pairs`` per band); sorted, unique."""
    pairs = [bucket_pairs(keys[:, band], cap) for band in range(keys.shape[1])]
    both = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    return np.unique(both, axis=0) if len(both) else both
