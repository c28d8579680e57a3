"""What the engine core asks of the observe module (observe.v1) while one runs: `Engine.observation`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from teamster.engine.connection import Connection
    from teamster.engine.registry import FunctionEntry
    from teamster.protocol import InvokeFunction, Message


class Observation(Protocol):
    async def frame(self, conn: Connection, msg: Message) -> None:
        """An observe-family frame from a worker (`observe`, `unobserve`, `observerack`, reports)."""

    def function_registered(
        self, conn: Connection, entry: FunctionEntry, wire_id: str, descriptor: dict[str, Any] | None
    ) -> None:
        """A worker's function was filed as `entry`; the worker knows it as `wire_id`."""

    def function_released(self, conn: Connection, namespace: str, function_id: str) -> None:
        """A worker unregistered one of its functions."""

    def connection_closed(self, conn: Connection) -> None:
        """A worker left: its observers end, the observers of its functions wait for the next owner."""

    async def owner_call(self, conn: Connection, msg: InvokeFunction) -> Any:
        """A call marked with an observer `activation` (`obs.call`): delivered to that observer's target."""
