"""A run's questions to the person at the terminal: `input_request`s and tool calls parked for approval.

One question at a time, asked while the live view holds still. A question the run stops waiting for
(it timed out, or was decided elsewhere) is withdrawn. The line is read without blocking the event
loop, so the run goes on while the question is open.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.text import Text

from teamster.app.live import RunDisplay, clip

Answer = Callable[[str, str], Awaitable[str | None]]  # (request_id, answer) -> None, or why it was not taken
Decide = Callable[[dict[str, Any], bool], Awaitable[str | None]]  # (approval_request event, allow) -> as Answer


class Questions:
    """Puts each question of a run to the terminal and sends the reply back through `answer` or `decide`."""

    def __init__(self, display: RunDisplay, console: Console, answer: Answer, decide: Decide | None) -> None:
        self.display = display
        self.console = console
        self.answer = answer
        self.decide = decide
        self._turn = asyncio.Lock()
        self._open: dict[str, asyncio.Task[None]] = {}  # request or call id -> the task asking it

    def on_event(self, event: dict[str, Any]) -> None:
        """Called with every event of the run, in order."""
        kind = event["type"]
        if kind == "input_request":
            self._ask(event["request_id"], lambda: self._input(event))
        elif kind == "approval_request" and self.decide is not None:
            self._ask(event["call_id"], lambda: self._approval(event))
        elif kind in ("input_resolved", "approval_resolved"):
            asking = self._open.pop(event["request_id" if kind == "input_resolved" else "call_id"], None)
            if asking is not None:
                asking.cancel()

    async def close(self) -> None:
        """Withdraw every open question (the run has ended)."""
        for asking in self._open.values():
            asking.cancel()
        await asyncio.gather(*self._open.values(), return_exceptions=True)
        self._open.clear()

    def _ask(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        async def turn() -> None:
            async with self._turn:  # one question on the terminal at a time
                await work()
            self._open.pop(key, None)

        self._open[key] = asyncio.get_running_loop().create_task(turn())

    async def _input(self, event: dict[str, Any]) -> None:
        question = Text.assemble((f"{event['agent']} asks: ", "bold yellow"), event["question"])
        reply = await self._prompt(question, "your answer (Enter to skip): ")
        refused = await self.answer(event["request_id"], reply)
        if refused is not None:
            self.console.print(Text(f"answer not taken: {refused}", style="yellow"))

    async def _approval(self, event: dict[str, Any]) -> None:
        assert self.decide is not None
        call = f"{event['function_id']} {clip(json.dumps(event.get('arguments') or {}), 200)}"
        question = Text.assemble((f"{event['agent']} wants to call ", "bold yellow"), call)
        reply = await self._prompt(question, "allow? [y/N]: ")
        refused = await self.decide(event, reply.strip().lower() in ("y", "yes"))
        if refused is not None:
            self.console.print(Text(f"decision not taken: {refused}", style="yellow"))

    async def _prompt(self, question: Text, prompt: str) -> str:
        with self.display.paused():
            self.console.print(question)
            self.console.print(prompt, end="", markup=False)
            try:
                return await read_line()
            except asyncio.CancelledError:
                self.console.print(Text("(withdrawn: the run stopped waiting)", style="dim"))
                raise


async def read_line() -> str:
    """The next line typed on stdin, read when it is there, so the event loop runs meanwhile."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 65_536).decode(errors="replace").strip()
