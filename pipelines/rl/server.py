"""``trajforge env serve DIR``: a version's tasks as RL environments over HTTP, for trainers in other processes.

OpenEnv-style and stateless for the client: ``POST /sessions`` resets a new
session on a task (by ``task_id``, row ``id`` or ``index``) and returns its
opening messages and tools; ``POST /sessions/{id}/step`` takes one assistant
message and returns the observation; ``GET /sessions/{id}/state`` and
``/reward`` read it; ``DELETE`` ends it. Every session owns its own
``TaskEnvironment`` (its own copy-on-write domain state and user), so nothing
is shared between sessions but the read-only base data.

A policy in training sends anything, so every request is answered, never
crashes the server: bad JSON or an unknown field is a 400 with one line, an
unknown session a 404, a body over ``MAX_BODY`` a 413, a full server a 503;
what the policy says inside a well-formed request is the environment's
business (an error observation). An episode ends at ``max_steps`` steps or
``max_episode_s`` seconds after its reset (a documented terminal state: the
observation says which limit), and a session is reaped after
``idle_timeout_s`` without a request.

``/ws`` carries the same reset/step/state/reward on one WebSocket per session
(OpenEnv's clients hold a session that way): the connection is the session,
and closing it drops the session; a bad frame gets an ``error`` frame and the
connection stays open.

DIR is an export folder (its ``rl`` config, with the bundled environment files)
or a dataset, which is exported first into a temporary folder: one way from
the store to rows that rebuild their environment.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pipelines.rl.environment import TaskEnvironment
from schemas import ConfigError

MAX_BODY = 1 << 20


@dataclass
class Session:
    env: TaskEnvironment
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    steps: int = 0
    seen: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)


def load_rows(folder: Path) -> list[dict[str, Any]]:
    """The ``rl`` rows of an export folder, train then test, as pyarrow reads them (JSON columns as text)."""
    files = sorted((folder / "data" / "rl").glob("*.parquet"), key=lambda p: (not p.name.startswith("train"), p.name))
    if not files:
        raise ConfigError(f"{folder}: no rl config (data/rl/*.parquet); give an export folder or a dataset")
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    if rows and not rows[0].get("env_config"):
        raise ConfigError(f"{folder}: its rl rows have no env_config (exported by an older trajforge); export again")
    return rows


class EnvServer:
    """The sessions of one set of rows; ``app()`` is the Starlette application that serves them."""

    def __init__(self, rows: list[dict[str, Any]], root: Path, max_sessions: int = 1024, max_steps: int = 400,
                 idle_timeout_s: float = 600.0, max_episode_s: float = 3600.0) -> None:
        self.rows = rows
        self.root = root
        self.by_key: dict[str, int] = {}
        for n, row in enumerate(rows):
            self.by_key.setdefault(row["task_id"], n)
            self.by_key.setdefault(row["id"], n)
        self.max_sessions = max_sessions
        self.max_steps = max_steps
        self.idle_timeout_s = idle_timeout_s
        self.max_episode_s = max_episode_s
        self.sessions: dict[str, Session] = {}
        self.created = 0

    # -- handlers ------------------------------------------------------------------------------------------------
    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"tasks": len(self.rows), "sessions": len(self.sessions), "created": self.created})

    async def tasks(self, request: Request) -> JSONResponse:
        return JSONResponse([{"index": n, "id": r["id"], "task_id": r["task_id"], "domain": r["domain"],
                              "kind": r["kind"]} for n, r in enumerate(self.rows)])

    async def create(self, request: Request) -> JSONResponse:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        status, out = await self._open(body)
        return JSONResponse(out, status_code=status)

    async def step(self, request: Request) -> JSONResponse:
        session = self._session(request)
        if isinstance(session, JSONResponse):
            return session
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        status, out = await self._step(session, body)
        return JSONResponse(out, status_code=status)

    async def reset(self, request: Request) -> JSONResponse:
        session = self._session(request)
        if isinstance(session, JSONResponse):
            return session
        return JSONResponse(await self._reset(session))

    async def state(self, request: Request) -> JSONResponse:
        session = self._session(request)
        if isinstance(session, JSONResponse):
            return session
        return JSONResponse(_state(session))

    async def reward(self, request: Request) -> JSONResponse:
        session = self._session(request)
        if isinstance(session, JSONResponse):
            return session
        async with session.lock:
            reward = await session.env.areward()
        return JSONResponse(reward.to_dict())

    async def delete(self, request: Request) -> JSONResponse:
        sid = request.path_params["sid"]
        if self.sessions.pop(sid, None) is None:
            return _error(404, f"no session {sid!r}")
        return JSONResponse({"deleted": sid})

    # -- one session over a WebSocket ------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        """``/ws``: one connection, one session, OpenEnv-style. Each text frame is a JSON object with ``type``:
        ``reset`` (with ``task_id`` or ``index``: open the session on that task; without: start it over),
        ``step`` (``message``), ``state``, ``reward``, ``close``. Each gets one frame back: ``observation``,
        ``state``, ``reward``, or ``error`` (the same one-line words as the HTTP answers; the connection stays
        open). The session is dropped when the socket closes, for whatever reason."""
        await ws.accept()
        sid: str | None = None
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:  # a binary frame: JSON in UTF-8 is read the same, anything else is an error frame
                    try:
                        text = (message.get("bytes") or b"").decode()
                    except UnicodeDecodeError:
                        text = "\x00"
                if sid is not None and sid not in self.sessions:
                    sid = None  # reaped while idle: the next reset opens a new one
                reply = await self._frame(text, sid)
                if reply.pop("_sid", None) is not None:
                    if sid is not None and sid != reply["session_id"]:
                        self.sessions.pop(sid, None)
                    sid = reply["session_id"]
                await ws.send_json(reply)
                if reply["type"] == "closed":
                    await ws.close()
                    return
        except (WebSocketDisconnect, RuntimeError):  # gone mid-send: end it
            pass
        finally:
            if sid is not None:
                self.sessions.pop(sid, None)

    async def _frame(self, text: str, sid: str | None) -> dict[str, Any]:
        if len(text) > MAX_BODY:
            return _frame_error(413, f"frame over {MAX_BODY} characters")
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            return _frame_error(400, f"frame is not JSON: {err}")
        except RecursionError:
            return _frame_error(400, "frame is not JSON this server reads: nested too deeply")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return _frame_error(400, "a frame is a JSON object with a type: reset, step, state, reward or close")
        kind = body.pop("type")
        if kind == "close":
            return {"type": "closed", "session_id": sid}
        if kind == "reset" and (body or sid is None):
            status, out = await self._open(body)
            return {"type": "observation", "_sid": out["session_id"], **out} if status == 200 else \
                _frame_error(status, out["error"])
        session = self.sessions.get(sid) if sid else None
        if kind not in ("reset", "step", "state", "reward"):
            return _frame_error(400, f"type: unknown {kind!r}; one of reset, step, state, reward, close")
        if session is None:
            return _frame_error(409, "no session on this connection yet: send a reset with task_id or index first")
        session.seen = time.monotonic()
        if kind == "reset":
            return {"type": "observation", "session_id": sid, **await self._reset(session)}
        if kind == "step":
            status, out = await self._step(session, body)
            return {"type": "observation", **out} if status == 200 else _frame_error(status, out["error"])
        if body:
            return _frame_error(400, f"unknown field {sorted(body)[0]!r} in a {kind} frame")
        if kind == "state":
            return {"type": "state", **_state(session)}
        async with session.lock:
            reward = await session.env.areward()
        return {"type": "reward", **reward.to_dict()}

    # -- what HTTP and WebSocket share -------------------------------------------------------------------------
    async def _open(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A new session on the task ``body`` names: (status, the opening or the error)."""
        unknown = set(body) - {"task_id", "index"}
        if unknown:
            return 400, {"error": f"unknown field {sorted(unknown)[0]!r}; a session takes task_id (a task or row "
                                  f"id) or index"}
        index = body.get("index")
        if "task_id" in body:
            index = self.by_key.get(str(body["task_id"]))
            if index is None:
                return 404, {"error": f"task_id: no task or row {body['task_id']!r} in this version"}
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.rows):
            return 400, {"error": f"index: must be an integer in [0, {len(self.rows)})"}
        self._reap()
        if len(self.sessions) >= self.max_sessions:
            return 503, {"error": f"{self.max_sessions} sessions open; delete some or wait for idle ones to expire"}
        env = TaskEnvironment.from_row(self.rows[index], root=self.root)
        opening = await env.areset()
        sid = uuid.uuid4().hex
        self.sessions[sid] = Session(env)
        self.created += 1
        return 200, {"session_id": sid, "task_id": env.task.id, "messages": opening, "tools": env.tools}

    async def _step(self, session: Session, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if set(body) != {"message"}:
            return 400, {"error": "a step takes {\"message\": <assistant message>}"}
        async with session.lock:
            session.seen = time.monotonic()
            session.steps += 1
            if not session.env.done:
                if session.steps > self.max_steps:
                    session.env.done, session.env.end_reason = True, f"more than {self.max_steps} steps"
                elif session.seen - session.started > self.max_episode_s:
                    session.env.done, session.env.end_reason = True, f"longer than {self.max_episode_s:g}s"
            obs = await session.env.astep(body["message"])
        return 200, obs.to_dict()

    async def _reset(self, session: Session) -> dict[str, Any]:
        async with session.lock:
            session.steps, session.seen = 0, time.monotonic()
            session.started = session.seen
            opening = await session.env.areset()
        return {"messages": opening, "tools": session.env.tools}

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _session(self, request: Request) -> Session | JSONResponse:
        sid = request.path_params["sid"]
        session = self.sessions.get(sid)
        if session is None:
            return _error(404, f"no session {sid!r} (never made, deleted, or expired after "
                               f"{self.idle_timeout_s:g}s idle)")
        session.seen = time.monotonic()
        return session

    def _reap(self) -> None:
        cutoff = time.monotonic() - self.idle_timeout_s
        for sid in [s for s, session in self.sessions.items() if session.seen < cutoff and not session.lock.locked()]:
            del self.sessions[sid]

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/tasks", self.tasks, methods=["GET"]),
            Route("/sessions", self.create, methods=["POST"]),
            Route("/sessions/{sid}/step", self.step, methods=["POST"]),
            Route("/sessions/{sid}/reset", self.reset, methods=["POST"]),
            Route("/sessions/{sid}/state", self.state, methods=["GET"]),
            Route("/sessions/{sid}/reward", self.reward, methods=["GET"]),
            Route("/sessions/{sid}", self.delete, methods=["DELETE"]),
            WebSocketRoute("/ws", self.websocket),
        ])


def _state(session: Session) -> dict[str, Any]:
    env = session.env
    return {"task_id": env.task.id, "done": env.done, "end_reason": env.end_reason, "steps": session.steps,
            "state_hash": env.env.state_hash(), "messages": env.transcript()}


def _frame_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "status": status, "error": message}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any] | JSONResponse:
    """The request's JSON object, or the error response. An oversized body is read to its end and dropped
    (never kept): answering before the client has sent it all resets the connection under the client."""
    size, chunks = 0, []
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= MAX_BODY:
                chunks.append(chunk)
    except ClientDisconnect:
        return _error(400, "the client went away before sending its whole body")
    if size > MAX_BODY:
        return _error(413, f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return _error(400, f"body is not JSON: {err}")
    except RecursionError:
        return _error(400, "body is not JSON this server reads: nested too deeply")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    return body


def serve(source: str | Path, version: int | None = None, port: int = 8770, max_sessions: int = 1024,
          max_steps: int = 400, idle_timeout_s: float = 600.0, max_episode_s: float = 3600.0) -> int:
    """Load the rows (exporting a dataset first), bind 127.0.0.1, serve until Ctrl-C."""
    import uvicorn

    from pipelines.viewer.server import HOST, bind

    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="trajforge-env-") as tmp:
        if (source / "data" / "rl").is_dir():
            if version is not None:
                raise ConfigError(f"--version: {source} is an export folder (one version); give the dataset instead")
            folder = source
        elif (source / "_delta_log").is_dir():
            from pipelines.export import export_version
            from pipelines.export_request import ExportError, ExportOptions

            folder = Path(tmp) / "export"
            try:
                export_version(source, folder, ExportOptions(version=version, test_ratio=0.0))
            except ExportError as err:
                raise ConfigError(str(err)) from None
        else:
            raise ConfigError(f"{source}: neither an export folder (data/rl/) nor a dataset (_delta_log/)")
        rows = load_rows(folder)
        server = EnvServer(rows, folder, max_sessions, max_steps, idle_timeout_s, max_episode_s)
        sock = bind(port)
        url = f"http://{HOST}:{sock.getsockname()[1]}"
        print(f"trajforge env serve: {len(rows)} task(s) from {source}\n  {url}  (Ctrl-C stops)", flush=True)
        config = uvicorn.Config(server.app(), log_level="warning", access_log=False, timeout_graceful_shutdown=2)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: stopping is the normal end
            pass
        finally:
            sock.close()
    return 0
