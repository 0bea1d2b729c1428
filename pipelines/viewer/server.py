"""``trajforge view DIR``: check the dataset, bind 127.0.0.1, serve until Ctrl-C.

Everything a user can get wrong (not a dataset, an unknown version, a port
in use) is found before serving and raised as one line (a ``DatasetError`` for the
dataset, a ``ConfigError`` for ``--port``), so the command exits 2 without
starting anything. The socket is bound here, not
by uvicorn, for that reason, and always on 127.0.0.1: the pages show every
row of the dataset, so they are not offered to the network; ``--allow-host``
only widens which Host headers are answered (a tunnel or proxy that names
this machine).
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

from schemas import ConfigError

HOST = "127.0.0.1"


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 whose connections are sent without Nagle's delay.

    ``IPPROTO_TCP`` is named, not left at 0: accepted sockets inherit it, and asyncio sets ``TCP_NODELAY`` only
    on a socket that says it is TCP. Without it the response body (written after its headers) waits for the
    client's delayed ACK: ~40 ms on every keep-alive request after the first (uvicorn#3149), which is what an RL
    trainer's ``/step`` loop pays per call.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: already in use on {HOST}; give another (--port 0 picks a free one)") from None
        raise ConfigError(f"--port {port}: cannot listen on {HOST}: {err.strerror}") from None
    sock.listen(128)
    return sock


def serve(root: str | Path, version: int | None = None, port: int = 8765, allow_hosts: tuple[str, ...] = ()) -> int:
    import uvicorn

    from pipelines.viewer.app import create_app
    from pipelines.viewer.query import Dataset

    dataset = Dataset(Path(root))
    versions = dataset.versions()  # or a one-line ViewError (a DatasetError): not a dataset, damaged, no such version
    shown = dataset.manifest(version).version if version is not None else versions[-1].version
    sock = bind(port)
    app = create_app(root, version, allow_hosts)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    pinned = "" if version is not None else " (the newest; later commits appear as they land)"
    print(f"trajforge view: {root}, version {shown}{pinned}, {len(versions)} version(s)\n  open {url}  (Ctrl-C stops)",
          flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return 0
