"""Routes invocations to their owner and matches results back to callers (§3.2, §3.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from teamster.engine.registry import FunctionRegistry, Invocation
from teamster.protocol import InvocationError, InvocationResult, InvokeFunction, ProtocolError
from teamster.protocol import errors as codes
from teamster.protocol.ids import new_id

if TYPE_CHECKING:
    from teamster.engine.connection import Connection

log = logging.getLogger("teamster.engine")

# (queue, function_id, data, namespace, traceparent, baggage) -> messageReceiptId
Enqueuer = Callable[[str, str, Any, str, str | None, str | None], Awaitable[str]]


class Router:
    def __init__(self, functions: FunctionRegistry) -> None:
        self.functions = functions
        self.pending: dict[str, tuple[asyncio.Future[Any], Connection]] = {}
        self.enqueuer: Enqueuer | None = None
        self._background: set[asyncio.Task[Any]] = set()

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = "default",
        metadata: Any = None,
        caller: Connection | None = None,
        invocation_id: str | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Run a function wherever it lives and return its result, or raise InvocationError."""
        entry = self.functions.get(namespace, function_id)
        if entry is None:
            elsewhere = self.functions.namespaces_of(function_id)
            hint = f" (registered in namespaces: {', '.join(elsewhere)})" if elsewhere else ""
            raise InvocationError(
                codes.FUNCTION_NOT_FOUND,
                f"Function {function_id} not found in namespace {namespace}{hint}",
                function_id=function_id,
            )
        if caller is not None and isinstance(data, dict):
            data = {**data, "_caller_worker_id": caller.worker_id}
        inv = Invocation(
            function_id=function_id,
            invocation_id=invocation_id or new_id(),
            data=data,
            metadata=metadata,
            namespace=namespace,
            traceparent=traceparent,
            baggage=baggage,
            caller=caller,
        )
        return await entry.execute(inv)

    async def invoke(self, caller: Connection, msg: InvokeFunction) -> Any:
        """A worker's `invokefunction`: a sync call, a void call (returns None at once) or an enqueue."""
        namespace = target_namespace(msg)
        action = msg.action or {}
        kind = action.get("type")
        if kind is None:
            return await self._call_for(caller, msg, namespace)
        if kind == "void":
            self.spawn(self._void(caller, msg, namespace))
            return None
        if kind == "enqueue":
            return await self._enqueue(msg, namespace, action)
        raise InvocationError(codes.DESERIALIZATION_ERROR, f"unknown action type {kind!r}", function_id=msg.function_id)

    async def remote(self, conn: Connection, inv: Invocation, as_id: str | None = None) -> Any:
        """Executor for functions a worker serves over the wire: send the call, await its result frame.
        `as_id`: the id the worker knows the function by, when the engine filed it under another."""
        iid = inv.invocation_id
        if iid in self.pending:  # two callers chose the same id: keep results apart
            iid = new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[iid] = (future, conn)
        conn.executing.add(iid)
        try:
            try:
                await conn.send(
                    InvokeFunction(
                        function_id=as_id or inv.function_id,
                        invocation_id=iid,
                        data=inv.data,
                        metadata=inv.metadata,
                        traceparent=inv.traceparent,
                        baggage=inv.baggage,
                    )
                )
            except ProtocolError as exc:
                raise InvocationError(codes.SERIALIZATION_ERROR, str(exc), function_id=inv.function_id) from None
            if conn.closing:
                raise InvocationError(codes.INVOCATION_STOPPED, "Invocation stopped", function_id=inv.function_id)
            return await future
        finally:
            self.pending.pop(iid, None)
            conn.executing.discard(iid)

    def resolve(self, msg: InvocationResult) -> None:
        pending = self.pending.get(msg.invocation_id)
        if pending is None:
            log.debug("late or unknown invocation result %s dropped", msg.invocation_id)
            return
        future = pending[0]
        if future.done():
            return
        if msg.error is not None:
            future.set_exception(InvocationError.from_wire(msg.error, msg.function_id))
        else:
            future.set_result(msg.result)

    def stop_all(self, conn: Connection) -> None:
        """The executor went away: every call it was running ends with `invocation_stopped`."""
        for iid in list(conn.executing):
            pending = self.pending.get(iid)
            if pending is not None and not pending[0].done():
                pending[0].set_exception(InvocationError(codes.INVOCATION_STOPPED, "Invocation stopped"))

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Cancel background work (engine shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _call_for(self, caller: Connection, msg: InvokeFunction, namespace: str) -> Any:
        return await self.call(
            msg.function_id,
            msg.data,
            namespace=namespace,
            metadata=msg.metadata,
            caller=caller,
            invocation_id=msg.invocation_id,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
        )

    async def _void(self, caller: Connection, msg: InvokeFunction, namespace: str) -> None:
        try:
            await self._call_for(caller, msg, namespace)
        except InvocationError as exc:
            log.debug("void call to %s failed: %s", msg.function_id, exc)

    async def _enqueue(self, msg: InvokeFunction, namespace: str, action: dict[str, Any]) -> Any:
        queue = action.get("queue")
        if not isinstance(queue, str) or not queue:
            raise InvocationError(codes.ENQUEUE_ERROR, "enqueue needs a queue name", function_id=msg.function_id)
        if self.enqueuer is None:
            raise InvocationError(
                codes.ENQUEUE_ERROR,
                "no queue module is running: enable iii-queue in the engine config",
                function_id=msg.function_id,
            )
        try:
            receipt = await self.enqueuer(queue, msg.function_id, msg.data, namespace, msg.traceparent, msg.baggage)
        except InvocationError:
            raise
        except Exception as exc:
            raise InvocationError(codes.ENQUEUE_ERROR, str(exc), function_id=msg.function_id) from exc
        return {"messageReceiptId": receipt}


def target_namespace(msg: InvokeFunction) -> str:
    """The namespace a call addresses: absent is `default`, blank is INVALID_NAMESPACE."""
    namespace = msg.namespace
    if namespace is not None and not namespace.strip():
        raise InvocationError(codes.INVALID_NAMESPACE, "namespace must not be blank", function_id=msg.function_id)
    return namespace or "default"
