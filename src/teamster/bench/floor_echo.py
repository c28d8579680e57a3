"""Echo servers with no teamster code, for the machine's floor: `python -m teamster.bench.floor_echo raw|ws PORT`."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from aiohttp import web

from teamster.app.run import run


async def raw_echo(port: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", port)
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


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        run(raw_echo(port) if mode == "raw" else ws_echo(port))


if __name__ == "__main__":
    main()
