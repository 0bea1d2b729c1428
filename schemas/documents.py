"""Reading a user's JSON or YAML file (a run config, a tool spec) with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_document(path: str | Path, what: str, error: type[Exception]) -> Any:
    """The parsed document; ``.json`` files as JSON, others as YAML. Problems raise ``error`` as one line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise error(f"{path}: {where}invalid YAML: {getattr(err, 'problem', err)}") from None
