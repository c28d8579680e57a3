"""The hook merge rules: how the replies of a hook topic's subscribers combine into one (iii-harness.md §6).

`first_block_wins` for gates (the first reply that blocks), `field_merge` for rewriting a function result,
`pipeline_last_wins` for replacing a message list. Pure functions.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

MergeRule = Literal["first_block_wins", "field_merge", "pipeline_last_wins"]


def merge(rule: MergeRule, payload: Any, replies: list[Any]) -> Any:
    if rule == "first_block_wins":
        return first_block_wins(replies)
    if rule == "field_merge":
        return field_merge(payload, replies)
    return pipeline_last_wins(payload, replies)


def first_block_wins(replies: list[Any]) -> dict[str, Any]:
    """A copy of the first reply with block: true, else {block: false}."""
    blocking = next((r for r in replies if isinstance(r, dict) and r.get("block") is True), None)
    return {"block": False} if blocking is None else copy.deepcopy(blocking)


def field_merge(payload: Any, replies: list[Any]) -> dict[str, Any]:
    """The caller's payload with each reply's content (replaced), details (deep-merged) and terminate applied."""
    merged: dict[str, Any] = copy.deepcopy(payload) if isinstance(payload, dict) else {}
    for reply in replies:
        if not isinstance(reply, dict):
            continue
        if "content" in reply:
            merged["content"] = copy.deepcopy(reply["content"])
        if isinstance(reply.get("details"), dict):
            merged["details"] = deep_merge(merged.get("details"), reply["details"])
        if isinstance(reply.get("terminate"), bool):
            merged["terminate"] = reply["terminate"]
    return merged


def pipeline_last_wins(payload: Any, replies: list[Any]) -> Any:
    """The last reply that is a replacement (an array, or {messages: array}); the payload when none is."""
    merged = payload
    for reply in replies:
        if isinstance(reply, list):
            merged = reply
        elif isinstance(reply, dict) and isinstance(reply.get("messages"), list):
            merged = reply["messages"]
    return merged


def deep_merge(base: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `base`: objects merge key by key, anything else replaces."""
    merged: dict[str, Any] = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        merged[key] = deep_merge(merged.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return merged
