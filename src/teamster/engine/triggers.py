"""Trigger types and their bindings: parked while no provider serves the type, replayed when one does."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from teamster.protocol import RegisterTrigger, UnregisterTrigger

if TYPE_CHECKING:
    from teamster.engine.connection import Connection

log = logging.getLogger("teamster.engine")

TypeKey = tuple[str, str]  # (namespace, trigger type id)


class TriggerConfigError(Exception):
    """A provider refused a binding's config (answered as `trigger_registration_failed`)."""


@dataclass(slots=True)
class Binding:
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None
    namespace: str = "default"  # where the target function resolves
    trigger_namespace: str | None = None  # explicit provider namespace: resolved strictly
    owner: Connection | None = None  # None: a durable binding made through engine::register_trigger
    provider_key: TypeKey | None = None  # None while parked

    def candidate_keys(self) -> list[TypeKey]:
        if self.trigger_namespace is not None:
            return [(self.trigger_namespace, self.trigger_type)]
        own = self.owner.namespace if self.owner is not None and self.owner.namespace else "default"
        return (
            [(own, self.trigger_type)]
            if own == "default"
            else [(own, self.trigger_type), ("default", self.trigger_type)]
        )

    @property
    def condition_function_id(self) -> str | None:
        cond = self.config.get("condition_function_id") if isinstance(self.config, dict) else None
        return cond if isinstance(cond, str) and cond else None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger_type": self.trigger_type,
            "function_id": self.function_id,
            "namespace": self.namespace,
            "worker_name": self.owner.name if self.owner is not None else None,
            "config": self.config,
            "config_summary": _config_summary(self.config),
            "active": self.provider_key is not None,
        }


def _config_summary(config: Any) -> str:
    if not isinstance(config, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in config.items() if isinstance(v, str | int | float | bool))


class TriggerProvider(Protocol):
    async def register(self, binding: Binding) -> None: ...

    async def unregister(self, binding: Binding) -> None: ...


class WorkerProvider:
    """A trigger type served by a connected worker: bindings travel to it as frames."""

    def __init__(self, conn: Connection, namespace: str) -> None:
        self.conn = conn
        self.namespace = namespace

    async def register(self, binding: Binding) -> None:
        await self.conn.send(
            RegisterTrigger(
                id=binding.id,
                trigger_type=binding.trigger_type,
                function_id=binding.function_id,
                config=binding.config,
                metadata=binding.metadata,
                namespace=None if binding.namespace == "default" else binding.namespace,
                trigger_namespace=None if self.namespace == "default" else self.namespace,
            )
        )

    async def unregister(self, binding: Binding) -> None:
        await self.conn.send(UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type))


@dataclass(slots=True)
class TriggerType:
    id: str
    namespace: str
    provider: TriggerProvider
    owner: Connection | None = None  # None: an engine built-in
    description: str | None = None
    trigger_request_format: Any = None
    call_request_format: Any = None

    @property
    def key(self) -> TypeKey:
        return (self.namespace, self.id)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "worker_name": self.owner.name if self.owner is not None else "engine",
            "description": self.description,
        }


class TriggerRegistry:
    def __init__(self) -> None:
        self.types: dict[TypeKey, TriggerType] = {}
        self.bindings: dict[str, Binding] = {}

    async def add_type(self, tt: TriggerType) -> None:
        """Install (or replace) a provider, then hand it every binding that belongs to it."""
        self.types[tt.key] = tt
        for binding in list(self.bindings.values()):
            if binding.provider_key == tt.key or (binding.provider_key is None and self._resolve(binding) == tt.key):
                await self._activate(binding, tt)

    async def remove_type(self, key: TypeKey) -> None:
        """Drop a provider; its bindings fall back to the `default` provider or are parked."""
        if self.types.pop(key, None) is None:
            return
        for binding in self.bindings.values():
            if binding.provider_key != key:
                continue
            binding.provider_key = None
            fallback = self._resolve(binding)
            if fallback is not None:
                await self._activate(binding, self.types[fallback])

    async def add_binding(self, binding: Binding) -> None:
        """Bind now if a provider exists, else park; raises TriggerConfigError when the provider refuses."""
        previous = self.bindings.get(binding.id)
        if previous is not None:
            await self.remove_binding(previous.id)
        key = self._resolve(binding)
        if key is not None:
            await self.types[key].provider.register(binding)
            binding.provider_key = key
        self.bindings[binding.id] = binding

    async def remove_binding(self, binding_id: str) -> Binding | None:
        binding = self.bindings.pop(binding_id, None)
        if binding is not None and binding.provider_key is not None:
            tt = self.types.get(binding.provider_key)
            if tt is not None:
                await tt.provider.unregister(binding)
        return binding

    def park(self, binding_id: str) -> Binding | None:
        """A provider rejected the binding after the fact: keep it, parked, for the next provider."""
        binding = self.bindings.get(binding_id)
        if binding is not None:
            binding.provider_key = None
        return binding

    def instances_of(self, key: TypeKey) -> int:
        return sum(1 for b in self.bindings.values() if b.provider_key == key)

    def _resolve(self, binding: Binding) -> TypeKey | None:
        return next((key for key in binding.candidate_keys() if key in self.types), None)

    async def _activate(self, binding: Binding, tt: TriggerType) -> None:
        try:
            await tt.provider.register(binding)
        except TriggerConfigError as exc:
            log.warning("trigger %s refused by %s provider: %s", binding.id, binding.trigger_type, exc)
            binding.provider_key = None
            return
        binding.provider_key = tt.key
