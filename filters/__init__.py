"""What judges; importing this registers the built-in filters."""

from filters import answer_match, heuristics, model_judge, verification  # noqa: F401
from filters.base import FILTERS, Context, Filter, FilterParams
from filters.dedup import ExactDedup, exact_hash

__all__ = ["FILTERS", "Context", "ExactDedup", "Filter", "FilterParams", "exact_hash"]
