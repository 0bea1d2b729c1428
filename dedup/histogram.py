"""Similarity histograms: how close each row is to its nearest neighbour, to choose ``dedup.semantic.threshold``."""

from __future__ import annotations

import numpy as np


def nearest_similarities(embeddings: np.ndarray, block: int = 2048) -> np.ndarray:
    """Each row's highest cosine similarity to any other row (-1 when alone)."""
    n = len(embeddings)
    best = np.full(n, -1.0, dtype=np.float32)
    for lo in range(0, n, block):
        sims = embeddings[lo:lo + block] @ embeddings.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + lo] = -np.inf
        if n > 1:
            best[lo:lo + block] = sims.max(axis=1)
    return best


def histogram(similarities: np.ndarray, bins: int = 20) -> dict[str, int]:
    """Counts per similarity bin, '0.90-0.95' style keys, low to high; negative similarities fall in the first bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(np.clip(similarities, 0.0, 1.0), bins=edges)
    return {f"{lo:.2f}-{hi:.2f}": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)}


def kept_rows_histogram(embeddings: np.ndarray | None, bins: int, threshold: float) -> tuple[dict[str, int], int]:
    """The histogram of every kept row's nearest-neighbour similarity, and how many are at or above ``threshold``."""
    sims = nearest_similarities(embeddings) if embeddings is not None else np.zeros(0, np.float32)
    if not len(sims):
        return {}, 0
    return histogram(sims, bins), int((sims >= threshold).sum())
