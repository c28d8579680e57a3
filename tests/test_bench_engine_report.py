"""The engine benchmark's report: the main table, and the CPU-per-process tables where they were measured."""

from __future__ import annotations

import os

from teamster.bench.engine_roundtrip import QUICK, Result, Row, cpu_seconds, report

WS = "WebSocket, 3 processes (caller → engine → echo)"
FLOOR = "floor: raw TCP echo, 2 processes, 1 round trip"


def plain_row() -> Row:
    plain = Row("plain `await fn(data)`")
    plain.p50, plain.p99, plain.rate = [0.1], [0.2], [7e6]
    return plain


def test_cpu_per_call_is_reported_per_process_as_medians_of_the_runs() -> None:
    ws = Row(WS)
    ws.p50, ws.p99, ws.p50_one_core, ws.rate = [300.0], [600.0], [180.0], [12_000.0]
    ws.cpu = [
        {"engine": 50.0, "echo worker": 30.0, "caller": 20.0},
        {"engine": 70.0, "echo worker": 40.0, "caller": 30.0},
        {"engine": 60.0, "echo worker": 35.0, "caller": 25.0},
    ]
    lines = [str(line) for line in report(Result(QUICK, {"plain": plain_row(), "ws": ws}))]
    assert "| path | p50 (sequential) | p99 (sequential) | p50 (one core) | throughput (64 in flight) |" in lines
    assert f"| {WS} | 300.0 µs | 600.0 µs | 180.0 µs | 12,000/s |" in lines
    assert "| plain `await fn(data)` | 0.1 µs | 0.2 µs | – | 7,000,000/s |" in lines
    assert not any("one call at a time" in line for line in lines)
    assert "\nCPU time per call by process, while 64 calls were in flight:\n" in lines
    assert "| path | engine | echo worker | caller | all together |" in lines
    assert lines[-1] == f"| {WS} | 60.0 µs | 35.0 µs | 25.0 µs | 120.0 µs |"


def test_cpu_one_call_at_a_time_comes_first_and_marks_the_processes_a_floor_lacks() -> None:
    ws = Row(WS)
    ws.p50, ws.p99, ws.rate = [300.0], [600.0], [12_000.0]
    ws.cpu_sequential = [{"engine": 90.0, "echo worker": 60.0, "caller": 50.0}]
    ws.cpu = [{"engine": 20.0, "echo worker": 15.0, "caller": 10.0}]
    floor = Row(FLOOR)
    floor.p50, floor.p99 = [80.0], [150.0]
    floor.cpu_sequential = [{"echo worker": 20.0, "caller": 25.0}, {"echo worker": 30.0, "caller": 15.0}]
    lines = [str(line) for line in report(Result(QUICK, {"ws": ws, "floor": floor}))]
    first = lines.index("\nCPU time per call by process, one call at a time:\n")
    second = lines.index("\nCPU time per call by process, while 64 calls were in flight:\n")
    assert lines[first + 3 : second] == [
        f"| {WS} | 90.0 µs | 60.0 µs | 50.0 µs | 200.0 µs |",
        f"| {FLOOR} | – | 25.0 µs | 20.0 µs | 45.0 µs |",
    ]
    assert lines[second + 3 :] == [f"| {WS} | 20.0 µs | 15.0 µs | 10.0 µs | 45.0 µs |"]


def test_no_cpu_table_when_nothing_measured_it() -> None:
    lines = [str(line) for line in report(Result(QUICK, {"plain": plain_row()}))]
    assert not any("CPU time per call" in line for line in lines)


def test_cpu_seconds_counts_this_process_to_well_under_a_tick() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(3_000_000))
    spent = cpu_seconds(os.getpid()) - before
    assert spent > 0
    assert spent != round(spent, 2)  # not a whole number of 10 ms ticks
