"""The ``kg`` domain: a read-only knowledge graph behind three search tools.

A rollout over it is a multi-turn search dialogue: find an entity by words,
read its attributes, follow its relations. The graph comes from
``domain.params.source``: the shipped ``countries`` KG, the ``store`` domain's
database seen as a graph (``db_seed`` picks the store), or a triple ``file``
read as published (format, header and columns mapped in the params, entity
labels from separate files, a relation table for how relations read).
Nothing can be written, so the state hash is the graph's fingerprint and
any change of the source between synthesis and verification is noticed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from simulators.domains.kg.countries import countries_graph
from simulators.domains.kg.graph import KnowledgeGraph
from simulators.domains.kg.loaders import EntitySource, load_graph
from simulators.domains.kg.store_graph import store_graph
from simulators.domains.kg.tables import Format, Limits, Table
from simulators.environment import DOMAINS, DomainParams, Environment, Param, Tables, ToolError, tool

POLICY = """You answer questions with the help of a knowledge graph.
- Find entities with search_entities, read them with get_entity and follow their relations with get_neighbors.
- Base every claim on tool results; do not guess.
- End with one line: "The answer is: <answer>"."""

NEIGHBOR_LIMIT = 200


class KGParams(DomainParams):
    source: Literal["countries", "store", "file"] = "countries"
    path: str | None = Field(default=None, description="source file: the triples file")
    format: Format | None = Field(default=None, description="csv, tsv, jsonl, parquet; by extension when omitted")
    header: bool | None = Field(default=None, description="CSV/TSV: line 1 names the columns (default true)")
    columns: list[str | None] | dict[str, int | str] | None = Field(
        default=None, description="roles in file order ([head, relation, tail]) or role -> position/name")
    entities: list[EntitySource] = Field(
        default_factory=list, description="names, types, aliases, attributes: files, or read out of the ids")
    relations: Table | None = Field(default=None, description="relation table: relation, phrase, inverse")
    self_loops: Literal["skip", "error"] = "skip"
    limits: Limits = Field(default_factory=Limits)

    @model_validator(mode="after")
    def _path_for_file(self) -> KGParams:
        if (self.source == "file") != (self.path is not None):
            raise ValueError("path is required with source 'file' and only with it")
        if self.source != "file" and (self.format or self.header is not None or self.columns is not None
                                      or self.entities):
            raise ValueError("format, header, columns and entities describe a source 'file'")
        return self

    def triples(self) -> Table:
        return Table(path=self.path or "", format=self.format, header=self.header, columns=self.columns)


@lru_cache(maxsize=8)
def _load(params_json: str, seed: int) -> KnowledgeGraph:
    params = KGParams.model_validate_json(params_json)
    if params.source == "countries":
        kg = countries_graph()
    elif params.source == "store":
        kg = store_graph(seed)
    else:
        return load_graph(params.triples(), params.entities, params.relations, params.self_loops, params.limits)
    if params.relations is not None:
        load_graph(relations=params.relations, limits=params.limits, kg=kg)
    return kg


def load_kg(params: KGParams, seed: int) -> KnowledgeGraph:
    """One graph per source, shared by every environment of a process (they only read it)."""
    return _load(params.model_dump_json(), seed)


EntityId = Annotated[str, Param("An entity id as returned by search_entities, such as 'country:FRA'.", "entity_id")]


@DOMAINS.register("kg")
class KGEnv(Environment):
    policy = POLICY

    Params = KGParams

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        params = type(self).params or KGParams()
        self.kg = load_kg(params, seed)
        self.db = Tables({})
        self._base_hash = self.kg.fingerprint

    def _entity(self, entity_id: str) -> str:
        if entity_id not in self.kg:
            raise ToolError(f"no entity with id {entity_id!r}; use search_entities to find ids")
        return entity_id

    @tool(produces=("entity_id",))
    def search_entities(
        self,
        query: Annotated[str, Param("Words to look for in entity names, aliases and attribute values.")],
        type: Annotated[str | None, Param("Only entities of this type, such as 'country'.")] = None,
    ) -> list[dict[str, str]]:
        """Entities whose name, aliases or attribute values contain every word of the query (at most 20).

        An empty query with a type lists entities of that type (at most 50).
        """
        if not query.strip():
            if not type:
                raise ToolError("query is empty; give words, or a type to list its entities")
            return self.kg.list_type(type, limit=50)
        return self.kg.search(query, type=type)

    @tool(produces=("entity_id",))
    def get_entity(self, entity_id: EntityId) -> dict[str, Any]:
        """An entity's name, type, aliases, attributes and the relations it takes part in (with how each reads)."""
        entity = self.kg.entity(self._entity(entity_id))
        entity["relations"] = sorted({f"{r} ({d}): {self.kg.reads(r, d)}" if self.kg.reads(r, d) != r else f"{r} ({d})"
                                      for r, d, _ in self.kg.incident(entity_id)})
        return entity

    @tool(produces=("entity_id",))
    def get_neighbors(
        self,
        entity_id: EntityId,
        relation: Annotated[str | None, Param("Only this relation, such as 'capital'; all by default.")] = None,
        direction: Annotated[Literal["out", "in", "both"], Param(
            "'out': entities this one points to (its capital); 'in': entities pointing to it; 'both'.")] = "both",
    ) -> dict[str, Any]:
        """Entities linked to this one, with the relation and its direction (at most 200)."""
        self._entity(entity_id)
        if relation is not None and relation not in self.kg.relations:
            raise ToolError(f"unknown relation {relation!r}; known: {', '.join(self.kg.relations)}")
        found = self.kg.neighbors(entity_id, relation, direction)
        return {"entity_id": entity_id, "total": len(found), "neighbors": [
            {"relation": r, "direction": d, "id": v, "name": self.kg.name_of(v), "type": self.kg.type_of(v)}
            for r, d, v in found[:NEIGHBOR_LIMIT]]}
