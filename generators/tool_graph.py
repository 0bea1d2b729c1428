"""The tool-dependency graph: an edge A→B when B's inputs can come from A's outputs.

Built from the entity types on tool parameters (``Param.entity``) and results
(``produces``), so a new domain gets a graph without writing one.
"""

from __future__ import annotations

import random

import networkx as nx

from simulators.environment import ToolSpec


class ToolGraph:
    def __init__(self, specs: dict[str, ToolSpec]) -> None:
        self.specs = specs
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(sorted(specs))
        for a in sorted(specs):
            for b in sorted(specs):
                via = specs[a].produces & specs[b].consumes
                if a != b and via:
                    self.graph.add_edge(a, b, via=sorted(via))
        # the graph never changes, and every walk asked networkx for every node's descendants (~20% of synthesis)
        self._below = {n: frozenset(nx.descendants(self.graph, n)) for n in self.graph}

    def entries(self, known: set[str]) -> list[str]:
        """Tools callable with what the user knows alone, that lead somewhere."""
        return [n for n in self.graph if self.specs[n].consumes and self.specs[n].consumes <= known
                and self.graph.out_degree(n) > 0]

    def reachable(self, start: str) -> set[str]:
        """Every tool a walk from ``start`` can end on."""
        return set(self._below[start])

    def walk(self, rng: random.Random, start: str, targets: set[str], max_len: int = 6) -> list[str] | None:
        """A random walk from ``start`` that ends on one of ``targets``.

        Only nodes from which a target is still reachable are stepped on, so
        the walk never dead-ends, and a step is weighted by how many targets
        lie beyond it, so targets come out near-uniformly however the graph
        branches; None when no target is reachable.
        """
        reachable = {n: (self._below[n] | {n}) & targets for n in self.graph}
        live = {n for n, r in reachable.items() if r}
        if start not in live:
            return None
        path = [start]
        while len(path) < max_len:
            here = path[-1]
            if here in targets and len(path) > 1 and rng.random() < 0.5:
                break
            options = [n for n in sorted(self.graph.successors(here)) if n in live and n not in path]
            if not options:
                break
            path.append(rng.choices(options, weights=[len(reachable[n]) for n in options])[0])
        while path and path[-1] not in targets:
            path.pop()
        return path if len(path) > 1 else None

    def plan(self, target: str, have: set[str]) -> list[str]:
        """Tools to call, in order, so every entity ``target`` consumes is available.

        Deterministic: producers are tried in name order, preferring the one
        whose own inputs are already available.
        """
        order: list[str] = []
        have = set(have)

        def need(tool: str, visiting: frozenset[str]) -> None:
            for entity in sorted(self.specs[tool].consumes - have):
                producers = [p for p in sorted(self.graph.predecessors(tool))
                             if entity in self.graph.edges[p, tool]["via"] and p not in visiting]
                if not producers:
                    raise ValueError(f"no tool produces {entity!r} for {tool}")
                producers.sort(key=lambda p: len(self.specs[p].consumes - have))
                producer = producers[0]
                need(producer, visiting | {producer})
                if producer not in order:
                    order.append(producer)
                    have.update(self.specs[producer].produces)

        need(target, frozenset({target}))
        return order
