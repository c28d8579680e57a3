"""Servers with no teamster code, for the machine's floor.

`python -m teamster.bench.floor_echo raw|ws|block PORT` echoes; `... relay PORT ECHO_PORT` pipes each
connection through to the echo on ECHO_PORT, the engine's place in the path with nothing done there.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

from aiohttp import web

from teamster.app.run import run


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)


async def raw_echo(port: int) -> None:
    server = await asyncio.start_server(copy, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


async def relay(port: int, echo_port: int) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echo_reader, echo_writer = await asyncio.open_connection("127.0.0.1", echo_port)
        await asyncio.gather(copy(reader, echo_writer), copy(echo_reader, writer))

    server = await asyncio.start_server(pipe, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


async def ws_echo(port: int) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def blocking_echo(port: int) -> None:
    """One connection, plain blocking calls and no event loop: what the kernel and the machine charge."""
    with socket.create_server(("127.0.0.1", port)) as server:
        print("ready", flush=True)
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(65536):
                conn.sendall(data)


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        if mode == "block":
            blocking_echo(port)
        elif mode == "relay":
            run(relay(port, int(sys.argv[3])))
        else:
            run(raw_echo(port) if mode == "raw" else ws_echo(port))


if __name__ == "__main__":
    main()
