"""An MCP stdio server that misbehaves on purpose, written against the protocol itself (no SDK, so it can lie).

It answers ``initialize`` and ``tools/list`` properly. Its tools work until the
file named by ``$FAULTY_ARM`` exists; from then on ``crash_item`` exits the
process, ``stall_item`` never answers, ``garble_item`` answers with a result
that is not a tool result. ``check_item`` always works, ``refuse_item`` always
answers with an error result (a tool error, which the assistant sees).

    python tests/mcp/faulty_server.py [--die-at-start]
"""

from __future__ import annotations

import json
import os
import sys
import time

TOOLS = [
    {"name": name, "description": f"{verb} an item of the inventory.", "annotations": {"readOnlyHint": read},
     "inputSchema": {"type": "object", "properties": {"item": {"type": "string", "enum": ["apple", "pear", "fig"]}},
                     "required": ["item"]}}
    for name, verb, read in [("check_item", "Check", True), ("crash_item", "Restock", False),
                             ("stall_item", "Reprice", False), ("garble_item", "Relabel", False),
                             ("refuse_item", "Recall", False)]
]


def armed() -> bool:
    return bool(os.environ.get("FAULTY_ARM")) and os.path.exists(os.environ["FAULTY_ARM"])


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    if "--die-at-start" in sys.argv:
        print("boom: cannot open the inventory database", file=sys.stderr, flush=True)
        sys.exit(4)
    for line in sys.stdin:
        request = json.loads(line)
        rid, method, params = request.get("id"), request.get("method"), request.get("params") or {}
        if rid is None:
            continue  # a notification
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
                "serverInfo": {"name": "faulty", "version": "1"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            name, item = params["name"], params.get("arguments", {}).get("item")
            if name == "crash_item" and armed():
                os._exit(3)
            if name == "stall_item" and armed():
                time.sleep(3600)
            if name == "garble_item" and armed():
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list of blocks"}})
                continue
            error = name == "refuse_item"
            text = f"{item} cannot be recalled" if error else f"{name} {item}: ok"
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}],
                                                          "isError": error}})
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})


if __name__ == "__main__":
    main()
