"""Harness turn benchmark (see BENCHMARKS.md); the code is `teamster.bench.harness_turn`.

Run: `.venv/bin/python bench/harness_turn.py [--runs N] [--repeat R] [--parked P]` (or `teamster bench harness`).
"""

from teamster.bench.harness_turn import main

if __name__ == "__main__":
    main()
