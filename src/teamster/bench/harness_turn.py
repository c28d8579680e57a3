"""Harness turn benchmark: orchestrator overhead per run and per function call, and memory per parked run.

The thick profile (every gate on: approval settings, policy, hooks, catalog, skills) with the scripted
provider answering at once, on SQLite. Two placements:
- embedded: the engine and every worker in this process, workers attached in-process (`teamster up`);
- WebSocket: `teamster engine` in its own process, every worker in this process over loopback WebSocket.

A run ends when its record in state `turn_state` says `stopped`, seen through a `state` trigger (one
extra invocation per record write, included in the figures). Parked runs: runs whose one call waits for
a person, measured in a fresh process as the growth of its RSS and of the Python heap (tracemalloc), and
of the SQLite files.
Run: `teamster bench harness`, or `.venv/bin/python bench/harness_turn.py [--runs N] [--repeat R] [--parked P]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.app.run import run
from teamster.bench.common import (
    EMBEDDED_MODULES,
    REPORT_WIDTH,
    Benchmark,
    Step,
    ignore,
    loop_name,
    pct,
    show,
    spawn_engine,
)
from teamster.engine.config import EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.sdk import Worker

RULES = "version: 1\nrules:\n  - bench::add\n"  # bench::add is allowed; bench::ask matches no rule: it needs approval
FAN_OUT = 5


def call(n: int, function_id: str = "bench::add") -> dict[str, Any]:
    return {"id": f"c{n}", "function_id": function_id, "arguments": {"a": n, "b": 1}}


SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "text": [{"text": "Hello."}],
    "one": [{"function_calls": [call(0)]}, {"text": "1."}],
    "fan": [{"function_calls": [call(n) for n in range(FAN_OUT)]}, {"text": "Done."}],
    "ask": [{"function_calls": [call(0, "bench::ask")]}, {"text": "Asked."}],
}


@dataclass
class Stack:
    """A client worker on a running thick harness, told when each session's run stops."""

    client: Worker
    waiting: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    streaming: dict[str, list[float]] = field(default_factory=dict)  # when each waited-for run began a model turn
    first_turns: list[float] = field(default_factory=list)  # ms from the first model turn's start to the second's
    serial: int = 0
    engine_pid: int | None = None  # the engine's process when it is not this one

    def cpu_s(self) -> float:
        """CPU seconds used so far by this process and the engine's, wherever it runs."""
        used = time.process_time()
        if self.engine_pid is not None:
            with open(f"/proc/{self.engine_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return used

    async def run(self, script: str, wait_for: str = "stopped") -> float:
        """Start one run of `script` on a new session; milliseconds until its record reaches `wait_for`."""
        self.serial += 1
        session = f"{script}-{self.serial}"
        done = self.waiting[session] = asyncio.get_running_loop().create_future()
        turns = self.streaming[session] = []
        payload = {
            "session_id": session,
            "model": f"scripted:{script}",
            "messages": [{"role": "user", "content": "go"}],
            "functions": ["bench::add", "bench::ask"],
        }
        start = time.perf_counter()
        try:
            await self.client.trigger("run::start", payload)
            state = await asyncio.wait_for(done, 30)
        finally:
            del self.waiting[session], self.streaming[session]  # parked runs are measured: no bookkeeping per run
        elapsed = (time.perf_counter() - start) * 1000
        if len(turns) >= 2:
            self.first_turns.append((turns[1] - turns[0]) * 1000)
        if state != wait_for:
            raise RuntimeError(f"run {session} ended in {state}, not {wait_for}")
        return elapsed


def bench_workers(tmp: Path) -> tuple[list[Worker], Stack]:
    """The thick profile, a worker serving the bench functions, and the client."""
    tmp.mkdir(parents=True, exist_ok=True)
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    workers = harness_workers("thick", HarnessOptions(data_dir=tmp, policy_file=rules))
    tools = Worker("bench-tools")

    @tools.function("bench::add", description="Add two integers")
    async def add(data: dict[str, Any]) -> int:
        return int(data["a"]) + int(data["b"])

    @tools.function("bench::ask", description="Something no rule names: it needs approval")
    async def ask(data: dict[str, Any]) -> str:
        return "asked"

    client = Worker("bench-client")
    stack = Stack(client)

    @client.function("bench::turn_state")
    async def turn_state(event: dict[str, Any]) -> None:
        state = (event.get("new_value") or {}).get("state")
        key = event.get("key", "")
        if state == "assistant_streaming" and key in stack.streaming:
            stack.streaming[key].append(time.perf_counter())
        done = stack.waiting.get(key)
        if state in ("stopped", "failed", "function_awaiting_approval") and done is not None and not done.done():
            done.set_result(state)

    client.register_trigger("state", "bench::turn_state", {"scope": "turn_state"})
    return [*workers, tools, client], stack


async def load_scripts(stack: Stack) -> None:
    for name, turns in SCRIPTS.items():
        await stack.client.trigger("provider::scripted::load", {"name": name, "turns": turns})


@asynccontextmanager
async def embedded(tmp: Path) -> AsyncIterator[Stack]:
    config = EngineConfig(storage="sqlite", data_dir=tmp, workers=[WorkerEntry(name=m) for m in EMBEDDED_MODULES])
    workers, stack = bench_workers(tmp)
    async with AsyncExitStack() as stack_of:
        engine = await stack_of.enter_async_context(Engine(config))
        for worker in workers:
            await stack_of.enter_async_context(worker.attach(engine))
        await load_scripts(stack)
        yield stack


@asynccontextmanager
async def websocket(tmp: Path) -> AsyncIterator[Stack]:
    engine, url = await asyncio.to_thread(spawn_engine, "sqlite", tmp)
    try:
        workers, stack = bench_workers(tmp)
        stack.engine_pid = engine.pid
        async with AsyncExitStack() as stack_of:
            for worker in workers:
                await stack_of.enter_async_context(worker.connect(url))
            await load_scripts(stack)
            yield stack
    finally:
        engine.terminate()
        await asyncio.to_thread(engine.wait, 10)


@dataclass
class Row:
    name: str
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # mean CPU ms per run, all processes involved

    def add(self, samples: list[float], cpu_ms: float) -> None:
        self.p50.append(pct(samples, 0.5))
        self.p95.append(pct(samples, 0.95))
        self.cpu.append(cpu_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.p50)

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpu)


@dataclass(frozen=True, slots=True)
class HarnessBenchSize:
    runs: int = 200
    repeat: int = 3
    parked: int = 1000


QUICK = HarnessBenchSize(runs=20, repeat=1, parked=100)
SCRIPT_NAMES = {
    "text": "text-only run (1 model turn)",
    "one": "run with 1 function call (2 model turns)",
    "fan": f"run with {FAN_OUT} function calls in one turn (2 model turns)",
}
# A turn as the harness counts them (`turn_count`, one `turn_end` each): a model step and the calls it makes.
TURN_NAME = "the turn with the function call, measured (assistant_streaming to assistant_streaming)"
PLACEMENTS = (("emb", "embedded", embedded), ("ws", "WebSocket", websocket))
MEMORY = (("rss", "RSS"), ("heap", "Python heap (tracemalloc)"), ("disk", "SQLite file + WAL"))


@dataclass(slots=True)
class Result:
    settings: HarnessBenchSize
    rows: dict[str, Row]
    memory: dict[str, list[float]]


async def measure_stack(stack: Stack, rows: dict[str, Row], prefix: str, runs: int, step: Step) -> None:
    step(f"{prefix}: warm-up")
    for _ in range(20):  # warm-up: imports, caches, SQLite pages
        await stack.run("one")
    for script in SCRIPT_NAMES:
        step(f"{prefix}: {script}")
        before = stack.cpu_s()
        stack.first_turns.clear()
        samples = [await stack.run(script) for _ in range(runs)]
        rows[f"{prefix}:{script}"].add(samples, (stack.cpu_s() - before) * 1000 / runs)
        if script == "one":
            rows[f"{prefix}:turn"].add(stack.first_turns, math.nan)


async def park(stack: Stack, count: int) -> None:
    """`count` runs, 50 at a time, each left waiting for approval of its one call."""
    for start in range(0, count, 50):
        await asyncio.gather(*(stack.run("ask", "function_awaiting_approval") for _ in range(min(50, count - start))))


async def parked_memory(tmp: Path, count: int, traced: bool) -> tuple[float, float]:
    """KB per parked run: in memory (RSS growth, or with `traced` the Python heap's) and on disk (SQLite + WAL)."""
    async with embedded(tmp) as stack:
        await park(stack, 50)  # warm-up
        gc.collect()
        if traced:
            tracemalloc.start()
        memory, disk = tracemalloc.get_traced_memory()[0] if traced else rss_bytes(), db_bytes(tmp)
        await park(stack, count)
        gc.collect()
        memory = (tracemalloc.get_traced_memory()[0] if traced else rss_bytes()) - memory
        disk = db_bytes(tmp) - disk
        if traced:
            tracemalloc.stop()
        return memory / 1024 / count, disk / 1024 / count


def parked_memory_fresh(tmp: Path, count: int, traced: bool) -> tuple[float, float]:
    """`parked_memory` in this (fresh) process: memory freed by earlier work would hide the growth."""
    return run(parked_memory(tmp, count, traced))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def db_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.glob("teamster.db*"))


def steps(settings: HarnessBenchSize) -> int:
    return settings.repeat * (len(PLACEMENTS) * (1 + len(SCRIPT_NAMES)) + 2)


async def measure(settings: HarnessBenchSize, step: Step = ignore) -> Result:
    rows = {f"{p}:{s}": Row(f"{label}: {name}") for p, label, _ in PLACEMENTS for s, name in SCRIPT_NAMES.items()}
    for p, label, _ in PLACEMENTS:
        rows[f"{p}:turn"] = Row(f"{label}: {TURN_NAME}")
    memory: dict[str, list[float]] = {kind: [] for kind, _ in MEMORY}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for r in range(settings.repeat):
            for prefix, _, placement in PLACEMENTS:
                async with placement(tmp / f"{prefix}{r}") as stack:
                    await measure_stack(stack, rows, prefix, settings.runs, step)
        spawn = multiprocessing.get_context("spawn")
        for r in range(settings.repeat):
            for traced in (False, True):
                step(f"{settings.parked} parked runs, {'Python heap' if traced else 'RSS'}")
                with ProcessPoolExecutor(1, mp_context=spawn) as fresh:
                    job = fresh.submit(parked_memory_fresh, tmp / f"parked{r}{traced}", settings.parked, traced)
                    size, disk = await asyncio.wrap_future(job)
                memory["heap" if traced else "rss"].append(size)
                memory["disk"].append(disk)
    return Result(settings, rows, memory)


def report(result: Result) -> list[RenderableType]:
    """The run's conditions, then one table."""
    settings, rows, memory = result.settings, result.rows, result.memory
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(box=box.MARKDOWN)
    for header in ("thick profile, SQLite", "p50", "p95", "CPU per run (all processes)"):
        table.add_column(header)
    for row in rows.values():
        cpu = "–" if math.isnan(row.cpu_ms) else f"{row.cpu_ms:.1f} ms"
        table.add_row(row.name, f"{row.median:.1f} ms", f"{statistics.median(row.p95):.1f} ms", cpu)
    for prefix, label, _ in PLACEMENTS:
        one, fan, text = rows[f"{prefix}:one"], rows[f"{prefix}:fan"], rows[f"{prefix}:text"]
        per_call = ((fan.median - one.median) / (FAN_OUT - 1), (fan.cpu_ms - one.cpu_ms) / (FAN_OUT - 1))
        per_turn = (one.median - text.median, one.cpu_ms - text.cpu_ms)
        table.add_row(
            f"{label}: per function call, derived ({FAN_OUT} calls − 1 call) / {FAN_OUT - 1}",
            f"{per_call[0]:.1f} ms",
            "–",
            f"{per_call[1]:.1f} ms",
        )
        table.add_row(
            f"{label}: one call and the model turn after it, derived (1 call − text)",
            f"{per_turn[0]:.1f} ms",
            "–",
            f"{per_turn[1]:.1f} ms",
        )
    for kind, label in MEMORY:
        size = statistics.median(memory[kind])
        table.add_row(f"embedded: per parked run, {label} ({settings.parked} runs)", f"{size:.1f} KB", "–", "–")
    return [
        f"runs per row: {settings.runs}; repeats: {settings.repeat} (medians shown); parked runs: {settings.parked}; "
        f"cores: {os.cpu_count()}; load average at the end: {load}; python {sys.version.split()[0]}; "
        f"loop: {loop_name()}\n",
        table,
    ]


BENCHMARK = Benchmark("harness", HarnessBenchSize(), QUICK, steps, measure, report)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = HarnessBenchSize()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--repeat", type=int, default=defaults.repeat)
    parser.add_argument("--parked", type=int, default=defaults.parked)
    options = parser.parse_args(argv)
    result = run(measure(HarnessBenchSize(runs=options.runs, repeat=options.repeat, parked=options.parked)))
    show(report(result), Console(width=REPORT_WIDTH))


if __name__ == "__main__":
    main()
