"""`iii-observe`: the observe protocol (`observe.v1`, iii-sdk 0.25) and local dispatch (`local-dispatch.v1`).

A worker observes a function (`observe {id, source, target, ...}`); every invocation of it that the
observer's filters select activates the observer's target. Invocations routed through the engine are
matched here; a worker that runs its own functions in-process (local dispatch, confirmed by
`functionregistered`) matches them itself and reports them (`invocationsobserved`), and an
owner-delivered function hands events to its observers itself (`obs.emit` reports, `obs.call` calls).
The observed function's owner, when it speaks observe.v1, is told of its observers
(`functionregistered`, `observeradded`, `observerremoved`) and acks each (`observerack`): an observer
is active once acked. Observers die with their watcher's connection (the SDK replays them, same id,
on reconnect); the observers of a function whose owner left wait, `suspended`, for the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from jsonschema import SchemaError, validate  # type: ignore[import-untyped]
from jsonschema import ValidationError as SchemaViolation
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teamster.engine.builtin import Input, Module, parse
from teamster.engine.connection import Connection
from teamster.engine.modules.observe.access import observe_denial, target_denial, unrestricted
from teamster.engine.modules.observe.observed import Observed
from teamster.engine.modules.observe.observer import (
    DEFAULT_CAPTURE,
    Observer,
    ObserveRefusal,
    ObserveRequest,
    State,
    compile_filter,
)
from teamster.engine.registry import FunctionEntry, Invocation, Lineage
from teamster.engine.router import OBSERVE_FEATURE, lineage_for, lineage_of
from teamster.protocol import InvocationError, InvokeFunction, Message
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import handles
from teamster.protocol.ids import new_id
from teamster.protocol.messages import (
    FunctionRegistered,
    InvocationsObserved,
    Observe,
    ObserverAck,
    ObserverAdded,
    ObserveResult,
    ObserverRemoved,
    ObserverStateChanged,
    Unobserve,
)

if TYPE_CHECKING:
    from teamster.engine.engine import Engine

log = logging.getLogger("teamster.engine")

MAX_OBSERVE_DEPTH = 8  # an activation deeper than this is dropped (LOOP_GUARD): observer loops end
ENGINE_CALLER = "iii-engine"  # the worker name an activation's caller carries
Key = tuple[str, str]  # (namespace, function_id) as the engine files the function


class ObserveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_observers_per_connection: int = Field(default=256, ge=1)


class Descriptor(BaseModel):
    """`registerfunction.observe`: how a function's observers are delivered, and whether it has any."""

    model_config = ConfigDict(extra="ignore")

    delivery: Literal["auto", "owner"] = "auto"
    args_format: dict[str, Any] | None = None
    allow: bool = True

    @classmethod
    def of(cls, value: dict[str, Any] | None) -> Descriptor:
        try:
            return cls.model_validate(value or {})
        except ValidationError:
            return cls(allow=False)  # a descriptor the engine cannot read observes nothing


@dataclass(frozen=True, slots=True)
class Owned:
    """A worker's function as observe sees it: its owner, the id the owner knows it by, its descriptor."""

    conn: Connection
    wire_id: str
    descriptor: Descriptor

    @property
    def acks(self) -> bool:
        return OBSERVE_FEATURE in self.conn.features


class ObserverId(Input):
    id: str


class Observers(Module):
    name = "iii-observe"
    Config = ObserveConfig
    config: ObserveConfig
    features: ClassVar[tuple[str, ...]] = (OBSERVE_FEATURE, "local-dispatch.v1")

    def __init__(self, engine: Engine, config: BaseModel) -> None:
        super().__init__(engine, config)
        self.observers: dict[str, Observer] = {}
        self.by_function: dict[Key, dict[str, Observer]] = {}
        self.owned: dict[Key, Owned] = {}
        self._wire: dict[tuple[Connection, str], Key] = {}  # (owner, id it registered) -> engine-side key
        self._revision = 0
        self._unwatch: Callable[[], None] | None = None

    async def start(self) -> None:
        self.engine.observation = self
        self.engine.router.on_observed = self._invoked
        self._unwatch = self.engine.functions.watch(self._claimed)
        self.engine.serve(self)

    async def stop(self) -> None:
        for obs in list(self.observers.values()):
            if obs.expiry is not None:
                obs.expiry.cancel()
        if self._unwatch is not None:
            self._unwatch()
        self.engine.router.watched.clear()
        self.engine.router.on_observed = None
        self.engine.observation = None

    # ---- the engine's hooks (teamster.engine.observation) -------------------------------------

    async def frame(self, conn: Connection, msg: Message) -> None:
        if isinstance(msg, Observe):
            self._observe(conn, msg)
        elif isinstance(msg, Unobserve):
            obs = self.observers.get(msg.id)
            if obs is not None and obs.watcher is conn:
                self._end(
                    obs, "disposed", {"code": ErrorCode.UNOBSERVED, "message": "disposed by the observing worker"}
                )
        elif isinstance(msg, ObserverAck):
            self._ack(conn, msg)
        elif isinstance(msg, InvocationsObserved):
            self._reported(conn, msg)
        # `localinvocationstats` (counts of local calls) is accepted and not kept.

    def function_registered(
        self, conn: Connection, entry: FunctionEntry, wire_id: str, descriptor: dict[str, Any] | None
    ) -> None:
        key = (entry.namespace, entry.id)
        owned = Owned(conn, wire_id, Descriptor.of(descriptor))
        self.owned[key] = owned
        self._wire[(conn, wire_id)] = key
        if owned.acks:
            revision = self._next_revision()
            listed: list[dict[str, Any]] = []
            for obs in list(self.by_function.get(key, {}).values()):
                obs.offered_to = obs.acked_by = None
                if self._ready_for_owner(obs):
                    obs.offered_to = conn
                    listed.append(obs.owner_view())
            local = conn.session is None or conn.session.direct  # a checked session's calls go through the engine
            conn.post(
                FunctionRegistered(
                    id=wire_id, namespace=entry.namespace, revision=revision, local_dispatch=local, observers=listed
                )
            )
        self._settle_related(key)

    def function_released(self, conn: Connection, namespace: str, function_id: str) -> None:
        self._release((namespace, function_id), conn)

    def connection_closed(self, conn: Connection) -> None:
        for obs in [o for o in self.observers.values() if o.watcher is conn]:
            self._end(obs, "disposed", None)
        for key in [k for k, owned in self.owned.items() if owned.conn is conn]:
            self._release(key, conn)

    async def owner_call(self, conn: Connection, msg: InvokeFunction) -> Any:
        """`obs.call`: the owner of an owner-delivered function calls one observer's target, and gets its result."""
        observer_id = (msg.activation or {}).get("observer_id")
        obs = self.observers.get(observer_id) if isinstance(observer_id, str) else None
        if obs is None or obs.state != "active":
            raise InvocationError(ErrorCode.OBSERVER_NOT_ACTIVE, f"observer {observer_id} is not active")
        owned = self.owned.get((obs.namespace, obs.function_id))
        if owned is None or owned.conn is not conn:
            raise InvocationError(ErrorCode.FORBIDDEN, f"only the owner of {obs.function_id} delivers to its observers")
        base = lineage_of(conn, msg)
        lineage = self._fire(obs, base.observe_depth, base.caller)
        if lineage is None:
            raise InvocationError(ErrorCode.LOOP_GUARD, f"observe chains stop at depth {MAX_OBSERVE_DEPTH}")
        try:
            return await self.engine.router.call(
                obs.target_id, msg.data, namespace=obs.target_namespace, metadata=obs.metadata, lineage=lineage
            )
        finally:
            self._spent(obs)

    # ---- built-in functions -------------------------------------------------------------------

    @handles("engine::observers::get", description="One observer: its source, target, policy, state and counters")
    async def get(self, inv: Invocation) -> dict[str, Any]:
        request = parse(ObserverId, inv.data, "engine::observers::get")
        obs = self.observers.get(request.id)
        if obs is None or not _may_see(inv.caller, obs):
            raise InvocationError(ErrorCode.OBSERVER_NOT_FOUND, f"no observer {request.id}")
        return {"observer": obs.info()}

    @handles("engine::observers::list", description="The observers the caller may see (its own; all for admin)")
    async def list_observers(self, inv: Invocation) -> dict[str, Any]:
        return {"observers": [obs.info() for obs in self.observers.values() if _may_see(inv.caller, obs)]}

    # ---- observers: creation and state --------------------------------------------------------

    def _observe(self, conn: Connection, msg: Observe) -> None:
        try:
            obs = self._new_observer(conn, msg)
        except ObserveRefusal as refusal:
            conn.post(ObserveResult(id=msg.id, state="error", error=refusal.to_wire()))
            return
        self.observers[obs.id] = obs
        self.by_function.setdefault((obs.namespace, obs.function_id), {})[obs.id] = obs
        self._settle(obs)

    def _new_observer(self, conn: Connection, msg: Observe) -> Observer:
        request = ObserveRequest.decode(
            {
                "source": msg.source,
                "target": msg.target,
                "metadata": msg.metadata,
                "max_fires": msg.max_fires,
                "expires_in_ms": msg.expires_in_ms,
                "max_in_flight": msg.max_in_flight,
            }
        )
        source, target = request.source, request.target
        compiled = compile_filter(source.filters)
        namespace, target_namespace = source.namespace or "default", target.namespace or "default"
        if (namespace, source.function_id) == (target_namespace, target.function_id):
            raise ObserveRefusal(ErrorCode.SELF_TARGET, "an observer's target cannot be the function it observes")
        existing = self.observers.get(msg.id)
        if existing is not None:
            if existing.watcher is not conn and not existing.watcher.closing:
                raise ObserveRefusal(ErrorCode.OBSERVER_EXISTS, f"observer {msg.id} belongs to another worker")
            self._end(existing, "disposed", None)
        held = sum(1 for obs in self.observers.values() if obs.watcher is conn)
        if held >= self.config.max_observers_per_connection:
            raise ObserveRefusal(
                ErrorCode.TOO_MANY_OBSERVERS, f"a connection holds at most {self.config.max_observers_per_connection}"
            )
        obs = Observer(
            id=msg.id,
            watcher=conn,
            function_id=source.function_id,
            namespace=namespace,
            target_id=target.function_id,
            target_namespace=target_namespace,
            args=source.args or {},
            filter=compiled,
            capture=tuple(source.capture) if source.capture is not None else DEFAULT_CAPTURE,
            on=source.on,
            deliver=source.deliver,
            metadata=request.metadata,
            max_fires=request.max_fires,
            max_in_flight=request.max_in_flight,
            slots=asyncio.Semaphore(request.max_in_flight) if request.max_in_flight else None,
        )
        if request.expires_in_ms is not None:
            expired = {"code": ErrorCode.EXPIRED, "message": f"expired after {request.expires_in_ms} ms"}
            obs.expiry = asyncio.get_running_loop().call_later(
                request.expires_in_ms / 1000, lambda: self._end(obs, "disposed", expired)
            )
        return obs

    def _settle(self, obs: Observer) -> None:
        """Bring `obs` to the state its function, target and owner call for."""
        if obs.state in ("error", "disposed"):
            return
        try:
            state = self._wanted(obs)
        except ObserveRefusal as refusal:
            self._end(obs, "error", refusal.to_wire())
            return
        self._set(obs, state)

    def _wanted(self, obs: Observer) -> State:
        if not self._ready_for_owner(obs):
            return "suspended" if obs.was_active else "pending"
        owned = self._owner_of(obs)
        if owned is None or not owned.acks:
            # A built-in, an in-process worker or a pre-0.25 SDK: no one to ack, and only routed calls to see.
            return "pending" if owned is not None and owned.descriptor.delivery == "owner" else "active"
        if obs.acked_by is owned.conn:
            return "active"
        if obs.offered_to is not owned.conn:
            obs.offered_to = owned.conn
            owned.conn.post(
                ObserverAdded(
                    function_id=owned.wire_id,
                    namespace=obs.namespace,
                    revision=self._next_revision(),
                    observer=obs.owner_view(),
                )
            )
        return "pending"

    def _ready_for_owner(self, obs: Observer) -> bool:
        """Whether the function and target are there and `obs` may have them; ObserveRefusal when it may not."""
        functions = self.engine.functions
        entry = functions.get(obs.namespace, obs.function_id)
        if entry is None:
            return False
        denied = observe_denial(obs.watcher, entry, functions)
        if denied is not None:
            raise ObserveRefusal(ErrorCode.FORBIDDEN, denied)
        owned = self._owner_of(obs)
        descriptor = owned.descriptor if owned is not None else Descriptor()
        if not descriptor.allow:
            raise ObserveRefusal(ErrorCode.NOT_OBSERVABLE, f"{obs.function_id} does not accept observers")
        _check_args(obs, descriptor)
        target = functions.get(obs.target_namespace, obs.target_id)
        if target is None:
            return False
        denied = target_denial(obs.watcher, target)
        if denied is not None:
            raise ObserveRefusal(ErrorCode.FORBIDDEN, denied)
        return True

    def _owner_of(self, obs: Observer) -> Owned | None:
        key = (obs.namespace, obs.function_id)
        entry = self.engine.functions.get(*key)
        owned = self.owned.get(key)
        return owned if owned is not None and entry is not None and entry.owner is owned.conn else None

    def _set(self, obs: Observer, state: State, reason: dict[str, str] | None = None) -> None:
        if state == obs.state and obs.answered:
            return
        obs.state, obs.reason = state, reason
        obs.was_active = obs.was_active or state == "active"
        self._rewatch((obs.namespace, obs.function_id))
        if obs.watcher.closing:
            return
        if not obs.answered:
            obs.answered = True
            obs.watcher.post(ObserveResult(id=obs.id, state=state, error=reason))
        else:
            obs.watcher.post(ObserverStateChanged(id=obs.id, state=state, reason=reason, fires=obs.fires))

    def _end(self, obs: Observer, state: Literal["error", "disposed"], reason: dict[str, str] | None) -> None:
        """`obs` is over: forgotten, its owner told, its watcher told why (unless `reason` is None)."""
        if self.observers.get(obs.id) is not obs:
            return
        del self.observers[obs.id]
        key = (obs.namespace, obs.function_id)
        observers = self.by_function.get(key, {})
        observers.pop(obs.id, None)
        if not observers:
            self.by_function.pop(key, None)
        if obs.expiry is not None:
            obs.expiry.cancel()
        owned = self.owned.get(key)
        if obs.offered_to is not None and owned is not None and owned.conn is obs.offered_to:
            owned.conn.post(
                ObserverRemoved(
                    function_id=owned.wire_id, namespace=obs.namespace, revision=self._next_revision(), id=obs.id
                )
            )
        if reason is None:
            obs.state = state
            self._rewatch(key)
        else:
            self._set(obs, state, reason)

    def _ack(self, conn: Connection, msg: ObserverAck) -> None:
        obs = self.observers.get(msg.id)
        if obs is None or obs.offered_to is not conn:
            return
        if msg.error is not None:
            code, message = msg.error.get("code"), msg.error.get("message")
            refusal = ObserveRefusal(
                code if isinstance(code, str) and code else ErrorCode.OBSERVE_REJECTED,
                message if isinstance(message, str) else "rejected by the function's owner",
            )
            self._end(obs, "error", refusal.to_wire())
            return
        obs.acked_by = conn
        self._settle(obs)

    def _release(self, key: Key, conn: Connection) -> None:
        owned = self.owned.get(key)
        if owned is None or owned.conn is not conn:
            return
        del self.owned[key]
        self._wire.pop((conn, owned.wire_id), None)
        for obs in self.by_function.get(key, {}).values():
            obs.offered_to = obs.acked_by = None
        self._settle_related(key)

    def _claimed(self, entry: FunctionEntry) -> None:
        """A function appeared. A worker's goes through `function_registered`, with its descriptor."""
        if entry.owner is None:
            self._settle_related((entry.namespace, entry.id))

    def _settle_related(self, key: Key) -> None:
        for obs in list(self.observers.values()):
            if key in ((obs.namespace, obs.function_id), (obs.target_namespace, obs.target_id)):
                self._settle(obs)

    def _rewatch(self, key: Key) -> None:
        """The router reports a function's calls only while one of its observers is active."""
        watched = self.engine.router.watched
        if any(obs.state == "active" for obs in self.by_function.get(key, {}).values()):
            watched.add(key)
        else:
            watched.discard(key)

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    # ---- activations --------------------------------------------------------------------------

    def _invoked(
        self,
        inv: Invocation,
        sent: Any,
        started_ms: float,
        duration_ms: float,
        result: Any,
        error: InvocationError | None,
    ) -> None:
        """A routed call of a watched function ended: activate each active observer it matches."""
        key = (inv.namespace, inv.function_id)
        owned = self.owned.get(key)
        if owned is not None and owned.descriptor.delivery == "owner":
            return  # its owner decides what its observers see
        ok = error is None
        parts: dict[str, Any] = {"input": sent}
        if error is None:
            parts["output"] = result
        else:
            parts["error"] = error.to_wire()
        lineage = lineage_for(inv)
        if lineage is not None and lineage.caller is not None:
            parts["caller"] = lineage.caller
        if inv.metadata is not None:
            parts["metadata"] = inv.metadata
        call = Observed(
            function_id=inv.function_id,
            namespace=inv.namespace,
            invocation_id=inv.invocation_id,
            ok=ok,
            parts=parts,
            started_at_ms=int(started_ms),
            duration_ms=duration_ms,
            observe_depth=lineage.observe_depth if lineage is not None else 0,
        )
        for obs in list(self.by_function.get(key, {}).values()):
            if obs.state == "active" and obs.accepts(ok) and obs.filter.matches(call.document):
                self._activate(obs, call)

    def _reported(self, conn: Connection, msg: InvocationsObserved) -> None:
        """Invocations an owner ran locally, or events it emitted, each with the observers it matched."""
        for item in msg.items:
            function_id = item.get("function_id") if isinstance(item, dict) else None
            key = self._wire.get((conn, function_id)) if isinstance(function_id, str) else None
            if key is None:
                continue
            call = Observed.from_report(item, key[1], key[0])
            matched = item.get("matched")
            for observer_id in matched if isinstance(matched, list) else []:
                obs = self.observers.get(observer_id) if isinstance(observer_id, str) else None
                if obs is not None and obs.state == "active" and (obs.namespace, obs.function_id) == key:
                    self._activate(obs, call)

    def _activate(self, obs: Observer, call: Observed) -> None:
        caller = {"worker_name": ENGINE_CALLER, "function_id": obs.function_id, "invocation_id": call.invocation_id}
        lineage = self._fire(obs, call.observe_depth, caller)
        if lineage is not None:
            activation_id = (lineage.activation or {})["activation_id"]
            self.engine.router.spawn(self._deliver(obs, call.payload_for(obs, activation_id), lineage))
            self._spent(obs)

    def _fire(self, obs: Observer, depth: int, caller: dict[str, Any] | None) -> Lineage | None:
        """Count one activation of `obs` and give its lineage; None when the loop guard drops it."""
        if depth + 1 > MAX_OBSERVE_DEPTH:
            obs.drop(ErrorCode.LOOP_GUARD)
            return None
        obs.fires += 1
        return Lineage(caller, depth + 1, {"observer_id": obs.id, "activation_id": new_id()})

    def _spent(self, obs: Observer) -> None:
        if obs.max_fires is not None and obs.fires >= obs.max_fires:
            self._end(obs, "disposed", {"code": ErrorCode.MAX_FIRES, "message": f"fired {obs.fires} times"})

    async def _deliver(self, obs: Observer, payload: Any, lineage: Lineage) -> None:
        slots = obs.slots
        if slots is not None:
            await slots.acquire()
        try:
            await self.engine.router.call(
                obs.target_id, payload, namespace=obs.target_namespace, metadata=obs.metadata, lineage=lineage
            )
        except InvocationError as exc:
            obs.drop(ErrorCode.TARGET_FAILED)
            log.debug("observer %s: target %s failed: %s", obs.id, obs.target_id, exc)
        finally:
            if slots is not None:
                slots.release()


def _check_args(obs: Observer, descriptor: Descriptor) -> None:
    if descriptor.delivery == "auto":
        if obs.args:
            raise ObserveRefusal(
                ErrorCode.INVALID_ARGS, f"{obs.function_id} is auto-delivered: its observers take no args"
            )
        return
    if descriptor.args_format is not None:
        try:
            validate(obs.args, descriptor.args_format)
        except (SchemaViolation, SchemaError) as exc:
            raise ObserveRefusal(ErrorCode.INVALID_ARGS, exc.message) from None


def _may_see(caller: Connection | None, obs: Observer) -> bool:
    return caller is None or caller is obs.watcher or unrestricted(caller)
