"""KG input from triple files: CSV, TSV, JSONL and Parquet.

Every row is ``head, relation, tail`` with an optional ``kind``:

- ``edge`` (default): ``head --relation--> tail`` between two entities;
- ``attribute``: entity ``head`` has attribute ``relation`` = ``tail`` (a literal;
  numbers in CSV/TSV are read as numbers so they can be described by range);
- ``alias``: ``tail`` is another name of ``head`` (used by answer matching);
- ``name`` / ``type``: the display name / type of ``head`` (the id otherwise).

Any problem is one ``KGError`` line naming the file, the line (or Parquet
row) and what is wrong, raised before a graph is returned.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from simulators.domains.kg.graph import KGError, KnowledgeGraph

REQUIRED = ("head", "relation", "tail")
OPTIONAL = ("kind",)
KINDS = ("edge", "attribute", "alias", "name", "type")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


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


def _check_fields(path: Path, where: str, names: Iterable[str] | None, noun: str) -> None:
    """Required fields present and nothing unknown: a CSV/TSV header, or one JSONL object's keys."""
    names = list(names or [])
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise KGError(f"{path}: {where}: missing {noun}(s) {', '.join(missing)} (need head, relation, tail)")
    extra = [c for c in names if c not in REQUIRED + OPTIONAL]
    if extra:
        raise KGError(f"{path}: {where}: unknown {noun}(s) {', '.join(extra)} (allowed: head, relation, tail, kind)")


def _rows_delimited(path: Path, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter, strict=True)
        try:
            _check_fields(path, "line 1", reader.fieldnames, "column")
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row:
                    raise KGError(f"{path}: {where}: more fields than the header's {len(reader.fieldnames)}")
                if any(v is None for v in row.values()):
                    raise KGError(f"{path}: {where}: fewer fields than the header's {len(reader.fieldnames)}")
                if row.get("kind") == "attribute":
                    row["tail"] = _number(row["tail"].strip())
                yield where, row
        except csv.Error as err:
            raise KGError(f"{path}: line {reader.line_num}: {err}") from None


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise KGError(f"{path}: line {n}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise KGError(f"{path}: line {n}: expected a JSON object, got {type(row).__name__}")
            _check_fields(path, f"line {n}", row, "key")
            yield f"line {n}", row


def _rows_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise KGError(f"{path}: not a readable Parquet file ({err})") from None
    _check_fields(path, "line 1", table.column_names, "column")
    for n, row in enumerate(table.to_pylist(), 1):
        yield f"row {n}", row


def read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise KGError(f"{path}: unknown KG file format {path.suffix!r} (use {', '.join(sorted(FORMATS))})")
    if not path.is_file():
        raise KGError(f"{path}: no such KG file")
    if fmt == "csv":
        return _rows_delimited(path, ",")
    if fmt == "tsv":
        return _rows_delimited(path, "\t")
    if fmt == "jsonl":
        return _rows_jsonl(path)
    return _rows_parquet(path)


def load_triples(path: str | Path) -> KnowledgeGraph:
    path = Path(path)
    kg = KnowledgeGraph(name=path.name)
    try:
        for where, row in read_rows(path):
            kind = row.get("kind") or "edge"
            if kind not in KINDS:
                raise KGError(f"{path}: {where}: unknown kind {kind!r} (use {', '.join(KINDS)})")
            head, relation, tail = row["head"], row["relation"], row["tail"]
            for col, value in (("head", head), ("relation", relation)):
                if not isinstance(value, str) or not value.strip():
                    raise KGError(f"{path}: {where}: {col} must be a non-empty string, got {value!r}")
            if kind == "attribute":
                if tail is None or (isinstance(tail, str) and not tail.strip()) or isinstance(tail, dict | list):
                    raise KGError(f"{path}: {where}: attribute {relation!r} needs a scalar value, got {tail!r}")
                kg.add_entity(head.strip(), **{relation.strip(): tail})
                continue
            if not isinstance(tail, str) or not tail.strip():
                raise KGError(f"{path}: {where}: tail must be a non-empty string, got {tail!r}")
            head, relation, tail = head.strip(), relation.strip(), tail.strip()
            if kind == "edge":
                if head == tail:
                    raise KGError(f"{path}: {where}: edge from {head!r} to itself")
                kg.add_edge(head, relation, tail)
            elif kind == "alias":
                kg.add_alias(head, tail)
            elif kind == "name":
                kg.add_entity(head, name=tail)
            else:
                kg.add_entity(head, type=tail)
    except UnicodeDecodeError as err:
        raise KGError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise KGError(f"{path}: cannot read: {err.strerror}") from None
    if kg.num_edges == 0:
        raise KGError(f"{path}: no edges (every question needs at least one relation between entities)")
    return kg
