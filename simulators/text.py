"""Text matching shared by synthesis and verification, so a blueprint is checked the way its dialogue will be.

``normalize`` is defined in ``schemas.text``: exact dedup (``dedup/``, which may import schemas only) hashes
with the same folding.
"""

from schemas.text import normalize

__all__ = ["normalize"]
