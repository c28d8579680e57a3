"""The engine benchmark's echo worker: `python bench/echo_worker.py ws://…` (code: `teamster.bench.echo_worker`)."""

from teamster.bench.echo_worker import main

if __name__ == "__main__":
    main()
