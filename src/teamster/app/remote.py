"""Reaching an engine from a CLI command over WebSocket: fail at once when nothing listens, else a connected worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from teamster.app.output import UserError
from teamster.sdk import Worker
from teamster.sdk.websocket import HandshakeError
from teamster.sdk.worker import DEFAULT_URL

DEFAULT_ENGINE = DEFAULT_URL
CONNECT_WAIT_S = 10.0
PROBE_S = 3.0


@asynccontextmanager
async def connected(worker: Worker, url: str) -> AsyncIterator[Worker]:
    """`worker` connected to the engine at `url` for the block; a UserError naming the fix when it cannot be."""
    await _probe(url)
    # The command acts for the person at the terminal (a run's approval mode, its budget): with the
    # operator's credential it gets the `admin` role; with TEAMSTER_TOKEN alone, a worker's.
    admin = os.environ.get("TEAMSTER_ADMIN_TOKEN")
    try:
        await worker.open(url, wait=CONNECT_WAIT_S, headers={"Authorization": f"Bearer {admin}"} if admin else None)
    except HandshakeError as exc:  # it is running, and said no: starting one is not the fix
        raise UserError(str(exc)) from None
    except ConnectionError as exc:
        raise UserError(f"{exc}: start it with `teamster up` or pass --engine-url") from None
    try:
        yield worker
    finally:
        await worker.close()


async def _probe(url: str) -> None:
    """One TCP connect, so a wrong URL fails now rather than after the worker's reconnect backoff."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UserError(f"--engine-url: {url!r} is not a ws:// or wss:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), PROBE_S)
    except (OSError, TimeoutError, ValueError):
        raise UserError(f"cannot reach the engine at {url}: start it with `teamster up` or pass --engine-url") from None
    writer.close()
