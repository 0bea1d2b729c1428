"""Finding the processes a test's runs left behind, by what they are, through Linux's /proc.

A server a run starts lives in its own session (so a test cannot reach it
through the run's process group); it is recognised by its session id or by
the Prefect home in its environment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; it only waits to be reaped


def in_session(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (a server started with ``start_new_session`` and its children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def with_env(name: str, value: str) -> list[int]:
    """Live processes of this user whose environment has ``name=value``."""
    wanted = f"{name}={value}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and _alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def gone(find, timeout: float = 30) -> bool:
    """Whether ``find()`` comes back empty within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while find():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
