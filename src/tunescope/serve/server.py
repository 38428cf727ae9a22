"""Start the dashboard: check the options, open the registry read-only, bind the socket, say where it is,
then hand the socket to uvicorn.

The socket is bound here rather than by uvicorn so that a port in use, a port that needs privileges or a
host that does not resolve is one line and exit code 2 before anything starts, and so that `--port 0`
(any free port) can print the port it got.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tunescope.core.errors import UserError
from tunescope.serve.run_index import RunIndex
from tunescope.serve.security import LOCAL_HOSTS
from tunescope.store import registry as run_registry

DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"
DEFAULT_RUNS_DIR = "runs"  # the config's default output_dir


def parse_port(text: str | int) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UserError(f"'{text}' is not a port: give a number from 1 to 65535 (0 picks any free port)",
                        where="--port")
    return port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a UserError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UserError(f"cannot listen on host '{host}' ({e.strerror})", where="--host") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use; pick another with --port (0: any free "
                            "port)", where="--port") from None
        if e.errno == errno.EACCES:
            raise UserError(f"not allowed to listen on port {port} (ports below 1024 need privileges)",
                            where="--port") from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})", where="--host") from None
    sock.set_inheritable(True)
    return sock


def address_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def prepare(*, host: str = DEFAULT_HOST, port: str | int = DEFAULT_PORT, token: str | None = None,
            runs_dir: str | Path | None = None, registry: str | Path | None = None,
            warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
            ) -> tuple[socket.socket, RunIndex, str]:
    """Check everything that can fail and bind: (socket, index, the address to open)."""
    number = parse_port(port)
    local = host in LOCAL_HOSTS
    if token is not None and not token.strip():
        raise UserError("the token is empty", where="--token")
    if not local and not token:
        raise UserError(f"--host {host} lets other machines reach your runs; it needs --token SECRET "
                        "(every browser must then present it)", where="--host")
    path = run_registry.registry_path(registry)
    run_registry.connect_read_only(path).close()  # missing or unreadable: one line now, not on the first page
    if runs_dir is not None and not Path(runs_dir).is_dir():
        raise UserError("not a folder", where=f"--runs-dir {runs_dir}")
    folders = [Path(runs_dir if runs_dir is not None else DEFAULT_RUNS_DIR).resolve()]
    index = RunIndex(path, folders)
    sock = bind(host, number)
    if not local:
        warn(f"warning: serving on {host}, reachable from other machines; only browsers with the token get "
             "in. Traffic is not encrypted: use it on a network you trust, or behind an HTTPS proxy.")
    address = address_of(sock, host)
    return sock, index, address + (f"?token={token}" if token else "")


def serve(*, announce: Callable[[str], None] = lambda line: print(line, flush=True), **options) -> None:
    """Run the dashboard until interrupted (Ctrl-C)."""
    import uvicorn

    from tunescope.serve.app import build_app

    host = options.get("host", DEFAULT_HOST)
    sock, index, address = prepare(**options)
    # The registry is read once in the background, so the first page is quick and startup is not held up.
    threading.Thread(target=warm, args=(index,), daemon=True).start()
    app = build_app(index, token=options.get("token"), local_only=host in LOCAL_HOSTS)
    announce(f"tunescope serve: {address}  (registry {index.registry}; Ctrl-C stops it)")
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def warm(index: RunIndex) -> None:
    try:
        index.refresh()
    except UserError:  # shown on the pages that need the registry
        pass
