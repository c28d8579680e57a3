"""What every route handler of the `app` worker shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from teamster.app.runs import RunManager
from teamster.protocol.clock import monotonic_ms
from teamster.sdk import Worker

KEEPALIVE_S = 15.0


@dataclass(slots=True)
class App:
    worker: Worker
    runs: RunManager
    auth: bool  # the engine's HTTP listener demands a token (the engine checks it; health reports it)
    profile: str = "thick"
    keepalive_s: float = KEEPALIVE_S
    started: int = field(default_factory=monotonic_ms)
