"""The near layer: MinHash signatures of the user text, LSH candidates, verified by estimated Jaccard.

Greedy in order: a row with an earlier kept row at estimated Jaccard >=
``threshold`` is a duplicate of the most similar one (ties to the earliest). A
kept row at least ``cluster_threshold`` similar to an earlier kept row shares
its cluster, so an export can keep similar dialogues within one split.

Where signatures live and how candidates are found is behind one seam,
``Candidates``: the implementation here keeps this run's signatures in memory and
streams the earlier versions' memory-mapped parts, reading only the rows that share
an LSH bucket with a new row. Where the heavy work runs is ``NearWork``: here, or as
Ray tasks (``dedup.on_ray``), with the same decisions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dedup.minhash import MinHasher, band_keys, bucket_pair_blocks, jaccard, optimal_bands
from dedup.stacked import Stacked
from dedup.steps import Decisions, Rows, Step
from dedup.text import ShardTexts, shard_user_texts
from schemas import DedupConfig
from schemas.config import NearDedupConfig


class Partners:
    """Verified LSH pairs as three flat arrays sorted by the later row ``j``: compact where a dict of lists is not."""

    def __init__(self, i: np.ndarray, j: np.ndarray, sim: np.ndarray, capped: bool = False) -> None:
        order = np.lexsort((i, j))
        self.i, self.j, self.sim = i[order], j[order], sim[order]
        self.capped = capped  # a bucket had more eligible rows than the cap: some rows were not representatives

    def __len__(self) -> int:
        return len(self.j)

    def of(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``j``'s earlier partners and their estimated Jaccard, partners ascending."""
        lo, hi = np.searchsorted(self.j, [j, j + 1])
        return self.i[lo:hi], self.sim[lo:hi]


class Candidates(Protocol):
    """Earlier rows' signatures (numbered 0..n_prior-1) and this run's (n_prior + k), and LSH lookups over both."""

    n_prior: int

    def partners(self, bands: int, rows: int, threshold: float, eligible: np.ndarray | None = None) -> Partners:
        """For each new row j: the rows before it (earlier or new) sharing an LSH bucket with it at
        estimated Jaccard >= ``threshold``, among each bucket's first ``bucket_cap`` ``eligible`` rows."""
        ...


PriorKeys = dict[tuple[int, int], np.ndarray | Stacked]
"""Per (bands, rows): the earlier versions' band keys, as their index parts keep them (``part_keys``)."""

MAX_ROUNDS = 4
"""Greedy passes at most, when capped buckets made the representatives differ from the kept rows (NearStep)."""

VERIFY_CHUNK = 1 << 14
"""Candidate pairs whose signatures are compared at once: 2 x 16k x num_perm x 4 bytes (16 MB at 128) of temporaries."""

KEY_CHUNK = 1 << 16
"""Rows whose band keys are computed at once (band_keys widens signatures to 64 bits)."""


class KeyFilter:
    """Bits of the new rows' band keys in two tables: whether an earlier row's keys may be among them.

    Why: finding the earlier rows that share a bucket with a new row reads every earlier row's keys, so its
    cost per key is what grows with the versions kept (a binary search per band and key was most of a
    version's dedup by the tenth version). Reading a bit at random from a table larger than the CPU's
    cache costs ~15 ns, more than all the arithmetic around it, so every key is first looked up in a small
    table (``FIRST_BITS``, 2 MB: a few ns) of its low 32 bits, which lets through a few percent of the keys
    that are no new row's; only those are looked up again, by their high 32 bits, in a table of 256 bits per
    new key. A key passes where both halves were seen: ~0.1% of the rows that share no key get by, and
    ``band_verified`` drops them at once (each row let by costs its signature read and a place in every band's sort).
    """

    FIRST_BITS = 1 << 24  # 2 MB: stays in cache
    MAX_BITS = 1 << 28  # 32 MB; beyond ~1M new keys the filter lets more through, and stays right
    LOW, HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)  # a key's 32-bit words, in memory

    def __init__(self, keys: np.ndarray) -> None:
        bits = 1 << 16
        while bits < 256 * keys.size and bits < self.MAX_BITS:
            bits <<= 1
        words = _words(keys)
        self.first = _Bits(words[self.LOW::2], min(bits, self.FIRST_BITS))
        self.second = _Bits(words[self.HIGH::2], bits)

    def any_of(self, keys: np.ndarray) -> np.ndarray:
        """Per row of ``keys``: False only where none of its keys is a new row's key."""
        words = _words(keys)
        maybe = np.flatnonzero(self.first.seen(words[self.LOW::2]))  # flat positions of keys
        sure = maybe[self.second.seen(words[2 * maybe + self.HIGH])]
        out = np.zeros(len(keys), dtype=bool)
        out[sure // max(keys.shape[1], 1)] = True
        return out


class _Bits:
    """A table of bits set at the given 32-bit words' low bits (``bits``: a power of two)."""

    def __init__(self, words: np.ndarray, bits: int) -> None:
        self.mask = np.uint32(bits - 1)
        self.table = np.zeros(bits // 8, dtype=np.uint8)
        slot = words & self.mask
        for bit in range(8):  # one bit value at a time: a plain assignment, where ``bitwise_or.at`` is slow
            self.table[slot[(slot & np.uint32(7)) == bit] >> np.uint32(3)] |= np.uint8(1 << bit)

    def seen(self, words: np.ndarray) -> np.ndarray:
        slot = words & self.mask
        return ((self.table[slot >> np.uint32(3)] >> (slot & np.uint32(7)).astype(np.uint8)) & np.uint8(1)).view(bool)


def _words(keys: np.ndarray) -> np.ndarray:
    """64-bit keys, row after row, as their 32-bit words (a view): the filter's arithmetic on half the bytes."""
    return np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1).view(np.uint32)


class InMemoryCandidates:
    """This run's signatures in memory, and of the earlier versions' only the rows sharing a bucket with one of them.

    Memory stays linear in this run's rows however similar they are, and flat in the
    number of earlier versions: the earlier signatures (memory-mapped parts) are
    streamed in chunks of ``KEY_CHUNK`` to find the rows sharing a band key with a new
    row — no other earlier row can be a candidate — and only those are read. Each
    band's bucket pairs are capped (``bucket_pairs``: every row against its bucket's
    first ``bucket_cap`` eligible rows), verified in chunks of ``VERIFY_CHUNK``, and only
    the pairs above the threshold kept, as flat arrays.
    """

    def __init__(self, prior: np.ndarray | Stacked | None, new: np.ndarray, bucket_cap: int = 32,
                 prior_keys: PriorKeys | None = None) -> None:
        self.prior = Stacked([] if prior is None else [prior] if isinstance(prior, np.ndarray) else prior.parts)
        self.n_prior, self.new, self.bucket_cap = len(self.prior), new, bucket_cap
        # per banding, the earlier rows' band keys as their parts keep them
        self.prior_keys = {banding: k if isinstance(k, Stacked) else Stacked([k]) for banding, k in
                           (prior_keys or {}).items()}
        self._touching: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _keys(self, sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
        return np.concatenate([band_keys(sig[lo:lo + KEY_CHUNK], bands, rows) for lo in range(0, len(sig), KEY_CHUNK)]
                              ) if len(sig) else np.zeros((0, bands), np.uint64)

    def touching(self, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(earlier rows sharing a bucket with a new row, their signatures and this run's stacked, band keys of both)."""
        if (bands, rows) not in self._touching:
            new_keys = self._keys(self.new, bands, rows)
            some = KeyFilter(new_keys)
            picked, picked_keys = [np.zeros(0, np.int64)], [np.zeros((0, bands), np.uint64)]
            kept = self.prior_keys.get((bands, rows))
            if len(self.new):
                for start, chunk in (self.prior if kept is None else kept).chunks(KEY_CHUNK):
                    keys = band_keys(chunk, bands, rows) if kept is None else chunk
                    # No exact check: a row the filter lets through without sharing a key with a new row is in
                    # no bucket with one, so it pairs with no new row and is dropped with those buckets.
                    maybe = np.flatnonzero(some.any_of(keys))
                    picked.append(start + maybe)
                    picked_keys.append(keys[maybe])
            sel = np.concatenate(picked)
            every = np.concatenate([self.prior.take(sel), self.new]) if len(sel) else self.new
            self._touching[(bands, rows)] = (sel, every, np.concatenate([*picked_keys, new_keys]))
        return self._touching[(bands, rows)]

    def partners(self, bands: int, rows: int, threshold: float, eligible: np.ndarray | None = None) -> Partners:
        sel, every, keys = self.touching(bands, rows)
        m = len(sel)  # local numbering: the picked earlier rows 0..m-1, then this run's rows
        if eligible is not None:
            eligible = np.concatenate([eligible[sel], eligible[self.n_prior:]])
        n = max(len(every), 1)
        codes, sims, capped = self.verified(every, keys, m, threshold, eligible)
        i, j = codes // n, codes % n
        shift = self.n_prior - m  # back to global numbers: earlier rows by their pick, this run's after n_prior
        early = i < m
        i[early], i[~early] = sel[i[early]], i[~early] + shift
        return Partners(i, j + shift, sims, capped)

    def verified(self, every: np.ndarray, keys: np.ndarray, m: int, threshold: float, eligible: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Every band's verified pairs (``band_verified``), each pair once: here one band after another; the bands
        are independent, so ``dedup.on_ray`` runs one Ray task per band and merges the same way."""
        codes, sims, capped = np.zeros(0, np.int64), np.zeros(0, np.float32), False
        for band in range(keys.shape[1]):
            c, s, overflow = band_verified(every, keys, band, m, self.bucket_cap, threshold, eligible)
            codes, sims = _once(np.concatenate([codes, c]), np.concatenate([sims, s]))  # a pair in several bands: once
            capped |= overflow
        return codes, sims, capped


def band_verified(every: np.ndarray, keys: np.ndarray, band: int, m: int, cap: int, threshold: float,
                  eligible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """One band's capped bucket pairs whose later row is a new one (``>= m``), verified in chunks of
    ``VERIFY_CHUNK``: the pairs at estimated Jaccard >= ``threshold`` as codes ``i * len(every) + j`` with their
    similarity, and whether the cap left out an eligible row.

    Only buckets holding a new row are paired (``bucket_pair_blocks``): the earlier rows here were picked
    for sharing a key with a new row in *some* band, and whole buckets are kept, in row order, so each keeps
    its representatives."""
    n = max(len(every), 1)
    blocks, overflow = bucket_pair_blocks(keys[:, band], cap, eligible, later_from=m)
    found_c, found_s = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for pairs in blocks:  # at most len(every) candidate pairs held at once
        for lo in range(0, len(pairs), VERIFY_CHUNK):
            chunk = pairs[lo:lo + VERIFY_CHUNK]
            s = jaccard(every[chunk[:, 0]], every[chunk[:, 1]]).astype(np.float32)
            hit = s >= threshold
            found_c.append(chunk[hit, 0] * n + chunk[hit, 1])
            found_s.append(s[hit])
    return np.concatenate(found_c), np.concatenate(found_s), overflow


def _once(codes: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair code once (sorted); a pair's similarity is the same in every band it was found in."""
    order = np.argsort(codes, kind="stable")
    codes, sims = codes[order], sims[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    return codes[first], sims[first]


class NearWork:
    """Where the near layer's heavy, parallel work runs: the signatures of the rows offered, and the candidate
    lookups over them (``Candidates``). This one runs it here, in this process; ``dedup.on_ray.RayNear`` runs
    it as Ray tasks. The greedy decisions (``NearStep``) are made in order by the caller either way."""

    def signatures(self, hasher: MinHasher, rows: Rows) -> np.ndarray:
        """Rows that lie in shard files (``ShardTexts``) one file at a time: a commit then holds one shard's
        texts and tokens, not every row's (what grew with the run's size); a row's signature does not depend on
        which rows it is computed with."""
        if rows.texts is not None or not isinstance(rows.source, ShardTexts):
            return hasher.signatures(rows.user_texts())
        out = np.empty((len(rows.positions), hasher.num_perm), dtype=np.uint32)
        for path, local, at in rows.source.by_file(rows.positions):
            out[at] = hasher.signatures(shard_user_texts(path, local))
        return out

    def candidates(self, prior: np.ndarray | Stacked | None, new: np.ndarray, bucket_cap: int,
                   prior_keys: PriorKeys | None = None) -> Candidates:
        return InMemoryCandidates(prior, new, bucket_cap, prior_keys)

    def finished(self, rows: int) -> None:
        """The step is done with ``rows`` new rows (a remote one says where its work ran)."""


LOCAL = NearWork()


def _best(partners: Partners, j: int, kept: np.ndarray) -> tuple[int, float] | None:
    """Row ``j``'s most similar kept partner; ties to the earliest."""
    rows, sims = partners.of(j)
    live = kept[rows]
    if not live.any():
        return None
    rows, sims = rows[live], sims[live]
    k = int(np.argmax(sims))  # the first maximum: partners ascend, so ties go to the earliest
    return int(rows[k]), float(sims[k])


def bandings(near: NearDedupConfig) -> list[tuple[int, int]]:
    """(bands, rows) of the duplicate check, then of the cluster check when there is one."""
    main = (near.bands, near.rows) if near.bands and near.rows else optimal_bands(near.threshold, near.num_perm)
    return [main] + ([optimal_bands(near.cluster_threshold, near.num_perm)] if near.cluster_threshold else [])


def part_keys(signatures: np.ndarray, near: NearDedupConfig) -> dict[tuple[int, int], np.ndarray]:
    """A part's band keys for each banding, kept beside its signatures: every later version streams every
    earlier row's keys, and making them again from the signatures each night was what grew with the versions."""
    return {(b, r): band_keys(signatures, b, r) for b, r in bandings(near)}


class NearStep(Step):
    layer = "near"

    def __init__(self, config: DedupConfig, work: NearWork = LOCAL) -> None:
        super().__init__()
        near = config.near
        self.threshold, self.cluster_threshold = near.threshold, near.cluster_threshold
        self.hasher = MinHasher(near.num_perm, near.ngram, near.seed)
        (self.bands, self.rows), *cluster = bandings(near)
        self.cluster_banding = cluster[0] if cluster else None
        self.work, self.bucket_cap = work, near.bucket_cap

    def _duplicates(self, store: Candidates, n_new: int) -> tuple[np.ndarray, dict[int, tuple[int, float]]]:
        """The greedy pass: which rows stay kept, and each duplicate's (representative, jaccard).

        A bucket's representatives should be its first *kept* rows, which only the pass
        itself decides: the first round takes the first rows of each bucket; where a
        bucket had more than the cap, the pass reruns with the rows it kept as the
        eligible representatives, until what it keeps no longer changes (``MAX_ROUNDS``).
        """
        n_prior = store.n_prior
        eligible = None
        for _ in range(MAX_ROUNDS):
            partners = store.partners(self.bands, self.rows, self.threshold, eligible)
            kept = np.ones(n_prior + n_new, dtype=bool)
            matches: dict[int, tuple[int, float]] = {}
            for j in range(n_prior, n_prior + n_new):
                match = _best(partners, j, kept)
                if match is not None:
                    kept[j], matches[j] = False, match
            if not partners.capped or (eligible is not None and (kept == eligible).all()):
                break
            eligible = kept
        return kept, matches

    def signatures(self, texts: list[str]) -> np.ndarray:
        return self.hasher.signatures(texts)

    def index_part(self, texts: Callable[[], list[str]]) -> dict[str, np.ndarray]:
        return {"signatures": self.signatures(texts())}

    def run(self, rows: Rows, decisions: Decisions) -> list[bool]:
        sig = (self.work.signatures(self.hasher, rows) if rows.positions
               else np.zeros((0, self.hasher.num_perm), np.uint32))
        rows.signatures = sig
        prior = decisions.prior
        store = self.work.candidates(prior.signatures, sig, self.bucket_cap, prior.band_keys)
        n_prior = store.n_prior
        new_ids = [decisions.ids[i] for i in rows.positions]
        clusters: list[str | None] = [None] * len(rows.positions)  # this run's; earlier rows' are prior.cluster_ids

        def label(p: int) -> str:
            return prior.ids[p] if p < n_prior else new_ids[p - n_prior]

        def cluster(p: int) -> str | None:
            return prior.cluster_ids[p] if p < n_prior else clusters[p - n_prior]

        kept, matches = self._duplicates(store, len(sig))
        near_partners = (store.partners(*self.cluster_banding, self.cluster_threshold, kept)
                         if self.cluster_banding else None)
        for k, i in enumerate(rows.positions):
            j = n_prior + k
            if j in matches:
                p, sim = matches[j]
                clusters[k] = cluster(p)
                decisions.reject(i, self.layer, f"near duplicate of {'an earlier version: ' if p < n_prior else ''}"
                                                f"{label(p)} (jaccard {sim:.2f})", cluster(p))
                continue
            close = _best(near_partners, j, kept) if near_partners is not None else None
            clusters[k] = decisions.cluster_ids[i] = cluster(close[0]) if close else decisions.ids[i]
        self.work.finished(len(sig))
        return kept[n_prior:].tolist()
