"""The error registry as callers meet it: typed exceptions from a real engine, the same codes on the wire."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from iii import InvocationError as IIIInvocationError
from iii import register_worker
from iii.iii import III

from teamster.protocol.errors import (
    ERROR_TYPES,
    ErrorCode,
    FunctionNotFound,
    InvocationError,
    InvocationFailed,
    NotFound,
    Timeout,
)
from teamster.sdk import Worker
from tests.conftest import Opener, eventually
from tests.engine_proc import EngineProcess
from tests.test_iii_sdk_compat import _listed, iii_options


def test_each_code_is_spelled_once() -> None:
    """An enum silently makes a second member with a taken value an alias: the registry has none."""
    assert len(ErrorCode.__members__) == len(ErrorCode)


async def test_calling_a_missing_function_raises_FunctionNotFound_with_the_iii_code(open_worker: Opener) -> None:
    worker = await open_worker(Worker("caller"))
    with pytest.raises(FunctionNotFound) as caught:
        await worker.trigger("nowhere::missing", {})
    assert caught.value.code == "function_not_found"
    assert isinstance(caught.value, NotFound)
    assert caught.value.function_id == "nowhere::missing"


async def test_a_call_past_its_deadline_raises_Timeout(open_worker: Opener) -> None:
    worker = Worker("slow")
    release = asyncio.Event()

    @worker.function("slow::wait")
    async def wait(data: Any) -> str:
        await release.wait()
        return "late"

    await open_worker(worker)
    try:
        with pytest.raises(Timeout) as caught:
            await worker.trigger("slow::wait", {}, timeout=0.1)
        assert caught.value.code == "TIMEOUT"
    finally:
        release.set()


async def test_a_workers_coded_error_reaches_its_caller_typed_and_a_foreign_code_as_sent(open_worker: Opener) -> None:
    callee = Worker("callee")

    @callee.function("tree::get")
    async def get(data: Any) -> None:
        raise InvocationError(ErrorCode.SESSION_NOT_FOUND, f"no session {data['id']}")

    @callee.function("tree::odd")
    async def odd(data: Any) -> None:
        raise InvocationError("my_own_code", "a code no registry entry names")

    await open_worker(callee)
    caller = await open_worker(Worker("caller"))
    with pytest.raises(NotFound) as caught:
        await caller.trigger("tree::get", {"id": "s1"})
    assert (caught.value.code, caught.value.message) == ("session_not_found", "no session s1")

    with pytest.raises(InvocationError) as foreign:
        await caller.trigger("tree::odd", {})
    assert type(foreign.value) is InvocationError
    assert foreign.value.code == "my_own_code"


@pytest.fixture
async def engine_and_iii(tmp_path: Path) -> AsyncIterator[tuple[EngineProcess, III]]:
    proc = EngineProcess(tmp_path / "data").start()
    client = await asyncio.to_thread(register_worker, proc.ws_url, iii_options("iii-errors"))
    try:
        yield proc, client
    finally:
        await asyncio.to_thread(client.shutdown)
        proc.stop()


@pytest.mark.slow
async def test_an_official_iii_client_sees_the_same_codes(engine_and_iii: tuple[EngineProcess, III]) -> None:
    proc, iii_client = engine_and_iii
    worker = Worker("teamster-errors")

    @worker.function("errors::session")
    async def session(data: Any) -> None:
        raise NotFound(ErrorCode.SESSION_NOT_FOUND, "no session s1")

    def boom(data: Any) -> None:
        raise ValueError("kaboom")

    iii_client.register_function("iii::boom", boom)
    async with worker.connect(proc.ws_url, wait=5):
        with pytest.raises(IIIInvocationError) as missing:
            await iii_client.trigger_async({"function_id": "nowhere::missing", "payload": {}})
        assert missing.value.code == "function_not_found"

        await eventually(lambda: _listed(worker, "errors::session"))
        with pytest.raises(IIIInvocationError) as coded:
            await iii_client.trigger_async({"function_id": "errors::session", "payload": {}})
        assert coded.value.code == "session_not_found"

        await eventually(lambda: _listed(worker, "iii::boom"))
        with pytest.raises(InvocationFailed) as failed:
            await worker.trigger("iii::boom", {})
        assert failed.value.code == "invocation_failed"
        assert "kaboom" in failed.value.message


def test_the_docs_list_every_code_once() -> None:
    """docs/errors.md's registry has one row per code, none for a code the enum lacks, each naming its exception."""
    text = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    registry = text[text.index("## The registry") :]
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", registry, flags=re.MULTILINE))
    listed = re.findall(r"^\| `([^`]+)` \|", registry, flags=re.MULTILINE)
    assert sorted(listed) == sorted(code.value for code in ErrorCode)
    for code, kind in ERROR_TYPES.items():
        assert rows[code] == f"`{kind.__name__}`", code  # the exception column says what callers catch
