"""A KG from files as they are published: triples, entity labels/types/aliases, a relation table.

The triples file has one row per ``head, relation, tail`` with an optional ``kind``:

- ``edge`` (default): ``head --relation--> tail`` between two entities;
- ``attribute``: entity ``head`` has attribute ``relation`` = ``tail`` (a literal;
  numbers in CSV/TSV are read as numbers so they can be described by range);
- ``alias``: ``tail`` is another name of ``head`` (used by answer matching);
- ``name`` / ``type``: the display name / type of ``head`` (the id otherwise).

Entity sources add names, types, aliases and attributes from separate files
(a Wikidata labels file, WN18RR's definitions) or from the entity ids
themselves (``land_reform.n.01`` -> "land reform", a noun), through a regex
per column whose named groups say what each part is. A relation table says
how each relation reads in both directions. Self-loops and repeated triples,
common in published KGs, are skipped and counted in one warning line each.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulators.domains.kg.graph import KGError, KnowledgeGraph, Phrase
from simulators.domains.kg.tables import Format, Limits, Mapping, Table, read_table

log = logging.getLogger("trajforge.kg")

TRIPLES = Mapping(("head", "relation", "tail", "kind"), ("head", "relation", "tail"))
ENTITIES = Mapping(("id", "name", "type", "alias"), ("id",), open_roles=True)
RELATIONS = Mapping(("relation", "phrase", "inverse"), ("relation", "phrase"))
KINDS = ("edge", "attribute", "alias", "name", "type")


class EntitySource(BaseModel):
    """Names, types, aliases and attributes for entities: from a file, or read out of the entity ids.

    ``columns`` maps roles: ``id`` (required), ``name``, ``type``, ``alias``;
    any other role is an attribute. ``pattern`` (role -> regex, matched in
    full) splits a column: its named groups become roles in turn. ``values``
    renames values of a role (``{type: {n: noun}}``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, description="a labels/types/aliases file; omit to read the entity ids")
    format: Format | None = None
    header: bool | None = None
    columns: list[str | None] | dict[str, int | str] | None = None
    pattern: dict[str, str] = Field(default_factory=dict, description="role -> regex with named groups")
    values: dict[str, dict[str, str]] = Field(default_factory=dict, description="role -> {value in file: value shown}")
    underscores: bool = Field(default=True, description="an underscore in a name or alias is a space")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: dict[str, str]) -> dict[str, str]:
        for role, regex in pattern.items():
            try:
                compiled = re.compile(regex)
            except re.error as err:
                raise ValueError(f"pattern.{role}: not a regular expression ({err})") from None
            if not compiled.groupindex:
                raise ValueError(f"pattern.{role}: needs named groups, such as (?P<name>...)")
        return pattern


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and abs(value) != float("inf") else text


def _nonempty(path: str, where: str, role: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KGError(f"{path}: {where}: {role} must be a non-empty string, got {value!r}")
    return value.strip()


def _triples(kg: KnowledgeGraph, table: Table, limits: Limits, self_loops: str) -> None:
    path = table.path
    loops: list[str] = []
    numeric = table.resolved_format() in ("csv", "tsv")
    for where, row in read_table(table, TRIPLES, limits):
        kind = row.get("kind") or "edge"
        if kind not in KINDS:
            raise KGError(f"{path}: {where}: unknown kind {kind!r} (use {', '.join(KINDS)})")
        head = _nonempty(path, where, "head", row["head"])
        relation = _nonempty(path, where, "relation", row["relation"])
        tail = row["tail"]
        if kind == "attribute":
            if tail is None or (isinstance(tail, str) and not tail.strip()) or isinstance(tail, dict | list):
                raise KGError(f"{path}: {where}: attribute {relation!r} needs a scalar value, got {tail!r}")
            kg.add_entity(head, **{relation: _number(tail.strip()) if numeric and isinstance(tail, str) else tail})
            continue
        tail = _nonempty(path, where, "tail", tail)
        if kind == "edge":
            if head == tail:
                if self_loops == "error":
                    raise KGError(f"{path}: {where}: edge from {head!r} to itself (self_loops: skip to leave it out)")
                loops.append(f"{where} {head!r}")
                continue
            kg.add_edge(head, relation, tail)
        elif kind == "alias":
            kg.add_alias(head, tail)
        elif kind == "name":
            kg.add_entity(head, name=tail)
        else:
            kg.add_entity(head, type=tail)
    if loops:
        kg.skipped["self_loops"] = len(loops)
        log.warning("%s: skipped %d self-loop edge(s) (first: %s)", path, len(loops), loops[0])
    duplicates = kg.index.duplicates
    if duplicates:
        kg.skipped["duplicates"] = duplicates
        log.warning("%s: skipped %d repeated triple(s) (each edge kept once)", path, duplicates)


def _split(source: EntitySource, row: dict[str, Any], misses: dict[str, int]) -> dict[str, Any]:
    """A row's roles after each pattern split its column and ``values`` renamed what it says to rename."""
    out = dict(row)
    for role, regex in source.pattern.items():
        value = out.get(role)
        if not isinstance(value, str):
            continue
        m = re.fullmatch(regex, value)
        if m is None:
            misses[role] = misses.get(role, 0) + 1
            continue
        if role != "id":  # a split column is replaced by its parts; the id stays the key
            out.pop(role, None)
        out.update({k: v for k, v in m.groupdict().items() if v is not None and k != "id"})
    for role, renames in source.values.items():
        if isinstance(out.get(role), str):
            out[role] = renames.get(out[role], out[role])
    return out


def _entities(kg: KnowledgeGraph, source: EntitySource, limits: Limits, named: set[str]) -> None:
    where_from = source.path or "entity ids"
    misses: dict[str, int] = {}
    unknown = 0
    if source.path is None:
        if source.columns is not None or source.format or source.header is not None:
            raise KGError("entities: columns/format/header need a path (without one the entity ids are read)")
        rows = ((f"entity {entity_id!r}", {"id": entity_id}) for entity_id in list(kg.node_ids))
        numeric = False
    else:
        table = Table(path=source.path, format=source.format, header=source.header, columns=source.columns)
        numeric = table.resolved_format() in ("csv", "tsv")
        rows = read_table(table, ENTITIES, limits)
    for where, row in rows:
        entity_id = _nonempty(where_from, where, "id", row.get("id"))
        if entity_id not in kg:
            unknown += 1
            continue
        fields = _split(source, row, misses)
        for role, value in fields.items():
            if role == "id" or value is None or (isinstance(value, str) and not value.strip()):
                continue
            if role in ("name", "alias"):
                text = _nonempty(where_from, where, role, value)
                text = text.replace("_", " ").strip() if source.underscores else text
                if role == "name" and entity_id not in named:
                    named.add(entity_id)
                    kg.add_entity(entity_id, name=text)
                else:
                    kg.add_alias(entity_id, text)
            elif role == "type":
                kg.add_entity(entity_id, type=_nonempty(where_from, where, role, value))
            else:
                kg.add_entity(entity_id, **{role: _number(value.strip()) if numeric and isinstance(value, str)
                                            else value})
    for role, n in misses.items():
        log.warning("%s: %d value(s) of %s did not match its pattern (left as they are)", where_from, n, role)
    if unknown:
        kg.skipped["unknown_entities"] = kg.skipped.get("unknown_entities", 0) + unknown
        log.warning("%s: %d row(s) describe entities that are in no triple (skipped)", where_from, unknown)


def _relation_table(kg: KnowledgeGraph, table: Table, limits: Limits) -> None:
    for where, row in read_table(table, RELATIONS, limits):
        relation = _nonempty(table.path, where, "relation", row["relation"])
        phrase = _nonempty(table.path, where, "phrase", row["phrase"])
        inverse = row.get("inverse")
        inverse = inverse.strip() if isinstance(inverse, str) and inverse.strip() else None
        kg.phrases[relation] = Phrase(phrase, inverse)


def load_graph(triples: Table | None = None, entities: tuple[EntitySource, ...] | list[EntitySource] = (),
               relations: Table | None = None, self_loops: Literal["skip", "error"] = "skip",
               limits: Limits | None = None, kg: KnowledgeGraph | None = None) -> KnowledgeGraph:
    """The graph from its files (or ``kg``, a built graph, given names and phrases); a KGError line otherwise."""
    limits = limits or Limits()
    if kg is None:
        if triples is None:
            raise KGError("no triples file given")
        kg = KnowledgeGraph(name=triples.path.rsplit("/", 1)[-1])
        _triples(kg, triples, limits, self_loops)
        if kg.num_edges == 0:
            raise KGError(f"{triples.path}: no edges (every question needs at least one relation between entities)")
    named: set[str] = set()
    for source in entities:
        _entities(kg, source, limits, named)
    if relations is not None:
        _relation_table(kg, relations, limits)
    return kg


def load_triples(path: str, **table: Any) -> KnowledgeGraph:
    """One triples file with the defaults (header line, format by extension): the short way in for tests and scripts."""
    return load_graph(Table(path=str(path), **table))
