"""A knowledge graph: typed, named entities with attributes and aliases, linked by named relations.

Stored in a networkx ``MultiDiGraph`` whose edge key is the relation, so two
entities can be linked by several relations and a relation lookup from a node
is one dict access per neighbour. The graph is read-only once built: questions,
tools and the uniqueness check all read the same object, shared per source.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

import networkx as nx

from schemas import InputError

Direction = Literal["out", "in"]


class KGError(InputError):
    """A KG input problem, phrased as one line naming the file, the line and the problem."""


def fold(text: str) -> str:
    """Case, accents and punctuation folded: the key for name search and answer matching."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.findall(r"\w+", text))


class KnowledgeGraph:
    def __init__(self, name: str = "kg") -> None:
        self.name = name
        self.g = nx.MultiDiGraph()
        self.identifiers: set[str] = set()  # attribute names that name their entity: answers, never clues

    # -- building ------------------------------------------------------------
    def add_entity(self, entity_id: str, name: str | None = None, type: str | None = None,
                   aliases: list[str] | tuple[str, ...] = (), **attributes: Any) -> None:
        if entity_id not in self.g:
            self.g.add_node(entity_id, name=entity_id, type="entity", aliases=[], attributes={})
        node = self.g.nodes[entity_id]
        if name is not None:
            node["name"] = name
        if type is not None:
            node["type"] = type
        for alias in aliases:
            self.add_alias(entity_id, alias)
        node["attributes"].update(attributes)

    def add_alias(self, entity_id: str, alias: str) -> None:
        self.add_entity(entity_id)
        node = self.g.nodes[entity_id]
        if alias and alias != node["name"] and alias not in node["aliases"]:
            node["aliases"].append(alias)

    def add_edge(self, head: str, relation: str, tail: str) -> None:
        for n in (head, tail):
            if n not in self.g:
                self.add_entity(n)
        self.g.add_edge(head, tail, key=relation)

    # -- reading ---------------------------------------------------------------
    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    @property
    def num_edges(self) -> int:
        return self.g.number_of_edges()

    def name_of(self, entity_id: str) -> str:
        return self.g.nodes[entity_id]["name"]

    def type_of(self, entity_id: str) -> str:
        return self.g.nodes[entity_id]["type"]

    def aliases(self, entity_id: str) -> list[str]:
        return self.g.nodes[entity_id]["aliases"]

    def attributes(self, entity_id: str) -> dict[str, Any]:
        return self.g.nodes[entity_id]["attributes"]

    def degree(self, entity_id: str) -> int:
        return self.g.degree(entity_id)

    def entity(self, entity_id: str) -> dict[str, Any]:
        node = self.g.nodes[entity_id]
        return {"id": entity_id, "name": node["name"], "type": node["type"], "aliases": list(node["aliases"]),
                "attributes": dict(node["attributes"])}

    def step(self, entity_id: str, relation: str, direction: Direction) -> list[str]:
        """Entities reached from ``entity_id`` over ``relation`` in ``direction`` (out: as head)."""
        adj = self.g._succ[entity_id] if direction == "out" else self.g._pred[entity_id]
        return [v for v, keys in adj.items() if relation in keys]

    def linked(self, entity_id: str, relation: str, direction: Direction, other: str) -> bool:
        adj = self.g._succ[entity_id] if direction == "out" else self.g._pred[entity_id]
        keys = adj.get(other)
        return keys is not None and relation in keys

    def incident(self, entity_id: str) -> Iterator[tuple[str, Direction, str]]:
        """Every (relation, direction, neighbour) of an entity, in insertion order."""
        for v, keys in self.g._succ[entity_id].items():
            for r in keys:
                yield r, "out", v
        for v, keys in self.g._pred[entity_id].items():
            for r in keys:
                yield r, "in", v

    def neighbors(self, entity_id: str, relation: str | None = None,
                  direction: Literal["out", "in", "both"] = "both") -> list[tuple[str, Direction, str]]:
        return [(r, d, v) for r, d, v in self.incident(entity_id)
                if (relation is None or r == relation) and direction in ("both", d)]

    @cached_property
    def node_ids(self) -> list[str]:
        """All entity ids in insertion order: the population walks start from."""
        return list(self.g.nodes)

    @cached_property
    def relations(self) -> list[str]:
        return sorted({k for _, _, k in self.g.edges(keys=True)})

    @cached_property
    def _functional(self) -> dict[tuple[str, str], bool]:
        """(relation, direction) -> whether every entity has at most one neighbour that way."""
        seen: dict[tuple[str, str, str], int] = {}
        for u, v, r in self.g.edges(keys=True):
            seen[(r, "out", u)] = seen.get((r, "out", u), 0) + 1
            seen[(r, "in", v)] = seen.get((r, "in", v), 0) + 1
        out: dict[tuple[str, str], bool] = {}
        for (r, d, _), n in seen.items():
            out[(r, d)] = out.get((r, d), True) and n == 1
        return out

    def functional(self, relation: str, direction: Direction) -> bool:
        return self._functional.get((relation, direction), False)

    @cached_property
    def _tokens(self) -> dict[str, set[str]]:
        index: dict[str, set[str]] = {}
        for n, data in self.g.nodes(data=True):
            texts = [data["name"], *data["aliases"]]
            texts += [v for v in data["attributes"].values() if isinstance(v, str | int) and not isinstance(v, bool)]
            for text in texts:
                for token in fold(str(text)).split():
                    index.setdefault(token, set()).add(n)
        return index

    def search(self, query: str, type: str | None = None, limit: int = 20) -> list[dict[str, str]]:
        """Entities whose name, aliases or attribute values contain every word of ``query``.

        Exact name (or alias) matches come first, then by name, so a search
        for a named entity finds it even among many partial matches.
        """
        words = fold(query).split()
        if not words:
            return []
        hits = set.intersection(*(self._tokens.get(w, set()) for w in words))
        if type:
            hits = {h for h in hits if self.type_of(h) == type}
        wanted = fold(query)

        def rank(h: str) -> tuple[int, str, str]:
            exact = wanted == fold(self.name_of(h)) or any(wanted == fold(a) for a in self.aliases(h))
            return (0 if exact else 1, self.name_of(h), h)

        return [{"id": h, "name": self.name_of(h), "type": self.type_of(h)} for h in sorted(hits, key=rank)[:limit]]

    def list_type(self, type: str, limit: int = 50) -> list[dict[str, str]]:
        """Entities of one type by name; empty when there are more than ``limit`` (a list too long to read)."""
        found = [n for n in self.node_ids if self.type_of(n) == type]
        if len(found) > limit:
            return []
        return [{"id": h, "name": self.name_of(h), "type": type} for h in sorted(found, key=lambda h: (self.name_of(h), h))]

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the whole graph: the environment's state hash, so a changed KG is noticed."""
        digest = hashlib.sha256()
        for n in sorted(self.g.nodes):
            d = self.g.nodes[n]
            digest.update(repr((n, d["name"], d["type"], d["aliases"], sorted(d["attributes"].items()))).encode())
        for edge in sorted(self.g.edges(keys=True)):
            digest.update(repr(edge).encode())
        return digest.hexdigest()[:32]
