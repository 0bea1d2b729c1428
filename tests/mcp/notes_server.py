"""A small MCP server of our own, on the official SDK's ``MCPServer`` (FastMCP's successor), over streamable HTTP.

Notes kept in one JSON file (``--store``; ``:memory:`` keeps them in the process), so trajforge can give each dialogue a
fresh copy of it in a sandbox (``{sandbox}/notes.json``) when it starts the
server, or reach one that runs already at its URL (then nothing isolates or
captures its state). ``save_note`` overwrites, so repeating a call is safe.

    python tests/mcp/notes_server.py --store NOTES.json --port P
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

READ = ToolAnnotations(read_only_hint=True)


def build(store: Path | None) -> MCPServer:
    """The server; ``store`` None keeps the notes in memory (state only its own tools can show)."""
    app = MCPServer("notes", instructions="Short notes, each under a title.", log_level="WARNING")
    memory: dict[str, str] = {}

    def load() -> dict[str, str]:
        if store is None:
            return dict(memory)
        return json.loads(store.read_text()) if store.exists() else {}

    def save(notes: dict[str, str]) -> None:
        if store is None:
            memory.clear()
            memory.update(notes)
        else:
            partial = store.with_name(f"{store.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_text(json.dumps(notes, indent=1, sort_keys=True))
            partial.replace(store)  # atomic: a dialogue reading while another writes sees one or the other

    @app.tool(annotations=READ)
    def list_notes() -> str:
        """The titles of all notes, one per line."""
        return "\n".join(sorted(load())) or "(no notes)"

    @app.tool(annotations=READ)
    def read_note(title: str) -> str:
        """The text of the note with this title."""
        notes = load()
        if title not in notes:
            raise ToolError(f"no note titled {title!r}")
        return notes[title]

    @app.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True))
    def save_note(title: str, text: str) -> str:
        """Save a note under a title (replacing a note of that title)."""
        notes = load()
        notes[title] = text
        save(notes)
        return f"saved {title!r}"

    @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def delete_note(title: str) -> str:
        """Delete the note with this title."""
        notes = load()
        if notes.pop(title, None) is None:
            raise ToolError(f"no note titled {title!r}")
        save(notes)
        return f"deleted {title!r}"

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the notes file, or :memory:")
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    build(None if args.store == ":memory:" else Path(args.store)).run("streamable-http", host="127.0.0.1",
                                                                      port=args.port)


if __name__ == "__main__":
    main()
