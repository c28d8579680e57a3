"""Benchmarks of the engine, the harness and the patterns, runnable from an installed teamster.

Each module measures one thing and prints one table (`teamster bench`, or the scripts in `bench/`):
`engine_roundtrip`, `harness_turn`, `patterns`. Each has its size (`EngineBenchSize`, `HarnessBenchSize`,
`PatternsBenchSize`, with a `QUICK` preset), `steps(settings)`, `measure(settings, step)` and
`report(result)`, and `main()` for its script. `command` is `teamster bench`, which runs them.
"""
