"""`teamster sessions …`: the conversations of a teamster server, each a tree of entries; fork and export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from teamster.app.client import DEFAULT_API, ApiClient, Url, path
from teamster.app.live import clip
from teamster.app.output import JsonFlag, UserError, execute, print_json, say, when

app = typer.Typer(help="Conversations: list them, show one as a tree, fork or export one.", no_args_is_help=True)

SessionId = Annotated[str, typer.Argument(help="The session's id (from `teamster sessions list`).")]


@app.command("list")
def list_sessions(
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many, latest first.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    url: Url = DEFAULT_API,
    as_json: JsonFlag = False,
) -> None:
    """List conversations, most recently updated first."""

    async def main() -> None:
        from teamster.app.schemas import SessionList

        async with ApiClient(url) as api:
            found = await api.get("/sessions", SessionList, limit=limit, offset=offset)
        if as_json:
            print_json(found.model_dump(mode="json"))
            return
        console = Console()
        if not found.sessions:
            console.print(Text("no conversations yet: every run starts one", style="dim"))
            return
        table = Table(box=box.SIMPLE_HEAD, caption=f"{len(found.sessions)} of {found.total}", caption_justify="left")
        table.add_column("session", no_wrap=True, min_width=len(found.sessions[0]["session_id"]))
        table.add_column("name", no_wrap=True, overflow="ellipsis", min_width=10, max_width=24)
        table.add_column("entries", justify="right", no_wrap=True, min_width=7)
        table.add_column("updated", no_wrap=True, min_width=8)
        table.add_column("last message")  # the one that wraps: a narrow terminal squeezes it first
        for row in found.sessions:
            table.add_row(
                row["session_id"],
                row.get("display_name") or "",
                str(row.get("entry_count", 0)),
                when(row.get("updated_at")),
                clip(row.get("last_message_summary") or "", 50),
            )
        console.print(table)

    execute(main())


@app.command("tree")
def tree(session_id: SessionId, url: Url = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """A conversation's entries as a tree (ids shown, to fork from), and its agents' sessions."""

    async def main() -> None:
        from teamster.app.schemas import SessionTree

        async with ApiClient(url) as api:
            found = await api.get(path("sessions", session_id, "tree"), SessionTree)
        if as_json:
            print_json(found.model_dump(mode="json"))
            return
        Console().print(render_tree(found.session_id, found.tree, found.children))

    execute(main())


@app.command("fork")
def fork(
    session_id: SessionId,
    entry_id: Annotated[str, typer.Argument(help="The entry to fork from (from `teamster sessions tree`).")],
    url: Url = DEFAULT_API,
) -> None:
    """A new conversation holding the path up to ENTRY_ID; prints its session id."""

    async def main() -> None:
        from teamster.app.schemas import Forked

        async with ApiClient(url) as api:
            forked = await api.post(path("sessions", session_id, "fork"), Forked, {"from_entry_id": entry_id})
        print(forked.session_id)  # alone on stdout, for `$(teamster sessions fork …)`
        say(Text(f"forked {session_id} at {entry_id}", style="dim"), err=True)

    execute(main())


@app.command("export")
def export(
    session_id: SessionId,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the HTML here (default: stdout).")
    ] = None,
    url: Url = DEFAULT_API,
) -> None:
    """A conversation as one standalone HTML page."""

    async def main() -> None:
        async with ApiClient(url) as api:
            html = await api.request("GET", path("sessions", session_id, "export"))
        if output is None:
            sys.stdout.write(html)
            return
        try:
            output.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--output {output}: {exc.strerror or exc}") from None
        say(f"wrote {output} ({len(html.encode()):,} bytes)", err=True)

    execute(main())


def render_tree(session_id: str, root: dict[str, Any] | None, children: list[dict[str, Any]]) -> Tree:
    """The session's entries, branch by branch, then its child sessions (a pattern run's agents)."""
    top = Tree(Text(f"session {session_id}", style="bold"))
    if root is None:
        top.add(Text("(no entries)", style="dim"))
    stack = [(top, root)] if root is not None else []
    while stack:  # iterative: a long conversation is a deep tree
        parent, node = stack.pop()
        branch = parent.add(_label(node["entry"]))
        stack.extend((branch, child) for child in reversed(node.get("children") or []))
    if children:
        agents = top.add(Text(f"agent sessions ({len(children)})", style="bold"))
        for child in children:
            name = child.get("display_name") or "(unnamed)"
            agents.add(Text.assemble((child["session_id"], "dim"), f"  {name}, {child.get('entry_count', 0)} entries"))
    return top


def _label(entry: dict[str, Any]) -> Text:
    """An entry as `id  role: short text`."""
    kind = entry.get("type")
    label = Text(f"{entry.get('id')}  ", style="dim", no_wrap=True, overflow="ellipsis")
    if kind == "message":
        message = entry.get("message") or {}
        role = str(message.get("role", "?"))
        label.append(f"{role}: ", style={"user": "bold cyan", "assistant": "bold green"}.get(role, "bold"))
        label.append(clip(_text(message.get("content")) or _calls(message), 80))
    elif kind in ("compaction", "branch_summary"):
        label.append(f"{kind}: ", style="bold magenta")
        label.append(clip(entry.get("summary", ""), 80))
    else:
        label.append(f"{kind}: ", style="bold")
        label.append(clip(entry.get("content", ""), 80))
    return label


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _calls(message: dict[str, Any]) -> str:
    """What a message without text did: its function calls, or its function's id."""
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    names = [str(b.get("function_id")) for b in blocks if isinstance(b, dict) and b.get("type") == "function_call"]
    if names:
        return "calls " + ", ".join(names)
    return str(message.get("function_id") or "")
