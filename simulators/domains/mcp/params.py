"""The ``mcp`` domain's parameters: which servers, how each is reached, and how its state is kept and read.

Secrets never enter a config: a server gets environment variables and HTTP
headers by *name* (``env: [GITHUB_TOKEN]``, ``headers: {Authorization:
MY_TOKEN}``), read from trajforge's own environment when the server starts, so
the values are in no manifest, row or log. The config itself is stored with
every version, as any run config is.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.environment import DomainParams
from simulators.foreign import ForeignPolicy

MiB = 1 << 20
SERVER_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEMPLATES = ("{sandbox}", "{port}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxConfig(_Strict):
    """A folder the server keeps its state in: a fresh copy of ``seed`` for every dialogue, hashed after each call."""

    seed: str | None = Field(default=None, description="a folder whose files every dialogue starts from "
                             "(relative to the working directory); none: an empty sandbox")
    root: str = Field(default="/sandbox", pattern=r"^/[^{}]*$",
                      description="the sandbox's path as the assistant sees it in arguments and results")
    max_bytes: int = Field(default=16 * MiB, ge=1, description="the most a sandbox may hold (a state is kept per "
                           "dialogue step)")


class StateTool(_Strict):
    """A read tool of the server whose result is (part of) its state: a dump through the server's own tools."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ServerConfig(_Strict):
    """One MCP server: started by ``command`` (stdio, or HTTP at ``url`` once started), or reached at ``url``."""

    name: str = Field(pattern=SERVER_NAME, description="the server's name; the prefix of its tools' names when "
                      "several servers are combined (``fs__read_file``)")
    command: str | None = Field(default=None, description="the executable that starts the server")
    args: list[str] = Field(default_factory=list, description="its arguments; {sandbox} is the sandbox's real "
                            "path, {port} a free loopback port (an HTTP server trajforge starts)")
    url: str | None = Field(default=None, description="the server's streamable HTTP (or SSE) endpoint; with "
                            "`command`, where the started server listens ({port})")
    transport: Literal["stdio", "http", "sse"] | None = Field(
        default=None, description="default: stdio with `command` alone, http with `url`")
    env: list[str] = Field(default_factory=list, description="names of environment variables passed to the "
                           "server process from trajforge's own (values are never written anywhere)")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP header → name of the environment "
                                    "variable holding its value")
    sandbox: SandboxConfig | None = Field(default=None, description="where the server keeps its state: a fresh "
                                          "copy per dialogue, its files hashed for verification")
    sandbox_env: dict[str, str] = Field(default_factory=dict, description="environment variable → a path inside "
                                        "the sandbox (MEMORY_FILE_PATH: memory.jsonl)")
    state_tools: list[StateTool] = Field(default_factory=list, description="without a sandbox: read tools whose "
                                         "results are the state; each dialogue then gets a server process of "
                                         "its own")
    tools: list[str] | None = Field(default=None, description="only these tools of the server (default: all)")
    exclude_tools: list[str] = Field(default_factory=list, description="tools left out")
    writes: dict[str, bool] = Field(default_factory=dict, description="tool → whether it writes, over the "
                                    "server's readOnlyHint and the name heuristic")
    timeout_s: float = Field(default=30, gt=0, description="per call: a server that takes longer has hung")
    start_timeout_s: float = Field(default=60, gt=0, description="to start and answer `initialize`")
    pool_size: int = Field(default=2, ge=1, le=64, description="server processes run at once (each serves "
                           "one call at a time)")

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        transport = self.kind
        if self.command is None and self.url is None:
            raise ValueError("give `command` (a server trajforge starts) or `url` (one that runs already)")
        if transport == "stdio" and self.url is not None:
            raise ValueError("transport stdio talks over the process's stdin/stdout; leave `url` out")
        if transport == "stdio" and self.command is None:
            raise ValueError("transport stdio needs `command`")
        if transport != "stdio" and self.url is None:
            raise ValueError(f"transport {transport} needs `url`")
        if transport == "stdio" and self.headers:
            raise ValueError("headers: only for http and sse servers")
        for key in ("{port}",):
            used = any(key in a for a in self.args) or key in (self.url or "")
            if used and (self.command is None or transport == "stdio"):
                raise ValueError(f"{key} is for an HTTP server trajforge starts (`command` with `url`)")
        for name in [*self.env, *self.headers.values(), *self.sandbox_env]:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        if self.command is None and (self.sandbox or self.state_tools or self.env or self.sandbox_env):
            raise ValueError("sandbox, state_tools, env and sandbox_env need a server trajforge starts (`command`): "
                             "a server that runs already can be neither reset nor read without trusting it")
        if self.sandbox is None and (self.sandbox_env or any("{sandbox}" in a for a in self.args)):
            raise ValueError("{sandbox} and sandbox_env need `sandbox`")
        if self.sandbox is not None and self.state_tools:
            raise ValueError("give a sandbox or state_tools, not both: the sandbox is the state")
        for var, inside in self.sandbox_env.items():
            if inside.startswith("/") or ".." in inside.split("/"):
                raise ValueError(f"sandbox_env.{var}: a path inside the sandbox, relative, without '..'")
        return self

    @property
    def kind(self) -> str:
        return self.transport or ("stdio" if self.url is None else "http")

    @property
    def state(self) -> str:
        """How this server's state is kept: ``sandbox`` (files), ``tools`` (a dump), or ``none``."""
        return "sandbox" if self.sandbox is not None else "tools" if self.state_tools else "none"

    def shown(self) -> str:
        """The server as one short phrase for messages: its command line or its URL (never a variable's value)."""
        if self.command is not None:
            return "`" + " ".join([self.command, *self.args]) + "`"
        return str(self.url)


class MCPParams(DomainParams):
    servers: list[ServerConfig] = Field(min_length=1)
    namespace: bool | None = Field(default=None, description="prefix tool names with the server's name "
                                   "(default: when there is more than one server)")
    policy: ForeignPolicy = Field(default_factory=ForeignPolicy, description="the rules the policy filter checks")

    @model_validator(mode="after")
    def _unique(self) -> MCPParams:
        seen: set[str] = set()
        for server in self.servers:
            if server.name in seen:
                raise ValueError(f"servers: the name {server.name!r} is used twice")
            seen.add(server.name)
        return self

    @property
    def namespaced(self) -> bool:
        return self.namespace if self.namespace is not None else len(self.servers) > 1
