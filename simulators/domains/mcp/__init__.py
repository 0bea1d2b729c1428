"""The ``mcp`` domain: tools of real MCP servers, each dialogue on its own copy of their state."""

from simulators.domains.mcp.env import MCPEnv
from simulators.domains.mcp.params import MCPParams, ServerConfig

__all__ = ["MCPEnv", "MCPParams", "ServerConfig"]
