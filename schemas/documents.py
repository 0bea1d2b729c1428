"""Reading a user's JSON or YAML file (a run config, a tool spec) with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def _read_text(path: Path, what: str, error: type[Exception]) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror}") from None


def read_document(path: str | Path, what: str, error: type[Exception]) -> Any:
    """The parsed document; ``.json`` files as JSON, others as YAML. Problems raise ``error`` as one line."""
    path = Path(path)
    text = _read_text(path, what, error)
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise error(f"{path}: {where}invalid YAML: {getattr(err, 'problem', err)}") from None


JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def read_tool_list(path: str | Path, what: str, error: type[Exception]) -> tuple[Any, list[int] | None]:
    """A document that may be JSON Lines: ``(document, None)``, or ``(items, their line numbers)``.

    JSON Lines is read for ``.jsonl``/``.ndjson`` files, and for a ``.json``
    file whose JSON stops after its first value with more following ("Extra
    data"): tool lists are shipped that way (BFCL's function docs are one
    function per line in ``.json`` files). Blank lines are skipped.
    """
    path = Path(path)
    if path.suffix not in JSON_LINES_SUFFIXES:
        if path.suffix != ".json":
            return read_document(path, what, error), None
        try:
            return read_document(path, what, error), None
        except error as err:
            if "invalid JSON: Extra data" not in str(err):
                raise
    text = _read_text(path, what, error)
    items, lines = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise error(f"{path}: line {number}: invalid JSON Lines: {err.msg} (column {err.colno}); "
                        "each line must be one JSON value") from None
        lines.append(number)
    return items, lines
