"""Start an aiohttp application on a host and port; the engine's listening modules share this."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns its runner (to clean up on stop) and the bound port (port 0 picks one)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses: list[Any] = runner.addresses
    return runner, int(addresses[0][1]) if addresses else port
