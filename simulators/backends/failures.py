"""A failed connection in the words a user acts on: refused, timed out, cannot resolve, reset.

HTTP clients blur these (the ``openai`` SDK's aiohttp transport reported a
refused connection as ``ConnectTimeout``, so a dead server's dialogues read
"request timed out"); the cause chain still holds the
``ConnectionRefusedError`` or the socket timeout, and this reads it.
"""

from __future__ import annotations

import errno
import socket


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = err
    while seen is not None and len(out) < 12 and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def describe_connection_error(err: BaseException, timeout_s: float | None = None) -> str:
    chain = _chain(err)
    names = {type(e).__name__ for e in chain}
    after = f" after {timeout_s:g}s" if timeout_s else ""
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED for e in chain):
        return "connection refused (is the server running, on this port?)"
    if any(isinstance(e, socket.gaierror) for e in chain) or any("Name or service not known" in str(e) for e in chain):
        return "cannot resolve the host name"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "ServerDisconnectedError" in names:
        return "the server closed the connection"
    if "ConnectTimeout" in names or "ConnectionTimeoutError" in names:
        return f"timed out connecting{after}"
    if names & {"ReadTimeout", "TimeoutException", "APITimeoutError", "TimeoutError", "SocketTimeoutError",
                "ServerTimeoutError", "WriteTimeout", "PoolTimeout"}:
        return f"timed out waiting for an answer{after}"
    text = str(chain[-1]).strip().splitlines()
    return f"connection error: {type(chain[-1]).__name__}" + (f": {text[0][:160]}" if text else "")
