"""Pattern benchmark: wall time per pattern run, and the harness's overhead per agent call, inproc vs engine.

Every pattern that exists runs unscripted (the scripted test model answers at once, so the time is the
backends' own) `--runs` times on each backend, after one warm-up run, the backends taking turns:
- inproc: agents call the provider's stream function directly, no engine;
- engine, thin and thick profile: the engine embedded in this process on SQLite (a temporary directory),
  every worker attached in-process; each agent call is a harness turn in a child session, followed through
  `agent::events`. The thick profile consults approval settings, policy, hooks, budgets and the catalog.
Overhead per agent call = (engine median − inproc median) / the run's agent calls, in wall time and in CPU
time of this process (which runs everything: CPU time is the figure a loaded machine disturbs least).
Run: `teamster bench patterns`, or `.venv/bin/python bench/patterns.py [--runs N] [--patterns a,b,...]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.app.run import run
from teamster.bench.common import EMBEDDED_MODULES, REPORT_WIDTH, Benchmark, Step, ignore, loop_name, show
from teamster.engine.config import EngineConfig, WorkerEntry
from teamster.engine.engine import Engine
from teamster.patterns import PATTERN_NAMES, InprocAgents, PatternRequest, run_pattern
from teamster.patterns import functions as patterns
from teamster.patterns.agents import AgentCall, AgentResult, Agents, OnStep
from teamster.patterns.engine import EngineAgents, EngineClient
from teamster.patterns.events import Event
from teamster.sdk import Worker

RULES = "version: 1\nrules:\n  - 'pattern::*'\n"  # pattern tools only record intent: the thick profile allows them
QUERY = "Plan a small launch for a note-taking app."
Backend = Literal["inproc", "thin", "thick"]
BACKENDS: tuple[Backend, ...] = ("inproc", "thin", "thick")


class Counted:
    """An `Agents` that counts the agent calls of a run."""

    def __init__(self, inner: Agents) -> None:
        self.inner = inner
        self.calls = 0

    async def run(self, call: AgentCall, on_step: OnStep) -> AgentResult:
        self.calls += 1
        return await self.inner.run(call, on_step)

    async def ask(
        self, request_id: str, agent: str, question: str, timeout_s: float, announce: Callable[[], None]
    ) -> str | None:
        return await self.inner.ask(request_id, agent, question, timeout_s, announce)


@dataclass
class Row:
    pattern: str
    calls: int = 0
    ms: dict[Backend, list[float]] = field(default_factory=lambda: {b: [] for b in BACKENDS})
    cpu_ms: dict[Backend, list[float]] = field(default_factory=lambda: {b: [] for b in BACKENDS})

    def median(self, backend: Backend, cpu: bool = False) -> float:
        return statistics.median((self.cpu_ms if cpu else self.ms)[backend])

    def per_call(self, backend: Backend, cpu: bool = False) -> float:
        return (self.median(backend, cpu) - self.median("inproc", cpu)) / self.calls


async def one_run(pattern: str, agents: Agents) -> tuple[float, float, int]:
    """Wall and CPU milliseconds for one run, and its agent calls; a run that does not complete is an error."""
    counted = Counted(agents)
    events: list[Event] = []
    started, cpu = time.perf_counter(), time.process_time()
    await run_pattern(PatternRequest(pattern=pattern, query=QUERY), counted, events.append)  # type: ignore[arg-type]
    elapsed, used = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    last = events[-1]
    if last.type != "workflow_complete":  # type: ignore[attr-defined]
        raise RuntimeError(f"{pattern} did not complete: {last}")
    return elapsed, used, counted.calls


def server_workers(tmp: Path, profile: Literal["thin", "thick"]) -> list[Worker]:
    """The harness profile (its data and rules in `tmp`) and the patterns worker."""
    tmp.mkdir(parents=True, exist_ok=True)
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    return [*harness_workers(profile, HarnessOptions(data_dir=tmp, policy_file=rules)), patterns.create_worker()]


@asynccontextmanager
async def embedded(tmp: Path, profile: Literal["thin", "thick"]) -> AsyncIterator[EngineClient]:
    """An engine on SQLite with a harness profile, the patterns worker and a client, all in this process."""
    config = EngineConfig(storage="sqlite", data_dir=tmp, workers=[WorkerEntry(name=m) for m in EMBEDDED_MODULES])
    workers = server_workers(tmp, profile)
    client = EngineClient()
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(Engine(config))
        for worker in [*workers, client.worker]:
            await stack.enter_async_context(worker.attach(engine))
        yield client


@dataclass(frozen=True, slots=True)
class PatternsBenchSize:
    runs: int = 5
    patterns: tuple[str, ...] = PATTERN_NAMES


QUICK = PatternsBenchSize(runs=1)


@dataclass(frozen=True, slots=True)
class Result:
    settings: PatternsBenchSize
    rows: list[Row]


def steps(settings: PatternsBenchSize) -> int:
    return len(existing(settings.patterns)) * (settings.runs + 1) * len(BACKENDS)


async def measure_rows(rows: list[Row], runs: int, clients: dict[Backend, EngineClient], step: Step) -> None:
    """Each pattern on every backend in turn, run after run, so a change in the machine's load hits all alike."""

    def agents(backend: Backend) -> Agents:
        if backend == "inproc":
            return InprocAgents("scripted", "scripted")
        return EngineAgents(clients[backend], "scripted", "scripted", run_id=uuid.uuid4().hex)

    for row in rows:
        for backend in BACKENDS:
            step(f"{row.pattern}, warm-up, {backend}")
            await one_run(row.pattern, agents(backend))
        for n in range(runs):
            for backend in BACKENDS:
                step(f"{row.pattern}, run {n + 1}/{runs}, {backend}")
                elapsed, used, row.calls = await one_run(row.pattern, agents(backend))
                row.ms[backend].append(elapsed)
                row.cpu_ms[backend].append(used)


async def measure(settings: PatternsBenchSize, step: Step = ignore) -> Result:
    rows = [Row(name) for name in existing(settings.patterns)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        async with (
            embedded(Path(tmp_dir) / "thin", "thin") as thin,
            embedded(Path(tmp_dir) / "thick", "thick") as thick,
        ):
            await measure_rows(rows, settings.runs, {"thin": thin, "thick": thick}, step)
    return Result(settings, rows)


def report(result: Result) -> list[RenderableType]:
    """The run's conditions, then one table."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(box=box.MARKDOWN)
    for header in (
        "pattern (unscripted)",
        "agent calls",
        "inproc",
        "engine, thin",
        "engine, thick",
        "overhead per call, thin",
        "overhead per call, thick",
        "CPU overhead per call, thick",
    ):
        table.add_column(header)
    for row in result.rows:
        table.add_row(
            row.pattern,
            str(row.calls),
            *(f"{row.median(b):.1f} ms" for b in BACKENDS),
            f"{row.per_call('thin'):.1f} ms",
            f"{row.per_call('thick'):.1f} ms",
            f"{row.per_call('thick', cpu=True):.1f} ms",
        )
    return [
        f"runs per cell: {result.settings.runs} after one warm-up (medians shown); cores: {os.cpu_count()}; "
        f"load average at the end: {load}; python {sys.version.split()[0]}; loop: {loop_name()}\n",
        table,
    ]


def existing(names: Sequence[str]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(f"teamster.patterns.{n}") is not None]


BENCHMARK = Benchmark("patterns", PatternsBenchSize(), QUICK, steps, measure, report)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = PatternsBenchSize()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--patterns", default=",".join(PATTERN_NAMES), help="comma-separated pattern names")
    options = parser.parse_args(argv)
    result = run(measure(PatternsBenchSize(runs=options.runs, patterns=tuple(options.patterns.split(",")))))
    show(report(result), Console(width=REPORT_WIDTH))


if __name__ == "__main__":
    main()
