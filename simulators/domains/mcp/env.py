"""The ``mcp`` domain: real MCP servers as a stateful environment, each dialogue on its own copy of their state.

``domain: {name: mcp, params: {servers: [...]}}`` starts (or reaches) each
server through the official ``mcp`` SDK when the domain is configured, lists
its tools (named ``server__tool`` when several servers are combined) and
offers them as OpenAI tools; every call runs on the real server, and a
server's error result is the call's ``Error: ...`` result.

State, per server (``ServerConfig.state``):

- ``sandbox``: the server keeps its state in a folder. Every environment
  (``fresh()``) starts from the seed's files and holds its own copy of them as
  data; a call writes that copy into a pooled server's folder, runs, and reads
  the folder back, so no dialogue ever sees another's changes and the state is
  hashed from files trajforge read itself. Blueprints are executed on a fresh
  copy like any other, so ``outcome`` (the final files against the gold
  replay's) and ``required_outputs`` verify MCP dialogues.
- ``tools``: no folder to read, but read tools that dump the state: each
  environment gets a server process of its own, and its state is the dump.
- ``none``: the state is not captured (a server that runs already, or one
  with neither). The domain says so once when it is configured, and the
  ``outcome`` verdict of a dialogue that writes there says that its writes
  were verified by outputs and judges only.

A server that will not start is one line (its command, how it ended, the end
of its stderr) before any work. One that crashes, hangs past ``timeout_s`` or
answers nonsense mid-run raises ``ToolFault``: only the dialogue, blueprint or
check it happened in is rejected (fault ``tool``), and the server is replaced.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from schemas import ToolCall, canonical_json, content_hash
from simulators.domains.mcp.bridge import bridge, on_stop, stop_all
from simulators.domains.mcp.params import MCPParams, ServerConfig
from simulators.domains.mcp.sandbox import Files, SandboxTooLarge, diff, digest, harvest, harvest_json, read_folder
from simulators.environment import (
    DOMAINS,
    ERROR_PREFIX,
    Environment,
    ToolFault,
    ToolSpec,
    compile_validator,
    on_release,
)
from simulators.foreign import CallTool, ForeignTools, entity_of, infer_entities, infer_produces, policy_text
from simulators.tool_specs import SpecError, tool_from_schema, tool_name, writes_by_name

if TYPE_CHECKING:  # the SDK is imported when a domain is configured, not by every run that lists the domains
    import mcp_types as types

    from simulators.domains.mcp.servers import Pool, Worker

SEPARATOR = "__"


@dataclass
class Runtime:
    """What one configured ``mcp`` domain runs on, in this process: its servers' pools and what they said."""

    params: MCPParams
    home: Path
    env: dict[str, dict[str, str]]  # server → variables it is started with (values from our own environment)
    pools: dict[str, Pool] = field(default_factory=dict)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)  # offered name → (server, the server's name)
    base: dict[str, Files] = field(default_factory=dict)
    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # server → entity type → seed values
    blind: dict[str, str] = field(default_factory=dict)  # server whose state is not captured → why
    own: set[weakref.ref] = field(default_factory=set)  # environments' own workers (state_tools servers)
    pid: int = field(default_factory=os.getpid)

    @property
    def servers(self) -> dict[str, ServerConfig]:
        return {s.name: s for s in self.params.servers}

    def pool(self, server: str) -> Pool:
        from simulators.domains.mcp.servers import Pool, new_home

        if os.getpid() != self.pid:  # forked: start this process's own workers, under its own home
            self.pid, self.home, self.pools = os.getpid(), new_home(), {}
            on_stop(self.stop)
        if server not in self.pools:
            config = self.servers[server]
            self.pools[server] = Pool(config, self.home, self.env[server], config.pool_size)
        return self.pools[server]

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.pools.values()), return_exceptions=True)
        shutil.rmtree(self.home, ignore_errors=True)


@DOMAINS.register("mcp")
class MCPEnv(ForeignTools):
    """Base of the per-config classes ``configure`` builds; not usable without servers."""

    Params = MCPParams
    blocking_io = True
    explores = True
    runtime: ClassVar[Runtime | None] = None

    @classmethod
    def configure(cls, params: MCPParams) -> type[Environment]:  # type: ignore[override]
        return _mcp_domain(cls, params.model_dump_json())

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        assert cls.runtime is not None
        return cls.runtime.base

    def __init__(self, seed: int = 0) -> None:
        if self.runtime is None:
            raise ValueError("mcp needs domain.params.servers")
        super().__init__(seed)
        self.db = ServerStates(self.runtime.base)  # type: ignore[assignment]
        self._workers: dict[str, Worker] = {}
        self._finalizer = weakref.finalize(self, _retire, self.runtime, self._workers)

    # -- calls -------------------------------------------------------------------------------------------------
    def _call_sync(self, name: str, arguments: dict[str, Any]) -> str:
        return bridge().call(self._call(name, arguments))

    async def aexecute_call(self, call: ToolCall) -> str:
        checked = self.check_call(call.function.name, call.function.arguments)
        if isinstance(checked, str):
            return checked
        spec, arguments = checked
        return await bridge().acall(self._call(spec.name, arguments))

    async def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """One call on the bridge loop: on a pooled worker holding this environment's files, or on its own."""
        runtime = self.runtime
        assert runtime is not None
        server, tool = runtime.routes[name]
        config = runtime.servers[server]
        if config.state == "tools":
            worker = await self._own_worker(server)
            result = await worker.call(tool, arguments)
            self.db.set(server, await _dump(worker, config))
            return _shown(result)
        pool = runtime.pool(server)
        files = self.db.files(server)
        state = digest(files)
        worker = await pool.lease(prefer=state if config.state == "sandbox" else None)
        try:
            if config.state == "sandbox":
                worker.restore(files, state)
            result = await worker.call(tool, arguments)
            if config.state == "sandbox":
                after = worker.capture()
                worker.loaded = digest(after)
                self.db.set(server, after)
        except SandboxTooLarge as err:
            worker.loaded = None
            raise ToolFault(f"MCP server {server!r}: {tool}: {err}") from None
        finally:
            await pool.release(worker)
        return _shown(result)

    async def _own_worker(self, server: str) -> Worker:
        """This environment's own server process (a server whose state is a dump): started on first use."""
        worker = self._workers.get(server)
        if worker is not None and not worker.dead:
            return worker
        if worker is not None:
            raise ToolFault(f"MCP server {server!r}: the server of this dialogue stopped; its state is lost")
        assert self.runtime is not None
        worker = await self.runtime.pool(server).dedicated()
        self._workers[server] = worker
        return worker

    def close(self) -> None:
        self._finalizer()

    # -- state -------------------------------------------------------------------------------------------------
    def unverified(self, tools: set[str]) -> str | None:
        runtime = self.runtime
        assert runtime is not None
        blind = sorted({runtime.routes[t][0] for t in tools if t in runtime.routes and self.specs()[t].writes}
                       & set(runtime.blind))
        if not blind:
            return None
        return "; ".join(f"state of MCP server {s!r} not captured ({runtime.blind[s]}): its writes are verified by "
                         "outputs and judges only" for s in blind)

    def value_pools(self, tool: str | None = None) -> dict[str, list[str]]:
        """Values found in the seed of the server ``tool`` belongs to (all servers' without a tool)."""
        assert self.runtime is not None
        if tool is None:
            merged: dict[str, set[str]] = {}
            for pools in self.runtime.values.values():
                for key, values in pools.items():
                    merged.setdefault(key, set()).update(values)
            return {k: sorted(v) for k, v in sorted(merged.items())}
        return self.runtime.values.get(self.runtime.routes[tool][0], {})

    def files(self, server: str) -> Files:
        """The state this environment holds for ``server``: its sandbox's files, or its dump."""
        return self.db.files(server)


class ServerStates:
    """Each server's state as data (files, or a dump), against the base every fresh environment starts from.

    Plays the part of ``Tables`` for the base environment: ``diff()`` is what
    ``state_hash`` hashes and what a blueprint's execution records.
    """

    def __init__(self, base: dict[str, Files]) -> None:
        self._base = base
        self._now: dict[str, Files] = {}

    def files(self, server: str) -> Files:
        return self._now.get(server, self._base.get(server, {}))

    def set(self, server: str, files: Files) -> None:
        self._now[server] = files

    def diff(self) -> dict[str, dict[str, Any]]:
        out = {}
        for server, files in sorted(self._now.items()):
            changed = diff(self._base.get(server, {}), files)
            if changed:
                out[server] = changed
        return out

    def diff_json(self) -> str:
        """What ``state_hash`` hashes, as ``Tables.diff_json``: here simply the canonical JSON of ``diff()``."""
        return canonical_json(self.diff())


def _shown(result: Any) -> str:
    return f"{ERROR_PREFIX}{result.text}" if result.is_error else result.text


async def _dump(worker: Worker, config: ServerConfig) -> Files:
    out: Files = {}
    for state_tool in config.state_tools:
        result = await worker.call(state_tool.name, state_tool.arguments)
        if result.is_error:
            raise ToolFault(f"MCP server {config.name!r}: state tool {state_tool.name} failed: {result.text[:200]}")
        out[f"{state_tool.name} {canonical_json(state_tool.arguments)}"] = result.text
    return out


def _retire(runtime: Runtime | None, workers: dict[str, Worker]) -> None:
    """Stop an environment's own server processes without waiting (called from any thread, or at collection)."""
    if runtime is None or not workers:
        return
    stopping = dict(workers)
    workers.clear()

    async def retire() -> None:
        for server, worker in stopping.items():
            runtime.pool(server).retire(worker)
            worker.dead = True

    try:
        loop = bridge().loop
        asyncio.run_coroutine_threadsafe(retire(), loop)
    except RuntimeError:  # interpreter shutting down: the tether stops them
        pass


def _method(name: str):
    def call(self: MCPEnv, **arguments: Any) -> str:
        return self._call_sync(name, arguments)

    call.__name__ = name
    return call


@lru_cache(maxsize=8)
def _mcp_domain(cls: type[MCPEnv], params_json: str) -> type[MCPEnv]:
    """A subclass of ``cls`` for these servers: started, their tools listed, their initial state read, once."""
    from simulators.domains.mcp.servers import StartError, new_home

    params = MCPParams.model_validate_json(params_json)
    env: dict[str, dict[str, str]] = {}
    seeds: dict[str, Files] = {}
    for i, server in enumerate(params.servers):
        where = f"servers[{i}] ({server.name})"
        missing = [v for v in [*server.env, *server.headers.values()] if v not in os.environ]
        if missing:
            raise ValueError(f"{where}: environment variable {missing[0]} is not set (the server gets it by name)")
        env[server.name] = {v: os.environ[v] for v in server.env}
        if server.sandbox is not None:
            seeds[server.name] = _read_seed(server, where)
    runtime = Runtime(params=params, home=new_home(), env=env)
    on_stop(runtime.stop)
    try:
        listed, dumps = bridge().call(_probe(runtime, seeds))
    except StartError as err:
        bridge().call(runtime.stop())
        index = next((i for i, s in enumerate(params.servers) if f"server {s.name!r} " in str(err)), 0)
        raise ValueError(f"servers[{index}]: {err}") from None
    runtime.base = {**seeds, **dumps}
    specs, outputs = _specs(runtime, listed)
    for server in params.servers:
        values: dict[str, set[str]] = {}
        found = [harvest(seeds[server.name])] if server.name in seeds else \
            [harvest_json(text) for text in dumps.get(server.name, {}).values()]
        for pools in found:
            for key, vals in pools.items():
                values.setdefault(entity_of(key), set()).update(vals)
        runtime.values[server.name] = {k: sorted(v) for k, v in sorted(values.items())}
    for spec in specs.values():  # entity types named as the data names them (``entityNames`` → ``name``)
        known = frozenset(runtime.values[runtime.routes[spec.name][0]])
        spec.entities = infer_entities(spec.schema.function.parameters, known)
        spec.produces = infer_produces(set(spec.entities.values()), outputs[spec.name], spec.writes, known)
    for server in params.servers:
        if server.state == "none":
            runtime.blind[server.name] = ("a server trajforge does not start" if server.command is None else
                                          "no sandbox and no state_tools")
            writes = sorted(t for t, (s, _) in runtime.routes.items() if s == server.name and specs[t].writes)
            # written, not printed: inside a flow Prefect turns print into a wrapped log record; this stays one line
            sys.stderr.write(f"mcp: the state of server {server.name!r} is not captured ({runtime.blind[server.name]});"
                             f" dialogues that call its writes ({', '.join(writes) or 'none'}) are verified by outputs"
                             " and judges only\n")
    sub = type(f"MCP_{content_hash(params_json, 8)}", (cls,), {
        "__module__": cls.__module__, "params": params, "runtime": runtime, "rules": params.policy,
        "policy": policy_text(params.policy, [n for n, s in specs.items() if s.writes]),
        "user_knows": frozenset(e for s in specs.values() for e in s.consumes),
        "intents": {f"call_{n}": CallTool(n, s.schema.function.description, s.writes) for n, s in specs.items()},
    })
    sub._specs = specs
    return sub


on_release(stop_all)


def _read_seed(server: ServerConfig, where: str) -> Files:
    assert server.sandbox is not None
    if server.sandbox.seed is None:
        return {}
    seed = Path(server.sandbox.seed)
    if not seed.is_dir():
        raise ValueError(f"{where}: sandbox.seed: no such folder {seed}")
    try:
        return read_folder(seed, server.sandbox.max_bytes)
    except SandboxTooLarge as err:
        raise ValueError(f"{where}: sandbox.seed {seed}: {err}") from None


async def _probe(runtime: Runtime, seeds: dict[str, Files]) -> tuple[dict[str, list[types.Tool]], dict[str, Files]]:
    """Start one worker per server (all at once), list its tools, dump the state of a ``state_tools`` server."""

    from simulators.domains.mcp.servers import StartError

    async def one(server: ServerConfig) -> tuple[list[types.Tool], Files | None]:
        pool = runtime.pool(server.name)
        worker = await pool.lease()
        try:
            if server.sandbox is not None:
                worker.restore(seeds[server.name], digest(seeds[server.name]))
            tools = await worker.list_tools()
            dump = await _dump(worker, server) if server.state == "tools" else None
        except ToolFault as err:
            worker.dead = True
            raise StartError(f"server {server.name!r} ({server.shown()}) {err}") from None
        except TimeoutError:
            worker.dead = True
            raise StartError(f"server {server.name!r} ({server.shown()}) did not list its tools within "
                             f"{server.timeout_s:g}s") from None
        finally:
            if server.state == "tools":
                worker.dead = True  # its dump is the base; each dialogue gets a process of its own
            await pool.release(worker)
        return tools, dump

    results = await asyncio.gather(*(one(s) for s in runtime.params.servers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    listed = {s.name: r[0] for s, r in zip(runtime.params.servers, results, strict=True)}  # type: ignore[index]
    dumps = {s.name: r[1] for s, r in zip(runtime.params.servers, results, strict=True) if r[1] is not None}  # type: ignore[index]
    return listed, dumps


def _specs(runtime: Runtime, listed: dict[str, list[types.Tool]]
           ) -> tuple[dict[str, ToolSpec], dict[str, dict[str, Any] | None]]:
    """The servers' tools as tool specs under the names the assistant is offered, and their output schemas."""
    params = runtime.params
    specs: dict[str, ToolSpec] = {}
    outputs: dict[str, dict[str, Any] | None] = {}
    for i, server in enumerate(params.servers):
        where = f"servers[{i}] ({server.name})"
        tools = {t.name: t for t in listed[server.name]}
        for key, names in (("tools", server.tools or []), ("exclude_tools", server.exclude_tools),
                           ("writes", list(server.writes))):
            unknown = [n for n in names if n not in tools]
            if unknown:
                raise ValueError(f"{where}: {key}: the server has no tool {unknown[0]!r}; it has "
                                 f"{', '.join(sorted(tools))}")
        for state_tool in server.state_tools:
            if state_tool.name not in tools:
                raise ValueError(f"{where}: state_tools: the server has no tool {state_tool.name!r}")
        chosen = [t for n, t in tools.items() if (server.tools is None or n in server.tools)
                  and n not in server.exclude_tools]
        if not chosen:
            raise ValueError(f"{where}: no tools left to offer")
        for tool in chosen:
            name = _offered_name(server.name, tool.name, params.namespaced)
            if name in specs:
                raise ValueError(f"{where}: tool {tool.name!r} is offered as {name!r}, a name already taken; "
                                 "set namespace: true")
            parameters = {k: v for k, v in tool.input_schema.items() if k != "$schema"}
            try:
                schema = tool_from_schema(name, tool.description or tool.title or "", parameters, where,
                                          f"/tools/{tool.name}")
            except SpecError as err:
                raise ValueError(str(err)) from None
            hint = tool.annotations.read_only_hint if tool.annotations is not None else None
            writes = server.writes.get(tool.name, (not hint) if hint is not None else writes_by_name(tool.name))
            spec = ToolSpec(name=name, method=_method(name), schema=schema, writes=writes, entities={},
                            produces=frozenset(), validator=compile_validator(schema.function.parameters))
            specs[name] = spec
            outputs[name] = tool.output_schema
            runtime.routes[name] = (server.name, tool.name)
    return specs, outputs


def _offered_name(server: str, tool: str, namespaced: bool) -> str:
    name = f"{server}{SEPARATOR}{tool_name(tool)}" if namespaced else tool_name(tool)
    return name if len(name) <= 64 else f"{name[:55]}_{content_hash(name, 8)}"
