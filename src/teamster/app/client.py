"""The CLI's side of the run API (docs/api.md): JSON requests, Server-Sent Events, and one-line errors.

Base URL from `--url` or `TEAMSTER_API` (default http://127.0.0.1:3111), bearer token from
`TEAMSTER_TOKEN`. Every failure is a `UserError` that says what to do: the server is not running,
the token is wrong, or the server's own `error` text.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from types import TracebackType
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import aiohttp
import typer
from pydantic import BaseModel, ValidationError

from teamster.app.output import UserError

DEFAULT_API = "http://127.0.0.1:3111"
SERVER_FAULT = 1  # exit status when teamster itself failed (5xx), not the request
RESUME_S = 0.5  # pause before reopening an event stream that closed while its run goes on
M = TypeVar("M", bound=BaseModel)


class ApiClient:
    """One HTTP session against a teamster run API; use as `async with ApiClient(url) as api`."""

    def __init__(self, url: str = DEFAULT_API, token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--url: {url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("TEAMSTER_TOKEN") or None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # No overall deadline: an event stream stays open as long as its run; a silent socket is a dead one.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ApiClient in `async with`")
        return self._session

    async def get(self, path: str, reply: type[M], **params: Any) -> M:
        """GET `path` with the non-None `params` as the query, parsed as `reply`."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        return _parse(reply, await self.request("GET", path, params=query))

    async def post(self, path: str, reply: type[M], body: dict[str, Any] | None = None) -> M:
        return _parse(reply, await self.request("POST", path, json_body=body or {}))

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json_body: Any = None
    ) -> Any:
        """The reply's JSON, or its text when it is not JSON (the HTML export)."""
        try:
            async with self.session.request(method, self.url + path, params=params, json=json_body) as reply:
                body = await reply.read()
                if reply.status >= 400:
                    raise _refused(reply.status, body, self.url)
                if reply.content_type == "application/json":
                    return json.loads(body)
                return body.decode(reply.charset or "utf-8")
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None

    async def events(self, run_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The run's events after `after` as they happen (Server-Sent Events), ending with its terminal one.

        A stream that drops early is resumed from the last event seen; it ends for good once the run
        is no longer running.
        """
        from teamster.patterns.events import TERMINAL  # imported late: the patterns package is slow to load

        while True:
            async with aclosing(self._stream(run_id, after)) as stream:
                async for event in stream:
                    yield event
                    after = event["seq"]
                    if event["type"] in TERMINAL:
                        return
            state = await self.request("GET", path("runs", run_id))
            if state.get("status") != "running":
                return
            await asyncio.sleep(RESUME_S)

    async def _stream(self, run_id: str, after: int) -> AsyncGenerator[dict[str, Any], None]:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        try:
            async with self.session.get(self.url + path("runs", run_id, "events"), headers=headers) as reply:
                if reply.status >= 400:
                    raise _refused(reply.status, await reply.read(), self.url)
                data: list[str] = []
                async for raw in reply.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line and data:  # a blank line ends a frame
                        yield json.loads("\n".join(data))
                        data = []
        except aiohttp.ClientPayloadError:
            return  # the connection dropped mid-stream: the caller resumes
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: aiohttp.ClientError) -> UserError:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UserError(f"cannot reach teamster at {self.url}: start it with `teamster up` or pass --url")
        if isinstance(exc, aiohttp.InvalidURL):
            return UserError(f"--url: {self.url!r} is not a valid URL")
        return UserError(f"teamster at {self.url} failed to answer ({type(exc).__name__}: {exc}); try again")


def path(*segments: str) -> str:
    """An API path from its segments, each quoted: an id is never read as more of the path."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


def _refused(status: int, body: bytes, url: str) -> UserError:
    if status == 401:
        return UserError("unauthorized: set TEAMSTER_TOKEN to the server's token")
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return UserError(f"{url} answered HTTP {status} without a teamster error: is --url a teamster server?")
    return UserError(message, SERVER_FAULT if status >= 500 else 2)


def _parse(reply: type[M], data: Any) -> M:
    try:
        return reply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(
            f"unexpected reply from teamster ({where}: {first['msg']}): is the server the same version?",
            SERVER_FAULT,
        ) from None


Url = Annotated[
    str, typer.Option("--url", envvar="TEAMSTER_API", help="The teamster server's URL (token: env TEAMSTER_TOKEN).")
]
