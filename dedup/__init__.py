"""Dedup: exact, near (MinHash/LSH) and semantic layers, the cross-version index and similarity histograms.

One way in: ``Deduplicator(config, prior).run(...)`` over a run's rows in order, where
``prior`` is what earlier versions kept (``load_index``, from the parts persisted per
version). Each layer is a small ``Step`` with one method and its own stats; the near
layer's storage and candidate lookups sit behind ``near.Candidates``, and where its heavy
work runs behind ``near.NearWork`` (here, or as Ray tasks: ``dedup.on_ray``).

Imports ``schemas`` only: the store reads and writes the dataset, this package decides.
"""

from dedup.exact import exact_hash
from dedup.histogram import histogram, kept_rows_histogram
from dedup.index import DedupIndex
from dedup.parts import INDEX_DIR, load_index, part_name, save_part
from dedup.pipeline import Deduplicator, DedupOutcome
from dedup.text import ShardTexts, user_texts

__all__ = ["INDEX_DIR", "DedupIndex", "DedupOutcome", "Deduplicator", "ShardTexts", "exact_hash", "histogram",
           "kept_rows_histogram", "load_index", "part_name", "save_part", "user_texts"]
