"""Random walks on a knowledge graph, DeepDive style, with the constraints that keep questions sane.

- between ``min_hops`` and ``max_hops`` hops (the length is drawn first);
- no entity visited twice (a question must never loop back on itself);
- hubs (degree above ``degree_cap``) are never stepped on: "a country in
  Africa" describes nothing;
- seeded: every choice comes from the ``rng`` given, over neighbours in the
  graph's insertion order, so the same seed gives the same walk;
- stuck before ``min_hops`` (no unvisited, non-hub neighbour): jump to a fresh
  start elsewhere, up to ``max_jumps`` times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulators.domains.kg.graph import Direction, KnowledgeGraph


@dataclass(frozen=True)
class Hop:
    source: str
    relation: str
    direction: Direction
    target: str


@dataclass(frozen=True)
class WalkParams:
    min_hops: int = 2
    max_hops: int = 4
    degree_cap: int = 50
    max_jumps: int = 20

    def __post_init__(self) -> None:
        if self.min_hops < 1 or self.max_hops < self.min_hops:
            raise ValueError(f"need 1 <= min_hops <= max_hops (got {self.min_hops}, {self.max_hops})")


def random_walk(kg: KnowledgeGraph, rng: random.Random, params: WalkParams, start: str | None = None) -> list[Hop] | None:
    """A walk of ``min_hops``..``max_hops`` hops, or None when every try got stuck short."""
    wanted = rng.randint(params.min_hops, params.max_hops)
    nodes = kg.node_ids
    for attempt in range(params.max_jumps + 1):
        here = start if (start is not None and attempt == 0) else rng.choice(nodes)
        if kg.degree(here) == 0 or kg.degree(here) > params.degree_cap:
            continue
        hops: list[Hop] = []
        visited = {here}
        while len(hops) < wanted:
            options = [(r, d, v) for r, d, v in kg.incident(here)
                       if v not in visited and kg.degree(v) <= params.degree_cap]
            if not options:
                break
            r, d, v = rng.choice(options)
            hops.append(Hop(here, r, d, v))
            visited.add(v)
            here = v
        if len(hops) >= params.min_hops:
            return hops
    return None
