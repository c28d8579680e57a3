"""Nine coordination patterns on one event contract (docs/patterns.md).

A pattern is `async def run(run: Run)` in `teamster.patterns.<name>`; it talks to models only through the
`Agents` port, so the same pattern runs in-process (`InprocAgents`) or as harness turns on the engine.

The names below are imported on first use: the backends pull in the provider SDKs (seconds), which a
reader of `teamster.patterns.events` — the CLI listing runs, say — never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from teamster.patterns.agents import AgentCall, AgentError, AgentResult, Agents
    from teamster.patterns.engine import EngineAgents, EngineClient
    from teamster.patterns.events import EVENTS, AgentEvent
    from teamster.patterns.inproc import InprocAgents
    from teamster.patterns.registry import run_pattern
    from teamster.patterns.request import PATTERN_NAMES, Options, PatternRequest, Turn

_HOMES = {
    "AgentCall": "agents",
    "AgentError": "agents",
    "AgentResult": "agents",
    "Agents": "agents",
    "EngineAgents": "engine",
    "EngineClient": "engine",
    "EVENTS": "events",
    "AgentEvent": "events",
    "InprocAgents": "inproc",
    "run_pattern": "registry",
    "PATTERN_NAMES": "request",
    "Options": "request",
    "PatternRequest": "request",
    "Turn": "request",
}
__all__ = [
    "EVENTS",
    "PATTERN_NAMES",
    "AgentCall",
    "AgentError",
    "AgentEvent",
    "AgentResult",
    "Agents",
    "EngineAgents",
    "EngineClient",
    "InprocAgents",
    "Options",
    "PatternRequest",
    "Turn",
    "run_pattern",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'teamster.patterns' has no attribute {name!r}")
    return getattr(importlib.import_module(f"teamster.patterns.{home}"), name)
