"""The engine's in-process transport speaks the protocol: any peer that takes its messages can attach,
the teamster SDK's `Worker` being one such peer, not the only one."""

from __future__ import annotations

from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.protocol import InvocationError, InvokeFunction, Message, RegisterFunction, WorkerRegistered
from teamster.protocol.builtins import WORKERS_REGISTER
from teamster.sdk import Worker


class EchoPeer:
    """A worker written against the protocol alone: it keeps what the engine delivers and echoes calls."""

    def __init__(self) -> None:
        self.delivered: list[Message] = []
        self.calls: list[InvokeFunction] = []

    def deliver(self, msg: Message) -> None:
        self.delivered.append(msg)

    async def execute(self, call: InvokeFunction) -> Any:
        self.calls.append(call)
        return {"echo": call.data}

    def detached(self) -> None:
        """Nothing to let go of."""


async def test_a_protocol_peer_is_handed_the_calls_it_serves_as_invokefunction_messages(engine: Engine) -> None:
    peer = EchoPeer()
    transport = engine.local_transport()
    await transport.open(peer)
    await transport.send(
        InvokeFunction(function_id=WORKERS_REGISTER, data={"name": "echo-peer"}, action={"type": "void"})
    )
    await transport.send(RegisterFunction(id="peer::echo"))
    async with Worker("caller").attach(engine) as caller:
        reply = await caller.trigger("peer::echo", {"n": 1}, timeout=5)
    assert reply["echo"]["n"] == 1
    (call,) = peer.calls
    assert (type(call), call.function_id, call.invocation_id is not None) == (InvokeFunction, "peer::echo", True)
    assert isinstance(peer.delivered[0], WorkerRegistered)
    await transport.close()
    assert engine.functions.get("default", "peer::echo") is None


async def test_a_call_to_a_function_gone_with_its_peer_is_not_found(engine: Engine) -> None:
    peer = EchoPeer()
    transport = engine.local_transport()
    await transport.open(peer)
    await transport.send(InvokeFunction(function_id=WORKERS_REGISTER, data={"name": "brief"}, action={"type": "void"}))
    await transport.send(RegisterFunction(id="peer::brief"))
    await transport.close()
    async with Worker("caller").attach(engine) as caller:
        with pytest.raises(InvocationError) as gone:
            await caller.trigger("peer::brief", {}, timeout=5)
    assert gone.value.code == "function_not_found"
