"""One observer as the engine holds it: what it watches, where it delivers, its policy and its state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teamster.engine.modules.observe.filters import Filter, FilterError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.validation import first_error

if TYPE_CHECKING:
    from teamster.engine.connection import Connection

State = Literal["pending", "active", "suspended", "error", "disposed"]
Capture = Literal["input", "output", "error", "caller", "metadata"]
DEFAULT_CAPTURE: tuple[Capture, ...] = ("input", "output", "caller")


class ObserveRefusal(Exception):
    """Why an observer cannot be (or stay) active: a wire code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class _Source(BaseModel):
    model_config = ConfigDict(extra="ignore")

    function_id: str = Field(min_length=1)
    namespace: str | None = None
    args: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    capture: list[Capture] | None = None
    on: Literal["success", "error", "complete"] = "success"
    deliver: Literal["envelope", "input", "output"] = "envelope"


class _Target(BaseModel):
    model_config = ConfigDict(extra="ignore")

    function_id: str = Field(min_length=1)
    namespace: str | None = None


class ObserveRequest(BaseModel):
    """An `observe` frame's content, decoded once: `ObserveRefusal(INVALID_OBSERVE, …)` otherwise."""

    model_config = ConfigDict(extra="ignore")

    source: _Source
    target: _Target
    metadata: Any = None
    max_fires: int | None = Field(default=None, ge=1)
    expires_in_ms: int | None = Field(default=None, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)

    @classmethod
    def decode(cls, frame: dict[str, Any]) -> ObserveRequest:
        try:
            return cls.model_validate(frame)
        except ValidationError as exc:
            raise ObserveRefusal(ErrorCode.INVALID_OBSERVE, first_error(exc)) from None


def compile_filter(source: dict[str, Any] | None) -> Filter:
    try:
        return Filter(source or {})
    except FilterError as exc:
        raise ObserveRefusal(FilterError.code, str(exc)) from None


@dataclass(eq=False)
class Observer:
    id: str
    watcher: Connection  # the connection that made it, and gets its state changes
    function_id: str
    namespace: str
    target_id: str
    target_namespace: str
    args: dict[str, Any]
    filter: Filter
    capture: tuple[str, ...]
    on: str
    deliver: str
    metadata: Any
    max_fires: int | None
    max_in_flight: int | None
    state: State = "pending"
    reason: dict[str, str] | None = None
    fires: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    # The owner it was pushed to (`functionregistered` / `observeradded`), and the one that acked it.
    offered_to: Connection | None = None
    acked_by: Connection | None = None
    answered: bool = False  # the watcher has had its `observeresult`; later changes are `observerstatechanged`
    was_active: bool = False  # once active, a missing owner makes it `suspended` rather than `pending`
    expiry: asyncio.TimerHandle | None = None
    slots: asyncio.Semaphore | None = None

    def accepts(self, ok: bool) -> bool:
        """Whether `on` takes an invocation that succeeded (`ok`) or failed."""
        return self.on == "complete" or (self.on == "success") is ok

    def drop(self, reason: ErrorCode) -> None:
        """Count an activation dropped for `reason`; counted under its wire string, a JSON object key."""
        self.dropped[reason.value] = self.dropped.get(reason.value, 0) + 1

    def owner_view(self) -> dict[str, Any]:
        """What the observed function's owner is told (`observeradded`): never metadata, policy or watcher."""
        return {
            "id": self.id,
            "args": self.args,
            "filters": self.filter.normal,
            "target": self.target_id,
            "capture": list(self.capture),
            "on": self.on,
        }

    def info(self) -> dict[str, Any]:
        """`engine::observers::get`: the whole observer, for its watcher or an admin."""
        return {
            **self.owner_view(),
            "filters": self.filter.source,
            "function_id": self.function_id,
            "namespace": self.namespace,
            "target_namespace": self.target_namespace,
            "deliver": self.deliver,
            "metadata": self.metadata,
            "max_fires": self.max_fires,
            "max_in_flight": self.max_in_flight,
            "state": self.state,
            "reason": self.reason,
            "fires": self.fires,
            "dropped": dict(self.dropped),
            "worker_id": self.watcher.worker_id,
        }
