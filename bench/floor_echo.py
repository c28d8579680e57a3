"""Servers with no teamster code: `python bench/floor_echo.py raw|ws|block PORT` or `relay PORT ECHO_PORT` (code: `teamster.bench.floor_echo`)."""

from teamster.bench.floor_echo import main

if __name__ == "__main__":
    main()
