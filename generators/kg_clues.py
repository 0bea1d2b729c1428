"""Clues that describe an entity without naming it, and the checks that make a question worth asking.

A question is a chain of variables A, B, C, ... : each is described by clues
and linked to the previous one by a relation; the answer is the last variable
(or one of its attributes). Three checks, all evaluated on the whole graph
with set operations (``KnowledgeGraph.index``: a candidate set moves one hop
in one vectorized gather):

- ``forward``: every entity each variable could be, starting from the anchor;
  the answer must be one string;
- ``needed_hops``: how many hops the answer really needs. The chain starting at
  variable k (with every clue of k and later, and nothing tying k to the
  variable before) selects a superset of what the chain starting at k-1
  selects, so the question needs all its hops exactly when the chain from B
  (the anchor's hop dropped) leaves more than one answer;
- names as shown: a clue "A is a kind of bank" is true of anything linked to
  any entity named "bank", so a clue's members are those of all its homonyms,
  and answers are compared as folded strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generators.kg_walk import Hop
from simulators.domains.kg.graph import Direction, KnowledgeGraph, fold

# ("attr", name, value) | ("range", name, lo, hi) | ("initial", letter) | ("rel", relation, direction, entity)
Clue = tuple
MASK_CACHE = 128  # boolean membership masks of large clues kept per graph (N bytes each)


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


def answerable(value: Any) -> bool:
    """An attribute value someone can say back: a number or a short string."""
    return _number(value) or (isinstance(value, str) and 0 < len(value) <= 40 and bool(fold(value)))


class ClueIndex:
    """Which clues hold for an entity and which entities a clue selects, as sorted int arrays; one per graph."""

    def __init__(self, kg: KnowledgeGraph, degree_cap: int) -> None:
        self.kg = kg
        self.degree_cap = degree_cap
        self._members: dict[Clue, np.ndarray] | None = None
        self._rel_members: dict[Clue, np.ndarray] = {}
        self._masks: dict[Clue, np.ndarray] = {}
        self.typed = kg.typed

    def facts(self, name: str, attributes: dict[str, Any]) -> list[Clue]:
        """Every own clue true of an entity, offered or not: what a clue's members are computed from."""
        out: list[Clue] = [("attr", a, v) for a, v in attributes.items() if isinstance(v, str)]
        out += [("range", a, *bucket(v)) for a, v in attributes.items() if _number(v) and v > 0]
        if name[:1].isalnum():
            out.append(("initial", name[0].upper()))
        return out

    def own_clues(self, node: str) -> list[Clue]:
        """Clues from the entity itself worth offering: attributes (not identifiers, not holding its name,
        short enough to say) and its name's first letter (for names longer than three letters)."""
        kg = self.kg
        name = kg.name_of(node)
        folded_name = fold(name)
        out: list[Clue] = []
        for c in self.facts(name, kg.attributes(node)):
            if c[0] == "initial":
                if len(name) > 3:
                    out.append(c)
            elif c[1] in kg.identifiers:
                continue
            elif c[0] == "range":
                out.append(c)
            elif 0 < len(c[2]) <= 40:
                fv = fold(c[2])
                if fv and folded_name not in fv and fv not in folded_name:
                    out.append(c)
        return out

    def options(self, node: str, exclude: set[str], shown: set[str]) -> list[Clue]:
        """Every clue true of ``node`` that names no entity of the path, by id or by name, and no hub.

        ``shown`` holds the folded names of the path: an off-path entity with
        one of those names (another sense of the same word) would name it too.
        """
        out = self.own_clues(node)
        kg = self.kg
        keys = kg.name_keys
        seen: set[tuple] = set()  # two entities of one name make one clue as shown
        for r, d, w in kg.incident(node):
            said = (r, kg.reads(r, d), int(keys[kg.pos(w)]))  # as the sentence will read
            if (w not in exclude and said not in seen and kg.degree(w) <= self.degree_cap
                    and fold(kg.name_of(w)) not in shown):
                seen.add(said)
                out.append(("rel", r, d, w))
        return out

    def holds(self, node: str, clue: Clue) -> bool:
        return bool(self.mask(clue)[self.kg.pos(node)])

    def members(self, clue: Clue) -> np.ndarray:
        """The entities a clue selects, read as shown: a relation to any entity of that name."""
        kg = self.kg
        if clue[0] == "type":
            return kg.type_members(clue[1])
        if clue[0] == "rel":
            found = self._rel_members.get(clue)
            if found is None:
                _, relation, direction, other = clue
                homonyms = kg.homonym_positions(kg.name_of(other))
                found = kg.step_read(homonyms, relation, flip(direction))
                if len(self._rel_members) > 50_000:
                    self._rel_members.clear()
                self._rel_members[clue] = found
            return found
        if self._members is None:
            index: dict[Clue, list[int]] = {}
            for i, n in enumerate(kg.node_ids):
                for c in self.facts(kg.name_of(n), kg.attributes(n)):
                    index.setdefault(c, []).append(i)
            self._members = {c: np.array(v, np.int32) for c, v in index.items()}
        return self._members.get(clue, np.zeros(0, np.int32))

    def mask(self, clue: Clue) -> np.ndarray:
        found = self._masks.get(clue)
        if found is None:
            found = np.zeros(len(self.kg), bool)
            found[self.members(clue)] = True
            if len(self._masks) >= MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[clue] = found
        return found

    def narrow(self, nodes: np.ndarray, type: str, clues: list[Clue]) -> np.ndarray:
        """``nodes`` of ``type`` for which every clue holds."""
        if self.typed and len(nodes):
            nodes = nodes[self.kg.index.type_codes[nodes] == self.kg.type_code(type)]
        for c in clues:
            if not len(nodes):
                break
            members = self.members(c)
            nodes = nodes[np.isin(nodes, members, assume_unique=True)] if len(members) <= 256 \
                else nodes[self.mask(c)[nodes]]
        return nodes

    def start(self, type: str, clues: list[Clue]) -> np.ndarray:
        """Every entity of ``type`` that fits ``clues``, with nothing before it in the chain."""
        pools = sorted((self.members(c) for c in clues), key=len)
        if pools:
            return self.narrow(pools[0], type, clues)
        if self.typed:
            return self.kg.type_members(type)
        return np.arange(len(self.kg), dtype=np.int32)


@dataclass
class QuestionSpec:
    """A question as constraints: the walk, each variable's clues, and what is asked."""

    hops: list[Hop]
    clues: list[list[Clue]]
    attribute: str | None = None
    answer: str = ""
    aliases: list[str] = field(default_factory=list)
    needed_hops: int = 0

    @property
    def nodes(self) -> list[str]:
        return [self.hops[0].source] + [h.target for h in self.hops]


def answer_keys(kg: KnowledgeGraph, spec: QuestionSpec, nodes: np.ndarray, limit: int = 2) -> set:
    """The distinct answers ``nodes`` give (folded names, or folded attribute values), up to ``limit``."""
    if spec.attribute is None:
        keys = kg.name_keys[nodes]
        if limit <= 2 and len(keys):  # one pass, no sort: is everything the first answer, and if not, what else
            other = keys[keys != keys[0]]
            return {int(keys[0])} | ({int(other[0])} if len(other) else set())
        return set(np.unique(keys)[:limit].tolist())
    out: set = set()
    for v in nodes.tolist():
        value = kg._attributes.get(v, {}).get(spec.attribute)
        if value is not None:
            out.add(fold(answer_value(value)[0]))
            if len(out) >= limit:
                break
    return out


def forward(kg: KnowledgeGraph, index: ClueIndex, spec: QuestionSpec, start: int = 0) -> list[np.ndarray]:
    """Every entity variables ``start``.. could be, with variable ``start`` tied to nothing before it."""
    nodes = spec.nodes
    current = index.start(kg.type_of(nodes[start]), spec.clues[start])
    sets = [current]
    for i in range(start + 1, len(nodes)):
        hop = spec.hops[i - 1]
        current = kg.step_read(current, hop.relation, hop.direction)
        current = index.narrow(current, kg.type_of(nodes[i]), spec.clues[i])
        sets.append(current)
    return sets


def evaluate(kg: KnowledgeGraph, index: ClueIndex, spec: QuestionSpec) -> tuple[list[set[str]], set[str]]:
    """Every entity each variable could be (as ids), and the answers (folded) the last ones give."""
    sets = forward(kg, index, spec)
    answers = answer_keys(kg, spec, sets[-1], limit=len(sets[-1]) + 1)
    names = {fold(kg._names[v]) for v in sets[-1].tolist()} if spec.attribute is None else answers
    return [{kg.id_at(v) for v in s.tolist()} for s in sets], names


def needed_hops(kg: KnowledgeGraph, index: ClueIndex, spec: QuestionSpec) -> int:
    """The fewest final hops of the chain that, with their clues, already leave one answer."""
    n = len(spec.hops)
    if n == 1 or len(answer_keys(kg, spec, forward(kg, index, spec, 1)[-1])) > 1:
        return n  # the chain from B leaves several answers, so every shorter one does
    for k in range(n, 1, -1):  # the longest suffix that is still unique: the first found from the shortest up
        if len(answer_keys(kg, spec, forward(kg, index, spec, k)[-1])) == 1:
            return n - k
    return n - 1
