"""The socket `yudai serve` binds before anything starts: answers on a kept-alive connection must not wait for the
client's delayed ACK (Nagle's algorithm off, as asyncio does only for sockets that say TCP)."""

import asyncio
import socket

from yudai_solver.entry.serving import listening_socket


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
