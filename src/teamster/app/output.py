"""What every command shares: one-line errors with their fix, and running a command's coroutine.

A mistake the user can fix is a `UserError`: one red line on stderr and exit status 2, never a
traceback. Ctrl-C ends a command with status 130 and one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from teamster.app.run import run

T = TypeVar("T")
USER_ERROR = 2
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


class UserError(Exception):
    """A mistake the user can fix: reported as one red line, exit status `status` (2 unless told)."""

    def __init__(self, message: str, status: int = USER_ERROR) -> None:
        super().__init__(message)
        self.status = status


def stderr() -> Console:
    """A console on the current stderr (looked up now: tests swap the streams)."""
    return Console(file=sys.stderr, highlight=False)


def fail(message: str, status: int = USER_ERROR) -> NoReturn:
    one_line = " ".join(message.split())  # e.g. a pydantic error spans several lines
    stderr().print(Text(f"error: {one_line}", style="bold red"), soft_wrap=True)
    raise typer.Exit(status)


def execute(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to its end; a `UserError` or Ctrl-C becomes one line and an exit status."""
    try:
        return run(main)
    except UserError as exc:
        fail(str(exc), exc.status)
    except KeyboardInterrupt:
        stderr().print(Text("interrupted", style="yellow"))
        raise typer.Exit(INTERRUPTED) from None


def say(message: str | Text, *, err: bool = False) -> None:
    """One line of plain output (stdout, or stderr with `err`), never wrapped, so scripts can read it."""
    console = stderr() if err else Console(highlight=False)
    console.print(message, soft_wrap=True, markup=False)


def print_json(data: Any) -> None:
    """One JSON document on one line of stdout (NDJSON when called per item).

    When the reader has gone (`| head`), the command ends at once, as a shell tool does on SIGPIPE.
    """
    try:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        raise SystemExit(BROKEN_PIPE) from None


def quiet_logs() -> None:
    """Client commands print their own output; the workers they host speak up only for errors."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")


def when(ms: int | None, *, dated: bool = False) -> str:
    """Epoch milliseconds as local time (today, unless `dated`) or date and time, or a dash."""
    if not ms:
        return "–"
    moment = datetime.fromtimestamp(ms / 1000)
    today = moment.date() == datetime.now().date() and not dated
    return moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M")


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the reply as JSON instead of a table.")]
