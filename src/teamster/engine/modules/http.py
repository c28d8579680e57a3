"""`iii-http`: the `http` trigger type, served by the engine's own aiohttp server (§4.7)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from teamster.engine.access import ListenerAccess, refuse_unguarded
from teamster.engine.builtin import Module, config_of
from teamster.engine.channels import Channel
from teamster.engine.config import DEFAULT_HTTP_PORT
from teamster.engine.listener import listen
from teamster.engine.modules.http_access import Gate
from teamster.engine.modules.http_response import (
    StreamState,
    error_response,
    read_head,
    refusal,
    returned_response,
    send_stream,
)
from teamster.engine.modules.http_routes import (
    Reservations,
    Route,
    RouteConfig,
    RouteKey,
    check_conflict,
    reserved_key,
)
from teamster.engine.triggers import Binding
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.limits import MAX_JSON_DEPTH, too_deep

if TYPE_CHECKING:
    from teamster.engine.engine import Engine

log = logging.getLogger("teamster.engine")

MAX_JSON_BODY = 64 * 1024 * 1024
BODY_CHUNK = 64 * 1024
UNGUARDED_HINT = "set TEAMSTER_TOKEN (or iii-http's `token`) to a secret, or listen on 127.0.0.1"


class CorsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_methods: list[str] = Field(default_factory=list)  # empty: any method
    # iii's `cors.allowed_origins` is read into the listener's one `allowed_origins` list (HttpConfig).


class MiddlewareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function_id: str
    phase: Literal["preHandler"] = "preHandler"
    priority: int = 0  # lower runs first


class HttpConfig(ListenerAccess):
    """iii's `iii-http` config, plus the shared listener access fields and teamster's limits."""

    port: int = DEFAULT_HTTP_PORT
    host: str = "127.0.0.1"
    default_timeout: int = Field(default=30000, gt=0)  # ms, from the request to the response head
    concurrency_request_limit: int = Field(default=1024, ge=1)
    header_timeout_ms: int = Field(default=10000, gt=0)  # a request head must arrive within this, also when idle
    cors: CorsConfig = Field(default_factory=CorsConfig)
    middleware: list[MiddlewareConfig] = Field(default_factory=list)
    reserved_routes: dict[str, list[str]] = Field(default_factory=dict)  # function id prefix -> ["METHOD path"]

    @model_validator(mode="before")
    @classmethod
    def _one_origin_list(cls, data: Any) -> Any:
        """iii spells the allow-list `cors.allowed_origins`; both spellings fill the same list."""
        cors_given = isinstance(data, dict) and isinstance(data.get("cors"), dict)
        if not cors_given or "allowed_origins" not in data["cors"]:
            return data
        cors = dict(data["cors"])
        origins = cors.pop("allowed_origins")
        return {**data, "cors": cors, "allowed_origins": [*data.get("allowed_origins", []), *(origins or [])]}

    @field_validator("reserved_routes")
    @classmethod
    def _methods_and_paths(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for entries in value.values():
            for entry in entries:
                reserved_key(entry)
        return value


class Http(Module):
    """Routes HTTP requests to functions; each method and path belongs to one function (`http_routes`)."""

    name = "iii-http"
    Config = HttpConfig
    config: HttpConfig

    async def start(self) -> None:
        token = self.config.resolved_token()
        refuse_unguarded(self.name, self.config.host, token is not None, UNGUARDED_HINT)
        self._gate = Gate(token, self.config, self.config.cors.allowed_methods)
        self._reserved = Reservations(self.config.reserved_routes)
        self._routes: dict[RouteKey, list[Route]] = {}  # oldest first
        self._in_flight = 0
        self._middleware = sorted(self.config.middleware, key=lambda m: m.priority)
        # aiohttp closes a connection still waiting for a complete request head when its keep-alive timer
        # fires (armed at connect and after each response): one timer for half-sent heads and idle sockets.
        app = web.Application(
            client_max_size=MAX_JSON_BODY, handler_args={"keepalive_timeout": self.config.header_timeout_ms / 1000}
        )
        app.router.add_route("*", "/{tail:.*}", self._serve, expect_handler=self._expect)
        app.on_response_prepare.append(self._cors)
        self._runner, self.engine.ports["http"] = await listen(app, self.config.host, self.config.port)
        await self.engine.builtin_type("http", self, "HTTP API trigger")

    async def stop(self) -> None:
        await self._runner.cleanup()

    # ---- the `http` trigger type --------------------------------------------------------------

    async def register(self, binding: Binding) -> None:
        """Bind a route, unless it is reserved for other functions or another function's route answers it."""
        route = Route.of(binding, config_of(RouteConfig, binding))
        self._reserved.check(route)
        check_conflict(route, self._routes)
        self._routes.setdefault(route.key, []).append(route)

    async def unregister(self, binding: Binding) -> None:
        """Remove the binding's route; an earlier binding of the same function serves again."""
        for key, routes in list(self._routes.items()):
            routes[:] = [route for route in routes if route.binding.id != binding.id]
            if not routes:
                del self._routes[key]

    # ---- serving ------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if self._in_flight >= self.config.concurrency_request_limit:
            return error_response(503, ErrorCode.SERVICE_UNAVAILABLE, "too many concurrent requests")
        self._in_flight += 1
        try:
            return await self._dispatch(request)
        finally:
            self._in_flight -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        refused, found = self._door(request)
        if refused is not None:
            return refused
        if _is_preflight(request):
            return self._gate.preflight(request)
        if found is None:
            return error_response(404, ErrorCode.NOT_FOUND, f"no route for {request.method} {request.path}")
        exchange = Exchange(self.engine, request, *found, keep_authorization=not self._gate.authorized(request))
        try:
            outcome = await self._outcome(exchange)
            if isinstance(outcome, StreamState):
                return await send_stream(request, outcome, exchange.response)
            return outcome
        finally:
            exchange.close()

    def _door(self, request: web.Request) -> tuple[web.Response | None, tuple[Route, dict[str, str]] | None]:
        """Host, Origin, then the token (a preflight carries none): the refusal, or None to go on, and the
        route the request matched (matched once here, since a public route is let in without the token)."""
        refused = self._gate.refuse_caller(request)
        if refused is not None or _is_preflight(request):
            return refused, None
        found = self._match(request)
        return self._gate.refuse_unauthorized(request, found is not None and found[0].config.public), found

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: a refused client hears so before it sends its body, not after."""
        refused, _found = self._door(request)
        if refused is not None:
            return refused
        await _default_expect_handler(request)
        return None

    def _match(self, request: web.Request) -> tuple[Route, dict[str, str]] | None:
        parts = [unquote(p) for p in request.rel_url.raw_path.split("/") if p]
        found = [
            (route, params)
            for route in (routes[-1] for routes in self._routes.values())
            if route.config.http_method == request.method and (params := route.match(parts)) is not None
        ]
        return max(found, key=lambda pair: pair[0].rank, default=None)

    async def _outcome(self, exchange: Exchange) -> web.StreamResponse | StreamState:
        """The pipeline's answer within the route timeout, its failures turned into error responses."""
        request = exchange.request
        try:
            async with asyncio.timeout(self.config.default_timeout / 1000):
                return await self._pipeline(exchange)
        except TimeoutError:
            function_id = exchange.route.binding.function_id
            return error_response(504, ErrorCode.TIMEOUT, f"{function_id} did not respond in time")
        except InvocationError as exc:
            log.warning("HTTP %s %s: %s: %s", request.method, request.path, exc.code, exc.message)
            return error_response(500, exc.code, exc.message)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("HTTP %s %s failed", request.method, request.path)
            return error_response(500, ErrorCode.INTERNAL_ERROR, "internal server error")

    async def _pipeline(self, exchange: Exchange) -> web.StreamResponse | StreamState:
        """Global middleware, condition, route middleware, handler: the first to answer wins."""
        for middleware in self._middleware:
            if (early := await exchange.middleware(middleware.function_id, "default")) is not None:
                return early
        if (refused := await exchange.read_request()) is not None:
            return refused
        if not await exchange.condition_holds():
            return error_response(422, ErrorCode.CONDITION_NOT_MET, "request condition not met", skipped=True)
        for function_id in exchange.route.config.middleware_function_ids:
            if (early := await exchange.middleware(function_id, exchange.route.binding.namespace)) is not None:
                return early
        return await exchange.handle()

    async def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        self._gate.cors_headers(request, response)


class Exchange:
    """One request on its way through a route: its channels, body pump and function call."""

    def __init__(
        self, engine: Engine, request: web.Request, route: Route, params: dict[str, str], *, keep_authorization: bool
    ) -> None:
        """`keep_authorization` False: the header carried the listener's own token, which no function sees."""
        self.engine = engine
        self.request = request
        self.route = route
        self.info: dict[str, Any] = {
            "path_params": params,
            "query_params": dict(request.query),
            "headers": {
                name.lower(): value
                for name, value in request.headers.items()
                if keep_authorization or name.lower() != "authorization"
            },
            "method": route.config.http_method,
        }
        self.request_body = engine.channels.create(None)
        self.response = engine.channels.create(None)
        self.request_body.writer_taken = self.response.reader_taken = True  # the engine holds these ends
        self.event: dict[str, Any] = {}
        self._pump: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None
        self._state = StreamState()

    async def middleware(self, function_id: str, namespace: str) -> web.Response | None:
        """Run one middleware; a response if it answered, None to continue."""
        verdict = await self.engine.call(
            function_id, {"phase": "preHandler", "request": self.info, "context": {}}, namespace=namespace
        )
        if isinstance(verdict, dict) and verdict.get("action") == "respond":
            return returned_response(verdict.get("response"))
        return None

    async def read_request(self) -> web.Response | None:
        """Parse a JSON body, or start streaming any other body into the request-body channel; a 400 for a
        JSON body nested deeper than `MAX_JSON_DEPTH`, which no function could decode."""
        body = None
        if "application/json" in self.info["headers"].get("content-type", ""):
            try:
                body = _json_or_none(await self.request.read())
            except _TooDeep:
                return refusal(400, ErrorCode.BAD_REQUEST, f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
            await self.request_body.close_writer()
        else:
            self._pump = self._spawn(_pump_body(self.request, self.request_body))
        trigger = {"type": "http", "path": self.route.path, "method": self.info["method"]}
        self.event = {"path": self.route.path, **self.info, "body": body, "trigger": trigger}
        return None

    async def condition_holds(self) -> bool:
        """The binding's condition sees the request without its channels; only literal `false` fails it."""
        binding = self.route.binding
        return await self.engine.condition_holds(
            binding.condition_function_id, self.event, binding.namespace, binding.metadata
        )

    async def handle(self) -> web.Response | StreamState:
        """Race the function's return against its response channel; the channel wins a tie."""
        binding = self.route.binding
        payload = {**self.event, "request_body": self.request_body.ref("read"), "response": self.response.ref("write")}
        call = self._spawn(
            self.engine.call(binding.function_id, payload, namespace=binding.namespace, metadata=binding.metadata)
        )
        self._reading = self._spawn(read_head(self.response, self._state))
        await asyncio.wait({call, self._reading}, return_when=asyncio.FIRST_COMPLETED)
        if self._reading.done():
            return self._state
        result = call.result()
        if result is None and (self._state.seen or self.response.writer_taken):
            await self._reading  # it returned nothing but is streaming
            return self._state
        return returned_response({} if result is None else result)

    def close(self) -> None:
        """Drop the request's channels; an end the function still uses is let finish in the background."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            if self.request_body.reader_taken:
                self._spawn(self.request_body.close_writer())
        if self._reading is not None:
            self._reading.cancel()
        if self.response.writer_taken and not self._state.closed:
            self.response.reader_gone = True  # the function's next write fails, so an endless stream ends
            self._spawn(_discard(self.response))
        self.engine.channels.delete(self.request_body.id)
        self.engine.channels.delete(self.response.id)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.engine.router.spawn(coro)
        task.add_done_callback(_quiet)
        return task


async def _pump_body(request: web.Request, channel: Channel) -> None:
    async for chunk in request.content.iter_chunked(BODY_CHUNK):
        await channel.put((False, chunk))
    await channel.close_writer()


async def _discard(channel: Channel) -> None:
    """Drain a response nobody will send, so its writer is never blocked."""
    while await channel.queue.get() is not None:
        pass


def _quiet(task: asyncio.Task[Any]) -> None:
    """Background outcomes are reported where they matter; this only marks them as retrieved."""
    if not task.cancelled():
        task.exception()


class _TooDeep(Exception):
    """A JSON body nested deeper than `MAX_JSON_DEPTH`."""


def _json_or_none(raw: bytes) -> Any:
    """The body as JSON, None when it is not JSON (as iii does); `_TooDeep` when it nests too deeply."""
    try:
        value = json.loads(raw)
    except RecursionError:  # the decoder's own stack ran out, far past MAX_JSON_DEPTH
        raise _TooDeep from None
    except ValueError:
        return None
    if too_deep(value):
        raise _TooDeep
    return value


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )
