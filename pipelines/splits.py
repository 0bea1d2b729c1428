"""Leak-free train/test splits: a split is a pure function of a group's key.

A group is a connected component of rows linked by task id and, when the rows
carry one, by near-duplicate ``cluster_id``: two trajectories of one task, or
two near-duplicates of each other, always share a split, so nothing seen in
training reappears (even paraphrased) in test. Hashing rather than sampling
makes the assignment reproducible without storing it: the same rows and salt
give the same splits on every machine.

Without clusters a group is exactly one task, so a task keeps its split from
one version to the next. With clusters a group's key is its smallest member,
which can change when a later version links two groups; the guarantee is per
exported version.
"""

from __future__ import annotations

import hashlib

import networkx as nx
import polars as pl

TRAIN, TEST = "train", "test"
DEFAULT_SALT = "trajforge-split-v1"


def bucket(key: str, salt: str = DEFAULT_SALT) -> float:
    """A uniform number in [0, 1) from a key: the first 8 bytes of sha256(salt:key)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_keys(rows: pl.DataFrame) -> list[str]:
    """The group key of each row (same order): the smallest node of its task/cluster component.

    ``rows`` needs ``id`` and ``task_id``; ``cluster_id`` is used when present.
    A row without a task id (a task that failed synthesis) is its own group.
    """
    tasks = [f"t:{t}" if t is not None else f"r:{i}" for t, i in zip(rows["task_id"], rows["id"], strict=True)]
    graph = nx.Graph()
    graph.add_nodes_from(tasks)
    if "cluster_id" in rows.columns:
        graph.add_edges_from((t, f"c:{c}") for t, c in zip(tasks, rows["cluster_id"], strict=True) if c is not None)
    key = {}
    for component in nx.connected_components(graph):
        smallest = min(component)
        key.update(dict.fromkeys(component, smallest))
    return [key[t][2:] for t in tasks]


def assign_splits(rows: pl.DataFrame, test_ratio: float, salt: str = DEFAULT_SALT) -> pl.Series:
    """``train`` or ``test`` per row; a group's rows all land in the same split."""
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"test ratio must be in [0, 1), got {test_ratio}")
    return pl.Series("split", [TEST if bucket(k, salt) < test_ratio else TRAIN for k in group_keys(rows)],
                     dtype=pl.String)
