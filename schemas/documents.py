"""Reading a user's JSON or YAML file (a run config, a tool spec) strictly, with errors that name the file and line.

Strict because a file that parses is not yet a file that says what its author
meant: YAML and JSON both let a repeated key silently win over the first one,
YAML aliases can expand a small file into billions of values, and a file that
is not UTF-8 (or not text at all) should be one line, not a decode traceback.
Every problem raises the caller's error type with one line:
``FILE: line N: what is wrong``.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from json.decoder import scanstring
from pathlib import Path
from typing import Any

import yaml

MiB = 1 << 20
MAX_YAML_VALUES = 1_000_000  # after alias expansion; a config or tool spec has thousands at most


@dataclass(frozen=True)
class SizeLimits:
    """How large an untrusted document may be; ``*_knob`` names the setting that raises a limit, for the message."""

    max_bytes: int = 16 * MiB
    max_line_chars: int | None = None
    bytes_knob: str = ""
    line_knob: str = ""


def read_document(path: str | Path, what: str, error: type[Exception], limits: SizeLimits = SizeLimits()) -> Any:
    """The parsed document; ``.json`` files as JSON, others as YAML. Problems raise ``error`` as one line."""
    path = Path(path)
    text = read_text(path, what, error, limits)
    if path.suffix == ".json":
        return _load_json(text, path, error)
    return _load_yaml(text, path, error)


def read_text(path: Path, what: str, error: type[Exception], limits: SizeLimits = SizeLimits()) -> str:
    """The file as UTF-8 text (a UTF-8 byte-order mark is dropped), within ``limits``."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise error(f"{path}: is not a regular file (a pipe or a device?); give a {what} file")
    if info.st_size > limits.max_bytes:
        raise error(f"{path}: {info.st_size / MiB:.1f} MiB is over the {what} size limit of "
                    f"{limits.max_bytes / MiB:g} MiB" + (f" ({limits.bytes_knob})" if limits.bytes_knob else ""))
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{path}: is UTF-16 text, not UTF-8; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(f"{path}: line {line}, column {column}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                    f"save it as UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise error(f"{path}: line {text.count(chr(10), 0, nul) + 1}: contains a NUL byte; a {what} file is text")
    if limits.max_line_chars is not None:
        for number, line in enumerate(text.split("\n"), 1):
            if len(line) > limits.max_line_chars:
                raise error(f"{path}: line {number}: {len(line):,} characters is over the line length limit of "
                            f"{limits.max_line_chars:,}" + (f" ({limits.line_knob})" if limits.line_knob else ""))
    return text


# -- JSON ------------------------------------------------------------------------------------------

class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _load_json(text: str, path: Path, error: type[Exception]) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as err:
        raise error(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
    except _DuplicateKey as dup:
        key, line, first = _find_duplicate_json_key(text) or (dup.args[0], 0, 0)
        where = f"line {line}: " if line else ""
        raise error(f"{path}: {where}duplicate key {key!r}" + (f" (first at line {first})" if first else "")) from None


_JSON_TOKEN = re.compile(r'["{}\[\]\n]')
_JSON_SPACE = re.compile(r"[ \t\r\n]*")


def _find_duplicate_json_key(text: str) -> tuple[str, int, int] | None:
    """The first repeated key of one object, its line and the line of its first use (JSON strings hold no raw newline)."""
    stack: list[dict[str, int] | None] = []
    line, i = 1, 0
    while (m := _JSON_TOKEN.search(text, i)) is not None:
        c, i = m.group(), m.end()
        if c == "\n":
            line += 1
        elif c == "{":
            stack.append({})
        elif c == "[":
            stack.append(None)
        elif c in "}]":
            if stack:
                stack.pop()
        else:  # a string: a key when a ':' follows
            value, i = scanstring(text, i)
            after = _JSON_SPACE.match(text, i).end()  # a peek: the newlines skipped are counted when reached
            if after < len(text) and text[after] == ":" and stack and stack[-1] is not None:
                if value in stack[-1]:
                    return value, line, stack[-1][value]
                stack[-1][value] = line
    return None


# -- YAML ------------------------------------------------------------------------------------------

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses a key repeated in one mapping (a ``<<`` merge may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateYAMLKey(key_node.value, line, seen[key])
                seen[key] = line
        return super().construct_mapping(node, deep)


class _DuplicateYAMLKey(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` becomes once aliases are expanded (shared nodes counted once per use)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def _load_yaml(text: str, path: Path, error: type[Exception]) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise error(f"{path}: YAML aliases expand to more than {MAX_YAML_VALUES:,} values; "
                        "write the values out or use fewer nested aliases")
        return loader.construct_document(node)
    except _DuplicateYAMLKey as dup:
        raise error(f"{path}: line {dup.line}: duplicate key {dup.key!r} (first at line {dup.first})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise error(f"{path}: {where}invalid YAML: {getattr(err, 'problem', None) or err}") from None
    finally:
        loader.dispose()


JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def read_tool_list(path: str | Path, what: str, error: type[Exception],
                   limits: SizeLimits = SizeLimits()) -> tuple[Any, list[int] | None]:
    """A document that may be JSON Lines: ``(document, None)``, or ``(items, their line numbers)``.

    JSON Lines is read for ``.jsonl``/``.ndjson`` files, and for a ``.json``
    file whose JSON stops after its first value with more following ("Extra
    data"): tool lists are shipped that way (BFCL's function docs are one
    function per line in ``.json`` files). Blank lines are skipped.
    """
    path = Path(path)
    if path.suffix not in JSON_LINES_SUFFIXES:
        if path.suffix != ".json":
            return read_document(path, what, error, limits), None
        try:
            return read_document(path, what, error, limits), None
        except error as err:
            if "invalid JSON: Extra data" not in str(err):
                raise
    text = read_text(path, what, error, limits)
    items, lines = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line, object_pairs_hook=_unique_pairs))
        except json.JSONDecodeError as err:
            raise error(f"{path}: line {number}: invalid JSON Lines: {err.msg} (column {err.colno}); "
                        "each line must be one JSON value") from None
        except _DuplicateKey as dup:
            raise error(f"{path}: line {number}: duplicate key {dup.args[0]!r}") from None
        lines.append(number)
    return items, lines
