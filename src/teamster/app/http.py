"""Routes of the run API as `http` triggers: decoding a request once, errors, SSE.

Each `Route` is one function `app::<name>` bound to one method and path. The engine checks the bearer
token before it calls the function (every route but the `public` ones, which the trigger config
declares), then hands it the request (`path_params`, `query_params`, `headers`, `body`, and the
response channel); `serve` validates the query and body against the route's models, runs the handler
and shapes what it returns — a model, a `Reply`, or `STREAMED` when the handler wrote the response
channel itself (SSE).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from teamster.app.errors import ApiError
from teamster.protocol import InvocationError
from teamster.protocol.access import mark
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

log = logging.getLogger("teamster.app")

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}
STREAMED = object()  # a handler's return: the response went out on the channel


@dataclass(slots=True)
class Request:
    params: dict[str, str]
    query: Any
    body: Any
    headers: dict[str, str]
    response: dict[str, Any] | None  # the response channel's writer ref

    def accepts_sse(self) -> bool:
        return "text/event-stream" in self.headers.get("accept", "")


@dataclass(slots=True)
class Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # engine syntax: `runs/:run_id/events`
    name: str  # the function is `app::<name>`
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    reply: type[BaseModel] | None = None
    status: int = 200
    public: bool = False  # the engine serves it without the token: health and the playground's static files
    media: str = "application/json"
    streams: bool = False  # may answer with Server-Sent Events
    header_params: tuple[tuple[str, str], ...] = ()  # (name, description) of optional request headers it reads
    also: tuple[tuple[int, str], ...] = ()  # (status, description) of answers besides `status` and the usual errors

    @property
    def function_id(self) -> str:
        return f"app::{self.name}"


def bind(worker: Worker, routes: list[Route]) -> None:
    """Register each route's function and its `http` trigger on `worker`."""
    for route in routes:

        async def handler(event: Any, route: Route = route) -> Any:
            return await serve(route, event)

        config = {"api_path": route.path, "http_method": route.method, "public": route.public}
        # A route acts for the person the engine let in with the token; over the bus only admin may call it
        # (else a worker token would approve calls or store keys through `app::…`, around both checks).
        metadata = None if route.public else mark("human")
        worker.register_function(route.function_id, handler, description=route.summary, metadata=metadata)
        worker.register_trigger("http", route.function_id, config)


async def serve(route: Route, event: Any) -> Any:
    """One request through `route`: the HTTP response envelope, or None when the handler streamed it."""
    if not isinstance(event, dict):
        return _error(ApiError.invalid("request: an HTTP request event was expected"))
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    raw_body = event.get("body")
    try:
        request = Request(
            params=dict(event.get("path_params") or {}),
            query=_parse(route.query, event.get("query_params") or {}, "query"),
            body=_parse(route.body, raw_body, "body"),
            headers=headers,
            response=event.get("response"),
        )
        result = await route.handler(request)
    except ApiError as exc:
        return _error(exc)
    except InvocationError as exc:
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            return _error(
                ApiError(503, ErrorCode.UNAVAILABLE, f"a worker this route needs is not running: {exc.message}")
            )
        log.warning("%s %s: %s: %s", route.method, route.path, exc.code, exc.message)
        return _error(ApiError(502, exc.code, exc.message))
    if result is STREAMED:
        return None
    reply = result if isinstance(result, Reply) else Reply(result, route.status)
    body = reply.body.model_dump(mode="json") if isinstance(reply.body, BaseModel) else reply.body
    return {"status_code": reply.status, "headers": {"content-type": route.media, **reply.headers}, "body": body}


def _parse(model: type[BaseModel] | None, raw: Any, where: str) -> Any:
    if model is None:
        return raw
    if raw is None and where == "query":
        raw = {}
    if not isinstance(raw, dict):
        # The engine passes a body on only when it parses as JSON under Content-Type: application/json.
        raise ApiError.invalid(f"{where}: a JSON object is required, sent as Content-Type: application/json")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ApiError.from_validation(exc, where) from None


def _error(exc: ApiError) -> dict[str, Any]:
    return {
        "status_code": exc.status,
        "headers": {"content-type": "application/json"},
        "body": {"error": exc.message, "code": exc.code},
    }


async def stream_sse(worker: Worker, request: Request, frames: AsyncIterator[bytes]) -> object:
    """Send `frames` as a Server-Sent Events response on the request's channel; returns `STREAMED`."""
    if request.response is None:
        raise ApiError.invalid("accept: this request cannot be streamed")
    writer = worker.channel_writer(request.response)
    try:
        await writer.send_text(json.dumps({"type": "set_status", "status_code": 200}))
        await writer.send_text(json.dumps({"type": "set_headers", "headers": SSE_HEADERS}))
        await writer.write(b": connected\n\n")  # the head goes out now, before the first event
        async for frame in frames:
            await writer.write(frame)
    except ConnectionResetError:
        log.debug("SSE client left %s", request.params)  # the reader is gone: stop following the run
    finally:
        await writer.close()
    return STREAMED


def sse_frame(event: dict[str, Any] | None) -> bytes:
    """An event as `id:` + `data:` lines, or a keep-alive comment for None."""
    if event is None:
        return b": keepalive\n\n"
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['seq']}\ndata: {data}\n\n".encode()
