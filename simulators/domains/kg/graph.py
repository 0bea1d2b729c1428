"""A knowledge graph: typed, named entities with attributes and aliases, linked by named relations.

Built incrementally (``add_entity``, ``add_edge``), then read through an index
compiled on first use: entities are integers, edges are deduplicated int32
arrays sorted twice, per entity (the tools: one entity's neighbours) and per
relation (question building: a whole candidate set stepped over one relation
in one vectorized gather). So a 1M-edge graph costs tens of megabytes, not
the gigabyte a dict-of-dicts graph does, and a set of 100k candidates moves
one hop in milliseconds. Any change after compiling recompiles on next read.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from schemas import InputError

Direction = Literal["out", "in"]
GENERIC_TYPE = "entity"  # the type of an entity nobody typed: never stated in a question


class KGError(InputError):
    """A KG input problem, phrased as one line naming the file, the line and the problem."""


_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Case, accents and punctuation folded: the key for name search, homonyms and answer matching."""
    text = str(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(text.casefold()))


def words(identifier: str) -> str:
    """A relation or attribute id as words: ``_derivationally_related_form`` -> "derivationally related form"."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", identifier)
    return " ".join(re.split(r"[\s_\-./:]+", text)).strip().lower() or identifier


@dataclass(frozen=True)
class Phrase:
    """How one relation reads: ``head <forward> tail`` and ``tail <inverse> head``.

    Without a relation table a relation id is a noun ("capital"): the head has
    the tail as its capital, the tail is the capital of the head.
    """

    forward: str | None = None
    inverse: str | None = None

    def sentence(self, relation: str, head: str, tail: str, subject: Literal["head", "tail"], the: bool) -> str:
        if self.forward is None and self.inverse is None:
            noun = words(relation)
            verb = verb_phrase(noun)
            if verb:
                return f"{head} {verb} {tail}"
            if subject == "head":
                return f"{head} has {tail} as {noun}"
            return f"{tail} is {'the' if the else article(noun)} {noun} of {head}"
        if subject == "tail" and self.inverse or self.forward is None:
            return f"{tail} {self.inverse} {head}"
        return f"{head} {self.forward} {tail}"


PREPOSITIONS = frozenset({"of", "in", "at", "to", "for", "from", "on", "by", "with", "as", "into"})
AUXILIARIES = frozenset({"is", "was", "are", "were", "has", "had", "have"})


def verb_phrase(noun: str) -> str | None:
    """An id ending in a preposition reads as a verb phrase about the head: memberOf -> "is member of",
    works_for -> "works for"; None for a noun ("capital": the tail is the head's capital)."""
    parts = noun.split()
    if len(parts) < 2 or parts[-1] not in PREPOSITIONS:
        return None
    return noun if parts[0] in AUXILIARIES or parts[0].endswith("s") else f"is {noun}"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class _Index:
    """The compiled graph: deduplicated edges, per-entity and per-relation sorted, plus name keys."""

    def __init__(self, kg: KnowledgeGraph) -> None:
        n, r = len(kg._ids), len(kg._relations)
        heads = np.frombuffer(kg._heads, dtype=np.int32) if len(kg._heads) else np.zeros(0, np.int32)
        rels = np.frombuffer(kg._rels, dtype=np.int32) if len(kg._rels) else np.zeros(0, np.int32)
        tails = np.frombuffer(kg._tails, dtype=np.int32) if len(kg._tails) else np.zeros(0, np.int32)
        key = (heads.astype(np.int64) * max(r, 1) + rels) * max(n, 1) + tails
        _, first = np.unique(key, return_index=True)
        first.sort()  # keep the first occurrence of each triple, in insertion order
        self.duplicates = len(key) - len(first)
        h, rel, t = heads[first], rels[first], tails[first]
        self.num_edges = len(first)
        self.n = n
        # per entity: out edges sorted by (head, relation, tail), in edges by (tail, relation, head)
        order = np.lexsort((t, rel, h))
        self.out_ptr = np.concatenate([[0], np.cumsum(np.bincount(h, minlength=n))]).astype(np.int64)
        self.out_rel, self.out_nbr = rel[order], t[order]
        order = np.lexsort((h, rel, t))
        self.in_ptr = np.concatenate([[0], np.cumsum(np.bincount(t, minlength=n))]).astype(np.int64)
        self.in_rel, self.in_nbr = rel[order], h[order]
        self.degree = np.diff(self.out_ptr) + np.diff(self.in_ptr)
        # per relation: (source, target) arrays for each direction, sources sorted
        self.rel_ptr = np.concatenate([[0], np.cumsum(np.bincount(rel, minlength=r))]).astype(np.int64)
        order = np.lexsort((t, h, rel))
        self.rel_out = (h[order], t[order])
        order = np.lexsort((h, t, rel))
        self.rel_in = (t[order], h[order])
        self.types, self.type_codes = np.unique(np.array(kg._types, dtype=object), return_inverse=True) \
            if n else (np.array([], dtype=object), np.zeros(0, np.int64))

    def pairs(self, relation: int, direction: Direction) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.rel_ptr[relation], self.rel_ptr[relation + 1]
        src, dst = self.rel_out if direction == "out" else self.rel_in
        return src[lo:hi], dst[lo:hi]

    def step(self, nodes: np.ndarray, relation: int, direction: Direction) -> np.ndarray:
        """Every entity reached from any of ``nodes`` (sorted unique ints) over one relation: sorted, unique."""
        if len(nodes) <= 4:  # one or a few entities: their own edges, not the relation's
            ptr, rel, nbr = ((self.out_ptr, self.out_rel, self.out_nbr) if direction == "out"
                             else (self.in_ptr, self.in_rel, self.in_nbr))
            parts = [nbr[ptr[v]:ptr[v + 1]][rel[ptr[v]:ptr[v + 1]] == relation] for v in nodes.tolist()]
            return self._unique(np.concatenate(parts)) if parts else np.zeros(0, np.int32)
        src, dst = self.pairs(relation, direction)
        if len(src) == 0:
            return np.zeros(0, np.int32)
        if len(nodes) * 8 > len(src):  # a large set: one pass over the relation's edges
            mask = np.zeros(self.n, bool)
            mask[nodes] = True
            return self._unique(dst[mask[src]])
        lo = np.searchsorted(src, nodes, "left")
        hi = np.searchsorted(src, nodes, "right")
        lens = hi - lo
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, np.int32)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return self._unique(dst[starts + np.arange(total)])

    def _unique(self, found: np.ndarray) -> np.ndarray:
        """Sorted distinct entities: by a mask over all entities when many, by sorting when few."""
        if len(found) < 2:
            return found.astype(np.int32)
        if len(found) * 16 < self.n:
            found = np.sort(found)
            return found[np.concatenate(([True], found[1:] != found[:-1]))]
        mask = np.zeros(self.n, bool)
        mask[found] = True
        return np.flatnonzero(mask).astype(np.int32)


class KnowledgeGraph:
    def __init__(self, name: str = "kg") -> None:
        self.name = name
        self.identifiers: set[str] = set()  # attribute names that name their entity: answers, never clues
        self.phrases: dict[str, Phrase] = {}  # relation -> how it reads (a relation table); words otherwise
        self.skipped: dict[str, int] = {}  # what loading left out and why (self-loops, duplicates), for the warning
        self._pos: dict[str, int] = {}
        self._ids: list[str] = []
        self._names: list[str] = []
        self._types: list[str] = []
        self._aliases: dict[int, list[str]] = {}
        self._attributes: dict[int, dict[str, Any]] = {}
        self._relations: list[str] = []
        self._rel_pos: dict[str, int] = {}
        self._heads, self._rels, self._tails = array("i"), array("i"), array("i")
        self._cache: dict[str, Any] = {}

    # -- building ------------------------------------------------------------
    def _node(self, entity_id: str) -> int:
        pos = self._pos.get(entity_id)
        if pos is None:
            pos = self._pos[entity_id] = len(self._ids)
            self._ids.append(entity_id)
            self._names.append(entity_id)
            self._types.append(GENERIC_TYPE)
            self._cache.clear()
        return pos

    def add_entity(self, entity_id: str, name: str | None = None, type: str | None = None,
                   aliases: list[str] | tuple[str, ...] = (), **attributes: Any) -> None:
        i = self._node(entity_id)
        if name is not None:
            self._names[i] = name
        if type is not None:
            self._types[i] = type
        for alias in aliases:
            self.add_alias(entity_id, alias)
        if attributes:
            self._attributes.setdefault(i, {}).update(attributes)
        self._cache.clear()

    def add_alias(self, entity_id: str, alias: str) -> None:
        i = self._node(entity_id)
        known = self._aliases.setdefault(i, [])
        if alias and alias != self._names[i] and alias not in known:
            known.append(alias)
            self._cache.clear()

    def add_edge(self, head: str, relation: str, tail: str) -> None:
        """A repeated triple is kept once (counted as a duplicate when the index is compiled)."""
        h, t = self._node(head), self._node(tail)
        r = self._rel_pos.get(relation)
        if r is None:
            r = self._rel_pos[relation] = len(self._relations)
            self._relations.append(relation)
        self._heads.append(h)
        self._rels.append(r)
        self._tails.append(t)
        self._cache.clear()

    def _cached(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def index(self) -> _Index:
        return self._cached("index", lambda: _Index(self))

    # -- integer view (question building) ------------------------------------
    def pos(self, entity_id: str) -> int:
        return self._pos[entity_id]

    def id_at(self, pos: int) -> str:
        return self._ids[pos]

    def relation_pos(self, relation: str) -> int:
        return self._rel_pos[relation]

    def type_code(self, type: str) -> int:
        """The type's position in ``index.types`` (-1 when no entity has it)."""
        types = self.index.types
        found = int(np.searchsorted(types, type)) if len(types) else 0
        return found if found < len(types) and types[found] == type else -1

    def type_members(self, type: str) -> np.ndarray:
        """Every entity of one type, as sorted ints."""
        return self._cached(f"type:{type}", lambda: np.flatnonzero(
            self.index.type_codes == self.type_code(type)).astype(np.int32))

    @property
    def typed(self) -> bool:
        """Whether entities come in several types: only then is a type worth stating or checking."""
        return len(self.index.types) > 1

    @property
    def name_keys(self) -> np.ndarray:
        """Each entity's folded name as an int: equal ints are homonyms (the same displayed string)."""
        return self._cached("name_keys", lambda: self._name_index()[0])

    def _name_index(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        def make():
            codes: dict[str, int] = {}
            keys = np.zeros(len(self._ids), np.int64)
            by_text: dict[str, list[int]] = {}
            for i, name in enumerate(self._names):
                folded = fold(name)
                keys[i] = codes.setdefault(folded, len(codes))
                by_text.setdefault(folded, []).append(i)
            for i, aliases in self._aliases.items():
                for alias in aliases:
                    found = by_text.setdefault(fold(alias), [])
                    if i not in found:
                        found.append(i)
            return keys, {text: np.unique(np.array(found, np.int32)) for text, found in by_text.items()}
        return self._cached("names", make)

    def homonym_positions(self, text: str) -> np.ndarray:
        """Every entity a reader could take ``text`` to mean (its name or an alias folds to it), as sorted ints."""
        return self._name_index()[1].get(fold(text), np.zeros(0, np.int32))

    def homonyms(self, text: str) -> list[int]:
        return self.homonym_positions(text).tolist()

    # -- reading ---------------------------------------------------------------
    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._pos

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def num_edges(self) -> int:
        return self.index.num_edges

    def name_of(self, entity_id: str) -> str:
        return self._names[self._pos[entity_id]]

    def type_of(self, entity_id: str) -> str:
        return self._types[self._pos[entity_id]]

    def aliases(self, entity_id: str) -> list[str]:
        return self._aliases.get(self._pos[entity_id], [])

    def attributes(self, entity_id: str) -> dict[str, Any]:
        return self._attributes.get(self._pos[entity_id], {})

    def degree(self, entity_id: str) -> int:
        return int(self.index.degree[self._pos[entity_id]])

    def entity(self, entity_id: str) -> dict[str, Any]:
        return {"id": entity_id, "name": self.name_of(entity_id), "type": self.type_of(entity_id),
                "aliases": list(self.aliases(entity_id)), "attributes": dict(self.attributes(entity_id))}

    def _edges(self, pos: int, direction: Direction) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        ptr, rel, nbr = ((index.out_ptr, index.out_rel, index.out_nbr) if direction == "out"
                         else (index.in_ptr, index.in_rel, index.in_nbr))
        return rel[ptr[pos]:ptr[pos + 1]], nbr[ptr[pos]:ptr[pos + 1]]

    def step(self, entity_id: str, relation: str, direction: Direction) -> list[str]:
        """Entities reached from ``entity_id`` over ``relation`` in ``direction`` (out: as head)."""
        r = self._rel_pos.get(relation)
        if r is None:
            return []
        rel, nbr = self._edges(self._pos[entity_id], direction)
        return [self._ids[v] for v in nbr[rel == r]]

    def linked(self, entity_id: str, relation: str, direction: Direction, other: str) -> bool:
        return other in self._pos and other in self.step(entity_id, relation, direction)

    def incident(self, entity_id: str) -> Iterator[tuple[str, Direction, str]]:
        """Every (relation, direction, neighbour) of an entity: out edges, then in edges, each by relation."""
        pos = self._pos[entity_id]
        for direction in ("out", "in"):
            rel, nbr = self._edges(pos, direction)
            for r, v in zip(rel.tolist(), nbr.tolist(), strict=True):
                yield self._relations[r], direction, self._ids[v]

    def neighbors(self, entity_id: str, relation: str | None = None,
                  direction: Literal["out", "in", "both"] = "both") -> list[tuple[str, Direction, str]]:
        return [(r, d, v) for r, d, v in self.incident(entity_id)
                if (relation is None or r == relation) and direction in ("both", d)]

    @property
    def node_ids(self) -> list[str]:
        """All entity ids in insertion order: the population walks start from."""
        return self._ids

    @property
    def relations(self) -> list[str]:
        return self._cached("relations", lambda: sorted(
            self._relations[r] for r in np.flatnonzero(np.diff(self.index.rel_ptr))))

    def functional(self, relation: str, direction: Direction) -> bool:
        """Whether every entity has at most one neighbour over ``relation`` that way ("the capital of")."""
        def make():
            out = {}
            for r, name in enumerate(self._relations):
                for d in ("out", "in"):
                    src, _ = self.index.pairs(r, d)
                    out[(name, d)] = len(src) > 0 and bool((np.diff(src) != 0).all())
            return out
        return self._cached("functional", make).get((relation, direction), False)

    def phrase(self, relation: str) -> Phrase:
        return self.phrases.get(relation, Phrase())

    def reads_both_ways(self, relation: str) -> bool:
        """Whether the relation reads the same in both directions ("is similar in meaning to"): then a
        sentence with it cannot say which way the edge goes, and both ways count."""
        p = self.phrase(relation)
        return p.forward is not None and p.forward == p.inverse

    def step_read(self, nodes: np.ndarray, relation: str, direction: Direction) -> np.ndarray:
        """``index.step`` as a reader of the relation's phrase understands it: both ways when it reads so."""
        r = self._rel_pos[relation]
        found = self.index.step(nodes, r, direction)
        if self.reads_both_ways(relation):
            found = np.union1d(found, self.index.step(nodes, r, "in" if direction == "out" else "out"))
        return found.astype(np.int32)

    def reads(self, relation: str, direction: Direction) -> str:
        """How ``relation`` reads from an entity in ``direction``, for the tools: "is a kind of", "capital"."""
        p = self.phrase(relation)
        text = p.forward if direction == "out" else p.inverse
        if text:
            return text
        if p.forward or p.inverse:
            return f"(inverse of) {p.forward or p.inverse}"
        noun = words(relation)
        verb = verb_phrase(noun)
        if verb:
            return verb if direction == "out" else f"(inverse of) {verb}"
        return noun if direction == "out" else f"is {noun} of"

    @property
    def _tokens(self) -> dict[str, set[int]]:
        def make():
            index: dict[str, set[int]] = {}
            for i, name in enumerate(self._names):
                texts = [name, *self._aliases.get(i, [])]
                texts += [v for v in self._attributes.get(i, {}).values()
                          if isinstance(v, str | int) and not isinstance(v, bool)]
                for text in texts:
                    for token in fold(str(text)).split():
                        index.setdefault(token, set()).add(i)
            return index
        return self._cached("tokens", make)

    def search(self, query: str, type: str | None = None, limit: int = 20) -> list[dict[str, str]]:
        """Entities whose name, aliases or attribute values contain every word of ``query``.

        Exact name (or alias) matches come first, then by name, so a search
        for a named entity finds it (and its homonyms) even among many partial matches.
        """
        tokens = fold(query).split()
        if not tokens:
            return []
        hits = set.intersection(*(self._tokens.get(w, set()) for w in tokens))
        if type:
            hits = {h for h in hits if self._types[h] == type}
        wanted = fold(query)

        def rank(h: int) -> tuple[int, str, str]:
            exact = wanted == fold(self._names[h]) or any(wanted == fold(a) for a in self._aliases.get(h, []))
            return (0 if exact else 1, self._names[h], self._ids[h])

        return [{"id": self._ids[h], "name": self._names[h], "type": self._types[h]}
                for h in sorted(hits, key=rank)[:limit]]

    def list_type(self, type: str, limit: int = 50) -> list[dict[str, str]]:
        """Entities of one type by name; empty when there are more than ``limit`` (a list too long to read)."""
        found = self.type_members(type)
        if len(found) > limit:
            return []
        return [{"id": self._ids[h], "name": self._names[h], "type": type}
                for h in sorted(found.tolist(), key=lambda h: (self._names[h], self._ids[h]))]

    @property
    def fingerprint(self) -> str:
        """A hash of the whole graph: the environment's state hash, so a changed KG is noticed."""
        def make():
            digest = hashlib.sha256()
            order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
            for i in order:
                digest.update(repr((self._ids[i], self._names[i], self._types[i], self._aliases.get(i, []),
                                    sorted(self._attributes.get(i, {}).items()))).encode())
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            rel_rank = np.argsort(np.argsort(np.array(self._relations, dtype=object))) if self._relations \
                else np.zeros(0, np.int64)
            digest.update(repr(sorted(self._relations)).encode())
            index = self.index
            h = rank[np.repeat(np.arange(index.n), np.diff(index.out_ptr))] if index.n else np.zeros(0, np.int64)
            edges = np.stack([h, rel_rank[index.out_rel] if len(index.out_rel) else index.out_rel.astype(np.int64),
                              rank[index.out_nbr]], axis=1) if index.num_edges else np.zeros((0, 3), np.int64)
            edges = edges[np.lexsort(edges.T[::-1])] if len(edges) else edges
            digest.update(np.ascontiguousarray(edges, dtype=np.int64).tobytes())
            digest.update(repr(sorted(self.phrases.items())).encode())
            return digest.hexdigest()[:32]
        return self._cached("fingerprint", make)
