"""A persistent request cache: the same request is paid for once, across runs and resumes.

Keyed by everything that decides the reply (model, messages, tools, sampling
parameters) and by nothing that does not (URL, key, timeout), so moving a
server or renewing a key keeps the cache warm. SQLite in WAL mode lets the
threads and processes of a run read and write it at once.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from schemas import Message, canonical_json


def request_key(model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                params: dict[str, Any]) -> str:
    payload = canonical_json({"model": model, "messages": messages, "tools": tools or [], "params": params})
    return hashlib.sha256(payload.encode()).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, key: str) -> Message | None:
        row = self._connect().execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else Message.model_validate_json(row[0])

    def put(self, key: str, model: str, message: Message) -> None:
        self._connect().execute("INSERT OR REPLACE INTO replies (key, model, reply) VALUES (?, ?, ?)",
                                (key, model, message.model_dump_json(exclude_none=True)))

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]
