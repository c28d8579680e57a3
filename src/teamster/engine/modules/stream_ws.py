"""The `iii-stream` client socket (§4.3): clients join a stream group (or one item of it), get a sync of
what is stored, then every change and sent event pushed; `stream:join`/`stream:leave` bindings hear of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teamster.engine.access import host_allowed, origin_allowed
from teamster.engine.builtin import BindingSet
from teamster.engine.engine import ConditionNotMet
from teamster.engine.listener import listen
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms

if TYPE_CHECKING:
    from teamster.engine.engine import Engine

log = logging.getLogger("teamster.engine")

Read = Callable[[str, str, str | None], Awaitable[Any]]  # (stream, group, item or None for the group) -> data


def stream_message(stream_name: str, group_id: str, item_id: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """What subscribers and `stream` triggers receive (iii's wrapper message, camelCase keys)."""
    return {
        "type": "stream",
        "timestamp": now_ms(),
        "streamName": stream_name,
        "groupId": group_id,
        "id": item_id,
        "event": event,
    }


class Subscription(BaseModel):
    """The `data` of a client's `join`/`leave` frame; no `id` means the whole group."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    subscription_id: str = Field(alias="subscriptionId")
    stream_name: str = Field(alias="streamName")
    group_id: str = Field(alias="groupId")
    id: str | None = None

    def wants(self, message: dict[str, Any]) -> bool:
        return (
            message["streamName"] == self.stream_name
            and message["groupId"] == self.group_id
            and (self.id is None or self.id == message["id"])
        )

    def event(self, context: Any) -> dict[str, Any]:
        """The `stream:join`/`stream:leave` payload."""
        return {
            "subscription_id": self.subscription_id,
            "stream_name": self.stream_name,
            "group_id": self.group_id,
            "id": self.id,
            "context": context,
        }


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["join", "leave"]
    data: Subscription


class Client:
    """One socket: the context its auth function gave it, its subscriptions by id, and an ordered outbox."""

    def __init__(self, ws: web.WebSocketResponse, context: Any) -> None:
        self.ws = ws
        self.context = context
        self.subscriptions: dict[str, Subscription] = {}
        self._outbox: asyncio.Queue[str] = asyncio.Queue()

    def send(self, text: str | None) -> None:
        if text is not None:
            self._outbox.put_nowait(text)

    async def write(self) -> None:
        """Send queued messages in order until the socket goes."""
        while True:
            text = await self._outbox.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


class StreamSocket:
    """The listener on `/` and `/stream/<name>/<group>/` (the path only informs the auth function)."""

    def __init__(
        self,
        engine: Engine,
        *,
        auth_function: str | None,
        allowed_origins: list[str],
        allowed_hosts: list[str],
        read: Read,
        joins: BindingSet[Any],
        leaves: BindingSet[Any],
    ) -> None:
        self._engine = engine
        self._auth_function = auth_function
        self._allowed_origins = allowed_origins
        self._allowed_hosts = allowed_hosts
        self._read = read
        self._joins = joins
        self._leaves = leaves
        self._clients: set[Client] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        app = web.Application()
        app.router.add_get("/", self._serve)
        app.router.add_get("/stream/{stream_name}/{group_id}{slash:/?}", self._serve)
        self._runner, bound = await listen(app, host, port)
        return bound

    async def stop(self) -> None:
        await asyncio.gather(
            *(c.ws.close(code=1001, message=b"engine shutting down") for c in list(self._clients)),
            return_exceptions=True,
        )
        await self._runner.cleanup()

    def push(self, message: dict[str, Any]) -> None:
        """Send `message` once to every client with a subscription that wants it."""
        clients = [c for c in self._clients if any(s.wants(message) for s in c.subscriptions.values())]
        if clients:
            text = _encode(message)
            for client in clients:
                client.send(text)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if self._engine.stopping:
            raise web.HTTPServiceUnavailable(text="engine shutting down")
        self._check_browser(request)
        context = await self._authenticate(request)
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        client = Client(ws, context)
        self._clients.add(client)
        writer = asyncio.ensure_future(client.write())
        try:
            async for frame in ws:
                if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or not frame.data.strip():
                    continue
                try:
                    msg = ClientFrame.model_validate_json(frame.data)
                except ValidationError as exc:
                    log.debug("stream client frame dropped: %s", exc.errors()[0]["msg"])
                    continue
                if msg.type == "join":
                    await self._join(client, msg.data)
                else:
                    await self._leave(client, msg.data.subscription_id)
        finally:
            self._clients.discard(client)
            writer.cancel()
            for subscription_id in list(client.subscriptions):
                await self._leave(client, subscription_id)
        return ws

    def _check_browser(self, request: web.Request) -> None:
        """403 for a foreign `Origin` (a web page), and without an auth function for a `Host` that is not
        loopback or allowed (DNS rebinding): the socket carries transcripts, as the worker socket does."""
        host, origin = request.headers.get("Host"), request.headers.get("Origin")
        if not origin_allowed(origin, host, self._allowed_origins):
            log.info("stream client from %s refused: origin %s", request.remote, origin)
            raise web.HTTPForbidden(text=f"forbidden: origin {origin} is not allowed")
        if self._auth_function is None and not host_allowed(host, self._allowed_hosts):
            log.info("stream client from %s refused: Host %s", request.remote, host)
            raise web.HTTPForbidden(text=f"forbidden: Host {host or '(none)'} is not allowed")

    async def _authenticate(self, request: web.Request) -> Any:
        """The context the auth function grants (None without one); an error or a non-object answer is a 401."""
        if self._auth_function is None:
            return None
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        request_info = {
            "headers": {name.lower(): value for name, value in request.headers.items()},
            "path": request.rel_url.raw_path,
            "query_params": {key: request.query.getall(key) for key in request.query},
            "addr": _address(peer),
        }
        try:
            answer = await self._engine.call(self._auth_function, request_info)
        except InvocationError as exc:
            log.info("stream client from %s refused: %s", request.remote, exc)
            raise web.HTTPUnauthorized(text=f"refused by {self._auth_function}: {exc.message}") from None
        if answer is None:
            return None
        if not isinstance(answer, dict):
            log.info("stream client from %s refused: %s answered %r", request.remote, self._auth_function, answer)
            raise web.HTTPUnauthorized(text=f"{self._auth_function} answered {type(answer).__name__}, not an object")
        return answer.get("context")

    async def _join(self, client: Client, subscription: Subscription) -> None:
        """Ask the join bindings, then subscribe and sync; a refused client gets one `unauthorized` event."""
        where = (subscription.stream_name, subscription.group_id, subscription.id)
        if not await self._admitted(client, subscription):
            client.send(_encode(stream_message(*where, {"type": "unauthorized"})))
            return
        client.subscriptions[subscription.subscription_id] = subscription
        try:
            data = await self._read(*where)
        except InvocationError as exc:
            log.warning("stream sync of %s/%s failed: %s", subscription.stream_name, subscription.group_id, exc)
            return
        client.send(_encode(stream_message(*where, {"type": "sync", "data": data})))

    async def _admitted(self, client: Client, subscription: Subscription) -> bool:
        """Every join binding runs; one answering `{unauthorized: true}`, or failing, refuses the join."""
        admitted = True
        event = subscription.event(client.context)
        for binding in list(self._joins.bindings.values()):
            try:
                answer = await self._engine.fire(binding, event)
            except ConditionNotMet:
                continue
            except InvocationError as exc:
                log.warning("stream:join %s -> %s failed, join refused: %s", binding.id, binding.function_id, exc)
                admitted = False
                continue
            if isinstance(answer, dict) and answer.get("unauthorized") is True:
                admitted = False
        return admitted

    async def _leave(self, client: Client, subscription_id: str) -> None:
        """Unsubscribe and tell the leave bindings; an id the client never joined changes nothing."""
        subscription = client.subscriptions.pop(subscription_id, None)
        if subscription is not None:
            self._engine.fire_in_order(list(self._leaves.bindings.values()), subscription.event(client.context))


def _encode(message: dict[str, Any]) -> str | None:
    """The message as JSON text; None (logged) when an in-process worker stored something JSON cannot carry."""
    try:
        return orjson.dumps(message).decode()
    except TypeError as exc:
        log.warning("stream message for %s/%s not sent: %s", message["streamName"], message["groupId"], exc)
        return None


def _address(peer: Any) -> str:
    """`ip:port` (`[ip]:port` for IPv6), as iii prints a socket address."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return ""
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
