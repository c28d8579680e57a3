"""The engine: owns connections, registries, the router and the built-in modules."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from teamster.engine.builtin import BindingSet, Input, Module
from teamster.engine.channels import ChannelRegistry
from teamster.engine.config import ConfigError, EngineConfig, first_error
from teamster.engine.connection import Connection, InprocConnection, LocalPeer
from teamster.engine.rbac import WORKERS_REGISTER, Session
from teamster.engine.registry import Conflict, FunctionEntry, FunctionRegistry, Invocation
from teamster.engine.router import Remote, Router, target_namespace
from teamster.engine.triggers import (
    Binding,
    TriggerConfigError,
    TriggerProvider,
    TriggerRegistry,
    TriggerType,
    WorkerProvider,
)
from teamster.protocol import (
    InvocationError,
    InvocationResult,
    InvokeFunction,
    Message,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import declared
from teamster.storage import Storage, open_storage

if TYPE_CHECKING:
    from teamster.engine.modules.traces import Traces

log = logging.getLogger("teamster.engine")

_NAMESPACED = (
    RegisterFunction,
    UnregisterFunction,
    RegisterService,
    RegisterTrigger,
    UnregisterTrigger,
    RegisterTriggerType,
    UnregisterTriggerType,
)
_REATTACH_EVICT_TIMEOUT_S = 5.0
_MAX_NAME = 280


class ConditionNotMet(Exception):
    """A binding's condition function returned `false`: the handler was skipped."""


class Engine:
    def __init__(self, config: EngineConfig | None = None, *, storage: Storage | None = None) -> None:
        self.config = config or EngineConfig()
        self._given_storage = storage
        self._storage = storage
        self.functions = FunctionRegistry()
        self.triggers = TriggerRegistry()
        self.router = Router(self.functions)
        self.channels = ChannelRegistry()
        self.connections: dict[str, Connection] = {}
        self.worker_names: dict[tuple[str, str], Connection] = {}
        self.worker_events: BindingSet[Input] = BindingSet()  # bindings of engine::workers-available
        self.modules: list[Module] = []
        self.ports: dict[str, int] = {}  # listener name -> bound port, filled by the listening modules
        # trigger type -> why a session may not bind it with a config (None: it may); see binding_denial
        self.binding_guards: dict[str, Callable[[Session, Any], str | None]] = {}
        self.started_at = time.time()
        self.stopping = False
        self.telemetry_frames: dict[str, int] = {}  # `OTLP`/`LOGS`/`MTRC` frames received, by kind
        self.traces: Traces | None = None  # the iii-traces module while it runs: where spans go
        self._grace: dict[str, asyncio.TimerHandle] = {}

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the engine has not started: storage is opened by start()")
        return self._storage

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from teamster.engine.modules import module_classes

        classes = module_classes()
        for entry in self.config.workers:
            cls = classes.get(entry.name)
            if cls is None:
                raise ConfigError(f"unknown worker {entry.name!r}; built-in workers are: {', '.join(sorted(classes))}")
            try:
                module_config = cls.Config.model_validate(entry.config)
            except ValidationError as exc:
                raise ConfigError(f"worker {entry.name}: {first_error(exc)}") from None
            self.modules.append(cls(self, module_config))
        if self._storage is None:
            self._storage = open_storage(self.config.storage, self.config.data_dir)
        self.started_at = time.time()
        started: list[Module] = []
        try:
            for module in self.modules:
                await module.start()
                started.append(module)
        except BaseException:
            # A half-started engine must not leave listeners, tasks or the database open.
            self.modules = started
            await self.stop()
            raise

    async def stop(self) -> None:
        self.stopping = True  # listeners refuse new workers from here on, so none slips back in
        for conn in list(self.connections.values()):
            await self.disconnect(conn)
            await conn.close(1001, "engine shutting down")
        for module in reversed(self.modules):
            await module.stop()
        await self.router.drain()
        if self._given_storage is None and self._storage is not None:
            await self._storage.close()
            self._storage = None

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- what built-in modules use ------------------------------------------------------------

    def builtin(
        self,
        function_id: str,
        handler: Callable[[Invocation], Awaitable[Any]],
        *,
        description: str | None = None,
        request_format: Any = None,
        response_format: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.functions.claim(
            FunctionEntry(
                id=function_id,
                namespace="default",
                execute=handler,
                description=description,
                request_format=request_format,
                response_format=response_format,
                metadata=metadata,
                registered_at_ms=now_ms(),
            )
        )

    def serve(self, module: object) -> None:
        """Register every method of a built-in module marked with `@handles(...)` (teamster.protocol.handles)."""
        for declaration, method in declared(module):
            self.builtin(
                declaration.function_id, method, description=declaration.description, metadata=declaration.metadata
            )

    async def builtin_type(self, type_id: str, provider: TriggerProvider, description: str | None = None) -> None:
        await self.triggers.add_type(
            TriggerType(id=type_id, namespace="default", provider=provider, description=description)
        )

    def ingest_telemetry(self, kind: str, payload: bytes) -> None:
        """An `OTLP`/`LOGS`/`MTRC` frame from a worker: counted; spans go on to iii-traces, the rest is dropped."""
        self.telemetry_frames[kind] = self.telemetry_frames.get(kind, 0) + 1
        if kind == "OTLP" and self.traces is not None:
            self.traces.ingest_otlp(payload)

    async def call(self, function_id: str, data: Any, *, namespace: str = "default", metadata: Any = None) -> Any:
        return await self.router.call(function_id, data, namespace=namespace, metadata=metadata)

    async def condition_holds(
        self, condition: str | None, event: Any, namespace: str = "default", metadata: Any = None
    ) -> bool:
        """A trigger's condition (§3.7): only a literal `false` skips the handler; no condition always holds."""
        if condition is None:
            return True
        return await self.router.call(condition, event, namespace=namespace, metadata=metadata) is not False

    async def fire(self, binding: Binding, event: Any) -> Any:
        """Run a binding's function with `event`, after its condition (skipped only on literal `false`)."""
        if not await self.condition_holds(binding.condition_function_id, event, binding.namespace, binding.metadata):
            raise ConditionNotMet(binding.id)
        return await self.router.call(
            binding.function_id, event, namespace=binding.namespace, metadata=binding.metadata
        )

    def fire_in_order(self, bindings: list[Binding], event: Any) -> None:
        """Fire bindings one after another in the background; the caller is not blocked."""
        if bindings:
            self.router.spawn(self._fire_sequence(bindings, event))

    async def _fire_sequence(self, bindings: list[Binding], event: Any) -> None:
        for binding in bindings:
            try:
                await self.fire(binding, event)
            except ConditionNotMet:
                pass
            except InvocationError as exc:
                log.warning(
                    "trigger %s (%s -> %s) failed: %s", binding.id, binding.trigger_type, binding.function_id, exc
                )

    # ---- connections --------------------------------------------------------------------------

    async def attach(self, peer: LocalPeer) -> InprocConnection:
        """Connect an in-process worker: same protocol, no socket, no encoding."""
        conn = InprocConnection(peer)
        await self.connect(conn)
        return conn

    async def connect(self, conn: Connection) -> None:
        self.connections[conn.worker_id] = conn
        await conn.send(WorkerRegistered(worker_id=conn.worker_id, reattach_token=conn.reattach_token))
        self._worker_event("worker_connected", conn.worker_id)
        grace = self.config.registration_namespace_grace_ms / 1000
        self._grace[conn.worker_id] = asyncio.get_running_loop().call_later(
            grace, lambda: self.router.spawn(self._pin_namespace(conn, "default"))
        )

    async def disconnect(self, conn: Connection) -> None:
        """Everything of §3.6, once: functions, invocations, triggers, trigger types, channels, name lease."""
        if conn.closing:
            return
        conn.closing = True
        timer = self._grace.pop(conn.worker_id, None)
        if timer is not None:
            timer.cancel()
        conn.held = None
        self.connections.pop(conn.worker_id, None)
        for namespace, function_id in conn.functions:
            self.functions.release(namespace, function_id, conn)
        self.router.stop_all(conn)
        for binding_id in list(conn.triggers):
            await self.triggers.remove_binding(binding_id)
        for key in conn.trigger_types:
            tt = self.triggers.types.get(key)
            if tt is not None and tt.owner is conn:
                await self.triggers.remove_type(key)
        self.channels.delete_owned_by(conn.worker_id)
        for name_key in [k for k, holder in self.worker_names.items() if holder is conn]:
            del self.worker_names[name_key]
        self._worker_event("worker_disconnected", conn.worker_id)

    def route(self, conn: Connection, msg: Message) -> bool:
        """Pass a call on to the worker serving it, or a result back to its caller, on the spot; False
        for a frame that needs `settle`. Most frames are one of these two, and need no coroutine."""
        if type(msg) is InvocationResult:
            self.router.resolve(msg)
            return True
        return (
            type(msg) is InvokeFunction
            and (conn.session is None or conn.session.direct)
            and msg.function_id != WORKERS_REGISTER
            and self.router.forward(conn, msg)
        )

    async def handle(self, conn: Connection, msg: Message) -> None:
        """One decoded frame from `conn`. Registrations apply in arrival order; calls run concurrently."""
        if not self.route(conn, msg):
            await self.settle(conn, msg)

    async def settle(self, conn: Connection, msg: Message) -> None:
        """A frame `route` declined: naming and registrations apply in arrival order; calls run in tasks."""
        if isinstance(msg, InvokeFunction):
            if msg.function_id == WORKERS_REGISTER:
                await self._name_from_frame(conn, msg)
            else:
                self.router.spawn(self._serve(conn, msg))
        elif isinstance(msg, _NAMESPACED):
            if conn.held is not None:
                conn.held.append(msg)
            else:
                await self._apply(conn, msg)
        elif isinstance(msg, TriggerRegistrationResult):
            await self._trigger_result(conn, msg)
        elif isinstance(msg, Reattach):
            await self._reattach(conn, msg)
        elif isinstance(msg, Ping):
            await conn.send(Pong())
        else:
            log.debug("ignoring %s from worker %s", msg.type, conn.worker_id)

    async def register_worker(self, inv: Invocation) -> dict[str, Any]:
        """`engine::workers::register` called as a function: the caller names itself."""
        conn = inv.caller
        if conn is None:
            raise InvocationError(ErrorCode.INVOCATION_ERROR, "engine::workers::register must be called by a worker")
        return await self.name_worker(conn, inv.data if isinstance(inv.data, dict) else {})

    async def name_worker(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """Name the worker, take its (namespace, name) lease and pin its namespace."""
        namespace = data.get("namespace")
        if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
            raise InvocationError(ErrorCode.INVALID_NAMESPACE, "namespace must be a non-blank string")
        namespace = namespace or "default"
        name = _sanitize(data.get("name")) or conn.name
        holder = self.worker_names.get((namespace, name))
        if holder is not None and holder is not conn and not holder.closing:
            await conn.send(
                RegistrationRejected(
                    code=ErrorCode.WORKER_NAMESPACE_CONFLICT,
                    namespace=namespace,
                    worker_name=name,
                    owner_worker_id=holder.worker_id,
                )
            )
            await self.disconnect(conn)
            await conn.close(1008, "worker name already registered")
            return {"success": False}
        for key in [k for k, c in self.worker_names.items() if c is conn]:
            del self.worker_names[key]
        self.worker_names[(namespace, name)] = conn
        conn.name = name
        conn.info = {k: v for k, v in data.items() if not k.startswith("_")}
        await self._pin_namespace(conn, namespace)
        self._worker_event("worker_metadata_updated", conn.worker_id)
        return {"success": True}

    # ---- internals ----------------------------------------------------------------------------

    async def _name_from_frame(self, conn: Connection, msg: InvokeFunction) -> None:
        """Handled inline, not spawned, so held registrations drain before the frames that follow."""
        data = msg.data if isinstance(msg.data, dict) else {}
        try:
            if conn.session is not None:
                conn.session.check_worker_name(data)
            reply = InvocationResult(
                invocation_id="", function_id=msg.function_id, result=await self.name_worker(conn, data)
            )
        except InvocationError as exc:
            log.warning("worker %s: %s", conn.worker_id, exc)
            reply = InvocationResult(invocation_id="", function_id=msg.function_id, error=exc.to_wire())
        self._reply(conn, msg, reply)

    async def _serve(self, conn: Connection, msg: InvokeFunction) -> None:
        try:
            if conn.session is None:
                result = await self.router.invoke(conn, msg)
            else:
                result = await self._invoke_checked(conn, conn.session, msg)
        except InvocationError as exc:
            reply = InvocationResult(invocation_id="", function_id=msg.function_id, error=exc.to_wire())
        except Exception as exc:  # a bug in a built-in must not take the connection down
            log.exception("built-in %s failed", msg.function_id)
            reply = InvocationResult(
                invocation_id="",
                function_id=msg.function_id,
                error={"code": ErrorCode.INVOCATION_ERROR, "message": str(exc)},
            )
        else:
            reply = InvocationResult(invocation_id="", function_id=msg.function_id, result=result)
        self._reply(conn, msg, reply)

    async def _invoke_checked(self, conn: Connection, session: Session, msg: InvokeFunction) -> Any:
        """A call from an RBAC or middleware listener: FORBIDDEN, or handed to the listener's middleware.
        The engine's own `engine::*` built-ins skip the middleware, which would run them as itself."""
        namespace = target_namespace(msg)
        entry = self.functions.get(namespace, msg.function_id)
        session.check_call(msg.function_id, namespace, entry.metadata if entry is not None else None)
        middleware = session.middleware_function_id
        engine_owned = msg.function_id.startswith("engine::") and (entry is None or entry.owner is None)
        if middleware is None or engine_owned:
            return await self.router.invoke(conn, msg)
        return await self.router.call(
            middleware, session.middleware_input(msg, namespace), namespace=namespace, metadata=msg.metadata
        )

    def _reply(self, conn: Connection, msg: InvokeFunction, reply: InvocationResult) -> None:
        is_void = msg.action is not None and msg.action.get("type") == "void"
        if msg.invocation_id is None or is_void:
            return
        reply.invocation_id = msg.invocation_id
        conn.answer(reply)

    async def _pin_namespace(self, conn: Connection, namespace: str) -> None:
        timer = self._grace.pop(conn.worker_id, None)
        if timer is not None:
            timer.cancel()
        if conn.held is None or conn.closing:
            return
        conn.namespace = namespace
        held, conn.held = conn.held, None
        for msg in held:
            await self._apply(conn, msg)

    async def _apply(self, conn: Connection, msg: Message) -> None:
        namespace = conn.namespace or "default"
        if isinstance(msg, RegisterFunction):
            await self._register_function(conn, msg, namespace)
        elif isinstance(msg, UnregisterFunction):
            function_id = conn.session.filed_as("function", msg.id) if conn.session else msg.id
            if self.functions.release(namespace, function_id, conn):
                conn.functions.discard((namespace, function_id))
        elif isinstance(msg, RegisterTrigger):
            await self._register_trigger(conn, msg)
        elif isinstance(msg, UnregisterTrigger):
            binding_id = conn.session.filed_as("trigger", msg.id) if conn.session else msg.id
            if binding_id in conn.triggers:
                conn.triggers.discard(binding_id)
                await self.triggers.remove_binding(binding_id)
        elif isinstance(msg, RegisterTriggerType):
            await self._register_trigger_type(conn, msg, msg.namespace or namespace)
        elif isinstance(msg, UnregisterTriggerType):
            type_id = conn.session.filed_as("trigger_type", msg.id) if conn.session else msg.id
            key = (msg.namespace or namespace, type_id)
            if key in conn.trigger_types:
                conn.trigger_types.discard(key)
                await self.triggers.remove_type(key)
        # RegisterService only groups functions for display; services derive from id prefixes.

    async def _register_function(self, conn: Connection, msg: RegisterFunction, namespace: str) -> None:
        remote = Remote(self.router, conn)
        if conn.session is not None:
            vetted = await conn.session.vet_function(self.call, msg, namespace)
            if vetted is None:
                return
            if vetted.id != msg.id:  # calls reach the worker under the id it registered
                remote.as_id = msg.id
            msg = vetted
        reserved = conn.session is not None and not conn.session.may_claim(msg.id, namespace, self.functions)
        if reserved or (msg.id.startswith("engine::") and namespace != "default"):
            await conn.send(
                RegistrationRejected(
                    code=ErrorCode.FUNCTION_NAMESPACE_CONFLICT,
                    namespace=namespace,
                    function_id=msg.id,
                    owner_worker_id="",
                )
            )
            return
        execute = _not_invokable if msg.invocation is not None else conn.executor(msg.id, remote)
        entry = FunctionEntry(
            id=msg.id,
            namespace=namespace,
            execute=execute,
            owner=conn,
            description=msg.description,
            request_format=msg.request_format,
            response_format=msg.response_format,
            metadata=msg.metadata,
            registered_at_ms=now_ms(),
        )
        try:
            self.functions.claim(entry)
        except Conflict as exc:
            await conn.send(
                RegistrationRejected(
                    code=ErrorCode.FUNCTION_NAMESPACE_CONFLICT,
                    namespace=namespace,
                    function_id=msg.id,
                    owner_worker_id=exc.owner_worker_id,
                )
            )
            return
        conn.functions.add((namespace, msg.id))

    async def _register_trigger(self, conn: Connection, msg: RegisterTrigger) -> None:
        for value in (msg.namespace, msg.trigger_namespace):
            if value is not None and not value.strip():
                await self._refuse_trigger(conn, msg, ErrorCode.INVALID_NAMESPACE, "namespace must not be blank")
                return
        if conn.session is not None:
            vetted = await conn.session.vet_trigger(self.call, msg)
            if vetted is None:
                return
            msg = vetted
            target = self.functions.get(msg.namespace or "default", msg.function_id)
            denied = conn.session.denial(
                msg.function_id, msg.namespace or "default", target.metadata if target is not None else None
            )
            if denied is None:  # or a trigger would let the worker reach what it may not call
                denied = self.binding_denial(conn.session, msg.trigger_type, msg.config)
            if denied is not None:
                await self._refuse_trigger(conn, msg, ErrorCode.FORBIDDEN, denied)
                return
        binding = Binding(
            id=msg.id,
            trigger_type=msg.trigger_type,
            function_id=msg.function_id,
            config=msg.config,
            metadata=msg.metadata,
            namespace=msg.namespace or "default",
            trigger_namespace=msg.trigger_namespace,
            owner=conn,
        )
        try:
            await self.triggers.add_binding(binding)
        except TriggerConfigError as exc:
            await self._refuse_trigger(conn, msg, ErrorCode.TRIGGER_REGISTRATION_FAILED, str(exc))
            return
        conn.triggers.add(msg.id)

    def binding_denial(self, session: Session, trigger_type: str, config: Any) -> str | None:
        """Why `session` may not bind a `trigger_type` trigger with `config` (the modules' guards: a
        `state` trigger on a reserved scope, say), or None when it may."""
        guard = self.binding_guards.get(trigger_type)
        return None if guard is None else guard(session, config)

    async def _refuse_trigger(self, conn: Connection, msg: RegisterTrigger, code: str, message: str) -> None:
        await conn.send(
            TriggerRegistrationResult(
                id=msg.id,
                trigger_type=msg.trigger_type,
                function_id=msg.function_id,
                error={"code": code, "message": message},
            )
        )

    async def _register_trigger_type(self, conn: Connection, msg: RegisterTriggerType, namespace: str) -> None:
        if conn.session is not None:
            vetted = await conn.session.vet_trigger_type(self.call, msg)
            if vetted is None:
                return
            msg = vetted
        key = (namespace, msg.id)
        current = self.triggers.types.get(key)
        if current is not None and current.owner is None:
            log.warning("worker %s tried to replace built-in trigger type %s; ignored", conn.name, msg.id)
            return
        if current is not None and current.owner is not None:
            current.owner.trigger_types.discard(key)
        await self.triggers.add_type(
            TriggerType(
                id=msg.id,
                namespace=namespace,
                provider=WorkerProvider(conn, namespace),
                owner=conn,
                description=msg.description,
                trigger_request_format=msg.trigger_request_format,
                call_request_format=msg.call_request_format,
            )
        )
        conn.trigger_types.add(key)

    async def _trigger_result(self, conn: Connection, msg: TriggerRegistrationResult) -> None:
        if msg.error is None:
            return
        binding = self.triggers.bindings.get(msg.id)
        if binding is None or binding.provider_key is None:
            return
        provider = self.triggers.types.get(binding.provider_key)
        if provider is None or provider.owner is not conn:
            return  # only the type's own provider may refuse its bindings
        self.triggers.park(msg.id)
        if binding.owner is not None:
            await binding.owner.send(msg)

    async def _reattach(self, conn: Connection, msg: Reattach) -> None:
        old = self.connections.get(msg.previous_worker_id)
        if old is None or old is conn or not secrets.compare_digest(old.reattach_token, msg.reattach_token):
            return
        await self.disconnect(old)
        try:
            await asyncio.wait_for(old.close(1000, "reattached"), _REATTACH_EVICT_TIMEOUT_S)
        except TimeoutError:
            log.warning("evicted connection %s did not close in time", old.worker_id)

    def _worker_event(self, event: str, worker_id: str) -> None:
        self.fire_in_order(list(self.worker_events.bindings.values()), {"event": event, "worker_id": worker_id})


async def _not_invokable(inv: Invocation) -> Any:
    raise InvocationError(
        ErrorCode.FUNCTION_NOT_INVOKABLE,
        f"{inv.function_id} is an HTTP-invoked function; teamster does not run the iii-http-functions worker",
        function_id=inv.function_id,
    )


def _sanitize(name: Any) -> str:
    if not isinstance(name, str):
        return ""
    return "".join(ch for ch in name if ch.isprintable())[:_MAX_NAME].strip()
