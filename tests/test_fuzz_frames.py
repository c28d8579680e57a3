"""Random and mutated frames thrown at a live engine must never stop it from routing calls correctly."""

from __future__ import annotations

import asyncio
import threading
import typing
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamster.engine.engine import Engine
from teamster.protocol import Message, ProtocolError, decode, from_json
from teamster.sdk import Worker
from tests.conftest import engine_config
from tests.raw import RawPeer

KNOWN_TYPES = [
    "registerfunction",
    "unregisterfunction",
    "registertrigger",
    "unregistertrigger",
    "registertriggertype",
    "unregistertriggertype",
    "triggerregistrationresult",
    "invokefunction",
    "invocationresult",
    "reattach",
    "registerservice",
    "ping",
    "pong",
    "workerregistered",
    "registrationrejected",
    "error",
]
FIELDS = [
    "id",
    "function_id",
    "invocation_id",
    "data",
    "config",
    "trigger_type",
    "namespace",
    "action",
    "result",
    "error",
    "previous_worker_id",
    "reattach_token",
    "metadata",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
frame_objects = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(KNOWN_TYPES) | st.text(max_size=12),
    st.dictionaries(
        st.sampled_from(FIELDS),
        json_values | st.sampled_from(["fuzz::echo", "engine::health::check", "", " "]),
        max_size=6,
    ),
)
raw_frames = st.one_of(
    frame_objects.map(lambda f: orjson.dumps(f).decode()),
    st.text(max_size=200),
    json_values.map(lambda v: orjson.dumps(v).decode()),
    frame_objects.map(lambda f: orjson.dumps(f).decode()[: max(1, len(orjson.dumps(f)) // 2)]),  # truncated
)


class LiveEngine:
    """An engine and an echo worker on a loop of their own, so hypothesis can drive it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = Engine(engine_config())
        self.run(self.engine.start())
        self.url = f"ws://127.0.0.1:{self.engine.ports['ws']}"
        self.echo = Worker("fuzz-echo")
        self.echo.register_function("fuzz::echo", self._echo)
        self.caller = Worker("fuzz-caller")
        self.run(self.echo.open(self.url, wait=5))
        self.run(self.caller.open(self.url, wait=5))

    @staticmethod
    async def _echo(data: Any) -> Any:
        return data

    def run(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.caller.close())
        self.run(self.echo.close())
        self.run(self.engine.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveEngine]:
    engine = LiveEngine()
    yield engine
    engine.close()


async def _throw(url: str, frames: list[str]) -> None:
    async with RawPeer(url) as peer:
        for frame in frames:
            await peer.send_raw(frame)
        await asyncio.sleep(0.01)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(frames=st.lists(raw_frames, min_size=1, max_size=12), payload=json_values)
def test_engine_keeps_routing_after_garbage(live: LiveEngine, frames: list[str], payload: Any) -> None:
    live.run(_throw(live.url, frames))
    result = live.run(live.caller.trigger("fuzz::echo", {"payload": payload}, timeout=5))
    assert result == {"payload": payload, "_caller_worker_id": live.caller.worker_id}
    owner = live.engine.functions.get("default", "fuzz::echo")
    assert owner is not None and owner.owner is not None and owner.owner.worker_id == live.echo.worker_id


def _read(reading: Callable[[], Message]) -> Message | str:
    """The message read, or the reason of the ProtocolError raised instead."""
    try:
        return reading()
    except ProtocolError as exc:
        return exc.reason


MESSAGE_TYPES = typing.get_args(Message)


def frames_of(cls: Any) -> st.SearchStrategy[str]:
    """Frames of one message type whose fields, each there or not, hold mostly strings, else objects or any JSON."""
    text = st.text(max_size=8)
    value = st.one_of(text, text, text, st.dictionaries(st.text(max_size=4), json_values, max_size=3), json_values)
    fields = {field.name: value for field in msgspec.structs.fields(cls)}
    return st.fixed_dictionaries({"type": st.just(cls.type)}, optional=fields).map(lambda f: orjson.dumps(f).decode())


def _agree(raw: str) -> None:
    assert _read(lambda: decode(raw)) == _read(lambda: from_json(raw))


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=[cls.type for cls in MESSAGE_TYPES])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_frames_decode_as_the_field_by_field_reading_says(cls: Any, data: st.DataObject) -> None:
    """Frames are decoded straight into structs; each must be taken, refused and read as the checks of
    `from_json` (the reading that names what is wrong) take, refuse and read it."""
    _agree(data.draw(frames_of(cls)))


@settings(max_examples=500, deadline=None)
@given(raw=raw_frames)
def test_garbage_is_refused_as_the_field_by_field_reading_refuses_it(raw: str) -> None:
    _agree(raw)
