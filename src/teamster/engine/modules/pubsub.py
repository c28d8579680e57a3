"""`iii-pubsub`: `publish` and the `subscribe` trigger type, fanned out by the storage pub/sub adapter (§4.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from teamster.engine.builtin import Input, Module, config_of, parse
from teamster.engine.registry import Invocation
from teamster.engine.triggers import Binding
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode


class Publish(Input):
    topic: str = ""
    data: Any = None


class Subscription(Input):
    topic: str = Field(min_length=1)


class PubSub(Module):
    name = "iii-pubsub"

    async def start(self) -> None:
        self._subscriptions: dict[str, Callable[[], None]] = {}
        self.engine.builtin("publish", self._publish, description="Publish data to every subscriber of a topic")
        await self.engine.builtin_type("subscribe", self, "Data published on a topic, delivered as is")

    async def stop(self) -> None:
        for unsubscribe in self._subscriptions.values():
            unsubscribe()
        self._subscriptions.clear()

    async def register(self, binding: Binding) -> None:
        """Subscribe the binding through the adapter, so a distributed adapter delivers from any engine."""
        topic = config_of(Subscription, binding).topic
        await self.unregister(binding)  # a re-registered binding must not be subscribed twice

        async def deliver(data: Any) -> None:
            self.engine.fire_in_order([binding], data)

        self._subscriptions[binding.id] = self.engine.storage.pubsub.subscribe(topic, deliver)

    async def unregister(self, binding: Binding) -> None:
        unsubscribe = self._subscriptions.pop(binding.id, None)
        if unsubscribe is not None:
            unsubscribe()

    async def _publish(self, inv: Invocation) -> None:
        req = parse(Publish, inv.data, inv.function_id)
        if not req.topic:
            raise InvocationError(
                ErrorCode.TOPIC_NOT_SET, "publish: topic must not be empty", function_id=inv.function_id
            )
        await self.engine.storage.pubsub.publish(req.topic, req.data)
