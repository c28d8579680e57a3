"""What the benchmarks share: percentiles, the event loop they run on, a `teamster engine` process, progress."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from rich.console import Console, RenderableType

# Every built-in except the sockets: embedded workers need neither.
EMBEDDED_MODULES = ("iii-engine-functions", "iii-observability", "iii-state", "iii-stream", "iii-pubsub", "iii-queue")

REPORT_WIDTH = 200  # columns a report is printed in, so its Markdown table stays one row per line
Step = Callable[[str], None]  # told as each unit of work begins, e.g. to move a progress bar
S = TypeVar("S")
R = TypeVar("R")


def ignore(label: str) -> None:
    """A `Step` for a run nobody watches."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loop_name() -> str:
    """The event loop `teamster.app.run.run` uses: uvloop when it is installed."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def spawn_engine(storage: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """`teamster engine` in its own process on ephemeral ports; returns it and its worker URL."""
    args = [sys.executable, "-m", "teamster", "engine", "--storage", storage, "--data-dir", str(data_dir)]
    engine = subprocess.Popen(
        [*args, "--ws-port", "0", "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert engine.stdout is not None
    for line in engine.stdout:
        if match := re.search(r"ws://\S+", line):
            return engine, match.group(0)
    raise RuntimeError("engine did not start")


def stop_all(procs: Iterable[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def show(parts: Iterable[RenderableType], console: Console) -> None:
    """Print a report as is: no markup, colours or wrapping, so a script's output is plain text."""
    for part in parts:
        console.print(part, markup=False, highlight=False, emoji=False, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Benchmark(Generic[S, R]):
    """One benchmark as `teamster bench` drives it: its sizes, its units of work, its measure and its table."""

    name: str
    settings: S  # the full size, quoted in BENCHMARKS.md
    quick: S  # a smoke test of the numbers
    steps: Callable[[S], int]  # how many times `measure` calls its Step
    measure: Callable[[S, Step], Awaitable[R]]
    report: Callable[[R], list[RenderableType]]
