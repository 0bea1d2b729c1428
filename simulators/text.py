"""Text matching shared by synthesis and verification, so a blueprint is checked the way its dialogue will be.

``normalize`` is defined in ``schemas.text``: exact dedup (``dedup/``, which may import schemas only) hashes
with the same folding.
"""

from __future__ import annotations

import re
from functools import lru_cache

from schemas.text import normalize

__all__ = ["facts", "normalize"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN = re.compile(r"[#$]?\w(?:[\w.,/-]*\w)?")
_DIGIT = re.compile(r"[0-9]")


def facts(text: str) -> set[str]:
    """The checkable details of a turn, as written: emails and tokens with a digit (ids, amounts, zip codes, sizes).

    Compared case-folded (``folded``): '#w123' still names order '#W123', while one changed digit does not.
    """
    return set(_facts(text))


@lru_cache(maxsize=4096)
def _facts(text: str) -> frozenset[str]:
    # cached: a scripted assistant re-reads every user turn of its dialogue at each of its own turns
    found = set(_EMAIL.findall(text))
    for token in _TOKEN.findall(_EMAIL.sub(" ", text)):
        # an ASCII token has a digit iff [0-9] finds one; only a non-ASCII one needs str.isdigit's wider set
        if _DIGIT.search(token) if token.isascii() else any(c.isdigit() for c in token):
            found.add(token.lstrip("$").rstrip(".,"))
    return frozenset(found)
