"""Engine round-trip benchmark (see BENCHMARKS.md); the code is `teamster.bench.engine_roundtrip`.

Run: `make bench` or `.venv/bin/python bench/engine_roundtrip.py [--calls N] [--repeat R]`
(or `teamster bench engine`).
"""

from teamster.bench.engine_roundtrip import main

if __name__ == "__main__":
    main()
