"""Engine round-trip benchmark: one Markdown table (see BENCHMARKS.md).

Rows: a plain function call; the embedded in-process transport; caller, engine and echo worker
as three processes over loopback WebSocket; the same paths with no teamster code (the floors);
state set/get and queue throughput on SQLite.
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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
class EngineBenchSize:
    calls: int = 5000
    repeat: int = 3


QUICK = EngineBenchSize(calls=500, repeat=1)


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
        self.p50_one_core: list[float] = []  # every process of the path on one core: no wake-up crosses cores
        self.rate: list[float] = []
        self.cpu_sequential: list[dict[str, float]] = []  # µs of CPU per call, by process, one call at a time
        self.cpu: list[dict[str, float]] = []  # the same while under load

    def cells(self) -> list[str]:
        def med(xs: list[float], fmt: str) -> str:
            return fmt.format(statistics.median(xs)) if xs else "–"

        return [
            self.name,
            med(self.p50, "{:.1f} µs"),
            med(self.p99, "{:.1f} µs"),
            med(self.p50_one_core, "{:.1f} µs"),
            med(self.rate, "{:,.0f}/s"),
        ]


HAS_PROC = Path("/proc/self/schedstat").exists()
HAS_AFFINITY = hasattr(os, "sched_setaffinity")


def with_caller(servers: dict[str, int] | None) -> dict[str, int]:
    """The processes of a path by the part they play: `servers` (name to pid) and this process, the caller."""
    return {**servers, "caller": os.getpid()} if servers else {}


async def measure_latency(
    row: Row, call: Callable[[], Awaitable[Any]], n: int, servers: dict[str, int] | None = None
) -> None:
    """p50 and p99 one call at a time, with the CPU time per call of each process of the path (read
    from /proc, so Linux only); then the p50 again with all of them on one core."""
    processes = with_caller(servers)
    await latencies(call, max(200, n // 10))  # warm-up
    with cpu_per_call(processes, n, row.cpu_sequential):
        lat = await latencies(call, n)
    row.p50.append(pct(lat, 0.5))
    row.p99.append(pct(lat, 0.99))
    if processes and HAS_AFFINITY:
        with one_core(processes.values()):
            await latencies(call, 200)
            row.p50_one_core.append(pct(await latencies(call, n), 0.5))


async def measure_calls(
    row: Row, call: Callable[[], Awaitable[Any]], n: int, servers: dict[str, int] | None = None
) -> None:
    """`measure_latency`, then calls/s with INFLIGHT at once and the CPU time per call meanwhile."""
    await measure_latency(row, call, n, servers)
    calls = n * 2 // INFLIGHT * INFLIGHT
    with cpu_per_call(with_caller(servers), calls, row.cpu):
        row.rate.append(await throughput(call, calls))


@contextmanager
def cpu_per_call(processes: dict[str, int], calls: int, into: list[dict[str, float]]) -> Iterator[None]:
    """Appends to `into` the µs of CPU each process spent per call over the block, where /proc tells."""
    pids = processes if HAS_PROC else {}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    yield
    if pids:
        into.append({name: (cpu_seconds(pid) - before[name]) / calls * 1e6 for name, pid in pids.items()})


@contextmanager
def one_core(pids: Iterable[int]) -> Iterator[None]:
    """Runs `pids` on one core, so no wake-up has to cross to another; then spreads them again."""
    cores = os.sched_getaffinity(0)
    pinned = list(pids)
    for pid in pinned:
        os.sched_setaffinity(pid, {min(cores)})
    try:
        yield
    finally:
        for pid in pinned:
            os.sched_setaffinity(pid, cores)


def cpu_seconds(pid: int) -> float:
    """CPU time all threads of a process have used so far, to the nanosecond (/proc/stat counts 10 ms ticks)."""
    return sum(_ran_ns(task) for task in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e9


def _ran_ns(schedstat: Path) -> int:
    try:
        return int(schedstat.read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
        return 0


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
            servers = {"engine": procs[1].pid, "echo worker": procs[0].pid}
            await measure_calls(row, lambda: caller.trigger("bench::echo", PAYLOAD), n, servers)
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


def spawn_floor(mode: str, *args: str) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamster.bench.floor_echo", mode, str(port), *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return port, proc


def spawn_relay() -> tuple[int, dict[str, subprocess.Popen[str]]]:
    """An echo server and a relay in its place for the engine, each its own process; returns the relay's port."""
    echo_port, echo = spawn_floor("raw")
    port, relay = spawn_floor("relay", str(echo_port))
    return port, {"engine": relay, "echo worker": echo}


async def raw_floor(row: Row, n: int, port: int, processes: dict[str, subprocess.Popen[str]]) -> None:
    """Pings through `port`; `processes` are the floor's servers by the part they play."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = orjson.dumps(PAYLOAD)

        async def ping() -> None:
            writer.write(message)
            await reader.readexactly(len(message))

        await measure_latency(row, ping, n, {name: proc.pid for name, proc in processes.items()})
        writer.close()
    finally:
        await asyncio.to_thread(stop_all, processes.values())


async def bench_floor_raw(row: Row, n: int) -> None:
    port, proc = await asyncio.to_thread(spawn_floor, "raw")
    await raw_floor(row, n, port, {"echo worker": proc})


async def bench_floor_relay(row: Row, n: int) -> None:
    port, processes = await asyncio.to_thread(spawn_relay)
    await raw_floor(row, n, port, processes)


async def bench_floor_blocking(row: Row, n: int) -> None:
    port, proc = await asyncio.to_thread(spawn_floor, "block")
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            message = orjson.dumps(PAYLOAD)

            async def ping() -> None:  # blocks the event loop, on purpose: this floor has no loop in the way
                sock.sendall(message)
                received = 0
                while received < len(message):
                    received += len(sock.recv(65536))

            await measure_latency(row, ping, n, {"echo worker": proc.pid})
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

            await measure_latency(row, ping, n, {"echo worker": proc.pid})
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
    "floor_relay": (
        "floor: raw TCP through a relay, 3 processes, 2 round trips (the WebSocket path)",
        lambda row, n, tmp: bench_floor_relay(row, n),
    ),
    "floor_raw": ("floor: raw TCP echo, 2 processes, 1 round trip", lambda row, n, tmp: bench_floor_raw(row, n)),
    "floor_block": (
        "floor: blocking sockets, no event loop, 2 processes, 1 round trip",
        lambda row, n, tmp: bench_floor_blocking(row, n),
    ),
    "state": ("state::set + state::get, SQLite (ops)", bench_state),
    "queue": ("queue enqueue → handler → ack, SQLite", bench_queue),
}


@dataclass(frozen=True, slots=True)
class Result:
    settings: EngineBenchSize
    rows: dict[str, Row]


def steps(settings: EngineBenchSize) -> int:
    return len(BENCHES) * settings.repeat


async def measure(settings: EngineBenchSize, step: Step = ignore) -> Result:
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
    header = ["path", "p50 (sequential)", "p99 (sequential)", "p50 (one core)", f"throughput ({INFLIGHT} in flight)"]
    return [
        f"calls per run: {settings.calls}; runs: {settings.repeat} (medians shown); in flight: {INFLIGHT}; "
        f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; loop: {loop_name()}\n",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row.cells()) + " |" for row in result.rows.values()),
        *cpu_table(result),
    ]


PROCESSES = ("engine", "echo worker", "caller")  # the CPU tables' columns, by the part a process plays


def cpu_table(result: Result) -> list[RenderableType]:
    """CPU time per call of each process, one call at a time and under load, where it was measured."""
    lines: list[RenderableType] = []
    header = ["path", *PROCESSES, "all together"]
    rows = result.rows.values()
    blocks = {
        "one call at a time": [(row.name, row.cpu_sequential) for row in rows if row.cpu_sequential],
        f"while {INFLIGHT} calls were in flight": [(row.name, row.cpu) for row in rows if row.cpu],
    }
    for when, measured in blocks.items():
        if not measured:
            continue
        lines += [
            f"\nCPU time per call by process, {when}:\n",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        for name, runs in measured:
            per = [f"{statistics.median(run[p] for run in runs):.1f} µs" if p in runs[0] else "–" for p in PROCESSES]
            total = statistics.median(sum(run.values()) for run in runs)
            lines.append("| " + " | ".join([name, *per, f"{total:.1f} µs"]) + " |")
    return lines


BENCHMARK = Benchmark("engine", EngineBenchSize(), QUICK, steps, measure, report)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = EngineBenchSize()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=defaults.calls)
    parser.add_argument("--repeat", type=int, default=defaults.repeat)
    options = parser.parse_args(argv)
    result = run(measure(EngineBenchSize(calls=options.calls, repeat=options.repeat)))
    show(report(result), Console(width=REPORT_WIDTH))


if __name__ == "__main__":
    main()
