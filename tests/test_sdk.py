"""The teamster Worker: the same code over WebSocket and in-process."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from teamster.engine.engine import Engine
from teamster.protocol import InvokeFunction
from teamster.protocol.handles import handles
from teamster.sdk import InvocationError, TriggerInfo, Void, Worker
from teamster.sdk.transport import Backoff, WsTransport
from tests.conftest import Opener, eventually


class Charge(BaseModel):
    customer: str
    cents: int


class Receipt(BaseModel):
    customer: str
    charged: int


async def test_typed_handler_validates_and_publishes_schemas(open_worker: Opener, engine: Engine) -> None:
    worker = Worker("billing")

    @worker.function("billing::charge", description="Charge a card")
    async def charge(req: Charge) -> Receipt:
        return Receipt(customer=req.customer, charged=req.cents)

    await open_worker(worker)
    assert await worker.trigger("billing::charge", {"customer": "ada", "cents": 5}) == {"customer": "ada", "charged": 5}
    info = await worker.trigger("engine::functions::info", {"function_id": "billing::charge"})
    assert info["description"] == "Charge a card"
    assert info["request_format"]["properties"]["cents"] == {"title": "Cents", "type": "integer"}
    assert info["response_format"]["required"] == ["customer", "charged"]
    with pytest.raises(InvocationError) as bad:
        await worker.trigger("billing::charge", {"customer": "ada", "cents": "lots"})
    assert bad.value.code == "deserialization_error"
    assert "cents" in bad.value.message


class Till:
    """A worker written in the one form: shared state in the constructor, handlers as marked methods."""

    def __init__(self, fee: int) -> None:
        self.fee = fee

    @handles("till::charge", description="Charge with the till's fee", metadata={"owner": "till"})
    async def charge(self, req: Charge) -> Receipt:
        return Receipt(customer=req.customer, charged=req.cents + self.fee)

    @handles("till::fee")
    def fee_of(self, _: Any) -> int:
        """The fee added to every charge"""
        return self.fee

    def helper(self) -> None:  # unmarked: never registered
        raise AssertionError


async def test_serve_registers_marked_methods_with_their_declarations(open_worker: Opener, engine: Engine) -> None:
    till = Till(fee=3)
    assert await till.charge(Charge(customer="ada", cents=5)) == Receipt(customer="ada", charged=8)  # testable alone
    worker = Worker("till")
    worker.serve(till)
    await open_worker(worker)
    assert await worker.trigger("till::charge", {"customer": "ada", "cents": 5}) == {"customer": "ada", "charged": 8}
    assert await worker.trigger("till::fee", None) == 3
    listed = {f["function_id"]: f for f in (await worker.trigger("engine::functions::list", {}))["functions"]}
    assert {fid for fid in listed if fid.startswith("till::")} == {"till::charge", "till::fee"}
    info = await worker.trigger("engine::functions::info", {"function_id": "till::charge"})
    assert (info["description"], info["metadata"]) == ("Charge with the till's fee", {"owner": "till"})
    assert (await worker.trigger("engine::functions::info", {"function_id": "till::fee"}))["description"] == (
        "The fee added to every charge"
    )


async def test_sync_handlers_run_off_the_loop(open_worker: Opener) -> None:
    worker = Worker("sync")
    loop_thread = threading.get_ident()

    @worker.function("sync::where")
    def where(data: Any, metadata: Any = None) -> dict[str, Any]:
        return {"off_loop": threading.get_ident() != loop_thread, "metadata": metadata}

    await open_worker(worker)
    assert await worker.trigger("sync::where", {}, metadata={"m": 1}) == {"off_loop": True, "metadata": {"m": 1}}


async def test_handler_errors_carry_code_and_stacktrace(open_worker: Opener) -> None:
    worker = Worker("errors")

    @worker.function("errors::boom")
    async def boom(data: Any) -> None:
        raise KeyError("missing")

    await open_worker(worker)
    with pytest.raises(InvocationError) as caught:
        await worker.trigger("errors::boom", {})
    assert caught.value.code == "invocation_failed"
    assert caught.value.stacktrace is not None and "KeyError" in caught.value.stacktrace


async def test_void_returns_at_once_and_still_runs(open_worker: Opener) -> None:
    worker = Worker("void")
    seen: list[Any] = []

    @worker.function("void::record")
    async def record(data: Any) -> str:
        seen.append(data["n"])
        return "dropped"

    await open_worker(worker)
    assert await worker.trigger("void::record", {"n": 1}, action=Void()) is None
    await eventually(lambda: seen == [1])


async def test_a_call_past_its_timeout_fails_with_TIMEOUT_and_the_worker_goes_on(open_worker: Opener) -> None:
    worker = Worker("slow")
    release = asyncio.Event()

    @worker.function("slow::wait")
    async def wait(data: Any) -> str:
        await release.wait()
        return "late"

    @worker.function("slow::double")
    async def double(data: Any) -> int:
        return int(data["n"]) * 2

    await open_worker(worker)
    with pytest.raises(InvocationError) as caught:
        await worker.trigger("slow::wait", {}, timeout=0.1)
    assert (caught.value.code, caught.value.message) == ("TIMEOUT", "slow::wait did not answer within 0.1 s")
    release.set()  # the answer comes after the caller gave up, and is dropped
    assert await worker.trigger("slow::double", {"n": 21}, timeout=5) == 42


async def test_a_call_made_while_the_engine_is_unreachable_times_out(unused_tcp_port: int) -> None:
    transport = WsTransport(f"ws://127.0.0.1:{unused_tcp_port}/", _ignore, _nothing, Backoff(initial_s=0.05), 30.0)
    opening = asyncio.create_task(transport.open(wait=10))  # retries with backoff meanwhile
    call = InvokeFunction(function_id="x::y", invocation_id="iid-1", data={})
    try:
        with pytest.raises(InvocationError) as caught:
            await transport.invoke(call, 0.2)
        assert (caught.value.code, caught.value.message) == ("TIMEOUT", "x::y did not answer within 0.2 s")
        assert not opening.done()
    finally:
        await transport.close()
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)


async def _ignore(msg: Any) -> None:
    pass


async def _nothing() -> None:
    pass


class Webhooks:
    """A trigger-type provider that remembers its bindings and can refuse one."""

    def __init__(self) -> None:
        self.active: dict[str, TriggerInfo] = {}

    async def register_trigger(self, trigger: TriggerInfo) -> None:
        if not str(trigger.config.get("url", "")).startswith("/"):
            raise ValueError("url must start with /")
        self.active[trigger.id] = trigger

    async def unregister_trigger(self, trigger: TriggerInfo) -> None:
        self.active.pop(trigger.id, None)


async def test_worker_provided_trigger_type(open_worker: Opener, engine: Engine) -> None:
    hooks = Webhooks()
    provider = Worker("webhook-provider")
    provider.register_trigger_type("webhook", hooks, description="Incoming webhooks")
    await open_worker(provider)
    user = Worker("webhook-user")
    user.register_function("user::on_hook", lambda data: data)
    good = user.register_trigger("webhook", "user::on_hook", {"url": "/in"}, metadata={"m": 1})
    bad = user.register_trigger("webhook", "user::on_hook", {"url": "no-slash"})
    await open_worker(user)
    await eventually(lambda: good in hooks.active)
    assert hooks.active[good] == TriggerInfo(good, "webhook", "user::on_hook", {"url": "/in"}, {"m": 1})
    # The refused binding stays parked (inactive), for a later provider to accept.
    await eventually(lambda: engine.triggers.bindings[bad].provider_key is None)
    assert bad not in hooks.active
    user.unregister_trigger(good)
    await eventually(lambda: good not in hooks.active)


async def test_channels_carry_frames_in_order(open_worker: Opener) -> None:
    worker = await open_worker(Worker("channels"))
    writer, reader = await worker.create_channel()
    await writer.send_text('{"type":"set_status","status_code":201}')
    await writer.write(b"x" * 100_000)  # split into 64 KiB frames
    await writer.close()
    frames = [frame async for frame in reader]
    assert frames[0] == '{"type":"set_status","status_code":201}'
    assert b"".join(f for f in frames[1:] if isinstance(f, bytes)) == b"x" * 100_000
    assert len(frames) == 3


async def test_registering_twice_is_refused_locally() -> None:
    worker = Worker("twice")
    worker.register_function("twice::fn", lambda data: None)
    with pytest.raises(ValueError, match="already registered"):
        worker.register_function("twice::fn", lambda data: None)
    with pytest.raises(ValueError, match="blank"):
        Worker("blank", namespace=" ")


async def test_in_process_channels_are_released_once_drained(engine: Engine) -> None:
    async with Worker("local-channels").attach(engine) as worker:
        before = len(engine.channels.channels)
        writer, reader = await worker.create_channel()
        await writer.write(b"data")
        await writer.close()
        assert await reader.read_all() == b"data"
        assert len(engine.channels.channels) == before
