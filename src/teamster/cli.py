"""The `teamster` command: the app's commands, and `teamster bench` on top of them.

It sits above every layer because it is the one place that gathers them: the app's CLI knows nothing
of the benchmarks (they measure the app, so they sit above it); importing this module adds them.
"""

from teamster.app.cli import app, main
from teamster.bench.command import bench_command

app.command("bench")(bench_command)

__all__ = ["app", "main"]
