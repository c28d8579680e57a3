"""`iii-stream`: items by stream, group and item id, custom streams, the `stream`, `stream:join` and
`stream:leave` trigger types, and the client socket when a `port` is configured (§4.3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from teamster.engine.access import refuse_unguarded
from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.modules.state import MISSING, UpdateOp, apply_ops, change_result, storage_errors
from teamster.engine.modules.stream_ws import StreamSocket, stream_message
from teamster.engine.rbac import Session
from teamster.engine.registry import Invocation
from teamster.engine.reserved_names import ReservedNames, check_patterns, outsider
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.limits import MAX_VALUE_BYTES, check_stored
from teamster.storage import StreamAdapter


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(default=None, ge=0, le=65535)  # None: no client socket (iii serves it on 3112)
    host: str = "127.0.0.1"
    auth_function: str | None = None  # called at each client's upgrade; grants the client's `context`
    adapter: Any = None  # accepted for iii config files; items always live in the engine's storage
    max_value_bytes: int | None = Field(default=MAX_VALUE_BYTES, ge=1)  # an item or sent event; null: no size cap
    allowed_origins: list[str] = Field(default_factory=list)  # browser origins besides the socket's own
    allowed_hosts: list[str] = Field(default_factory=list)  # Host names besides loopback, without an auth_function
    # Streams (names or `prefix*`) only in-process workers and admin connections reach; `teamster up`
    # adds the harness's and the app's (teamster.app.reserved).
    reserved_streams: list[str] = Field(default_factory=list)

    @field_validator("reserved_streams")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return check_patterns(value)


class Stream(Input):
    stream_name: str


class Group(Stream):
    group_id: str


class Item(Group):
    item_id: str


class SetItem(Item):
    data: Any


class UpdateItem(Item):
    ops: list[UpdateOp]


class Send(Group):
    id: str | None = None
    type: str
    data: Any = None


class StreamTrigger(Input):
    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None  # run by Engine.fire; declared so a non-string is refused

    def wants(self, stream_name: str, group_id: str, item_id: str | None) -> bool:
        """Same stream; an absent (or empty) group or item matches any."""
        return (
            self.stream_name == stream_name
            and (not self.group_id or self.group_id == group_id)
            and (not self.item_id or self.item_id == item_id)
        )


class Streams(Module):
    name = "iii-stream"
    Config = StreamConfig
    config: StreamConfig

    async def start(self) -> None:
        if self.config.port is not None:  # the socket carries transcripts; only an auth function guards it
            refuse_unguarded(
                self.name,
                self.config.host,
                self.config.auth_function is not None,
                "give it an auth_function (TEAMSTER_TOKEN does not guard this socket), or listen on 127.0.0.1",
            )
        self._bindings = BindingSet(StreamTrigger)
        self._reserved = ReservedNames(self.config.reserved_streams, what="stream", key="iii-stream reserved_streams")
        for trigger_type in ("stream", "stream:join", "stream:leave"):
            self.engine.binding_guards[trigger_type] = self._binding_denial
        joins: BindingSet[Input] = BindingSet()
        leaves: BindingSet[Input] = BindingSet()
        for op, handler, description in (
            ("set", self._set, "Store a stream item and notify subscribers"),
            ("get", self._get, "Read a stream item"),
            ("delete", self._delete, "Delete a stream item and notify subscribers"),
            ("list", self._list, "List the items of a stream group"),
            ("list_groups", self._list_groups, "List the groups of a stream"),
            ("list_all", self._list_all, "List every stream with its groups"),
            ("send", self._send, "Send an event to a group's subscribers without storing it"),
            ("update", self._update, "Apply update ops to a stream item and notify subscribers"),
        ):
            self.engine.builtin(f"stream::{op}", handler, description=description)
        await self.engine.builtin_type("stream", self._bindings, "Stream items created, updated, deleted or sent")
        await self.engine.builtin_type("stream:join", joins, "A client joined a stream group or item")
        await self.engine.builtin_type("stream:leave", leaves, "A client left a stream group or item")
        self._socket: StreamSocket | None = None
        if self.config.port is not None:
            socket = StreamSocket(
                self.engine,
                auth_function=self.config.auth_function,
                allowed_origins=self.config.allowed_origins,
                allowed_hosts=self.config.allowed_hosts,
                read=self.read,
                joins=joins,
                leaves=leaves,
            )
            self.engine.ports["stream"] = await socket.start(self.config.host, self.config.port)
            self._socket = socket

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.stop()

    @property
    def _store(self) -> StreamAdapter:
        return self.engine.storage.streams

    async def _set(self, inv: Invocation) -> Any:
        req = parse(SetItem, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)
        self._check(req.data, inv.function_id)

        async def store() -> dict[str, Any]:
            old = await self._store.set(req.stream_name, req.group_id, req.item_id, req.data)
            return change_result(old, req.data, [])

        result = await self._run("set", req, ErrorCode.STREAM_SET_ERROR, store)
        self._notify_change(req, result, inv.function_id)
        return result

    async def read(self, stream_name: str, group_id: str, item_id: str | None) -> Any:
        """What a joining client is synced with: the item, or the group's items (custom streams included)."""
        if item_id is None:
            return await self._list_group(Group(stream_name=stream_name, group_id=group_id))
        return await self._get_item(Item(stream_name=stream_name, group_id=group_id, item_id=item_id))

    async def _get(self, inv: Invocation) -> Any:
        req = parse(Item, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)
        return await self._get_item(req)

    async def _get_item(self, req: Item) -> Any:
        return await self._run(
            "get",
            req,
            ErrorCode.STREAM_GET_ERROR,
            lambda: self._store.get(req.stream_name, req.group_id, req.item_id),
        )

    async def _delete(self, inv: Invocation) -> Any:
        req = parse(Item, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)

        async def store() -> dict[str, Any]:
            return {"old_value": await self._store.delete(req.stream_name, req.group_id, req.item_id)}

        result = await self._run("delete", req, ErrorCode.STREAM_DELETE_ERROR, store)
        old = _object(result, inv.function_id).get("old_value")
        if old is not None:
            self._notify(req, req.item_id, {"type": "delete", "data": old})
        return result

    async def _list(self, inv: Invocation) -> Any:
        req = parse(Group, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)
        return await self._list_group(req)

    async def _list_group(self, req: Group) -> Any:
        return await self._run(
            "list", req, ErrorCode.STREAM_GET_GROUP_ERROR, lambda: self._store.list(req.stream_name, req.group_id)
        )

    async def _list_groups(self, inv: Invocation) -> Any:
        req = parse(Stream, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)
        return await self._run(
            "list_groups", req, ErrorCode.STREAM_LIST_GROUPS_ERROR, lambda: self._store.groups(req.stream_name)
        )

    async def _list_all(self, inv: Invocation) -> dict[str, Any]:
        with storage_errors(ErrorCode.STREAM_LIST_ALL_ERROR, inv.function_id):
            streams = await self._store.streams()
        if outsider(inv.session):
            streams = [row for row in streams if not self._reserved.covers(str(row.get("id")))]
        return {"stream": streams, "count": len(streams)}

    async def _send(self, inv: Invocation) -> None:
        req = parse(Send, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)
        self._check(req.data, inv.function_id)
        self._notify(req, req.id, {"type": "event", "event": {"type": req.type, "data": req.data}})

    async def _update(self, inv: Invocation) -> Any:
        req = parse(UpdateItem, inv.data, inv.function_id)
        self._check_name(inv, req.stream_name)

        # A read-modify-write: StreamAdapter has no compare-and-set, and the local adapters never
        # yield between the two calls, so no other write can land in between.
        async def store() -> dict[str, Any]:
            old = await self._store.get(req.stream_name, req.group_id, req.item_id)
            new, errors = apply_ops(req.ops, MISSING if old is None else old)
            self._check(new, inv.function_id)
            await self._store.set(req.stream_name, req.group_id, req.item_id, new)
            return change_result(old, new, errors)

        result = await self._run("update", req, ErrorCode.STREAM_UPDATE_ERROR, store)
        self._notify_change(req, result, inv.function_id)
        return result

    def _check_name(self, inv: Invocation, stream_name: str) -> None:
        self._reserved.check(inv.session, stream_name, inv.function_id)

    def _binding_denial(self, session: Session, config: Any) -> str | None:
        """A non-admin session may not follow a reserved stream."""
        name = config.get("stream_name") if isinstance(config, dict) else None
        return self._reserved.denial(session, name) if isinstance(name, str) else None

    def _check(self, value: Any, function_id: str) -> None:
        check_stored(value, self.config.max_value_bytes, "max_value_bytes", function_id)

    async def _run(self, op: str, req: Stream, code: str, builtin: Callable[[], Awaitable[Any]]) -> Any:
        """Hand the call to the custom stream `stream::<op>(<name>)` when one exists, else run the built-in."""
        custom = f"stream::{op}({req.stream_name})"
        if self.engine.functions.get("default", custom) is not None:
            return await self.engine.call(custom, req.model_dump(exclude_unset=True))
        with storage_errors(code, f"stream::{op}"):
            return await builtin()

    def _notify_change(self, req: Item, result: Any, function_id: str) -> None:
        change = _object(result, function_id)
        kind = "create" if change.get("old_value") is None else "update"
        self._notify(req, req.item_id, {"type": kind, "data": change.get("new_value")})

    def _notify(self, req: Group, item_id: str | None, event: dict[str, Any]) -> None:
        """Fire the matching `stream` bindings and push to subscribed clients: both get the same message."""
        message = stream_message(req.stream_name, req.group_id, item_id, event)
        bindings = self._bindings.matching(lambda c: c.wants(req.stream_name, req.group_id, item_id))
        self.engine.fire_in_order(bindings, message)
        if self._socket is not None:
            self._socket.push(message)


def _object(result: Any, function_id: str) -> dict[str, Any]:
    """A custom stream's result, which must be an object like the built-in's."""
    if not isinstance(result, dict):
        raise InvocationError(
            ErrorCode.STREAM_RESULT_ERROR,
            f"custom stream returned {type(result).__name__}, expected an object",
            function_id=function_id,
        )
    return result
