"""Where a compaction cuts a transcript: the kept tail never parts a function call from its results."""

from __future__ import annotations

from itertools import accumulate

from teamster.harness.contracts import AgentMessage, AssistantMessage, FunctionCallBlock, FunctionResultMessage


def cut_point(messages: list[AgentMessage], tail_tokens: int, first: int = 1) -> int | None:
    """Where the kept tail `messages[i:]` starts: the longest tail within `tail_tokens`, else the shortest one.

    None when no cut is allowed: only from `first` on, never at a function result, never inside a call's span.
    """
    # A cut at i summarises messages[:i]; `first` keeps something in that head worth summarising.
    open_calls = [0] * (len(messages) + 1)  # +1 from just after a call to just after its last result
    call_at: dict[str, int] = {}
    for i, message in enumerate(messages):
        if isinstance(message, AssistantMessage):
            call_at.update((b.id, i) for b in message.content if isinstance(b, FunctionCallBlock))
        elif isinstance(message, FunctionResultMessage) and message.function_call_id in call_at:
            open_calls[call_at[message.function_call_id] + 1] += 1
            open_calls[i + 1] -= 1
    allowed: list[int] = []
    spanning = 0
    for i, message in enumerate(messages):
        spanning += open_calls[i]
        if i >= first and spanning == 0 and not isinstance(message, FunctionResultMessage):
            allowed.append(i)
    if not allowed:
        return None
    tail_chars = list(accumulate(len(m.model_dump_json()) for m in reversed(messages)))[::-1]  # [i]: messages[i:]
    return next((i for i in allowed if tail_chars[i] // 4 <= tail_tokens), allowed[-1])
