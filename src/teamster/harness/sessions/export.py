"""A session branch as one standalone HTML page (`session-tree::export_html`); its style is `export.css`."""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any

from teamster.harness.contracts import ContentBlock, FunctionCallBlock, TextBlock, ThinkingBlock
from teamster.harness.sessions.entries import BranchSummaryEntry, CompactionEntry, CustomMessageEntry, SessionEntry

STYLE = Path(__file__).with_name("export.css")


@cache
def _style() -> str:
    # Set between newlines, as the page has always carried it.
    return "\n" + STYLE.read_text(encoding="utf-8")


def render_html(title: str, path: list[SessionEntry]) -> str:
    """A page with no outside references; every stored string is escaped."""
    sections = "\n".join(_render_entry(e) for e in path)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_style()}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{html.escape(title)}</h1>\n{sections}\n</main>\n</body>\n</html>\n"
    )


def _render_entry(entry: SessionEntry) -> str:
    if isinstance(entry, CustomMessageEntry):
        return _section(entry.type, f"custom · {entry.custom_type}", _text(entry.content))
    if isinstance(entry, BranchSummaryEntry):
        return _section(entry.type, "branch summary", _text(entry.summary))
    if isinstance(entry, CompactionEntry):
        return _section(entry.type, f"compaction · {entry.tokens_before} tokens before", _text(entry.summary))
    message = entry.message
    if message.role == "function_result":
        kind = "function_result error" if message.is_error else message.role
        return _section(kind, f"function_result · {message.function_id}", _render_content(message.content))
    if message.role == "custom":
        return _section(message.role, f"custom · {message.custom_type}", _text(message.content))
    return _section(message.role, message.role, _render_content(message.content))


def _section(kind: str, label: str, body: str) -> str:
    return f'<section class="{html.escape(kind)}"><div class="label">{html.escape(label)}</div>{body}</section>'


def _render_content(content: str | list[ContentBlock]) -> str:
    if isinstance(content, str):
        return _text(content)
    return "".join(_render_block(block) for block in content)


def _render_block(block: ContentBlock) -> str:
    if isinstance(block, TextBlock):
        return f"<div>{html.escape(block.text)}</div>"
    if isinstance(block, ThinkingBlock):
        return f'<div class="thinking">{html.escape(block.text)}</div>'
    if isinstance(block, FunctionCallBlock):
        call = f"→ {block.function_id} {json.dumps(block.arguments, ensure_ascii=False)}"
        return f'<div class="call">{html.escape(call)}</div>'
    return f"<div>{html.escape(f'[image {block.mime}]')}</div>"


def _text(value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return f"<div>{html.escape(shown)}</div>"
