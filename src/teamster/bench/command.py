"""`teamster bench [engine|harness|patterns|all]`: the benchmarks of BENCHMARKS.md, with a progress bar.

Progress goes to stderr; each benchmark's table to stdout as soon as it is measured. `--quick` runs
each at a small size (a smoke test of the numbers, not numbers to quote).
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from teamster.app.output import execute, quiet_logs, stderr
from teamster.bench.common import REPORT_WIDTH, Benchmark, show


class Which(StrEnum):
    engine = "engine"
    harness = "harness"
    patterns = "patterns"
    all = "all"


# Imported when chosen: the harness and patterns benchmarks load the whole harness.
MODULES = {
    Which.engine: "teamster.bench.engine_roundtrip",
    Which.harness: "teamster.bench.harness_turn",
    Which.patterns: "teamster.bench.patterns",
}


def bench_command(
    which: Annotated[Which, typer.Argument(help="Which benchmark to run.")] = Which.all,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: seconds, not minutes.")] = False,
) -> None:
    """Run the benchmarks and print their tables (BENCHMARKS.md says what they measure)."""
    quiet_logs()
    chosen = list(MODULES) if which == Which.all else [which]
    for name in chosen:
        benchmark: Benchmark[Any, Any] = importlib.import_module(MODULES[name]).BENCHMARK
        execute(_measure(benchmark, quick))


async def _measure(benchmark: Benchmark[Any, Any], quick: bool) -> None:
    settings = benchmark.quick if quick else benchmark.settings
    total = benchmark.steps(settings)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr()) as progress:
        task = progress.add_task(benchmark.name, total=total)
        begun = 0

        def step(label: str) -> None:
            nonlocal begun
            progress.update(task, completed=begun, description=f"{benchmark.name}: {label}")
            begun += 1

        result = await benchmark.measure(settings, step)
        progress.update(task, completed=total, description=f"{benchmark.name}: done")
    # As wide as the scripts print: a Markdown table squeezed to the terminal is no longer one.
    out = Console(width=max(Console().width, REPORT_WIDTH))
    show([*benchmark.report(result), ""], out)
