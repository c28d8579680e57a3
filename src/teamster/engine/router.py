"""Routes invocations to their owner and matches results back to callers (§3.2, §3.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from teamster.engine.registry import FunctionRegistry, Invocation
from teamster.protocol import InvocationError, InvocationResult, InvokeFunction, ProtocolError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.ids import new_id

if TYPE_CHECKING:
    from teamster.engine.connection import Connection

log = logging.getLogger("teamster.engine")

# (queue, function_id, data, namespace, traceparent, baggage) -> messageReceiptId
Enqueuer = Callable[[str, str, Any, str, str | None, str | None], Awaitable[str]]


@dataclass(slots=True)
class Remote:
    """The executor of a function a worker serves over the wire. `as_id`: the id the worker knows the
    function by, when the engine filed it under another."""

    router: Router
    conn: Connection
    as_id: str | None = None

    def __call__(self, inv: Invocation) -> Awaitable[Any]:
        return self.router.remote(self.conn, inv, self.as_id)


@dataclass(slots=True)
class Relay:
    """A worker's sync call passed on to the worker that serves it; `Router.resolve` answers it."""

    caller: Connection
    invocation_id: str
    function_id: str

    def answer(self, result: Any, error: InvocationError | None) -> None:
        reply = InvocationResult(invocation_id=self.invocation_id, function_id=self.function_id)
        if error is None:
            reply.result = result
        else:
            reply.error = error.to_wire()
        self.caller.answer(reply)


class Router:
    def __init__(self, functions: FunctionRegistry) -> None:
        self.functions = functions
        # A call out to a worker, by the invocation id it was sent with: what waits for its result, and the worker.
        self.pending: dict[str, tuple[asyncio.Future[Any] | Relay, Connection]] = {}
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
                ErrorCode.FUNCTION_NOT_FOUND,
                f"Function {function_id} not found in namespace {namespace}{hint}",
                function_id=function_id,
            )
        if caller is not None:
            data = with_caller(data, caller)
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
        raise InvocationError(
            ErrorCode.DESERIALIZATION_ERROR, f"unknown action type {kind!r}", function_id=msg.function_id
        )

    def forward(self, caller: Connection, msg: InvokeFunction) -> bool:
        """Pass a worker's sync call to a function another worker serves over the wire, with no task
        in between (a task per call was the engine's largest cost). False: it needs the general path."""
        if (msg.action and msg.action.get("type") is not None) or msg.invocation_id is None:
            return False
        try:
            namespace = target_namespace(msg)
        except InvocationError:
            return False
        entry = self.functions.get(namespace, msg.function_id)
        remote = entry.execute if entry is not None else None
        if not isinstance(remote, Remote):
            return False
        relay = Relay(caller, msg.invocation_id, msg.function_id)
        conn = remote.conn
        iid = self._claim(msg.invocation_id, relay, conn)
        try:
            conn.post(outgoing(msg, iid, remote.as_id, with_caller(msg.data, caller)))
        except ProtocolError as exc:
            error = unsendable(exc, msg.function_id)
        else:
            if not conn.closing:
                return True
            error = stopped(msg.function_id)
        self._release(iid, conn)
        relay.answer(None, error)
        return True

    async def remote(self, conn: Connection, inv: Invocation, as_id: str | None = None) -> Any:
        """Send the call to the worker that serves it as a frame, and await its result frame."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        iid = self._claim(inv.invocation_id, future, conn)
        try:
            try:
                await conn.send(outgoing(inv, iid, as_id, inv.data))
            except ProtocolError as exc:
                raise unsendable(exc, inv.function_id) from None
            if conn.closing:
                raise stopped(inv.function_id)
            return await future
        finally:
            self._release(iid, conn)

    def resolve(self, msg: InvocationResult) -> None:
        pending = self.pending.get(msg.invocation_id)
        if pending is None:
            log.debug("late or unknown invocation result %s dropped", msg.invocation_id)
            return
        waiter, conn = pending
        error = InvocationError.from_wire(msg.error, msg.function_id) if msg.error is not None else None
        if isinstance(waiter, Relay):
            self._release(msg.invocation_id, conn)
            waiter.answer(msg.result, error)
        elif waiter.done():
            return
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(msg.result)

    def stop_all(self, conn: Connection) -> None:
        """The executor went away: every call it was running ends with `invocation_stopped`."""
        for iid in list(conn.executing):
            pending = self.pending.get(iid)
            if pending is None:
                continue
            waiter = pending[0]
            if isinstance(waiter, Relay):
                self._release(iid, conn)
                waiter.answer(None, stopped())
            elif not waiter.done():
                waiter.set_exception(stopped())

    def _claim(self, iid: str, waiter: asyncio.Future[Any] | Relay, conn: Connection) -> str:
        """File a call out to `conn`; returns the id it goes out with (a fresh one if two callers chose the same)."""
        if iid in self.pending:
            iid = new_id()
        self.pending[iid] = (waiter, conn)
        conn.executing.add(iid)
        return iid

    def _release(self, iid: str, conn: Connection) -> None:
        self.pending.pop(iid, None)
        conn.executing.discard(iid)

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
            raise InvocationError(ErrorCode.ENQUEUE_ERROR, "enqueue needs a queue name", function_id=msg.function_id)
        if self.enqueuer is None:
            raise InvocationError(
                ErrorCode.ENQUEUE_ERROR,
                "no queue module is running: enable iii-queue in the engine config",
                function_id=msg.function_id,
            )
        try:
            receipt = await self.enqueuer(queue, msg.function_id, msg.data, namespace, msg.traceparent, msg.baggage)
        except InvocationError:
            raise
        except Exception as exc:
            raise InvocationError(ErrorCode.ENQUEUE_ERROR, str(exc), function_id=msg.function_id) from exc
        return {"messageReceiptId": receipt}


def target_namespace(msg: InvokeFunction) -> str:
    """The namespace a call addresses: absent is `default`, blank is INVALID_NAMESPACE."""
    namespace = msg.namespace
    if namespace is not None and not namespace.strip():
        raise InvocationError(ErrorCode.INVALID_NAMESPACE, "namespace must not be blank", function_id=msg.function_id)
    return namespace or "default"


def with_caller(data: Any, caller: Connection) -> Any:
    """The payload as the executor gets it: an object payload names the calling worker (§3.2)."""
    return {**data, "_caller_worker_id": caller.worker_id} if isinstance(data, dict) else data


def outgoing(call: Invocation | InvokeFunction, iid: str, as_id: str | None, data: Any) -> InvokeFunction:
    """A call as it goes out to the worker that serves it: under `iid`, and under `as_id` when given."""
    return InvokeFunction(
        function_id=as_id or call.function_id,
        invocation_id=iid,
        data=data,
        metadata=call.metadata,
        traceparent=call.traceparent,
        baggage=call.baggage,
    )


def unsendable(exc: ProtocolError, function_id: str) -> InvocationError:
    return InvocationError(ErrorCode.SERIALIZATION_ERROR, str(exc), function_id=function_id)


def stopped(function_id: str | None = None) -> InvocationError:
    """The worker serving the call went away (or is going) before it answered."""
    return InvocationError(ErrorCode.INVOCATION_STOPPED, "Invocation stopped", function_id=function_id)
