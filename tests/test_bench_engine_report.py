"""The engine benchmark's report: the main table, and the CPU-per-process table when it was measured."""

from __future__ import annotations

import os

from teamster.bench.engine_roundtrip import QUICK, Result, Row, cpu_seconds, report


def test_cpu_per_call_is_reported_per_process_as_medians_of_the_runs() -> None:
    ws = Row("WebSocket, 3 processes (caller → engine → echo)")
    ws.p50, ws.p99, ws.rate = [300.0], [600.0], [12_000.0]
    ws.cpu = [
        {"engine": 50.0, "echo worker": 30.0, "caller": 20.0},
        {"engine": 70.0, "echo worker": 40.0, "caller": 30.0},
        {"engine": 60.0, "echo worker": 35.0, "caller": 25.0},
    ]
    plain = Row("plain `await fn(data)`")
    plain.p50, plain.p99, plain.rate = [0.1], [0.2], [7e6]
    lines = [str(line) for line in report(Result(QUICK, {"plain": plain, "ws": ws}))]
    assert "| WebSocket, 3 processes (caller → engine → echo) | 300.0 µs | 600.0 µs | 12,000/s |" in lines
    assert "| path | engine | echo worker | caller | all together |" in lines
    assert lines[-1] == "| WebSocket, 3 processes (caller → engine → echo) | 60.0 µs | 35.0 µs | 25.0 µs | 120.0 µs |"


def test_no_cpu_table_when_nothing_measured_it() -> None:
    plain = Row("plain `await fn(data)`")
    plain.p50, plain.p99, plain.rate = [0.1], [0.2], [7e6]
    lines = [str(line) for line in report(Result(QUICK, {"plain": plain}))]
    assert not any("CPU time per call" in line for line in lines)


def test_cpu_seconds_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(3_000_000))
    assert cpu_seconds(os.getpid()) > before
