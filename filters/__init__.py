"""What judges; importing this registers the built-in filters."""

from filters import answer_match, heuristics, leaks, model_judge, verification  # noqa: F401
from filters.base import FILTERS, Context, Filter, FilterParams

__all__ = ["FILTERS", "Context", "Filter", "FilterParams"]
