"""A pattern run as it happens: one row per agent, the latest events, then the answer and the totals.

`RunState` folds the run's events (their JSON form, as the API serves them) into per-agent rows;
`RunDisplay` shows them: a rich `Live` on a terminal, one line per event otherwise, or NDJSON with
`--json`. `describe` is the one-line form of any event, shared with `teamster runs events`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from teamster.app.output import print_json, stderr

LOG_LINES = 12
CLIP = 100  # characters of free text on one line

STYLES = {
    "workflow_start": "bold cyan",
    "workflow_complete": "bold green",
    "workflow_error": "bold red",
    "iteration_start": "cyan",
    "iteration_end": "cyan",
    "agent_step": "dim",
    "input_request": "bold yellow",
    "approval_request": "bold yellow",
    "critique": "magenta",
    "bid": "magenta",
    "task_posted": "magenta",
    "task_awarded": "magenta",
    "sample": "magenta",
    "trace": "magenta",
    "blackboard_update": "magenta",
    "agent_spawn": "blue",
    "agent_plan": "blue",
    "handoff": "blue",
}


def clip(text: Any, limit: int = CLIP) -> str:
    """Free text as one line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def details(e: dict[str, Any]) -> str:
    """What an event says, in a few words."""
    kind = e.get("type")
    if kind == "workflow_start":
        first = f", {e['starting_agent']} first" if e.get("starting_agent") else ""
        return f"{e['mode']} on {e['model']}{first}: {clip(e['query'])}"
    if kind == "iteration_start":
        return f"{e['agent']} starts (iteration {e['iteration']})"
    if kind == "agent_step":
        tools = f" → {', '.join(e['tool_names'])}" if e.get("tool_names") else ""
        return f"{e['agent']} step {e['step_index'] + 1}: {clip(e['text'], 60) or '…'}{tools}"
    if kind == "iteration_end":
        usage = f"{e['input_tokens']:,}/{e['output_tokens']:,} tokens, ${e['cost_usd']:.4f}"
        return f"{e['agent']} done: {e['step_count']} step(s), {usage}: {clip(e['output_preview'], 60)}"
    if kind == "tool_call":
        return f"{e['agent']} calls {e['tool_name']}" + (f": {clip(e['preview'])}" if e.get("preview") else "")
    if kind == "web_search":
        return f"{e['agent']} searches {clip(e['query'], 60)!r} ({e['status']})"
    if kind == "agent_plan":
        steps = "; ".join(f"{s['agent']}: {s['task']}" for s in e["steps"])
        return f"{e['agent']} plans {clip(e['intent'], 40)!r}: {clip(steps)}"
    if kind == "input_request":
        return f"{e['agent']} asks you: {clip(e['question'])}"
    if kind == "input_resolved":
        return "no answer in time" if e.get("timed_out") else f"answered: {clip(e['answer'])}"
    if kind == "approval_request":
        return f"{e['agent']} waits for approval of {e['function_id']} {clip(json.dumps(e.get('arguments') or {}), 60)}"
    if kind == "approval_resolved":
        reason = f" ({clip(e['reason'], 60)})" if e.get("reason") else ""
        return f"call {e['call_id']}: {e['decision']}{reason}"
    if kind == "agent_spawn":
        parent = f" under {e['parent_id']}" if e.get("parent_id") else ""
        return f"{e['id']} ({e['role']}, depth {e['depth']}){parent}: {clip(e['task'], 60)}"
    if kind == "critique":
        verdict = "passed" if e["passed"] else "not yet"
        issues = f": {clip('; '.join(e['issues']), 60)}" if e.get("issues") else ""
        return f"round {e['round']} scored {e['score']:g}/10, {verdict}{issues}"
    if kind == "blackboard_update":
        return f"{e['author']} writes {e['section']}: {clip(e['preview'], 60)}"
    if kind == "task_posted":
        return f"task {e['task_id']}: {clip(e['title'], 60)}"
    if kind == "bid":
        return f"{e['agent']} bids on {e['task_id']}: fit {e['fit']:g}, est. ${e['est_cost_usd']:.4f}"
    if kind == "task_awarded":
        return f"{e['task_id']} goes to {e['agent']}"
    if kind == "sample":
        return f"sample {e['index']}: {clip(e['preview'], 80)}"
    if kind == "trace":
        return f"round {e['round']}, {e['agent']}: {clip(e['preview'], 80)}"
    if kind == "bus_message":
        return f"{e['from']} → {e['to']} ({e['message_type']}): {clip(e['content'], 60)}"
    if kind == "handoff":
        return f"{e['from']} → {e['to']}"
    if kind == "workflow_complete":
        return f"{e['mode']} complete in {e['total_duration_ms'] / 1000:.1f} s: {clip(e.get('result') or '', 60)}"
    if kind == "workflow_error":
        return str(e["error"])
    rest = {k: v for k, v in e.items() if k not in ("run_id", "seq", "ts", "type")}
    return clip(json.dumps(rest, ensure_ascii=False))


def describe(event: dict[str, Any]) -> Text:
    """An event as one line: its seq, its type, what it says."""
    kind = str(event.get("type", "?"))
    line = Text(f"{event.get('seq', ''):>4} ", style="dim")
    line.append(f"{kind:<18}", style=STYLES.get(kind, ""))
    line.append(" " + details(event))
    return line


@dataclass(slots=True)
class AgentRow:
    name: str
    status: str = "running"
    calls: int = 0
    steps: int = 0
    tools: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class RunState:
    """One run folded from its events: a row per agent, the latest lines, and how it ended."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.agents: dict[str, AgentRow] = {}
        self.log: deque[Text] = deque(maxlen=LOG_LINES)
        self.end: dict[str, Any] | None = None
        self._waiting: dict[str, str] = {}  # an open input request's or parked call's id -> its agent
        self._spinners: dict[str, Spinner] = {}

    def add(self, event: dict[str, Any]) -> Text:
        """Fold one event in; returns its line."""
        kind = event.get("type")
        agent = event.get("agent")
        if kind == "iteration_start" and isinstance(agent, str):
            self._row(agent).status = "running"
        elif kind == "agent_spawn":
            self._row(str(event["id"])).status = "spawned"
        elif kind == "agent_step" and isinstance(agent, str):
            row = self._row(agent)
            row.steps += 1
            row.tools += len(event.get("tool_names") or [])
        elif kind == "iteration_end" and isinstance(agent, str):
            row = self._row(agent)
            row.status, row.calls = "done", row.calls + 1
            row.input_tokens += event["input_tokens"]
            row.output_tokens += event["output_tokens"]
            row.cost_usd += event["cost_usd"]
        elif kind in ("input_request", "approval_request") and isinstance(agent, str):
            self._waiting[event["request_id" if kind == "input_request" else "call_id"]] = agent
            self._row(agent).status = "asks you" if kind == "input_request" else "needs approval"
        elif kind in ("input_resolved", "approval_resolved"):
            waiting = self._waiting.pop(event["request_id" if kind == "input_resolved" else "call_id"], None)
            if waiting is not None:
                self._row(waiting).status = "running"
        elif kind in ("workflow_complete", "workflow_error"):
            self.end = event
            for row in self.agents.values():
                if row.status not in ("done", "spawned"):
                    row.status = "stopped"
        line = describe(event)
        self.log.append(line)
        return line

    def _row(self, agent: str) -> AgentRow:
        return self.agents.setdefault(agent, AgentRow(agent))

    def table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title=self.title, title_justify="left")
        table.add_column("agent")
        table.add_column("status")
        for header in ("calls", "steps", "tools", "tokens in/out", "cost"):
            table.add_column(header, justify="right")
        for row in self.agents.values():
            status: RenderableType = Text(row.status, style="green" if row.status == "done" else "yellow")
            if row.status == "running":  # one spinner per agent, so it turns from frame to frame
                status = self._spinners.setdefault(row.name, Spinner("dots", text=Text("running", style="cyan")))
            table.add_row(
                row.name,
                status,
                str(row.calls),
                str(row.steps),
                str(row.tools),
                f"{row.input_tokens:,}/{row.output_tokens:,}",
                f"${row.cost_usd:.4f}",
            )
        return table

    def __rich__(self) -> RenderableType:
        lines = [line.copy() for line in self.log]
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        return Group(self.table(), *lines)

    def outcome(self) -> list[RenderableType]:
        """The answer as Markdown and a line of totals, or the error line."""
        end = self.end
        if end is None:
            return [Text("run failed: it ended without a final event", style="bold red")]
        if end["type"] == "workflow_error":
            return [Text(f"run failed: {end['error']}", style="bold red")]
        totals = Text(
            f"run {end['run_id']} completed in {end['total_duration_ms'] / 1000:.1f} s · "
            f"{sum(r.calls for r in self.agents.values())} agent call(s) · "
            f"{end['total_input_tokens']:,} in / {end['total_output_tokens']:,} out tokens · "
            f"${end['total_cost_usd']:.4f}",
            style="green",
        )
        return [Panel(Markdown(end.get("result") or "_(no answer)_"), title="answer", title_align="left"), totals]


class RunDisplay:
    """Where a run's events go: NDJSON on stdout (`as_json`), or the rich view of `RunState`."""

    def __init__(self, title: str, *, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console()
        self.state = RunState(title)
        self._live: Live | None = None

    def __enter__(self) -> RunDisplay:
        if not self.as_json and self.console.is_terminal:
            self._live = Live(self.state, console=self.console, refresh_per_second=8)
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    def show(self, event: dict[str, Any]) -> None:
        line = self.state.add(event)
        if self.as_json:
            print_json(event)
        elif self._live is None:
            self.console.print(line, soft_wrap=True)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The terminal to itself, for a question to the user, while the live view holds still."""
        live = self._live
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            if live is not None:
                live.start()

    def finish(self) -> int:
        """Print how the run ended; its exit status (0: completed, 1: failed)."""
        end = self.state.end
        if not self.as_json:
            if self._live is not None:
                self._live.stop()
                self._live = None
            else:
                self.console.print(self.state.table())
            if end is not None and end["type"] == "workflow_complete":
                for part in self.state.outcome():
                    self.console.print(part, soft_wrap=isinstance(part, Text))
        if end is None or end["type"] != "workflow_complete":
            stderr().print(*self.state.outcome(), soft_wrap=True)
            return 1
        return 0
