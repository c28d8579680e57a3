"""What the summariser is asked: its system prompt, and the head of the transcript as plain text."""

from __future__ import annotations

import json

from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    ContentBlock,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    TextBlock,
    UserMessage,
)

RESULT_CHARS = 2_000  # a function result is cut to this many characters in the summary prompt

SUMMARY_SYSTEM = (
    "You compact an AI agent's conversation. Write a summary that lets the agent carry on with only your "
    "summary and the most recent messages, which are kept as they are. Be specific: names, paths, values, "
    "commands, decisions and open questions. If the conversation opens with an earlier summary, carry "
    "forward everything in it that still matters. Reply with the summary only, in Markdown, under these "
    "headings: ## Goal, ## Constraints, ## Progress, ## Key Decisions, ## Function Calls Made, "
    "## Next Steps, ## Critical Context, ## Relevant Files."
)


def render(messages: list[AgentMessage]) -> str:
    """The messages as plain text for the summariser: no images, no thinking, long results cut short."""
    parts: list[str] = []
    for message in messages:
        if isinstance(message, UserMessage):
            parts.append(f"[user]\n{_text(message.content)}")
        elif isinstance(message, AssistantMessage):
            calls = [b for b in message.content if isinstance(b, FunctionCallBlock)]
            said = _text(message.content)
            parts.append("[assistant]" + (f"\n{said}" if said else ""))
            parts += [f"[assistant calls {c.function_id}] {json.dumps(c.arguments, ensure_ascii=False)}" for c in calls]
        elif isinstance(message, FunctionResultMessage):
            output = _text(message.content)
            if len(output) > RESULT_CHARS:
                output = f"{output[:RESULT_CHARS]}… [{len(output) - RESULT_CHARS} more characters]"
            parts.append(f"[result of {message.function_id}{' (error)' if message.is_error else ''}]\n{output}")
        else:
            parts.append(f"[{message.custom_type}]\n{json.dumps(message.content, ensure_ascii=False, default=str)}")
    return "\n\n".join(parts)


def _text(content: str | list[ContentBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(
        block.text if isinstance(block, TextBlock) else "[image]"
        for block in content
        if isinstance(block, TextBlock | ImageBlock)
    )
