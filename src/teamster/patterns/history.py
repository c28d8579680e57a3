"""Prior conversation as prompt text (mat-patterns.md §5): the last turns, each cut to a few hundred chars."""

from __future__ import annotations

from collections.abc import Sequence

from teamster.patterns.events import preview
from teamster.patterns.request import Turn


def render_history(turns: Sequence[Turn], max_turns: int = 10, max_chars: int = 600) -> str:
    """`User: …` / `Assistant: …` lines for the last `max_turns` turns; empty turns are skipped."""
    lines = [
        f"{'User' if t.role == 'user' else 'Assistant'}: {preview(t.content, max_chars)}"
        for t in turns[-max_turns:]
        if t.content.strip()
    ]
    return "\n".join(lines)


def with_history(history: str, text: str) -> str:
    """`text`, preceded by the prior conversation when there is one."""
    return f"Prior conversation:\n{history}\n\n{text}" if history else text
