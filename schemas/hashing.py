"""Canonical JSON and content hashes.

Ids across trajforge are content hashes so that the same task or dialogue gets
the same id on every machine and in every run; that is what makes dedup,
resume and reproducibility checks a string comparison.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialize with sorted keys and no whitespace: one spelling per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def ordered_json(value: Any) -> str:
    """Compact JSON in the value's own key order: how tool schemas are stored, as their author declared them.

    Hashes use :func:`canonical_json`; what a model or a chat template is shown keeps the declared order.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(value: Any, length: int = 16) -> str:
    """Hex sha256 prefix of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]
