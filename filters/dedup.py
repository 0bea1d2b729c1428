"""Exact deduplication on a canonical hash of what makes a dialogue distinct.

Hashes normalized user turns plus tool calls with sorted-key arguments, never
embeddings: "cancel order #1234" and "#9876" must stay two dialogues.
"""

from __future__ import annotations

import json

from schemas import Message, canonical_json, content_hash
from simulators.text import normalize


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
