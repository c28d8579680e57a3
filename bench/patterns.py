"""Pattern benchmark (see BENCHMARKS.md); the code is `teamster.bench.patterns`.

Run: `.venv/bin/python bench/patterns.py [--runs N] [--patterns a,b,...]` (or `teamster bench patterns`).
"""

from teamster.bench.patterns import main

if __name__ == "__main__":
    main()
