"""Dedup in three layers — exact hash, MinHash near-duplicate, semantic — over one run's rows,
against an index of everything kept by earlier versions.

Each layer keeps one deterministic representative per cluster: rows are offered in a
fixed order (shard, then index), and a row is a duplicate only of an *earlier kept*
row (of an earlier version, or earlier in this run). Ties go to the most similar, then
the earliest. The result says, per rejected row, which layer and of whom; and it
carries this run's survivors as a new index part, which the store persists next to
the Delta version it belongs to (pipelines/dedup_index.py).

Pure computation: no files here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from filters.minhash import MinHasher, band_keys, candidate_pairs, jaccard, optimal_bands
from schemas import DedupConfig

LAYERS = ("exact", "near", "semantic")


@dataclass
class DedupIndex:
    """What dedup remembers of kept rows: ids, cluster ids, exact hashes, and per enabled layer one matrix row each."""

    ids: list[str] = field(default_factory=list)
    cluster_ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    signatures: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def concat(parts: Sequence[DedupIndex]) -> DedupIndex:
        out = DedupIndex()
        for p in parts:
            out.ids += p.ids
            out.cluster_ids += p.cluster_ids
            out.hashes += p.hashes
        for name in ("signatures", "embeddings"):
            mats = [getattr(p, name) for p in parts if getattr(p, name) is not None and len(p)]
            setattr(out, name, np.concatenate(mats) if mats else None)
        return out


@dataclass
class DedupOutcome:
    """Per row offered: rejected rows as {position: (layer, reason)}, everyone's cluster id, and the new index part."""

    rejected: dict[int, tuple[str, str]]
    cluster_ids: list[str]
    counts: dict[str, int]
    index: DedupIndex
    similarity_histogram: dict[str, int] = field(default_factory=dict)


def user_text(contents: Sequence[tuple[str, str | None]]) -> str:
    """What near and semantic dedup compare: the user turns, one per line (the assistant's side follows from them)."""
    return "\n".join(c or "" for role, c in contents if role == "user")


class Deduplicator:
    def __init__(self, config: DedupConfig, prior: DedupIndex | None = None) -> None:
        self.config = config
        self.prior = prior or DedupIndex()
        near = config.near
        self.hasher = MinHasher(near.num_perm, near.ngram, near.seed) if near.enabled else None
        if near.enabled:
            self.bands, self.rows = (near.bands, near.rows) if near.bands else optimal_bands(near.threshold, near.num_perm)
            self.cluster_banding = optimal_bands(near.cluster_threshold, near.num_perm) if near.cluster_threshold else None

    @property
    def needs_text(self) -> bool:
        return self.config.near.enabled or self.config.semantic.enabled

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        return self.hasher.signatures(texts)

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        from filters import semantic

        return semantic.embed(texts, self.config.semantic.batch_size)

    def run(self, ids: Sequence[str], accepted: Sequence[bool], hashes: Sequence[str | None],
            texts_for: Callable[[list[int]], list[str]]) -> DedupOutcome:
        """Decide duplicates among the accepted rows, in the order given.

        ``texts_for(positions)`` returns the user text of those rows; it is only asked
        for rows that survive the exact layer, so a run of repeats reads no messages.
        """
        cluster = list(ids)
        rejected: dict[int, tuple[str, str]] = {}
        counts = dict.fromkeys(LAYERS, 0)
        alive = [i for i, ok in enumerate(accepted) if ok]

        if self.config.exact:
            first: dict[str, tuple[str, str]] = {
                h: ("an earlier version", c) for h, c in zip(self.prior.hashes, self.prior.cluster_ids, strict=True)}
            survivors = []
            for i in alive:
                h = hashes[i]
                if h is not None and h in first:
                    who, cluster[i] = first[h]
                    rejected[i] = ("exact", f"exact duplicate of {who}")
                    counts["exact"] += 1
                else:
                    if h is not None:
                        first[h] = (ids[i], ids[i])
                    survivors.append(i)
            alive = survivors

        texts = texts_for(alive) if self.needs_text and alive else []
        sig = emb = None
        hist: dict[str, int] = {}
        if self.config.near.enabled:
            sig = self.signatures(texts) if alive else np.zeros((0, self.config.near.num_perm), np.uint32)
            keep = self._near(alive, sig, ids, cluster, rejected, counts)
            texts = [t for t, k in zip(texts, keep, strict=True) if k]
            sig = sig[keep]
            alive = [i for i, k in zip(alive, keep, strict=True) if k]
        if self.config.semantic.enabled:
            emb = self.embeddings(texts)
            keep, hist = self._semantic(alive, emb, ids, cluster, rejected, counts)
            emb = emb[keep]
            if sig is not None:
                sig = sig[keep]
            alive = [i for i, k in zip(alive, keep, strict=True) if k]

        index = DedupIndex(ids=[ids[i] for i in alive], cluster_ids=[cluster[i] for i in alive],
                           hashes=[hashes[i] for i in alive], signatures=sig, embeddings=emb)
        return DedupOutcome(rejected=rejected, cluster_ids=cluster, counts=counts, index=index,
                            similarity_histogram=hist)

    def _near(self, alive: list[int], sig: np.ndarray, ids, cluster, rejected, counts) -> np.ndarray:
        """Greedy in order: a row with an earlier kept row at estimated Jaccard >= threshold is a duplicate."""
        threshold = self.config.near.threshold
        prior = self.prior.signatures
        n_prior = 0 if prior is None else len(prior)
        every = sig if not n_prior else np.concatenate([prior, sig])
        labels = list(self.prior.ids) + [ids[i] for i in alive]
        clusters = list(self.prior.cluster_ids) + [None] * len(alive)
        dup_partners = self._partners(every, n_prior, self.bands, self.rows, threshold)
        near_partners = (self._partners(every, n_prior, *self.cluster_banding, self.config.near.cluster_threshold)
                         if self.cluster_banding else {})
        kept = np.ones(len(every), dtype=bool)
        for k in range(len(alive)):
            j = n_prior + k
            i = alive[k]
            match = self._best(dup_partners.get(j, ()), kept)
            if match is not None:
                p, sim = match
                kept[j] = False
                cluster[i] = clusters[j] = clusters[p]
                rejected[i] = ("near", f"near duplicate of {'an earlier version: ' if p < n_prior else ''}"
                                       f"{labels[p]} (jaccard {sim:.2f})")
                counts["near"] += 1
                continue
            close = self._best(near_partners.get(j, ()), kept)
            cluster[i] = clusters[j] = clusters[close[0]] if close else ids[i]
        return kept[n_prior:]

    @staticmethod
    def _partners(every: np.ndarray, n_prior: int, bands: int, rows: int, threshold: float) -> dict[int, list]:
        """For each new row j: the earlier rows (i < j) sharing an LSH bucket with estimated Jaccard >= threshold."""
        pairs = candidate_pairs(band_keys(every, bands, rows)) if len(every) > 1 else np.zeros((0, 2), np.int64)
        pairs = pairs[pairs[:, 1] >= n_prior]
        sims = jaccard(every[pairs[:, 0]], every[pairs[:, 1]]) if len(pairs) else np.zeros(0)
        out: dict[int, list] = {}
        for (i, j), s in zip(pairs[sims >= threshold].tolist(), sims[sims >= threshold].tolist(), strict=True):
            out.setdefault(j, []).append((i, s))
        return out

    @staticmethod
    def _best(partners, kept: np.ndarray) -> tuple[int, float] | None:
        """The most similar kept partner; ties to the earliest."""
        live = [(p, s) for p, s in partners if kept[p]]
        return min(live, key=lambda ps: (-ps[1], ps[0])) if live else None

    def _semantic(self, alive: list[int], emb: np.ndarray, ids, cluster, rejected, counts):
        """Greedy in order on cosine similarity; also the histogram of each row's nearest earlier similarity."""
        from filters.semantic import histogram

        threshold = self.config.semantic.threshold
        prior = self.prior.embeddings
        prior = prior.astype(np.float32) if prior is not None and len(prior) else np.zeros((0, emb.shape[1]), np.float32)
        n_prior = len(prior)
        every = np.concatenate([prior, emb])
        labels = list(self.prior.ids) + [ids[i] for i in alive]
        clusters = list(self.prior.cluster_ids) + [cluster[i] for i in alive]
        kept = np.ones(len(every), dtype=bool)
        nearest = np.full(len(alive), -1.0, dtype=np.float32)
        block = 1024
        for lo in range(0, len(alive), block):
            sims = emb[lo:lo + block] @ every.T
            for r in range(sims.shape[0]):
                k = lo + r
                j = n_prior + k
                row = sims[r, :j]  # earlier rows only
                if j:
                    nearest[k] = row.max()
                hits = np.flatnonzero((row >= threshold) & kept[:j])
                if len(hits):
                    p = int(hits[np.argmax(row[hits])])  # argmax: first of equals, i.e. the earliest
                    kept[j] = False
                    i = alive[k]
                    cluster[i] = clusters[j] = clusters[p]
                    rejected[i] = ("semantic", f"semantic duplicate of {'an earlier version: ' if p < n_prior else ''}"
                                               f"{labels[p]} (cosine {row[p]:.3f})")
                    counts["semantic"] += 1
        return kept[n_prior:], histogram(nearest[nearest > -1.0])
