"""Engine round-trip benchmark: one Markdown table (see BENCHMARKS.md).

Rows: a plain function call; the embedded in-process transport; caller, engine and echo worker
as three processes over loopback WebSocket; state set/get and queue throughput on SQLite.
Run: `make bench`, `teamster bench engine`, or `.venv/bin/python bench/engine_roundtrip.py [--calls N] [--repeat R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console, RenderableType

from teamster.app.run import run
from teamster.bench.common import REPORT_WIDTH, Benchmark, Step, ignore, loop_name, pct, show, spawn_engine, stop_all
from teamster.engine.config import EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.sdk import Enqueue, Worker

PAYLOAD = {"msg": "hello", "n": 42}
INFLIGHT = 64


@dataclass(frozen=True, slots=True)
class Settings:
    calls: int = 5000
    repeat: int = 3


QUICK = Settings(calls=500, repeat=1)


def embedded(storage: str, data_dir: Path, *modules: str) -> Engine:
    workers = [WorkerEntry(name=m) for m in modules]
    return Engine(EngineConfig(storage=storage, data_dir=data_dir, workers=workers))  # type: ignore[arg-type]


async def latencies(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    """Per-call wall time in µs, sequential."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        await call()
        out.append((clock() - start) / 1000)
    return out


async def throughput(call: Callable[[], Awaitable[Any]], n: int, inflight: int = INFLIGHT) -> float:
    """Calls per second with `inflight` callers in parallel."""
    per_task = n // inflight

    async def loop() -> None:
        for _ in range(per_task):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(inflight)))
    return per_task * inflight / (time.perf_counter() - start)


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.rate: list[float] = []
        self.cpu: list[dict[str, float]] = []  # µs of CPU per call, by process, while under load

    def cells(self) -> list[str]:
        def med(xs: list[float], fmt: str) -> str:
            return fmt.format(statistics.median(xs)) if xs else "–"

        return [self.name, med(self.p50, "{:.1f} µs"), med(self.p99, "{:.1f} µs"), med(self.rate, "{:,.0f}/s")]


HAS_PROC = Path("/proc/self/stat").exists()


async def measure_calls(
    row: Row, call: Callable[[], Awaitable[Any]], n: int, processes: dict[str, int] | None = None
) -> None:
    """p50 and p99 one call at a time, then calls/s with INFLIGHT at once, and meanwhile the CPU
    time per call of each of `processes` (name to pid; read from /proc, so Linux only)."""
    await latencies(call, max(200, n // 10))  # warm-up
    lat = await latencies(call, n)
    row.p50.append(pct(lat, 0.5))
    row.p99.append(pct(lat, 0.99))
    pids = processes if processes and HAS_PROC else {}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    calls = n * 2 // INFLIGHT * INFLIGHT
    row.rate.append(await throughput(call, calls))
    if pids:
        row.cpu.append({name: (cpu_seconds(pid) - before[name]) / calls * 1e6 for name, pid in pids.items()})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_plain(row: Row, n: int) -> None:
    async def echo(data: Any) -> Any:
        return data

    await measure_calls(row, lambda: echo(PAYLOAD), n)


async def bench_inproc(row: Row, n: int, tmp: Path) -> None:
    async with embedded("memory", tmp, "iii-engine-functions") as engine:
        worker = Worker("bench-echo")

        @worker.function("bench::echo")
        async def echo(data: Any) -> Any:
            return data

        async with worker.attach(engine):
            await measure_calls(row, lambda: worker.trigger("bench::echo", PAYLOAD), n)


def spawn_engine_and_echo(tmp: Path) -> tuple[str, list[subprocess.Popen[str]]]:
    """`teamster engine` and the echo worker, each in its own process; returns the worker URL."""
    engine, url = spawn_engine("memory", tmp)
    echo = subprocess.Popen(
        [sys.executable, "-m", "teamster.bench.echo_worker", url], stdout=subprocess.PIPE, text=True
    )
    assert echo.stdout is not None
    echo.stdout.readline()
    return url, [echo, engine]


async def bench_websocket(row: Row, n: int, tmp: Path) -> None:
    url, procs = await asyncio.to_thread(spawn_engine_and_echo, tmp)
    try:
        caller = Worker("bench-caller")
        async with caller.connect(url):
            await _until_ready(caller)
            processes = {"engine": procs[1].pid, "echo worker": procs[0].pid, "caller": os.getpid()}
            await measure_calls(row, lambda: caller.trigger("bench::echo", PAYLOAD), n, processes)
    finally:
        await asyncio.to_thread(stop_all, procs)


async def _until_ready(caller: Worker) -> None:
    for _ in range(200):
        try:
            await caller.trigger("bench::echo", PAYLOAD, timeout=1)
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise RuntimeError("echo worker never registered")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_floor(mode: str) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamster.bench.floor_echo", mode, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return port, proc


async def bench_floor_raw(row: Row, n: int) -> None:
    port, proc = await asyncio.to_thread(spawn_floor, "raw")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = orjson.dumps(PAYLOAD)

        async def ping() -> None:
            writer.write(message)
            await reader.readexactly(len(message))

        await latencies(ping, 200)
        lat = await latencies(ping, n)
        row.p50.append(pct(lat, 0.5))
        row.p99.append(pct(lat, 0.99))
        writer.close()
    finally:
        await asyncio.to_thread(stop_all, [proc])


async def bench_floor_ws(row: Row, n: int) -> None:
    port, proc = await asyncio.to_thread(spawn_floor, "ws")
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            message = orjson.dumps(PAYLOAD).decode()

            async def ping() -> None:
                await ws.send_str(message)
                await ws.receive()

            await latencies(ping, 200)
            lat = await latencies(ping, n)
            row.p50.append(pct(lat, 0.5))
            row.p99.append(pct(lat, 0.99))
    finally:
        await asyncio.to_thread(stop_all, [proc])


async def bench_state(row: Row, n: int, tmp: Path) -> None:
    async with embedded("sqlite", tmp, "iii-engine-functions", "iii-state") as engine:
        worker = Worker("bench-state")
        async with worker.attach(engine):
            counter = iter(range(10**9))

            async def set_get() -> None:
                key = f"k{next(counter) % 1000}"
                await worker.trigger("state::set", {"scope": "bench", "key": key, "value": PAYLOAD})
                await worker.trigger("state::get", {"scope": "bench", "key": key})

            await latencies(set_get, 200)
            start = time.perf_counter()
            await latencies(set_get, n)
            row.rate.append(2 * n / (time.perf_counter() - start))  # one set + one get per round


async def bench_queue(row: Row, n: int, tmp: Path) -> None:
    async with embedded("sqlite", tmp, "iii-engine-functions", "iii-queue") as engine:
        done = asyncio.Event()
        seen = 0
        worker = Worker("bench-queue")

        @worker.function("bench::job")
        async def job(data: Any) -> None:
            nonlocal seen
            seen += 1
            if seen == n:
                done.set()

        async with worker.attach(engine):
            start = time.perf_counter()
            for i in range(n):
                await worker.trigger("bench::job", {"i": i}, action=Enqueue("bench"))
            await asyncio.wait_for(done.wait(), 120)
            row.rate.append(n / (time.perf_counter() - start))


Bench = Callable[[Row, int, Path], Awaitable[None]]  # (its row, calls, a fresh directory)
BENCHES: dict[str, tuple[str, Bench]] = {
    "plain": ("plain `await fn(data)`", lambda row, n, tmp: bench_plain(row, n)),
    "inproc": ("embedded engine, in-process worker", bench_inproc),
    "ws": ("WebSocket, 3 processes (caller → engine → echo)", bench_websocket),
    "floor_ws": (
        "floor: bare aiohttp WebSocket echo, 2 processes, 1 round trip",
        lambda row, n, tmp: bench_floor_ws(row, n),
    ),
    "floor_raw": ("floor: raw TCP echo, 2 processes, 1 round trip", lambda row, n, tmp: bench_floor_raw(row, n)),
    "state": ("state::set + state::get, SQLite (ops)", bench_state),
    "queue": ("queue enqueue → handler → ack, SQLite", bench_queue),
}


@dataclass(frozen=True, slots=True)
class Result:
    settings: Settings
    rows: dict[str, Row]


def steps(settings: Settings) -> int:
    return len(BENCHES) * settings.repeat


async def measure(settings: Settings, step: Step = ignore) -> Result:
    rows = {key: Row(name) for key, (name, _) in BENCHES.items()}
    with tempfile.TemporaryDirectory() as tmp_dir:
        for r in range(settings.repeat):
            for key, (_, bench) in BENCHES.items():
                step(f"{key} ({r + 1}/{settings.repeat})")
                await bench(rows[key], settings.calls, Path(tmp_dir) / f"{key}{r}")
    return Result(settings, rows)


def report(result: Result) -> list[RenderableType]:
    """The run's conditions, a blank line, then the Markdown table, one string per line."""
    settings = result.settings
    header = ["path", "p50 (sequential)", "p99 (sequential)", f"throughput ({INFLIGHT} in flight)"]
    return [
        f"calls per run: {settings.calls}; runs: {settings.repeat} (medians shown); in flight: {INFLIGHT}; "
        f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; loop: {loop_name()}\n",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row.cells()) + " |" for row in result.rows.values()),
        *cpu_table(result),
    ]


def cpu_table(result: Result) -> list[RenderableType]:
    """CPU time per call of each process during the throughput runs, where it was measured."""
    rows = [row for row in result.rows.values() if row.cpu]
    if not rows:
        return []
    names = list(rows[0].cpu[0])
    header = ["path", *names, "all together"]
    lines: list[RenderableType] = [
        f"\nCPU time per call by process, while {INFLIGHT} calls were in flight:\n",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in rows:
        per = {name: statistics.median(run[name] for run in row.cpu) for name in names}
        total = statistics.median(sum(run.values()) for run in row.cpu)
        lines.append("| " + " | ".join([row.name, *(f"{per[n]:.1f} µs" for n in names), f"{total:.1f} µs"]) + " |")
    return lines


BENCHMARK = Benchmark("engine", Settings(), QUICK, steps, measure, report)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=defaults.calls)
    parser.add_argument("--repeat", type=int, default=defaults.repeat)
    options = parser.parse_args(argv)
    result = run(measure(Settings(calls=options.calls, repeat=options.repeat)))
    show(report(result), Console(width=REPORT_WIDTH))


if __name__ == "__main__":
    main()
