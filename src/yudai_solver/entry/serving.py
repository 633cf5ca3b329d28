"""Serving the API in the foreground on a socket bound first, so a busy port fails before anything starts (uvicorn
alone runs the application's start-up, says "Application startup complete", and only then finds the port taken)."""

import errno
import gc
import logging
import socket

import uvicorn
from fastapi import FastAPI

from yudai_solver.base.errors import YudaiError
from yudai_solver.entry.logs import configure_logging, uvicorn_log_config

_BACKLOG = 2048  # uvicorn's own
_HINTS = {
    errno.EADDRINUSE: "another server listens there: stop it, or choose another --port",
    errno.EACCES: "ports below 1024 need privileges: choose another --port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address: check --host",
}


class CannotListen(YudaiError):
    """The address cannot be listened on."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port; CannotListen saying why (a port in use, an address not of this machine)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError) as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc}; check --host") from None
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say TCP, and
    # with it on, every response on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        hint = _HINTS.get(exc.errno or 0, "check --host and --port")
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None
    return sock


def serve_on(app: FastAPI, sock: socket.socket, log_format: str = "text") -> None:
    """Serve `app` on the bound socket until Ctrl-C or SIGTERM, logging in `log_format` (see `logs`)."""
    host, port = sock.getsockname()[:2]  # only for uvicorn's "running on" line
    configure_logging(log_format)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", log_config=uvicorn_log_config(log_format))
    # What is loaded by now (the app, the agent stack) lives as long as the process: frozen, it is out of the
    # collector's sight. Otherwise every full collection walks it all: ~500,000 objects, a ~260 ms pause of every
    # request here (the GIL is held throughout), seen as 300 ms outliers among 5 ms status reads.
    gc.freeze()
    uvicorn.Server(config).run(sockets=[sock])


def preload_agent() -> None:
    """Import the agent stack (litellm, mini-swe-agent) before the first request, in a process that runs agents:
    imported by its first run instead, the import (~4 s of CPU here) competes with the requests of that moment.
    What litellm loads on first use is loaded too (see `warm_up`)."""
    import yudai_solver.execution.agent  # noqa: F401 - for its imports
    from yudai_solver.execution.mswea import warm_up

    try:
        warm_up()
    except Exception:  # only a head start: a litellm that changed its ways must not keep the server from serving
        logging.getLogger(__name__).warning("litellm's first-use loads could not be done ahead", exc_info=True)


def url_of(host: str, port: int) -> str:
    """The base URL a client uses for a server listening on host:port (a wildcard address means this machine)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"
