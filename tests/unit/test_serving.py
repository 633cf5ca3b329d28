"""The socket `yudai serve` binds before anything starts: answers on a kept-alive connection must not wait for the
client's delayed ACK (Nagle's algorithm off, as asyncio does only for sockets that say TCP); the heap it serves from."""

import asyncio
import gc
import logging
import socket

import uvicorn
from fastapi import FastAPI

from yudai_solver.entry.serving import listening_socket, preload_agent, serve_on


def test_connections_accepted_on_the_served_socket_have_nagle_off():
    listener = listening_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    found: list[int] = []

    async def main() -> None:
        accepted = asyncio.Event()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                accepted.set()

        server = await asyncio.get_running_loop().create_server(Protocol, sock=listener)  # as uvicorn serves it
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(accepted.wait(), 5)
        writer.close()
        server.close()

    asyncio.run(main())
    assert found and found[0] != 0


def test_serving_freezes_what_was_loaded_before_it(monkeypatch):
    """A full collection of the loaded app and agent stack paused every request ~260 ms: what exists when serving
    starts is frozen, out of the collector's sight."""
    seen: list[int] = []

    def run(_server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        seen.append(gc.get_freeze_count())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    listener = listening_socket("127.0.0.1", 0)
    gc.unfreeze()
    try:
        serve_on(FastAPI(), listener)
    finally:
        gc.unfreeze()
        listener.close()

    assert seen and seen[0] > 1000


def test_a_warm_up_that_fails_only_logs_and_the_server_still_serves(monkeypatch, caplog):
    from yudai_solver.execution import mswea

    def broken() -> None:
        raise AttributeError("litellm has no token_counter any more")

    monkeypatch.setattr(mswea, "warm_up", broken)
    with caplog.at_level(logging.WARNING):
        preload_agent()

    assert "could not be done ahead" in caplog.text and "no token_counter" in caplog.text
