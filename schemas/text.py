"""Canonical text: the one folding that exact-dedup hashes and output matching agree on."""

from __future__ import annotations

import re
import unicodedata

_FOLDED = re.compile(r"[^\w#$.]+")


def normalize(text: str) -> str:
    """Case, width and punctuation folded; digits and '#' kept so '#1234' never equals '#9876'."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _FOLDED.sub(" ", text).strip()
