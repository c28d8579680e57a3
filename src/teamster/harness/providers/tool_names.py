"""`ToolNames` maps function ids (`billing::charge`) to tool names that model APIs accept
(`^[a-zA-Z0-9_-]{1,64}$`, here `billing__charge`) and back."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
MAX_TOOL_NAME = 64


def safe_tool_name(function_id: str) -> str:
    """`billing::charge` → `billing__charge`; other characters outside `[a-zA-Z0-9_-]` become `_`;
    names over 64 characters keep a prefix plus a hash of the full id."""
    name = _UNSAFE.sub("_", function_id.replace("::", "__")) or "function"
    if len(name) > MAX_TOOL_NAME:
        digest = hashlib.sha1(function_id.encode()).hexdigest()[:8]
        name = f"{name[: MAX_TOOL_NAME - 9]}_{digest}"
    return name


class ToolNames:
    """One request's two-way map between function ids and tool names.

    Names come from `safe_tool_name`; when two ids would share a name, later ones get `_2`, `_3`, ….
    A name the model invents (not in the map) maps back by turning `__` into `::`.
    """

    def __init__(self, function_ids: Iterable[str] = ()) -> None:
        self._names: dict[str, str] = {}
        self._ids: dict[str, str] = {}
        for function_id in function_ids:
            self.name(function_id)

    def name(self, function_id: str) -> str:
        known = self._names.get(function_id)
        if known is not None:
            return known
        base = name = safe_tool_name(function_id)
        n = 2
        while name in self._ids:
            suffix = f"_{n}"
            name = base[: MAX_TOOL_NAME - len(suffix)] + suffix
            n += 1
        self._names[function_id] = name
        self._ids[name] = function_id
        return name

    def function_id(self, name: str) -> str:
        return self._ids.get(name) or name.replace("__", "::")
