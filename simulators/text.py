"""Text matching shared by synthesis and verification, so a blueprint is checked the way its dialogue will be."""

from __future__ import annotations

import re
import unicodedata


def normalize(text: str) -> str:
    """Case, width and punctuation folded; digits and '#' kept so '#1234' never equals '#9876'."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[^\w#$.]+", " ", text).strip()
