"""A server's state as files: read, written back and hashed by trajforge itself, never taken on the server's word.

A sandbox is a folder a server keeps its state in (the filesystem server's
allowed directory, the memory server's ``MEMORY_FILE_PATH``). Its state is a
plain mapping, relative path → content (``"dir/"`` → ``""`` for a folder,
text as a string, other bytes as ``{"base64": ...}``), so a dialogue's state
is a value of its own, hashable and diffable, while the folder it is played
in belongs to whichever server process serves the call: before a call the
mapping is written into that process's folder (unless it holds it already),
after the call the folder is read back. Modification times are reset to one
fixed instant after every write, so a listing with dates reads the same in
every run.

The assistant never sees where a folder really is: the real path is replaced
by a fixed virtual one (``/sandbox``) in results, and the virtual one by the
real one in path arguments.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from schemas import canonical_json

Files = dict[str, Any]
FIXED_TIME = 946684800  # 2000-01-01T00:00:00Z


class SandboxTooLarge(ValueError):
    pass


def read_folder(root: Path, max_bytes: int) -> Files:
    """The mapping of a folder's contents (symlinks kept as links, never followed)."""
    files: Files = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        if rel_dir != ".":
            files[rel_dir + "/"] = ""
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                files[rel] = {"link": os.readlink(path)}
                continue
            data = path.read_bytes()
            total += len(data)
            if total > max_bytes:
                raise SandboxTooLarge(f"the sandbox holds more than {max_bytes:,} bytes (sandbox.max_bytes)")
            try:
                files[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                files[rel] = {"base64": base64.b64encode(data).decode("ascii")}
    return files


def write_folder(root: Path, files: Files) -> None:
    """Make ``root`` hold exactly ``files``."""
    if root.exists():
        for entry in root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
    for rel in sorted(files):
        value = files[rel]
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, dict) and "link" in value:
            os.symlink(value["link"], path)
        elif isinstance(value, dict):
            path.write_bytes(base64.b64decode(value["base64"]))
        else:
            path.write_text(value, encoding="utf-8")
    settle_times(root)


def settle_times(root: Path) -> None:
    """Every entry's access and modification time set to one fixed instant."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.utime(path, (FIXED_TIME, FIXED_TIME))
    os.utime(root, (FIXED_TIME, FIXED_TIME))


def digest(files: Files) -> str:
    return hashlib.sha256(canonical_json(files).encode()).hexdigest()[:32]


def diff(before: Files, after: Files) -> Files:
    """What changed: new or changed entries with their content, removed ones as None."""
    out: Files = {k: v for k, v in after.items() if before.get(k) != v}
    out.update({k: None for k in before if k not in after})
    return dict(sorted(out.items()))


class PathMap:
    """The real folder a worker uses ↔ the fixed path the assistant sees."""

    def __init__(self, real: Path, virtual: str) -> None:
        self.real = str(real)
        self.virtual = virtual.rstrip("/") or "/"

    def inward(self, arguments: Any) -> Any:
        """Path arguments (a string that is the virtual root or starts with it) pointed at the real folder."""
        if isinstance(arguments, dict):
            return {k: self.inward(v) for k, v in arguments.items()}
        if isinstance(arguments, list):
            return [self.inward(v) for v in arguments]
        if isinstance(arguments, str) and (arguments == self.virtual or arguments.startswith(self.virtual + "/")):
            return self.real + arguments[len(self.virtual):]
        return arguments

    def outward(self, text: str) -> str:
        return text.replace(self.real, self.virtual)


def harvest(files: Files) -> dict[str, set[str]]:
    """Values a user could name, by field, found in a seed: every path, the strings of JSON and JSON Lines
    files under their keys, the lines of text files (``text``)."""
    found: dict[str, set[str]] = {"path": set()}
    for rel, content in files.items():
        found["path"].add(rel.rstrip("/"))
        if not isinstance(content, str):
            continue
        parsed = _json_values(content)
        if parsed is not None:
            for key, value in parsed:
                found.setdefault(key, set()).add(value)
            continue
        for line in content.splitlines():
            if 3 <= len(line.strip()) <= 120:
                found.setdefault("text", set()).add(line.strip())
    return {k: v for k, v in found.items() if v}


def harvest_json(text: str) -> dict[str, set[str]]:
    """``harvest`` for one result (a dump through a server's read tool)."""
    found: dict[str, set[str]] = {}
    for key, value in _json_values(text) or []:
        found.setdefault(key, set()).add(value)
    return found


def _json_values(text: str) -> list[tuple[str, str]] | None:
    """(key, string) pairs of a JSON document or of JSON Lines; None when it is neither."""
    docs: list[Any] = []
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return None
    if not docs or not all(isinstance(d, dict | list) for d in docs):
        return None
    out: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key and 1 <= len(value) <= 120:
            out.append((key, value))

    for doc in docs:
        walk(doc, "")
    return out
