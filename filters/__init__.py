"""What judges; importing this registers the built-in filters."""

from filters import answer_match, heuristics, leaks, model_judge, verification  # noqa: F401
from filters.base import FILTERS, Context, Filter, FilterParams
from filters.dedup import exact_hash

__all__ = ["FILTERS", "Context", "Filter", "FilterParams", "exact_hash"]
