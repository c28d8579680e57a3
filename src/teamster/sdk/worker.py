"""The asyncio Worker: registers functions and triggers, calls other functions through the engine."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from teamster import __version__
from teamster.engine.registry import Invocation
from teamster.protocol import (
    InvocationError,
    InvocationResult,
    InvokeFunction,
    Message,
    ProtocolError,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import declared
from teamster.protocol.ids import new_id
from teamster.sdk.channels import ChannelReader, ChannelWriter
from teamster.sdk.handler import Handler
from teamster.sdk.telemetry import Tracer, outgoing
from teamster.sdk.transport import Backoff, LocalTransport, Transport, WsTransport

if TYPE_CHECKING:
    from teamster.engine.engine import Engine

log = logging.getLogger("teamster.sdk")

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "ws://127.0.0.1:49134"
WORKERS_REGISTER = "engine::workers::register"


@dataclass(frozen=True, slots=True)
class Void:
    """Fire and forget: no reply."""


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Put the call on a named queue; the reply is `{messageReceiptId}`."""

    queue: str


Action = Void | Enqueue


@dataclass(frozen=True, slots=True)
class TriggerInfo:
    """A binding as the provider of its trigger type sees it."""

    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None


class TriggerTypeHandler(Protocol):
    async def register_trigger(self, trigger: TriggerInfo) -> None: ...

    async def unregister_trigger(self, trigger: TriggerInfo) -> None: ...


@dataclass(slots=True)
class _Records:
    """What the worker has registered: replayed, in this order, on every (re)connect."""

    trigger_types: dict[str, tuple[RegisterTriggerType, TriggerTypeHandler]] = field(default_factory=dict)
    functions: dict[str, tuple[RegisterFunction, Handler]] = field(default_factory=dict)
    triggers: dict[str, RegisterTrigger] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        name: str,
        *,
        namespace: str | None = None,
        description: str | None = None,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        tracing: bool | None = None,
    ) -> None:
        """`tracing` records a span per handler call (default: on unless env OTEL_ENABLED is false/0/no/off)."""
        if namespace is not None and not namespace.strip():
            raise ValueError("namespace must not be blank")
        self.name = name
        self.namespace = namespace
        self.description = description
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.worker_id: str | None = None
        self.state: Literal["disconnected", "connected", "failed"] = "disconnected"
        self.rejections: list[RegistrationRejected] = []
        self._records = _Records()
        self._reattach_token: str | None = None
        self._transport: Transport | None = None
        self._engine_url: str | None = None
        self._engine: Engine | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # handlers and provider calls this worker started
        if tracing is None:
            tracing = os.environ.get("OTEL_ENABLED", "").lower() not in ("false", "0", "no", "off")
        self.tracer = Tracer(name, enabled=tracing)

    # ---- registration -------------------------------------------------------------------------

    def function(
        self, function_id: str, *, description: str | None = None, metadata: dict[str, Any] | None = None
    ) -> Callable[[F], F]:
        """Decorator form of register_function."""

        def decorate(fn: F) -> F:
            self.register_function(function_id, fn, description=description, metadata=metadata)
            return fn

        return decorate

    def serve(self, service: object) -> None:
        """Register every method of `service` marked with `@handles(...)` (teamster.protocol.handles)."""
        for declaration, method in declared(service):
            self.register_function(
                declaration.function_id, method, description=declaration.description, metadata=declaration.metadata
            )

    def register_function(
        self,
        function_id: str,
        fn: Callable[..., Any],
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Serve `function_id` with `fn(data[, metadata])`, sync or async; schemas come from its type hints."""
        if function_id in self._records.functions:
            raise ValueError(f"{function_id} is already registered by this worker")
        handler = Handler.wrap(fn)
        msg = RegisterFunction(
            id=function_id,
            description=description or _first_line(fn.__doc__),
            request_format=handler.request_format,
            response_format=handler.response_format,
            metadata=metadata,
        )
        self._records.functions[function_id] = (msg, handler)
        self._send_soon(msg)

    def unregister_function(self, function_id: str) -> None:
        if self._records.functions.pop(function_id, None) is not None:
            self._send_soon(UnregisterFunction(id=function_id))

    def register_trigger(
        self,
        trigger_type: str,
        function_id: str,
        config: Any,
        *,
        metadata: Any = None,
        trigger_namespace: str | None = None,
    ) -> str:
        """Bind `function_id` to a trigger; returns the binding id."""
        msg = RegisterTrigger(
            id=new_id(),
            trigger_type=trigger_type,
            function_id=function_id,
            config=config,
            metadata=metadata,
            namespace=self.namespace,
            trigger_namespace=trigger_namespace,
        )
        self._records.triggers[msg.id] = msg
        self._send_soon(msg)
        return msg.id

    def unregister_trigger(self, trigger_id: str) -> None:
        msg = self._records.triggers.pop(trigger_id, None)
        if msg is not None:
            self._send_soon(UnregisterTrigger(id=trigger_id, trigger_type=msg.trigger_type))

    def register_trigger_type(
        self, type_id: str, handler: TriggerTypeHandler, *, description: str | None = None
    ) -> None:
        """Provide a trigger type: the engine hands every binding of it to `handler`."""
        msg = RegisterTriggerType(id=type_id, description=description, namespace=self.namespace)
        self._records.trigger_types[type_id] = (msg, handler)
        self._send_soon(msg)

    def unregister_trigger_type(self, type_id: str) -> None:
        if self._records.trigger_types.pop(type_id, None) is not None:
            self._send_soon(UnregisterTriggerType(id=type_id, namespace=self.namespace))

    # ---- calls --------------------------------------------------------------------------------

    async def trigger(
        self,
        function_id: str,
        payload: Any = None,
        *,
        action: Action | None = None,
        timeout: float | None = None,
        namespace: str | None = None,
        metadata: Any = None,
    ) -> Any:
        """Call a function through the engine. Void returns None at once; Enqueue returns the receipt.

        Over WebSocket a call is bounded by `timeout` (default: the worker's); in-process, only when given.
        """
        if self._transport is None:
            raise InvocationError(ErrorCode.INVOCATION_ERROR, "worker is not connected: use connect() or attach()")
        wire_action: dict[str, Any] | None = None
        if isinstance(action, Void):
            wire_action = {"type": "void"}
        elif isinstance(action, Enqueue):
            wire_action = {"type": "enqueue", "queue": action.queue}
        if namespace is None:
            namespace = "default" if function_id.startswith("engine::") else self.namespace
        traceparent, baggage = outgoing()
        msg = InvokeFunction(
            function_id=function_id,
            invocation_id=None if isinstance(action, Void) else new_id(),
            data=payload,
            metadata=metadata,
            action=wire_action,
            namespace=namespace,
            traceparent=traceparent,
            baggage=baggage,
        )
        return await self._transport.invoke(msg, timeout)

    async def create_channel(self, buffer_size: int | None = None) -> tuple[ChannelWriter, ChannelReader]:
        refs = await self.trigger(
            "engine::channels::create", {} if buffer_size is None else {"buffer_size": buffer_size}
        )
        return self.channel_writer(refs["writer"]), self.channel_reader(refs["reader"])

    def channel_writer(self, ref: dict[str, Any]) -> ChannelWriter:
        return ChannelWriter(ref, self._engine_url, self._local_channel(ref))

    def channel_reader(self, ref: dict[str, Any]) -> ChannelReader:
        local = self._local_channel(ref)
        engine = self._engine
        release = (lambda: engine.channels.delete(local.id)) if local is not None and engine is not None else None
        return ChannelReader(ref, self._engine_url, local, release)

    # ---- connecting ---------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self, url: str | None = None, *, wait: float = 30.0, headers: dict[str, str] | None = None
    ) -> AsyncIterator[Worker]:
        """Connect over WebSocket (reconnecting with backoff until closed)."""
        await self.open(url, wait=wait, headers=headers)
        try:
            yield self
        finally:
            await self.close()

    async def open(self, url: str | None = None, *, wait: float = 30.0, headers: dict[str, str] | None = None) -> None:
        url = url or os.environ.get("TEAMSTER_URL") or DEFAULT_URL
        token = os.environ.get("TEAMSTER_TOKEN")
        if token and not headers:
            headers = {"Authorization": f"Bearer {token}"}
        self._engine_url = url
        transport = WsTransport(url, self._on_message, self._on_open, self.backoff, self.timeout, headers)
        self._transport = transport
        self.tracer.export = transport.export_spans
        await transport.open(wait)

    @asynccontextmanager
    async def attach(self, engine: Engine) -> AsyncIterator[Worker]:
        """Join an engine in this process: the same worker code, with no socket."""
        await self.open_local(engine)
        try:
            yield self
        finally:
            await self.close()

    async def open_local(self, engine: Engine) -> None:
        transport = LocalTransport(engine)
        self._engine = engine
        self._transport = transport
        # An engine without iii-traces takes no spans: skip buffering them at all.
        self.tracer.export = transport.export_spans if engine.traces is not None else None
        await transport.open(self)
        await self._on_open()

    async def close(self) -> None:
        """Disconnect, then cancel the handler and provider tasks still running (this one excepted)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            await self.tracer.flush()  # the last spans ride the link before it goes
            self.tracer.export = None
            await transport.close()
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.state = "disconnected"

    # ---- the engine's side (LocalPeer for in-process, frames for WebSocket) ---------------------

    def deliver(self, msg: Message) -> None:
        """A message from an in-process engine."""
        self._spawn(self._on_message(msg))

    async def execute(self, inv: Invocation) -> Any:
        """Run one of this worker's functions directly (in-process engine)."""
        return await self._run(inv.function_id, inv.data, inv.metadata, inv.traceparent, inv.baggage)

    def detached(self) -> None:
        self.state = "disconnected"

    async def _on_open(self) -> None:
        if self.worker_id is not None and self._reattach_token is not None and isinstance(self._transport, WsTransport):
            await self._send(Reattach(previous_worker_id=self.worker_id, reattach_token=self._reattach_token))
        # Naming first lets the engine apply the registrations at once instead of holding them.
        await self._send(
            InvokeFunction(
                function_id=WORKERS_REGISTER, data=self._worker_info(), action={"type": "void"}, namespace="default"
            )
        )
        for msg, _ in self._records.trigger_types.values():
            await self._send(msg)
        for fn_msg, _ in self._records.functions.values():
            await self._send(fn_msg)
        for trigger_msg in self._records.triggers.values():
            await self._send(trigger_msg)
        self.state = "connected"

    async def _on_message(self, msg: Message) -> None:
        if isinstance(msg, InvokeFunction):
            self._spawn(self._serve(msg))
        elif isinstance(msg, InvocationResult) and isinstance(self._transport, WsTransport):
            self._transport.resolve(msg)
        elif isinstance(msg, WorkerRegistered):
            self.worker_id = msg.worker_id
            self._reattach_token = msg.reattach_token
        elif isinstance(msg, RegisterTrigger | UnregisterTrigger):
            await self._provide(msg)
        elif isinstance(msg, RegistrationRejected):
            self._rejected(msg)
        elif isinstance(msg, TriggerRegistrationResult) and msg.error is not None:
            log.error(
                "trigger %s (%s -> %s) refused: %s", msg.id, msg.trigger_type, msg.function_id, msg.error.get("message")
            )

    async def _serve(self, msg: InvokeFunction) -> None:
        try:
            result = await self._run(msg.function_id, msg.data, msg.metadata, msg.traceparent, msg.baggage)
            reply = InvocationResult(invocation_id=msg.invocation_id or "", function_id=msg.function_id, result=result)
        except InvocationError as exc:
            reply = InvocationResult(
                invocation_id=msg.invocation_id or "", function_id=msg.function_id, error=exc.to_wire()
            )
        if msg.invocation_id is None:
            return
        try:
            await self._send(reply)
        except ProtocolError as exc:
            reply.result, reply.error = None, {"code": ErrorCode.SERIALIZATION_ERROR, "message": str(exc)}
            await self._send(reply)

    async def _run(
        self, function_id: str, data: Any, metadata: Any, traceparent: str | None, baggage: str | None
    ) -> Any:
        """Run a handler inside its span; the calls it makes carry the span's context."""
        active, token = self.tracer.open(function_id, data, traceparent, baggage)
        error: BaseException | None = None
        try:
            record = self._records.functions.get(function_id)
            if record is None:
                raise InvocationError(
                    ErrorCode.FUNCTION_NOT_FOUND,
                    f"{function_id} is not served by worker {self.name}",
                    function_id=function_id,
                )
            return await record[1](data, metadata, function_id)
        except InvocationError as exc:
            error = exc
            raise
        except Exception as exc:
            error = InvocationError(
                ErrorCode.INVOCATION_FAILED,
                str(exc) or type(exc).__name__,
                stacktrace=traceback.format_exc(),
                function_id=function_id,
            )
            raise error from exc
        except BaseException as exc:  # cancelled: the span still ends, marked as such
            error = exc
            raise
        finally:
            self.tracer.close(active, token, error)

    async def _provide(self, msg: RegisterTrigger | UnregisterTrigger) -> None:
        trigger_type = msg.trigger_type or ""
        record = self._records.trigger_types.get(trigger_type)
        if record is None:
            return
        handler = record[1]
        if isinstance(msg, UnregisterTrigger):
            await handler.unregister_trigger(TriggerInfo(msg.id, trigger_type, "", None))
            return
        info = TriggerInfo(msg.id, trigger_type, msg.function_id, msg.config, msg.metadata)
        error: dict[str, Any] | None = None
        try:
            await handler.register_trigger(info)
        except Exception as exc:
            error = {"code": ErrorCode.TRIGGER_REGISTRATION_FAILED, "message": str(exc)}
        await self._send(
            TriggerRegistrationResult(id=msg.id, trigger_type=trigger_type, function_id=msg.function_id, error=error)
        )

    def _rejected(self, msg: RegistrationRejected) -> None:
        self.rejections.append(msg)
        if msg.code == ErrorCode.FUNCTION_NAMESPACE_CONFLICT and msg.function_id is not None:
            log.error(
                "%s is already served by worker %s; this worker will not serve it", msg.function_id, msg.owner_worker_id
            )
            self._records.functions.pop(msg.function_id, None)
            return
        log.error("the engine rejected worker %s (%s); not reconnecting", self.name, msg.code)
        self.state = "failed"
        if isinstance(self._transport, WsTransport):
            self._transport.stop_reconnecting()

    def _worker_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "runtime": "python",
            "version": __version__,
            "name": self.name,
            "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
            "pid": os.getpid(),
            "framework": "teamster",
        }
        if self.namespace is not None:
            info["namespace"] = self.namespace
        if self.description:
            info["description"] = self.description
        return info

    def _local_channel(self, ref: dict[str, Any]) -> Any:
        if self._engine is None:
            return None
        return self._engine.channels.get(ref["channel_id"], ref["access_key"])

    async def _send(self, msg: Message) -> None:
        if self._transport is not None:
            await self._transport.send(msg)

    def _send_soon(self, msg: Message) -> None:
        if self._transport is not None and self.state == "connected":
            self._spawn(self._send(msg))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _first_line(doc: str | None) -> str | None:
    return doc.strip().splitlines()[0] if doc and doc.strip() else None
