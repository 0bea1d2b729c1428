"""The exact layer: a canonical hash of what makes a dialogue distinct, and the step that compares it.

Hashes normalized user turns plus tool calls with sorted-key arguments, never
embeddings: "cancel order #1234" and "#9876" must stay two dialogues. The hash
is computed when a row is written (``dedup_hash``) and compared at commit.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from dedup.index import arrow
from dedup.steps import Decisions, Rows, Step
from schemas import Message, canonical_json, content_hash
from schemas.text import normalize


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


class ExactStep(Step):
    """A row whose hash an earlier kept row (of an earlier version, or earlier in this run) has is a duplicate."""

    layer = "exact"

    def run(self, rows: Rows, decisions: Decisions) -> list[bool]:
        prior = decisions.prior
        # Only the offered hashes can match an earlier one: the lookup grows with this run's rows, and Arrow finds
        # which earlier rows have one without a Python string per earlier row.
        offered = pa.array(list({decisions.hashes[i] for i in rows.positions} - {None}), pa.string())
        hashes = arrow(prior.hashes)
        hit = pc.is_in(hashes, value_set=offered)
        first: dict[str, tuple[str, str]] = {
            h: ("an earlier version", c) for h, c in zip(pc.filter(hashes, hit).to_pylist(),
                                                         pc.filter(arrow(prior.cluster_ids), hit).to_pylist(),
                                                         strict=True)}
        keep = []
        for i in rows.positions:
            h = decisions.hashes[i]
            if h is not None and h in first:
                who, cluster = first[h]
                decisions.reject(i, self.layer, f"exact duplicate of {who}", cluster)
                keep.append(False)
            else:
                if h is not None:
                    first[h] = (decisions.ids[i], decisions.ids[i])
                keep.append(True)
        return keep
