"""The near layer: MinHash signatures of the user text, LSH candidates, verified by estimated Jaccard.

Greedy in order: a row with an earlier kept row at estimated Jaccard >=
``threshold`` is a duplicate of the most similar one (ties to the earliest). A
kept row at least ``cluster_threshold`` similar to an earlier kept row shares
its cluster, so an export can keep similar dialogues within one split.

Where signatures live and how candidates are found is behind one seam,
``Candidates``: the in-memory implementation holds every earlier signature as
one matrix; a bounded-memory one can keep them on disk and answer the same call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from dedup.minhash import MinHasher, band_keys, candidate_pairs, jaccard, optimal_bands
from dedup.steps import Decisions, Rows, Step
from schemas import DedupConfig

Partners = dict[int, list[tuple[int, float]]]


class Candidates(Protocol):
    """Earlier rows' signatures (numbered 0..n_prior-1) and this run's (n_prior + k), and LSH lookups over both."""

    n_prior: int

    def partners(self, bands: int, rows: int, threshold: float) -> Partners:
        """For each new row j: the rows before it (earlier or new) sharing an LSH bucket with it at
        estimated Jaccard >= ``threshold``, as (number, jaccard)."""
        ...


class InMemoryCandidates:
    """Every signature in one matrix; buckets found by sorting the band keys of earlier and new rows together."""

    def __init__(self, prior: np.ndarray | None, new: np.ndarray) -> None:
        self.n_prior = 0 if prior is None else len(prior)
        self.every = new if not self.n_prior else np.concatenate([prior, new])

    def partners(self, bands: int, rows: int, threshold: float) -> Partners:
        every = self.every
        pairs = candidate_pairs(band_keys(every, bands, rows)) if len(every) > 1 else np.zeros((0, 2), np.int64)
        pairs = pairs[pairs[:, 1] >= self.n_prior]
        sims = jaccard(every[pairs[:, 0]], every[pairs[:, 1]]) if len(pairs) else np.zeros(0)
        out: Partners = {}
        for (i, j), s in zip(pairs[sims >= threshold].tolist(), sims[sims >= threshold].tolist(), strict=True):
            out.setdefault(j, []).append((i, s))
        return out


CandidatesFactory = Callable[[np.ndarray | None, np.ndarray], Candidates]
"""(earlier signatures, this run's signatures) -> the lookups over both."""


def _best(partners, kept: np.ndarray) -> tuple[int, float] | None:
    """The most similar kept partner; ties to the earliest."""
    live = [(p, s) for p, s in partners if kept[p]]
    return min(live, key=lambda ps: (-ps[1], ps[0])) if live else None


class NearStep(Step):
    layer = "near"
    needs_text = True

    def __init__(self, config: DedupConfig, candidates: CandidatesFactory = InMemoryCandidates) -> None:
        super().__init__()
        near = config.near
        self.threshold, self.cluster_threshold = near.threshold, near.cluster_threshold
        self.hasher = MinHasher(near.num_perm, near.ngram, near.seed)
        self.bands, self.rows = (near.bands, near.rows) if near.bands else optimal_bands(near.threshold, near.num_perm)
        self.cluster_banding = optimal_bands(near.cluster_threshold, near.num_perm) if near.cluster_threshold else None
        self.candidates = candidates

    def signatures(self, texts: list[str]) -> np.ndarray:
        return self.hasher.signatures(texts)

    def index_part(self, texts: Callable[[], list[str]]) -> dict[str, np.ndarray]:
        return {"signatures": self.signatures(texts())}

    def run(self, rows: Rows, decisions: Decisions) -> list[bool]:
        sig = self.signatures(rows.texts) if rows.positions else np.zeros((0, self.hasher.num_perm), np.uint32)
        rows.signatures = sig
        prior = decisions.prior
        store = self.candidates(prior.signatures, sig)
        n_prior = store.n_prior
        labels = list(prior.ids) + [decisions.ids[i] for i in rows.positions]
        clusters: list[str | None] = list(prior.cluster_ids) + [None] * len(rows.positions)
        dup_partners = store.partners(self.bands, self.rows, self.threshold)
        near_partners = (store.partners(*self.cluster_banding, self.cluster_threshold)
                         if self.cluster_banding else {})
        kept = np.ones(n_prior + len(sig), dtype=bool)
        for k, i in enumerate(rows.positions):
            j = n_prior + k
            match = _best(dup_partners.get(j, ()), kept)
            if match is not None:
                p, sim = match
                kept[j] = False
                clusters[j] = clusters[p]
                decisions.reject(i, self.layer, f"near duplicate of {'an earlier version: ' if p < n_prior else ''}"
                                                f"{labels[p]} (jaccard {sim:.2f})", clusters[p])
                continue
            close = _best(near_partners.get(j, ()), kept)
            clusters[j] = decisions.cluster_ids[i] = clusters[close[0]] if close else decisions.ids[i]
        return kept[n_prior:].tolist()
