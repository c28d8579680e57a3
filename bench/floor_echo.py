"""Servers with no teamster code, for the machine's floor (code: `teamster.bench.floor_echo`).

`python bench/floor_echo.py raw|ws|block PORT` echoes; `... relay PORT ECHO_PORT` pipes through to an echo.
"""

from teamster.bench.floor_echo import main

if __name__ == "__main__":
    main()
