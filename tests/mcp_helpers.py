"""Configs for the MCP tests: the reference servers ``make mcp-servers`` installs, and our own test servers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas import RunConfig, parse_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "tests" / "mcp" / "node_modules" / "@modelcontextprotocol"
WORKSPACE = ROOT / "examples" / "mcp" / "workspace"
MEMORY = ROOT / "examples" / "mcp" / "memory"
NOTES_SERVER = ROOT / "tests" / "mcp" / "notes_server.py"
FAULTY_SERVER = ROOT / "tests" / "mcp" / "faulty_server.py"


def need_reference_servers() -> None:
    """Skip (or, under ``make test``, fail) when the npm servers are not installed."""
    missing = [p for p in ("server-filesystem", "server-memory") if not (PACKAGES / p / "dist" / "index.js").exists()]
    if missing:
        message = f"MCP reference servers not installed ({', '.join(missing)}): run `make mcp-servers`"
        if os.environ.get("TRAJFORGE_MCP_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)


def fs_server(**extra: Any) -> dict[str, Any]:
    return {"name": "fs", "command": "node", "args": [str(PACKAGES / "server-filesystem/dist/index.js"), "{sandbox}"],
            "sandbox": {"seed": str(WORKSPACE)}, "exclude_tools": ["get_file_info"], **extra}


def memory_server(**extra: Any) -> dict[str, Any]:
    return {"name": "memory", "command": "node", "args": [str(PACKAGES / "server-memory/dist/index.js")],
            "sandbox": {"seed": str(MEMORY)}, "sandbox_env": {"MEMORY_FILE_PATH": "memory.jsonl"}, **extra}


def notes_server(store: str = "{sandbox}/notes.json", **extra: Any) -> dict[str, Any]:
    """Our own server over streamable HTTP, started by the domain on a free port."""
    server = {"name": "notes", "command": sys.executable,
              "args": [str(NOTES_SERVER), "--store", store, "--port", "{port}"], "url": "http://127.0.0.1:{port}/mcp"}
    if "{sandbox}" in store:
        server["sandbox"] = {}
    return {**server, **extra}


def faulty_server(*args: str, **extra: Any) -> dict[str, Any]:
    return {"name": "faulty", "command": sys.executable, "args": [str(FAULTY_SERVER), *args], **extra}


def mcp_config(servers: list[dict[str, Any]], num_tasks: int = 24, shard_size: int = 12, **overrides: Any
               ) -> RunConfig:
    data: dict[str, Any] = {
        "name": "mcp-test", "seed": 3, "num_tasks": num_tasks, "shard_size": shard_size,
        "domain": {"name": "mcp", "params": {"servers": servers}},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "dedup": {"near": {"enabled": False}},
        "runner": {"kind": "thread", "workers": 2},
    }
    data.update(overrides)
    return parse_config(data, "mcp-test")
