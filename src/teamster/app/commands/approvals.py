"""`teamster approvals …`: tool calls of engine runs waiting for a person (`GET /approvals`), and deciding them."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from teamster.app.client import DEFAULT_API, ApiClient, Url, path
from teamster.app.live import clip
from teamster.app.output import JsonFlag, execute, print_json, say

app = typer.Typer(help="Tool calls waiting for approval: list them, approve or deny one.", no_args_is_help=True)

RunId = Annotated[str, typer.Argument(help="The run the call belongs to.")]
CallId = Annotated[str, typer.Argument(help="The waiting call's id (from `teamster approvals list`).")]
Reason = Annotated[str | None, typer.Option(help="Why; recorded with the decision.")]


@app.command("list")
def list_approvals(url: Url = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Every call waiting for approval, across the running runs."""

    async def main() -> None:
        from teamster.app.schemas import ApprovalList

        async with ApiClient(url) as api:
            found = await api.get("/approvals", ApprovalList)
        if as_json:
            print_json(found.model_dump(mode="json"))
            return
        console = Console()
        if not found.approvals:
            console.print(Text("no calls are waiting for approval", style="dim"))
            return
        table = Table(box=box.SIMPLE_HEAD)
        for header in ("run", "call", "agent", "function"):
            table.add_column(header, no_wrap=True)
        table.add_column("arguments", overflow="fold", min_width=12)
        for row in found.approvals:
            table.add_row(row.run_id, row.call_id, row.agent, row.function_id, clip(json.dumps(row.arguments), 60))
        console.print(table)

    execute(main())


@app.command("approve")
def approve(run_id: RunId, call_id: CallId, reason: Reason = None, url: Url = DEFAULT_API) -> None:
    """Let a waiting call run."""
    execute(_decide(url, run_id, call_id, "allow", reason))


@app.command("deny")
def deny(run_id: RunId, call_id: CallId, reason: Reason = None, url: Url = DEFAULT_API) -> None:
    """Refuse a waiting call; the agent is told it was denied."""
    execute(_decide(url, run_id, call_id, "deny", reason))


async def _decide(url: str, run_id: str, call_id: str, decision: str, reason: str | None) -> None:
    from teamster.app.schemas import Decided

    body = {"decision": decision} | ({"reason": reason} if reason else {})
    async with ApiClient(url) as api:
        done = await api.post(path("runs", run_id, "approvals", call_id), Decided, body)
    verb = "allowed" if done.decision == "allow" else "denied"
    say(f"{verb} call {done.call_id} of run {run_id}")
