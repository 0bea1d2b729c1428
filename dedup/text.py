"""What the near and semantic layers compare: a dialogue's user turns, one per line.

The assistant's side follows from the user's, so two dialogues whose users say
the same things are duplicates whatever the assistant answered.
"""

from __future__ import annotations

import polars as pl


def user_texts(frame: pl.DataFrame) -> list[str]:
    """The user turns of each row's stored ``messages`` column, one per line, in polars (no Python per message)."""
    users = pl.col("messages").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content").fill_null(""))
    return frame.select(users.list.join("\n")).to_series().fill_null("").to_list()
