"""Reading history messages the way every provider sends them back to a model: their text, and which go back."""

from __future__ import annotations

import json
from typing import Any

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    ContentBlock,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    StreamRequest,
    TextBlock,
)


def text_of(content: str | list[ContentBlock] | Any) -> str:
    """The text of a message's content: a string, or the text blocks joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.text for b in content if isinstance(b, TextBlock))
    return "" if content is None else json.dumps(content, default=str)


def result_text(message: FunctionResultMessage) -> str:
    """A function result as text: its text blocks, else its `details` as JSON."""
    text = text_of(message.content)
    if not text and message.details is not None:
        text = json.dumps(message.details, default=str)
    if any(isinstance(b, ImageBlock) for b in message.content):
        text = (text + "\n[image]").strip()
    return text


def function_ids_in(req: StreamRequest) -> list[str]:
    """Every function id a request names: the tools first, then calls found in the history."""
    ids = [tool.name for tool in req.tools]
    for message in req.messages:
        if isinstance(message, AssistantMessage):
            ids.extend(b.function_id for b in message.content if isinstance(b, FunctionCallBlock))
        elif isinstance(message, FunctionResultMessage):
            ids.append(message.function_id)
    return ids


def replayable(message: AgentMessage) -> bool:
    """Whether a history message goes back to a model: assistant turns that are empty, failed or were
    aborted do not (their calls never ran, and half a turn confuses the next one)."""
    if isinstance(message, AssistantMessage):
        return bool(message.content) and message.stop_reason not in ("error", "aborted")
    return True
