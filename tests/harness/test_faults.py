"""Process-level faults: a provider killed mid-stream, and the engine killed mid-run on SQLite.

The engine runs as `teamster engine`; the worker that is killed (or whose side effects are counted) runs
as `teamster worker FILE` in its own process; the harness workers connect from this process.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teamster.app.profiles import THIN, HarnessOptions, harness_workers
from teamster.harness.orchestrator import create_worker as create_orchestrator
from teamster.sdk import Backoff, InvocationError, Worker
from tests.conftest import eventually
from tests.engine_proc import EngineProcess
from tests.harness.test_turns import Harness, states, text_of
from tests.test_cli import Proc

pytestmark = pytest.mark.slow

CONNECTED = re.compile(r"worker \S+ connected")
PROVIDER = """
from teamster.harness.providers import scripted

worker = scripted.create_worker()
"""
# Appends the call's key before doing anything else, so the file counts executions, not completions.
# A call with `hold` then waits for the gate file: it is still running when the engine is killed.
SIDE_EFFECTS = """
import asyncio
import os
from pathlib import Path

from teamster.sdk import Backoff, Worker

worker = Worker("side-effects", backoff=Backoff(initial_s=0.1, multiplier=1.0, max_s=0.1))


@worker.function("fx::record", description="Record one execution, keyed by the caller's key")
async def record(data: dict) -> str:
    with Path(os.environ["FAULT_LOG"]).open("a") as log:
        log.write(data["key"] + "\\n")
    while data.get("hold") and not Path(os.environ["FAULT_GATE"]).exists():
        await asyncio.sleep(0.05)
    return "recorded " + data["key"]
"""


@pytest.fixture
def engine_proc(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Worker subprocesses started by a test; killed at teardown."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def spawn_worker(procs: list[Proc], path: Path, source: str, url: str, env: dict[str, str] | None = None) -> Proc:
    """`teamster worker FILE` in its own process, connected to the engine at `url`."""
    path.write_text(source)
    proc = Proc("worker", str(path), "--engine-url", url, env=env)
    procs.append(proc)
    proc.wait_for(CONNECTED)
    return proc


async def open_all(workers: list[Worker], url: str) -> None:
    for worker in workers:
        await worker.open(url, wait=5)


async def until_registered(client: Worker, *function_ids: str) -> None:
    """Wait until every one of `function_ids` is registered (calls may fail while the engine restarts)."""

    async def registered() -> bool:
        try:
            listed = await client.trigger("engine::functions::list", {})
        except InvocationError:
            return False
        return set(function_ids) <= {row["function_id"] for row in listed["functions"]}

    await eventually(registered, timeout=20, interval=0.05)


async def all_events(client: Worker, session_id: str) -> list[dict[str, Any]]:
    """Every event of the session, page by page."""
    events: list[dict[str, Any]] = []
    more = True
    while more:
        page = await client.trigger("events::list", {"session_id": session_id, "after": len(events)})
        events += page["events"]
        more = page["more"]
    return events


async def test_provider_killed_mid_stream_ends_the_turn_once(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path
) -> None:
    workers = [w for w in harness_workers("thin", HarnessOptions(data_dir=tmp_path)) if w.name != "provider-scripted"]
    workers.append(Worker("client"))
    await open_all(workers, engine_proc.ws_url)
    try:
        provider = spawn_worker(procs, tmp_path / "provider.py", PROVIDER, engine_proc.ws_url)
        harness = Harness(workers[-1], [])
        await until_registered(harness.client, "provider::scripted::load")
        # 1,000 one-character deltas 5 ms apart: the stream runs for seconds and the kill lands in the middle of it.
        model = await harness.script("slow", [{"text": "x" * 1000, "chunk_size": 1, "chunk_delay_ms": 5}])
        await harness.start("s-kill", "talk", model=model)

        async def streaming() -> bool:
            return any(e.get("llm_event", {}).get("type") == "text_delta" for e in await harness.events("s-kill"))

        await eventually(streaming, timeout=10)
        provider.popen.send_signal(signal.SIGKILL)
        provider.popen.wait(5)

        view = await harness.until("s-kill", "stopped", "failed", timeout=20)
        events = await all_events(harness.client, "s-kill")
    finally:
        for worker in workers:
            await worker.close()

    assert view["state"] == "stopped"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gapless, in order
    kinds = [e["type"] for e in events]
    assert kinds.count("message_complete") == kinds.count("turn_end") == kinds.count("agent_end") == 1
    complete = kinds.index("message_complete")
    assert "message_update" not in kinds[complete:]  # nothing of the dead stream after the turn's message
    assert kinds[complete:] == ["message_complete", "turn_end", "agent_end", "turn_state_changed"]
    message = events[complete]["message"]
    assert message["stop_reason"] == "error"
    assert text_of(message).startswith("provider scripted failed")
    assert states(events) == ["provisioning", "assistant_streaming", "stopped"]


RUNS = 4
# Back within 0.1 s of the engine's return: well before the queue delivers a recovered step again (2 s).
RECONNECT = Backoff(initial_s=0.1, multiplier=1.0, max_s=0.1)
# What the orchestrator calls on the way to a run's end.
DEPENDENCIES = ("events::emit", "session-tree::append", "session-inbox::drain", "provider::scripted::stream")


def script(run: int) -> list[dict[str, Any]]:
    """Call fx::record twice (the first call held until the gate opens), then answer."""

    def call(step: str, hold: bool) -> dict[str, Any]:
        key = f"r{run}-{step}"
        return {"id": key, "function_id": "fx::record", "arguments": {"key": key, "hold": hold}}

    return [{"function_calls": [call("a", True)]}, {"function_calls": [call("b", False)]}, {"text": "done"}]


async def test_engine_kill_mid_run_finishes_every_run_and_runs_no_call_twice(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path
) -> None:
    log, gate = tmp_path / "executions.log", tmp_path / "gate"
    workers = [*harness_workers("thin", HarnessOptions(data_dir=tmp_path)), Worker("client")]
    for worker in workers:
        worker.backoff = RECONNECT
    orchestrator = next(w for w in workers if w.name == "turn-orchestrator")
    await open_all(workers, engine_proc.ws_url)
    try:
        env = {"FAULT_LOG": str(log), "FAULT_GATE": str(gate)}
        spawn_worker(procs, tmp_path / "side_effects.py", SIDE_EFFECTS, engine_proc.ws_url, env)
        harness = Harness(workers[-1], [])
        await until_registered(harness.client, "fx::record")
        for run in range(RUNS):
            model = await harness.script(f"fx{run}", script(run))
            await harness.start(f"s-{run}", "record twice", model=model, functions=["fx::record"])

        # Every run is inside its first call: executed (logged), not yet answered.
        await eventually(lambda: log.exists() and len(log.read_text().split()) == RUNS, timeout=20)
        engine_proc.kill()
        gate.touch()  # the held calls return into a dead connection
        # The orchestrator returns last, as a supervisor would start it: a step delivered before the workers it
        # calls re-register would end its run on function_not_found, which is not what this test is about.
        await orchestrator.close()
        engine_proc.start()  # same ports and data: every other worker reconnects and replays on its own
        await until_registered(harness.client, *DEPENDENCIES, "fx::record")
        restarted = create_orchestrator(THIN)
        await restarted.open(engine_proc.ws_url, wait=5)
        workers.append(restarted)

        for run in range(RUNS):
            await until_stopped(harness, f"s-{run}")
        transcripts = {run: await harness.transcript(f"s-{run}") for run in range(RUNS)}
    finally:
        for worker in workers:
            await worker.close()

    executed = log.read_text().split()
    assert sorted(executed) == sorted(f"r{run}-{step}" for run in range(RUNS) for step in "ab")  # each exactly once
    for run, messages in transcripts.items():
        results = {m["function_call_id"]: m for m in messages if m["role"] == "function_result"}
        assert list(results) == [f"r{run}-a", f"r{run}-b"]
        # The held call ran, but its answer died with the engine: the model is told, the call is not repeated.
        assert results[f"r{run}-a"]["is_error"] is True
        assert results[f"r{run}-a"]["details"]["error"] == "interrupted"
        assert results[f"r{run}-b"]["is_error"] is False
        assert text_of(messages[-1]) == "done"


async def until_stopped(harness: Harness, session_id: str) -> None:
    """Wait for `stopped`, tolerating calls that fail while the engine restarts."""

    async def stopped() -> bool:
        try:
            view = await harness.state(session_id)
        except InvocationError:
            return False
        return view is not None and view["state"] == "stopped"

    await eventually(stopped, timeout=60, interval=0.1)


# The events worker, made to hang at one event type, before storing it or after storing it but before its reply:
# the gate file tells the test that the emit is in flight, then the process is killed.
HANGING_EVENTS = """
import asyncio
import os
from pathlib import Path

from teamster.harness import events

worker = events.create_worker()
_trigger = worker.trigger


async def _hang():
    Path(os.environ["FAULT_GATE"]).touch()
    await asyncio.Event().wait()


async def trigger(function_id, payload=None, **options):
    data = payload.get("data") if isinstance(payload, dict) else None
    hang = function_id == "stream::set" and isinstance(data, dict) and data.get("type") == os.environ["FAULT_EVENT"]
    if hang and os.environ["FAULT_HANG"] == "before":
        await _hang()
    result = await _trigger(function_id, payload, **options)
    if hang:
        await _hang()
    return result


worker.trigger = trigger
"""
EVENTS = """
from teamster.harness import events

worker = events.create_worker()
"""


@pytest.mark.parametrize(
    ("event", "hang"),
    [
        ("function_execution_start", "after"),  # stored, unconfirmed: sent again, must be stored once
        ("function_execution_end", "before"),  # never stored: must not be lost
    ],
)
async def test_events_worker_killed_mid_emit_loses_and_duplicates_nothing(
    engine_proc: EngineProcess, procs: list[Proc], tmp_path: Path, event: str, hang: str
) -> None:
    gate = tmp_path / "gate"
    executions: list[str] = []
    side_effects = Worker("side-effects")

    @side_effects.function("fx::record", description="Record one execution")
    async def record(data: dict[str, Any]) -> str:
        executions.append(data["key"])
        return "recorded " + data["key"]

    workers = [w for w in harness_workers("thin", HarnessOptions(data_dir=tmp_path)) if w.name != "agent-events"]
    workers += [side_effects, Worker("client")]
    await open_all(workers, engine_proc.ws_url)
    try:
        env = {"FAULT_GATE": str(gate), "FAULT_EVENT": event, "FAULT_HANG": hang}
        hanging = spawn_worker(procs, tmp_path / "hanging_events.py", HANGING_EVENTS, engine_proc.ws_url, env)
        harness = Harness(workers[-1], [])
        call = {"id": "c1", "function_id": "fx::record", "arguments": {"key": "k1"}}
        model = await harness.script("emit", [{"function_calls": [call]}, {"text": "done"}])
        await harness.start("s-emit", "record", model=model, functions=["fx::record"])

        await eventually(gate.exists, timeout=20)  # the event is on its way to the stream
        hanging.popen.send_signal(signal.SIGKILL)
        hanging.popen.wait(5)
        spawn_worker(procs, tmp_path / "events.py", EVENTS, engine_proc.ws_url)

        await until_stopped(harness, "s-emit")

        async def drained() -> bool:
            stats = await harness.client.trigger("engine::queue::topic_stats", {"topic": "turn-step"})
            return bool(stats["ready"] == 0 and stats["in_flight"] == 0)

        await eventually(drained, timeout=20)
        events = await all_events(harness.client, "s-emit")
    finally:
        for worker in workers:
            await worker.close()

    assert executions == ["k1"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gapless, in order
    kinds = [e["type"] for e in events if e["type"] not in ("message_update", "turn_state_changed")]
    assert kinds == [
        "message_complete",
        "function_execution_start",
        "function_execution_end",
        "turn_end",
        "message_complete",
        "turn_end",
        "agent_end",
    ]
    assert states(events) == [
        "provisioning",
        "assistant_streaming",
        "function_execute",
        "steering_check",
        "assistant_streaming",
        "steering_check",
        "stopped",
    ]
