"""Exact deduplication on a canonical hash of what makes a dialogue distinct.

Hashes normalized user turns plus tool calls with sorted-key arguments, never
embeddings: "cancel order #1234" and "#9876" must stay two dialogues.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from filters.verification import normalize
from schemas import Message, canonical_json, content_hash


def exact_hash(messages: list[Message]) -> str:
    users = [normalize(m.content or "") for m in messages if m.role == "user"]
    calls = []
    for m in messages:
        for call in m.tool_calls or []:
            try:
                args = canonical_json(json.loads(call.function.arguments))
            except json.JSONDecodeError:
                args = call.function.arguments
            calls.append([call.function.name, args])
    return content_hash({"users": users, "calls": calls}, 32)


class ExactDedup:
    """Keeps the first row per hash, in the order rows are offered; seeded with earlier versions."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.seen: dict[str, str] = {h: "an earlier version" for h in known}

    def first(self, dedup_hash: str, row_id: str) -> str | None:
        """None for a new hash (now remembered), else who had it first."""
        if dedup_hash in self.seen:
            return self.seen[dedup_hash]
        self.seen[dedup_hash] = row_id
        return None
