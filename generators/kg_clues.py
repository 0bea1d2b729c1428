"""Clues that describe an entity without naming it, and the check that a question has one answer.

A question is a chain of variables A, B, C, ... : A is described by clues,
each next variable is reached from the previous one over a relation and may
carry clues of its own, and the answer is the last variable (or one of its
attributes). ``evaluate`` computes, on the real graph, every entity each
variable could be; the question is kept only when the answer set has exactly
one element. Distinctness of the variables is not assumed, so the check is
conservative: unique here is unique however the reader interprets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from generators.kg_walk import Hop
from simulators.domains.kg.graph import Direction, KnowledgeGraph, fold

# ("attr", name, value) | ("range", name, lo, hi) | ("initial", letter) | ("rel", relation, direction, entity)
Clue = tuple


def flip(direction: Direction) -> Direction:
    return "in" if direction == "out" else "out"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def bucket(x: float) -> tuple[float, float]:
    """The 1-2-5 range holding ``x`` (x > 0): 66,078,000 -> (50,000,000, 100,000,000)."""
    e = math.floor(math.log10(x))
    steps = [m * 10.0**e for m in (1, 2, 5, 10)]
    if x < steps[0]:  # float rounding just below a power of ten
        e -= 1
        steps = [m * 10.0**e for m in (1, 2, 5, 10)]
    i = max(k for k in range(3) if steps[k] <= x)
    lo, hi = steps[i], steps[i + 1]
    as_int = e >= 0
    return (int(round(lo)) if as_int else lo, int(round(hi)) if as_int else hi)


def answer_value(value: Any) -> tuple[str, list[str]]:
    """An attribute value as the answer string, with the other ways of writing it as aliases."""
    if _number(value):
        if float(value).is_integer():
            n = int(value)
            return str(n), [f"{n:,}"] if abs(n) >= 1000 else []
        return f"{value:g}", [str(value)] if str(value) != f"{value:g}" else []
    return str(value), []


class ClueIndex:
    """Which clues hold for an entity, and which entities a clue selects; built once per graph."""

    def __init__(self, kg: KnowledgeGraph, degree_cap: int) -> None:
        self.kg = kg
        self.degree_cap = degree_cap
        self._members: dict[Clue, set[str]] | None = None

    def own_clues(self, node: str) -> list[Clue]:
        """Clues from the entity itself: attributes (not identifiers) and its name's first letter."""
        kg = self.kg
        name = kg.name_of(node)
        folded_name = fold(name)
        out: list[Clue] = []
        for a, v in kg.attributes(node).items():
            if a in kg.identifiers:
                continue
            if _number(v):
                if v > 0:
                    out.append(("range", a, *bucket(v)))
            elif isinstance(v, str) and 0 < len(v) <= 40:
                fv = fold(v)
                if fv and folded_name not in fv and fv not in folded_name:
                    out.append(("attr", a, v))
        if len(name) > 3 and name[0].isalnum():
            out.append(("initial", name[0].upper()))
        return out

    def options(self, node: str, exclude: set[str]) -> list[Clue]:
        """Every clue true of ``node`` that names no entity in ``exclude`` (the path) and no hub."""
        out = self.own_clues(node)
        seen: set[Clue] = set()
        for r, d, w in self.kg.incident(node):
            clue = ("rel", r, d, w)
            if w not in exclude and clue not in seen and self.kg.degree(w) <= self.degree_cap:
                seen.add(clue)
                out.append(clue)
        return out

    def holds(self, node: str, clue: Clue) -> bool:
        kind = clue[0]
        if kind == "rel":
            return self.kg.linked(node, clue[1], clue[2], clue[3])
        if kind == "initial":
            return self.kg.name_of(node)[:1].upper() == clue[1]
        value = self.kg.attributes(node).get(clue[1])
        if kind == "attr":
            return value == clue[2]
        return _number(value) and clue[2] <= value < clue[3]

    def members(self, clue: Clue) -> set[str]:
        if clue[0] == "rel":
            return set(self.kg.step(clue[3], clue[1], flip(clue[2])))
        if self._members is None:
            index: dict[Clue, set[str]] = {}
            for n in self.kg.node_ids:
                index.setdefault(("type", self.kg.type_of(n)), set()).add(n)
                for c in self.own_clues(n):
                    index.setdefault(c, set()).add(n)
            self._members = index
        return self._members.get(clue, set())


@dataclass
class QuestionSpec:
    """A question as constraints: the walk, each variable's type and clues, and what is asked."""

    hops: list[Hop]
    clues: list[list[Clue]]
    attribute: str | None = None
    answer: str = ""
    aliases: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return [self.hops[0].source] + [h.target for h in self.hops]


def evaluate(kg: KnowledgeGraph, index: ClueIndex, spec: QuestionSpec) -> tuple[list[set[str]], set[str]]:
    """Every entity each variable could be, and the folded answers the last ones give."""
    nodes = spec.nodes
    types = [kg.type_of(n) for n in nodes]
    seeds = sorted((index.members(c) for c in spec.clues[0]), key=len) or [index.members(("type", types[0]))]
    current = {n for n in seeds[0] if kg.type_of(n) == types[0]
               and all(index.holds(n, c) for c in spec.clues[0])}
    sets = [current]
    for i, hop in enumerate(spec.hops, 1):
        nxt: set[str] = set()
        for u in current:
            for v in kg.step(u, hop.relation, hop.direction):
                if v not in nxt and kg.type_of(v) == types[i] and all(index.holds(v, c) for c in spec.clues[i]):
                    nxt.add(v)
        current = nxt
        sets.append(current)
    if spec.attribute is None:
        answers = {fold(kg.name_of(v)) for v in current}
    else:
        answers = {fold(answer_value(kg.attributes(v)[spec.attribute])[0])
                   for v in current if spec.attribute in kg.attributes(v)}
    return sets, answers
