"""Engine round-trip benchmark: prints one Markdown table (see BENCHMARKS.md).

Rows: a plain function call; the embedded in-process transport; caller, engine and echo worker
as three processes over loopback WebSocket; state set/get and queue throughput on SQLite.
Run: `make bench` or `.venv/bin/python bench/engine_roundtrip.py [--calls N] [--repeat R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from teamster.engine.config import EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.sdk import Enqueue, Worker

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

HERE = Path(__file__).parent
PAYLOAD = {"msg": "hello", "n": 42}
INFLIGHT = 64


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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.rate: list[float] = []

    def cells(self) -> list[str]:
        def med(xs: list[float], fmt: str) -> str:
            return fmt.format(statistics.median(xs)) if xs else "–"

        return [self.name, med(self.p50, "{:.1f} µs"), med(self.p99, "{:.1f} µs"), med(self.rate, "{:,.0f}/s")]


async def measure_calls(row: Row, call: Callable[[], Awaitable[Any]], n: int) -> None:
    await latencies(call, max(200, n // 10))  # warm-up
    lat = await latencies(call, n)
    row.p50.append(pct(lat, 0.5))
    row.p99.append(pct(lat, 0.99))
    row.rate.append(await throughput(call, n * 2))


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
    teamster = str(Path(sys.executable).parent / "teamster")
    args = [teamster, "engine", "--storage", "memory", "--ws-port", "0", "--http-port", "0", "--data-dir", str(tmp)]
    engine = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert engine.stdout is not None
    for line in engine.stdout:
        match = re.search(r"ws://\S+", line)
        if match:
            url = match.group(0)
            break
    else:
        raise RuntimeError("engine did not start")
    echo = subprocess.Popen([sys.executable, str(HERE / "echo_worker.py"), url], stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None
    echo.stdout.readline()
    return url, [echo, engine]


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def bench_websocket(row: Row, n: int, tmp: Path) -> None:
    url, procs = await asyncio.to_thread(spawn_engine_and_echo, tmp)
    try:
        caller = Worker("bench-caller")
        async with caller.connect(url):
            await _until_ready(caller)
            await measure_calls(row, lambda: caller.trigger("bench::echo", PAYLOAD), n)
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
        [sys.executable, str(HERE / "floor_echo.py"), mode, str(port)], stdout=subprocess.PIPE, text=True
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


async def main(calls: int, repeat: int) -> None:
    rows = {
        "plain": Row("plain `await fn(data)`"),
        "inproc": Row("embedded engine, in-process worker"),
        "ws": Row("WebSocket, 3 processes (caller → engine → echo)"),
        "floor_ws": Row("floor: bare aiohttp WebSocket echo, 2 processes, 1 round trip"),
        "floor_raw": Row("floor: raw TCP echo, 2 processes, 1 round trip"),
        "state": Row("state::set + state::get, SQLite (ops)"),
        "queue": Row("queue enqueue → handler → ack, SQLite"),
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for r in range(repeat):
            await bench_plain(rows["plain"], calls)
            await bench_inproc(rows["inproc"], calls, tmp / f"inproc{r}")
            await bench_websocket(rows["ws"], calls, tmp / f"ws{r}")
            await bench_floor_ws(rows["floor_ws"], calls)
            await bench_floor_raw(rows["floor_raw"], calls)
            await bench_state(rows["state"], calls, tmp / f"state{r}")
            await bench_queue(rows["queue"], calls, tmp / f"queue{r}")
    cpu = os.cpu_count()
    print(
        f"calls per run: {calls}; runs: {repeat} (medians shown); in flight: {INFLIGHT}; cores: {cpu}; "
        f"python {sys.version.split()[0]}; loop: {'uvloop' if uvloop else 'asyncio'}\n"
    )
    header = ["path", "p50 (sequential)", "p99 (sequential)", f"throughput ({INFLIGHT} in flight)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows.values():
        print("| " + " | ".join(row.cells()) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main(options.calls, options.repeat))
