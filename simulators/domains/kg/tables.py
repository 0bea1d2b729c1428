"""Reading the tables a KG comes in, as published: any extension, with or without a header, columns mapped.

A table is a file plus how to read it: ``format`` (csv, tsv, jsonl, parquet;
from the extension when left out), ``header`` (CSV/TSV: whether line 1 names
the columns) and ``columns`` (which column plays which role: a list in file
order, ``null`` for a column to ignore, or a mapping role -> 0-based position
or column name). Untrusted files are bounded: a line, a field and the number
of rows each have a configurable maximum, checked while reading, so a 10 MB
entity name is one error line and not a run that swells to gigabytes.

Every problem is one ``KGError`` line naming the file, the line (or Parquet
row) and what is wrong.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.domains.kg.graph import KGError

Format = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class Limits(BaseModel):
    """The most an untrusted KG file may hold; beyond it loading stops with one line naming where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_line_chars: int = Field(default=100_000, ge=16, description="characters in one line of a text file")
    max_field_chars: int = Field(default=2_000, ge=1, description="characters in one id, name, relation or value")
    max_rows: int = Field(default=50_000_000, ge=1, description="rows in one file")


class Table(BaseModel):
    """One file of a KG and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    format: Format | None = Field(default=None, description="csv, tsv, jsonl or parquet; by extension when omitted")
    header: bool | None = Field(default=None, description="CSV/TSV: line 1 names the columns (default true)")
    columns: list[str | None] | dict[str, int | str] | None = Field(
        default=None, description="roles in file order ([head, relation, tail]) or role -> position/name")

    def resolved_format(self) -> Format:
        if self.format:
            return self.format
        fmt = FORMATS.get(Path(self.path).suffix.lower())
        if fmt is None:
            raise KGError(f"{self.path}: unknown KG file format {Path(self.path).suffix!r} "
                          f"(use {', '.join(sorted(FORMATS))}, or set format: csv|tsv|jsonl|parquet)")
        return fmt


def _bounded(f, path: Path, limits: Limits) -> Iterator[str]:
    """Physical lines, never reading more than the line limit into memory."""
    n = 0
    while True:
        line = f.readline(limits.max_line_chars + 1)
        if not line:
            return
        n += 1
        if len(line) > limits.max_line_chars and not line.endswith("\n"):
            raise KGError(f"{path}: line {n}: longer than max_line_chars {limits.max_line_chars:,} (limits in "
                          "domain.params.limits)")
        yield line


def _check_field(path: Path, where: str, role: str, value: Any, limits: Limits) -> None:
    if isinstance(value, str) and len(value) > limits.max_field_chars:
        raise KGError(f"{path}: {where}: {role} is {len(value):,} characters, over max_field_chars "
                      f"{limits.max_field_chars:,} (limits in domain.params.limits)")


class Mapping:
    """Which roles a file kind has, which must be present, and what the columns are when nothing says."""

    def __init__(self, roles: tuple[str, ...], required: tuple[str, ...], open_roles: bool = False) -> None:
        self.roles, self.required, self.open_roles = roles, required, open_roles

    def check_names(self, path: Path, where: str, names: list[str], noun: str) -> None:
        missing = [c for c in self.required if c not in names]
        if missing:
            raise KGError(f"{path}: {where}: missing {noun}(s) {', '.join(missing)} (need {', '.join(self.required)}; "
                          "map other names with columns:)")
        extra = [c for c in names if c not in self.roles and not self.open_roles]
        if extra:
            raise KGError(f"{path}: {where}: unknown {noun}(s) {', '.join(extra)} (allowed: {', '.join(self.roles)}; "
                          "map or drop columns with columns:)")

    def plan(self, table: Table, path: Path, header: list[str] | None, width: int | None) -> list[tuple[str, int | str]]:
        """(role, position or name) pairs for this file, checked against what it holds."""
        cols = table.columns
        if cols is None:
            if header is not None:
                self.check_names(path, "line 1", header, "column")
                return [(name, name) for name in header]
            if width is not None and width > len(self.roles):
                raise KGError(f"{path}: line 1: {width} columns and no header: say which is which with columns: "
                              f"(roles: {', '.join(self.roles)})")
            return [(role, i) for i, role in enumerate(self.roles[:width or len(self.required)])]
        pairs = [(role, i) for i, role in enumerate(cols) if role] if isinstance(cols, list) else list(cols.items())
        self.check_names(path, "columns", [role for role, _ in pairs], "role")
        for role, where in pairs:
            if isinstance(where, str) and header is not None and where not in header:
                raise KGError(f"{path}: columns.{role}: no column {where!r} (the header has {', '.join(header)})")
            if isinstance(where, str) and header is None and width is not None:
                raise KGError(f"{path}: columns.{role}: {where!r} names a column but the file has no header "
                              "(use a 0-based position)")
        return pairs


def _rows_delimited(path: Path, table: Table, mapping: Mapping, delimiter: str, limits: Limits
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_line_chars))
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(_bounded(f, path, limits), delimiter=delimiter, strict=True)
        try:
            first = next(reader, None)
            has_header = table.header is not False
            header = first if has_header else None
            if first is None:
                mapping.check_names(path, "line 1", [], "column")
                return
            width = len(first)
            plan = mapping.plan(table, path, header, width)
            at = {role: (header.index(col) if isinstance(col, str) else col) for role, col in plan}
            need = max(at.values()) + 1 if at else 0
            if not has_header:
                yield from _one(path, "line 1", first, at, need, width, has_header, limits)
            count = 0
            for row in reader:
                count += 1
                if count > limits.max_rows:
                    raise KGError(f"{path}: more than max_rows {limits.max_rows:,} rows (limits in domain.params.limits)")
                if not row:
                    continue
                yield from _one(path, f"line {reader.line_num}", row, at, need, width, has_header, limits)
        except csv.Error as err:
            raise KGError(f"{path}: line {reader.line_num}: {err}") from None


def _one(path: Path, where: str, row: list[str], at: dict[str, int], need: int, width: int, has_header: bool,
         limits: Limits) -> Iterator[tuple[str, dict[str, Any]]]:
    if has_header and len(row) != width:
        more = "more" if len(row) > width else "fewer"
        raise KGError(f"{path}: {where}: {more} fields than the header's {width}")
    if len(row) < need:
        raise KGError(f"{path}: {where}: {len(row)} field(s), the column mapping needs {need}")
    out = {role: row[i] for role, i in at.items()}
    for role, value in out.items():
        _check_field(path, where, role, value, limits)
    yield where, out


def _rows_jsonl(path: Path, table: Table, mapping: Mapping, limits: Limits) -> Iterator[tuple[str, dict[str, Any]]]:
    plan = None if table.columns is None else mapping.plan(table, path, None, None)
    if plan is not None and any(isinstance(col, int) for _, col in plan):
        raise KGError(f"{path}: columns: JSONL objects have keys, not positions: map each role to a key name")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(_bounded(f, path, limits), 1):
            if n > limits.max_rows:
                raise KGError(f"{path}: more than max_rows {limits.max_rows:,} rows (limits in domain.params.limits)")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise KGError(f"{path}: line {n}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise KGError(f"{path}: line {n}: expected a JSON object, got {type(row).__name__}")
            if plan is None:
                mapping.check_names(path, f"line {n}", list(row), "key")
                out = row
            else:
                missing = [col for role, col in plan if role in mapping.required and col not in row]
                if missing:
                    raise KGError(f"{path}: line {n}: missing key(s) {', '.join(map(str, missing))}")
                out = {role: row.get(col) for role, col in plan}
            for role, value in out.items():
                _check_field(path, f"line {n}", role, value, limits)
            yield f"line {n}", out


def _rows_parquet(path: Path, table: Table, mapping: Mapping, limits: Limits) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        if meta.num_rows > limits.max_rows:
            raise KGError(f"{path}: {meta.num_rows:,} rows, over max_rows {limits.max_rows:,} "
                          "(limits in domain.params.limits)")
        data = pq.read_table(path)
    except KGError:
        raise
    except Exception as err:  # pyarrow raises several types for a broken file
        raise KGError(f"{path}: not a readable Parquet file ({err})") from None
    names = data.column_names
    plan = mapping.plan(table, path, names, None) if table.columns is not None else None
    if plan is None:
        mapping.check_names(path, "line 1", names, "column")
        plan = [(name, name) for name in names]
    at = {role: (names[col] if isinstance(col, int) else col) for role, col in plan}
    for col in at.values():
        column = data[col]
        if column.type in ("string", "large_string") and len(column):
            longest = pc.max(pc.utf8_length(column)).as_py() or 0
            if longest > limits.max_field_chars:
                raise KGError(f"{path}: column {col!r}: a value of {longest:,} characters, over max_field_chars "
                              f"{limits.max_field_chars:,} (limits in domain.params.limits)")
    for n, row in enumerate(data.select(list(dict.fromkeys(at.values()))).to_pylist(), 1):
        yield f"row {n}", {role: row[col] for role, col in at.items()}


def read_table(table: Table, mapping: Mapping, limits: Limits) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, {role: value}) for every row; any problem is a KGError naming the file and line."""
    fmt = table.resolved_format()
    path = Path(table.path)
    if not path.is_file():
        raise KGError(f"{path}: no such KG file")
    if table.header is not None and fmt not in ("csv", "tsv"):
        raise KGError(f"{path}: header: only CSV and TSV files have a header line (this one is {fmt})")
    try:
        if fmt in ("csv", "tsv"):
            yield from _rows_delimited(path, table, mapping, "," if fmt == "csv" else "\t", limits)
        elif fmt == "jsonl":
            yield from _rows_jsonl(path, table, mapping, limits)
        else:
            yield from _rows_parquet(path, table, mapping, limits)
    except UnicodeDecodeError as err:
        raise KGError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise KGError(f"{path}: cannot read: {err.strerror}") from None
