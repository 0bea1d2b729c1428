"""A persistent request cache: the same request is paid for once, across runs and resumes.

Keyed by everything that decides the reply (model, messages, tools, sampling
parameters), and storing how the reply finished (a cut-off reply stays cut off
when it is served again) and by nothing that does not (URL, key, timeout), so moving a
server or renewing a key keeps the cache warm. SQLite in WAL mode lets the
threads and processes of a run read and write it at once.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from schemas import Message, Usage, canonical_json
from simulators.backends.base import ChatReply


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
            columns = {row[1] for row in db.execute("PRAGMA table_info(replies)")}
            if "finish" not in columns:  # a cache written before finish reasons were kept: its replies read as unknown
                db.execute("ALTER TABLE replies ADD COLUMN finish TEXT")
            for name in ("prompt_tokens", "completion_tokens"):  # likewise for the tokens a hit saves (read as 0)
                if name not in columns:
                    db.execute(f"ALTER TABLE replies ADD COLUMN {name} INTEGER")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, key: str) -> ChatReply | None:
        """The stored reply, with how it finished and the tokens it cost when it was first asked (what a hit saves)."""
        row = self._connect().execute("SELECT reply, finish, prompt_tokens, completion_tokens FROM replies "
                                      "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return ChatReply(message=Message.model_validate_json(row[0]), finish_reason=row[1],
                         usage=Usage(prompt_tokens=row[2] or 0, completion_tokens=row[3] or 0))

    def put(self, key: str, model: str, reply: ChatReply) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO replies (key, model, reply, finish, prompt_tokens, completion_tokens) "
            "VALUES (?, ?, ?, ?, ?, ?)", (key, model, reply.message.model_dump_json(exclude_none=True),
                                          reply.finish_reason, reply.usage.prompt_tokens, reply.usage.completion_tokens))

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]
