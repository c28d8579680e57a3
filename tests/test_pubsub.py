"""iii-pubsub over a real WebSocket: `publish` and the `subscribe` trigger type."""

from __future__ import annotations

import pytest

from teamster.engine.engine import Engine
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import Connect, eventually, recorder


async def settled(worker: Worker) -> None:
    """A round trip: the engine has applied every registration the worker sent before it."""
    await worker.trigger("publish", {"topic": "settle"})


async def test_fan_out_to_subscribers_in_different_workers(connect: Connect) -> None:
    first, second = Worker("first"), Worker("second")
    got_first = recorder(first, "first::on_news")
    got_second = recorder(second, "second::on_news")
    got_sports = recorder(second, "second::on_sports")
    first.register_trigger("subscribe", "first::on_news", {"topic": "news"})
    second.register_trigger("subscribe", "second::on_news", {"topic": "news"})
    second.register_trigger("subscribe", "second::on_sports", {"topic": "sports"})
    for subscriber in (first, second):
        await connect(subscriber)
        await settled(subscriber)
    publisher = await connect(Worker("publisher"))

    assert await publisher.trigger("publish", {"topic": "news", "data": {"headline": "hi"}}) is None
    await eventually(lambda: got_first == [{"headline": "hi"}] and got_second == [{"headline": "hi"}])
    await publisher.trigger("publish", {"topic": "sports", "data": "goal"})
    await eventually(lambda: got_sports == ["goal"])
    assert got_first == got_second == [{"headline": "hi"}]  # raw data: no envelope, no caller id


async def test_delivery_goes_through_the_storage_adapter(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    got = recorder(w, "on_news")
    w.register_trigger("subscribe", "on_news", {"topic": "news"})
    await connect(w)
    await settled(w)

    # What a distributed adapter does when another engine publishes.
    await engine.storage.pubsub.publish("news", [1, 2])
    await eventually(lambda: got == [[1, 2]])


async def test_unsubscribed_bindings_get_nothing(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    dropped = recorder(w, "dropped")
    kept = recorder(w, "kept")
    dropped_id = w.register_trigger("subscribe", "dropped", {"topic": "t"})
    w.register_trigger("subscribe", "kept", {"topic": "t"})
    await connect(w)

    w.unregister_trigger(dropped_id)
    await eventually(lambda: dropped_id not in engine.triggers.bindings)
    await w.trigger("publish", {"topic": "t", "data": 1})
    await eventually(lambda: kept == [1])
    assert dropped == []


@pytest.mark.parametrize("payload", [{"topic": "", "data": 1}, {"data": 1}])
async def test_publish_without_topic(connect: Connect, payload: dict[str, object]) -> None:
    w = await connect(Worker("client"))
    with pytest.raises(InvocationError) as caught:
        await w.trigger("publish", payload)
    assert caught.value.code == "topic_not_set"


async def test_subscribe_without_topic_is_refused(engine: Engine, connect: Connect) -> None:
    w = Worker("client")
    recorder(w, "handler")
    binding_id = w.register_trigger("subscribe", "handler", {"topic": ""})
    await connect(w)
    await settled(w)
    assert binding_id not in engine.triggers.bindings
