"""Nine coordination patterns on one event contract (docs/patterns.md).

A pattern is `async def run(run: Run)` in `teamster.patterns.<name>`; it talks to models only through the
`Agents` port, so the same pattern runs in-process (`InprocAgents`) or as harness turns on the engine.
"""

from teamster.patterns.agents import AgentCall, AgentError, AgentResult, Agents
from teamster.patterns.engine import EngineAgents, EngineClient
from teamster.patterns.events import EVENTS, AgentEvent
from teamster.patterns.inproc import InprocAgents
from teamster.patterns.registry import run_pattern
from teamster.patterns.request import PATTERN_NAMES, Options, RunRequest, Turn

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
    "RunRequest",
    "Turn",
    "run_pattern",
]
