"""`iii-engine-functions`: `engine::*` introspection, channels, durable bindings and catalogue events (§4.1)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from pydantic import Field

from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.connection import Connection
from teamster.engine.rbac import Session
from teamster.engine.registry import FunctionEntry, Invocation
from teamster.engine.triggers import Binding, TriggerConfigError
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode

DURABLE_SCOPE = "__teamster::triggers"
CATALOGUE_POLL_S = 5.0
CHANNEL_SWEEP_S = 60.0


class CreateChannel(Input):
    buffer_size: int | None = Field(default=None, ge=1, le=1024)


class ListFunctions(Input):
    prefix: str | None = None
    search: str | None = None
    worker: str | None = None
    workers: list[str] | None = None
    include_internal: bool = False


class FunctionInfo(Input):
    function_id: str | None = None
    function_ids: list[str] | None = Field(default=None, max_length=32)
    namespace: str = "default"


class ListWorkers(Input):
    search: str | None = None
    runtime: str | None = None
    status: str | None = None


class WorkerInfo(Input):
    name: str
    namespace: str = "default"


class ById(Input):
    id: str | None = None
    namespace: str | None = None


class RegisterTrigger(Input):
    trigger_type: str
    function_id: str
    config: Any = Field(default_factory=dict)
    metadata: Any = None
    trigger_namespace: str | None = None


class UnregisterTrigger(Input):
    id: str
    trigger_type: str | None = None


class EngineFunctions(Module):
    name = "iii-engine-functions"

    async def start(self) -> None:
        engine = self.engine
        engine.builtin(
            "engine::workers::register", engine.register_worker, description="Name a worker and pin its namespace"
        )
        for function_id, handler, description in (
            ("engine::channels::create", self._create_channel, "Create a data channel: a writer and a reader ref"),
            ("engine::functions::list", self._list_functions, "List registered functions"),
            ("engine::functions::info", self._function_info, "Describe functions: schemas, owner, triggers"),
            ("engine::workers::list", self._list_workers, "List connected workers"),
            ("engine::workers::info", self._worker_info, "Describe one worker"),
            ("engine::triggers::list", self._list_trigger_types, "List trigger types"),
            ("engine::triggers::info", self._trigger_type_info, "Describe a trigger type"),
            ("engine::registered-triggers::list", self._list_bindings, "List trigger instances"),
            ("engine::registered-triggers::info", self._binding_info, "Describe a trigger instance"),
            ("engine::register_trigger", self._register_durable, "Create a durable binding that outlives its caller"),
            ("engine::unregister_trigger", self._unregister_durable, "Remove a durable binding"),
        ):
            engine.builtin(function_id, handler, description=description)
        self._catalogue_events: BindingSet[Input] = BindingSet()
        await engine.builtin_type(
            "engine::workers-available", engine.worker_events, "Workers connected, disconnected or renamed"
        )
        await engine.builtin_type(
            "engine::functions-available", self._catalogue_events, "The function catalogue changed"
        )
        for key, value in await engine.storage.state.list(DURABLE_SCOPE):
            await self._bind_durable(key, value)
        self._tasks = [
            asyncio.create_task(self._watch_catalogue()),
            asyncio.create_task(self._sweep_channels()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- functions ----------------------------------------------------------------------------

    async def _create_channel(self, inv: Invocation) -> dict[str, Any]:
        req = parse(CreateChannel, inv.data, inv.function_id)
        channel = self.engine.channels.create(inv.caller.worker_id if inv.caller else None, req.buffer_size)
        return {"writer": channel.ref("write"), "reader": channel.ref("read")}

    async def _list_functions(self, inv: Invocation) -> dict[str, Any]:
        req = parse(ListFunctions, inv.data, inv.function_id)
        names = set(req.workers or []) | ({req.worker} if req.worker else set())
        session = inv.session
        rows = []
        for entry in sorted(self.engine.functions.all(), key=lambda e: (e.namespace, e.id)):
            if not req.include_internal and _is_internal(entry):
                continue
            if req.prefix and not entry.id.startswith(req.prefix):
                continue
            if req.search and req.search.lower() not in f"{entry.id} {entry.description or ''}".lower():
                continue
            if names and entry.worker_name not in names:
                continue
            if not _visible(session, entry):
                continue
            rows.append(_function_row(entry))
        return {"functions": rows}

    async def _function_info(self, inv: Invocation) -> dict[str, Any]:
        req = parse(FunctionInfo, inv.data, inv.function_id)
        ids = req.function_ids or ([req.function_id] if req.function_id else [])
        if not ids:
            raise InvocationError(
                ErrorCode.INVALID_ARGUMENTS, "give function_id or function_ids", function_id=inv.function_id
            )
        session = inv.session
        found = []
        for function_id in ids:
            entry = self.engine.functions.get(req.namespace, function_id)
            if entry is None or not _visible(session, entry):
                if req.function_id:
                    raise _unavailable(entry, function_id, req.namespace)
                continue
            triggers = [
                b.summary()
                for b in self.engine.triggers.bindings.values()
                if b.function_id == function_id and b.namespace == req.namespace
            ]
            found.append(
                {
                    **_function_row(entry),
                    "request_format": entry.request_format,
                    "response_format": entry.response_format,
                    "owner_worker_id": entry.owner.worker_id if entry.owner else None,
                    "registered_at_ms": entry.registered_at_ms,
                    "triggers": triggers,
                }
            )
        return found[0] if req.function_id and not req.function_ids else {"functions": found}

    async def _list_workers(self, inv: Invocation) -> dict[str, Any]:
        req = parse(ListWorkers, inv.data, inv.function_id)
        rows = []
        for conn in self.engine.connections.values():
            row = _worker_row(conn)
            if req.search and req.search.lower() not in row["name"].lower():
                continue
            if req.runtime and row["runtime"] != req.runtime:
                continue
            if req.status and row["status"] != req.status:
                continue
            rows.append(row)
        return {"workers": sorted(rows, key=lambda r: (r["namespace"], r["name"]))}

    async def _worker_info(self, inv: Invocation) -> dict[str, Any]:
        req = parse(WorkerInfo, inv.data, inv.function_id)
        conn = self.engine.worker_names.get((req.namespace, req.name))
        if conn is None:
            raise InvocationError(ErrorCode.WORKER_NOT_FOUND, f"no worker {req.name!r} in namespace {req.namespace}")
        return {
            **_worker_row(conn),
            "info": conn.info,
            "functions": sorted(fid for _, fid in conn.functions),
            "trigger_types": sorted(tid for _, tid in conn.trigger_types),
            "triggers": [
                self.engine.triggers.bindings[b].summary()
                for b in sorted(conn.triggers)
                if b in self.engine.triggers.bindings
            ],
        }

    async def _list_trigger_types(self, inv: Invocation) -> dict[str, Any]:
        types = sorted(self.engine.triggers.types.values(), key=lambda t: t.key)
        return {"triggers": [t.summary() for t in types]}

    async def _trigger_type_info(self, inv: Invocation) -> dict[str, Any]:
        req = parse(ById, inv.data, inv.function_id)
        tt = self.engine.triggers.types.get((req.namespace or "default", req.id or ""))
        if tt is None:
            raise InvocationError(ErrorCode.TRIGGER_TYPE_NOT_FOUND, f"no trigger type {req.id!r}")
        return {
            **tt.summary(),
            "trigger_request_format": tt.trigger_request_format,
            "call_request_format": tt.call_request_format,
            "instances": self.engine.triggers.instances_of(tt.key),
        }

    async def _list_bindings(self, inv: Invocation) -> dict[str, Any]:
        return {"triggers": [b.summary() for b in self.engine.triggers.bindings.values()]}

    async def _binding_info(self, inv: Invocation) -> dict[str, Any]:
        req = parse(ById, inv.data, inv.function_id)
        binding = self.engine.triggers.bindings.get(req.id or "")
        if binding is None:
            raise InvocationError(ErrorCode.TRIGGER_NOT_FOUND, f"no trigger {req.id!r}")
        return {**binding.summary(), "metadata": binding.metadata, "durable": binding.owner is None}

    async def _register_durable(self, inv: Invocation) -> dict[str, Any]:
        req = parse(RegisterTrigger, inv.data, inv.function_id)
        if req.trigger_namespace is not None and not req.trigger_namespace.strip():
            raise InvocationError(ErrorCode.INVALID_NAMESPACE, "trigger_namespace must not be blank")
        session = inv.session
        if session is not None:  # as on the `registertrigger` path, minus the hook
            if not session.allows_trigger_type(req.trigger_type):
                raise InvocationError(
                    ErrorCode.FORBIDDEN, f"Trigger type '{req.trigger_type}' is not allowed for this session."
                )
            req.function_id = session.prefixed(req.function_id)
            # iii skips this check here; without it a binding would reach what the session may not call.
            target = self.engine.functions.get("default", req.function_id)
            session.check_call(req.function_id, "default", target.metadata if target is not None else None)
            denied = self.engine.binding_denial(session, req.trigger_type, req.config)
            if denied is not None:
                raise InvocationError(ErrorCode.FORBIDDEN, denied, function_id=inv.function_id)
        binding_id = str(uuid.uuid4())
        record = req.model_dump()
        await self._bind_durable(binding_id, record, strict=True)
        await self.engine.storage.state.put(DURABLE_SCOPE, binding_id, record)
        return {"id": binding_id}

    async def _unregister_durable(self, inv: Invocation) -> dict[str, Any]:
        req = parse(UnregisterTrigger, inv.data, inv.function_id)
        binding = self.engine.triggers.bindings.get(req.id)
        if binding is None or binding.owner is not None:
            return {"removed": False}
        session = inv.session
        if session is not None:  # who may not bind a target may not unbind it either
            target = self.engine.functions.get(binding.namespace, binding.function_id)
            session.check_call(binding.function_id, binding.namespace, target.metadata if target is not None else None)
        await self.engine.triggers.remove_binding(req.id)
        await self.engine.storage.state.delete(DURABLE_SCOPE, req.id)
        return {"removed": True}

    # ---- internals ----------------------------------------------------------------------------

    async def _bind_durable(self, binding_id: str, record: dict[str, Any], *, strict: bool = False) -> None:
        binding = Binding(
            id=binding_id,
            trigger_type=record["trigger_type"],
            function_id=record["function_id"],
            config=record.get("config"),
            metadata=record.get("metadata"),
            trigger_namespace=record.get("trigger_namespace"),
        )
        try:
            await self.engine.triggers.add_binding(binding)
        except TriggerConfigError as exc:
            if strict:
                raise InvocationError(ErrorCode.TRIGGER_REGISTRATION_FAILED, str(exc)) from None
            self.engine.triggers.bindings[binding_id] = binding  # keep it parked; a later provider may accept it

    async def _watch_catalogue(self) -> None:
        seen = self.engine.functions.version
        while True:
            await asyncio.sleep(CATALOGUE_POLL_S)
            version = self.engine.functions.version
            if version == seen:
                continue
            seen = version
            rows = [_function_row(e) for e in self.engine.functions.all() if not _is_internal(e)]
            self.engine.fire_in_order(
                list(self._catalogue_events.bindings.values()), {"event": "functions_changed", "functions": rows}
            )

    async def _sweep_channels(self) -> None:
        while True:
            await asyncio.sleep(CHANNEL_SWEEP_S)
            self.engine.channels.sweep()


def _visible(session: Session | None, entry: FunctionEntry) -> bool:
    """Introspection shows a session only what it may call (iii does the same)."""
    return session is None or session.allows(entry.id, entry.namespace, entry.metadata)


def _unavailable(entry: FunctionEntry | None, function_id: str, namespace: str) -> InvocationError:
    """`engine::functions::info` on one id that is unknown, or known but hidden from the caller's session."""
    if entry is None:
        return InvocationError(
            ErrorCode.FUNCTION_NOT_FOUND, f"Function {function_id} not found in namespace {namespace}"
        )
    return InvocationError(ErrorCode.FORBIDDEN, f"Function '{function_id}' is not visible to this session.")


def _is_internal(entry: FunctionEntry) -> bool:
    if entry.id.startswith("engine::") and not entry.id.startswith("engine::queue::"):
        return True
    return bool(entry.metadata and entry.metadata.get("internal"))


def _function_row(entry: FunctionEntry) -> dict[str, Any]:
    row: dict[str, Any] = {"function_id": entry.id, "namespace": entry.namespace, "worker_name": entry.worker_name}
    if entry.description:
        row["description"] = entry.description
    if entry.metadata:
        row["metadata"] = entry.metadata
    return row


def _worker_row(conn: Connection) -> dict[str, Any]:
    info = conn.info
    return {
        "id": conn.worker_id,
        "name": conn.name,
        "description": info.get("description"),
        "version": info.get("version"),
        "namespace": conn.namespace or "default",
        "runtime": conn.runtime,
        "os": info.get("os"),
        "status": "connected",
        "function_count": len(conn.functions),
        "connected_at_ms": conn.connected_at_ms,
        "active_invocations": len(conn.executing),
        "isolation": info.get("isolation"),
        "ip_address": conn.ip_address,
    }
