"""Python's cyclic garbage collector, set for what a shard does: allocate many short-lived objects on one event loop.

Why: at 256 requests in flight one model-mode shard spent 3.7 s of its 34 s in collections, all
on its event loop (16 full passes of up to 0.25 s over the whole heap: tasks, environments,
imported modules), and each pause held every dialogue back: the server's requests in flight
fell from 256 to under 100 and its busy share to 0.75. CPython's defaults (a young pass every
700 allocations, a full one every 100 young ones) were set for far smaller heaps. Almost all of
a shard's garbage is freed by reference counting anyway; the collector is only for cycles,
which these thresholds still find, ~15x less often. Not ``gc.freeze()``: a worker runs shard
after shard, and the cycles a frozen heap holds would never be freed.
"""

from __future__ import annotations

import gc

DEFAULT = (700, 10, 10)  # CPython's own
SHARD = (10_000, 20, 100)


def for_shards() -> None:
    """Set the thresholds for shard work, unless the process chose its own (anything but the defaults)."""
    if gc.get_threshold() == DEFAULT:
        gc.set_threshold(*SHARD)
