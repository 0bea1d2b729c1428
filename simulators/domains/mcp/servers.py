"""MCP server processes and connections, on the bridge loop: start, call, notice a crash or a hang, stop.

A ``Worker`` is one connection through the official ``mcp`` SDK: a stdio
server it starts (``stdio_client``), an HTTP server it starts and then
reaches at its URL, or a server that runs already (``streamable_http_client``,
``sse_client``). Every process is started through ``tether.py`` in a session
of its own, so it is stopped with its process group when the worker stops,
and by the tether when trajforge dies without stopping it.

A worker's connection lives in one task (anyio's task groups must be left by
the task that entered them); calls come from any task on the same loop. A
``Pool`` lends workers one call at a time, starts them on demand up to its
size, and replaces one that broke.

What a call can end in:

- a result (``CallResult``), the server's error results included (``is_error``,
  or a JSON-RPC error such as unknown tool or bad arguments): the assistant
  sees those as ``Error: ...`` and may recover;
- a ``ToolFault``: the server crashed, did not answer within ``timeout_s``,
  or answered something that is not an MCP result. The worker is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from simulators.domains.mcp.params import ServerConfig
from simulators.domains.mcp.sandbox import PathMap, read_folder, settle_times, write_folder
from simulators.environment import ToolFault

TETHER = str(Path(__file__).with_name("tether.py"))
STDERR_TAIL = 3


class StartError(RuntimeError):
    """A server that would not start or answer; ``str`` is one line naming it."""


@dataclass
class CallResult:
    text: str
    is_error: bool


class Worker:
    """One server connection (and process, when trajforge starts it)."""

    def __init__(self, server: ServerConfig, home: Path, index: int, env: dict[str, str]) -> None:
        self.server = server
        self.index = index
        self.dir = home / f"{server.name}-{index}"
        self.sandbox = (self.dir / "sandbox") if server.sandbox is not None else None
        self.log = self.dir / "stderr.log"
        self.env = env
        self.session: ClientSession | None = None
        self.loaded: str | None = None  # digest of the sandbox state the folder holds now
        self.paths: PathMap | None = None
        self.dead = False
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.sandbox is not None:
            self.sandbox.mkdir(parents=True, exist_ok=True)
            real = Path(os.path.realpath(self.sandbox))  # what the server reports, symlinks resolved
            self.sandbox = real
            self.paths = PathMap(real, self.server.sandbox.root if self.server.sandbox else "/sandbox")
            self.env = {**self.env, **{var: str(real / inside) for var, inside in self.server.sandbox_env.items()}}
        self._task = asyncio.create_task(self._main(), name=f"mcp-{self.server.name}-{self.index}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.server.start_timeout_s)
        except TimeoutError:
            await self.stop()
            raise StartError(self._failed(f"did not answer `initialize` within {self.server.start_timeout_s:g}s")) from None
        except StartError:
            await self.stop()
            raise
        except MCPError as err:
            await self.stop()
            closed = err.code == types.CONNECTION_CLOSED
            raise StartError(self._failed("exited before it answered `initialize`" if closed else
                                          f"refused `initialize`: {err.message}")) from None
        except Exception as err:
            await self.stop()
            raise StartError(self._failed(_one_line(err))) from None

    async def _main(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await self._connect(stack)
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as err:  # noqa: BLE001 - whatever ended the connection, the worker is done
            if not self._ready.done():
                first = _first_leaf(err)
                self._ready.set_exception(first if isinstance(first, Exception) else StartError("cancelled"))
            if not isinstance(err, Exception | asyncio.CancelledError):
                raise
        finally:
            self.dead = True
            self.session = None
            await self._kill_process()

    async def _connect(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        server = self.server
        values = {"{sandbox}": str(self.sandbox or "")}
        if server.command is not None and server.kind == "stdio":
            errlog = stack.enter_context(open(self.log, "a", encoding="utf-8"))
            params = StdioServerParameters(command=sys.executable, args=[TETHER, server.command, *self._fill(
                server.args, values)], env=self.env)
            return await stack.enter_async_context(stdio_client(params, errlog=errlog))
        if server.command is not None:  # an HTTP server trajforge starts, on a free loopback port
            values["{port}"] = str(_free_port())
            await self._spawn(self._fill([server.command, *server.args], values))
            url = self._fill([server.url or ""], values)[0]
            await self._wait_listening(url)
        else:
            url = server.url or ""
        if server.kind == "sse":
            return await stack.enter_async_context(sse_client(url, headers=self._headers()))
        import httpx2

        client = await stack.enter_async_context(httpx2.AsyncClient(headers=self._headers(), timeout=httpx2.Timeout(
            server.timeout_s, read=max(300.0, server.timeout_s))))
        return await stack.enter_async_context(streamable_http_client(url, http_client=client))

    def _fill(self, parts: list[str], values: dict[str, str]) -> list[str]:
        out = []
        for part in parts:
            for key, value in values.items():
                part = part.replace(key, value)
            out.append(part)
        return out

    def _headers(self) -> dict[str, str]:
        return {header: os.environ.get(var, "") for header, var in self.server.headers.items()}

    async def _spawn(self, argv: list[str]) -> None:
        log = open(self.log, "a", encoding="utf-8")
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, TETHER, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env={**_base_environment(), **self.env}, start_new_session=True)
        finally:
            log.close()

    async def _wait_listening(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
        deadline = time.monotonic() + self.server.start_timeout_s
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise StartError(self._failed("exited before it listened"))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
                writer.close()
                return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise StartError(self._failed(f"did not listen on {host}:{port} within "
                                                  f"{self.server.start_timeout_s:g}s")) from None
                await asyncio.sleep(0.1)

    async def _kill_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait)
                return

    async def stop(self) -> None:
        self.dead = True
        self._stop.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10.0)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        await self._kill_process()

    def _failed(self, what: str) -> str:
        tail = self.stderr_tail()
        return f"server {self.server.name!r} ({self.server.shown()}) {what}" + (f"; its stderr ends: {tail}" if tail
                                                                              else "")

    def stderr_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-STDERR_TAIL:])[-600:]

    # -- calls ---------------------------------------------------------------------------------------------
    async def list_tools(self) -> list[types.Tool]:
        assert self.session is not None
        tools: list[types.Tool] = []
        cursor = None
        while True:
            page = await asyncio.wait_for(self.session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None), self.server.timeout_s)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallResult:
        """One call; a broken server raises ``ToolFault`` and marks this worker dead."""
        if self.session is None or self.dead:
            raise self._fault(f"{tool}: the server is not running")
        if self.paths is not None:
            arguments = self.paths.inward(arguments)
        timeout = self.server.timeout_s
        try:
            result = await asyncio.wait_for(self.session.call_tool(tool, arguments, read_timeout_seconds=timeout),
                                            timeout + 5)
        except MCPError as err:
            if err.code == types.CONNECTION_CLOSED:
                raise self._fault(f"{tool}: the server stopped answering (it crashed or exited)") from None
            if err.code == types.REQUEST_TIMEOUT:
                raise self._fault(f"{tool}: no answer within {timeout:g}s (timeout_s)") from None
            return CallResult(text=self._out(f"MCP error {err.code}: {err.message}"), is_error=True)
        except TimeoutError:
            raise self._fault(f"{tool}: no answer within {timeout:g}s (timeout_s)") from None
        except asyncio.CancelledError:
            self.loaded = None  # the call may have run halfway: restore before the next one
            raise
        except Exception as err:  # the SDK could not read the answer as an MCP result
            raise self._fault(f"{tool}: malformed result ({_one_line(err)})") from None
        if not isinstance(result, types.CallToolResult):
            raise self._fault(f"{tool}: malformed result (not a tool result: {type(result).__name__})")
        return CallResult(text=self._out(result_text(result)), is_error=result.is_error)

    def _out(self, text: str) -> str:
        return self.paths.outward(text) if self.paths is not None else text

    def _fault(self, what: str) -> ToolFault:
        self.dead = True
        self.loaded = None
        return ToolFault(f"MCP server {self.server.name!r}: {what}")

    # -- the sandbox -----------------------------------------------------------------------------------------
    def restore(self, files: dict[str, Any], digest: str) -> None:
        assert self.sandbox is not None
        if self.loaded != digest:
            self.loaded = None
            write_folder(self.sandbox, files)
            self.loaded = digest

    def capture(self) -> dict[str, Any]:
        assert self.sandbox is not None and self.server.sandbox is not None
        files = read_folder(self.sandbox, self.server.sandbox.max_bytes)
        settle_times(self.sandbox)
        return files


def result_text(result: types.CallToolResult) -> str:
    """What the assistant is shown of a tool result: its content blocks as text, else its structured content."""
    parts = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource: {block.uri}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource: {resource.uri}]")
    if not parts and result.structured_content is not None:
        import json

        parts.append(json.dumps(result.structured_content, sort_keys=True))
    return "\n".join(parts)


class Pool:
    """Workers of one server, lent one call (or one dialogue, for a server with a process per dialogue) at a time."""

    def __init__(self, server: ServerConfig, home: Path, env: dict[str, str], size: int) -> None:
        self.server = server
        self.home = home
        self.env = env
        self.size = size
        self._pid = os.getpid()
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._own: set[Worker] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._started = 0
        self._cond: asyncio.Condition | None = None

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a forked child: the parent's connections are not ours to use or stop
            self._pid, self._idle, self._all, self._own, self._stopping, self._cond = (
                os.getpid(), [], set(), set(), set(), None)

    async def lease(self, prefer: str | None = None) -> Worker:
        """A running worker (one holding sandbox state ``prefer`` if any is idle), started when none is."""
        self._check_fork()
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                self._idle = [w for w in self._idle if not w.dead]
                if self._idle:
                    match = next((w for w in self._idle if prefer is not None and w.loaded == prefer), self._idle[-1])
                    self._idle.remove(match)
                    return match
                if len(self._all) < self.size:
                    break
                await self._cond.wait()
            self._started += 1
            worker = Worker(self.server, self.home, self._started, self.env)
            self._all.add(worker)
        try:
            await worker.start()
        except BaseException:
            await self.release(worker)
            raise
        return worker

    async def dedicated(self) -> Worker:
        """A started worker that is never lent to anyone else (a dialogue's own process); ``retire`` stops it."""
        self._check_fork()
        self._started += 1
        worker = Worker(self.server, self.home, self._started, self.env)
        self._own.add(worker)
        try:
            await worker.start()
        except BaseException:
            self._own.discard(worker)
            raise
        return worker

    async def release(self, worker: Worker) -> None:
        assert self._cond is not None
        async with self._cond:
            if worker.dead:
                self._all.discard(worker)
                self.retire(worker)
            elif worker in self._all:
                self._idle.append(worker)
            self._cond.notify()

    def retire(self, worker: Worker) -> None:
        """Stop ``worker`` in the background (a broken one, or a dialogue's own); ``stop`` waits for it."""
        self._own.discard(worker)
        task = asyncio.get_running_loop().create_task(worker.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        self._check_fork()
        workers, self._idle, self._all, self._own = [*self._all, *self._own], [], set(), set()
        await asyncio.gather(*(w.stop() for w in workers), *list(self._stopping), return_exceptions=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_environment() -> dict[str, str]:
    """What a started process inherits: the SDK's safe list (PATH, HOME ...), never trajforge's whole environment."""
    from mcp.client.stdio import get_default_environment

    return get_default_environment()


def _first_leaf(err: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: what anyio's task groups wrap a failure in."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return err


def _one_line(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(_one_line(e) for e in err.exceptions)
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def new_home() -> Path:
    """A private folder for this process's workers (sandboxes, logs), removed when the process stops them."""
    return Path(tempfile.mkdtemp(prefix="trajforge-mcp-"))
