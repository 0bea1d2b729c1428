"""Values derived once per object, for hot paths that derive them from the same objects again and again.

A domain hands every dialogue the same tool objects and the same base tables; a dialogue
passes the same tool list on every turn. Their JSON, or an index of a table, was being made
again per call. These objects are lists and dicts (unhashable), and comparing them would cost
what making the value does, so the key is their identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class ByIdentity(Generic[V]):
    """``make(*objects)``, kept per identity of ``objects``.

    Each entry holds the objects themselves, so while it lives no other object can take their
    ids: a hit is always these very objects. Bounded by clearing at ``max_entries``: objects made
    per dialogue (a model's schema-only tools, a seed's base tables) come and go and must not pile up.
    Shared by threads without a lock: the worst a race does is make a value twice.
    """

    def __init__(self, make: Callable[..., V], max_entries: int) -> None:
        self._make, self.max_entries = make, max_entries
        self._entries: dict[tuple[int, ...], tuple[tuple[Any, ...], V]] = {}

    def __call__(self, *objects: Any) -> V:
        key = tuple(map(id, objects))
        hit = self._entries.get(key)
        if hit is None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            hit = self._entries[key] = (objects, self._make(*objects))
        return hit[1]
