"""The orchestrator's settings: which gates it consults, its queue and its deadlines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Which gates the orchestrator consults: the thin profile turns them off, the thick one on."""

    policy: bool = True
    approvals: bool = True
    budgets: bool = True
    hooks: bool = True
    compaction: bool = True
    skills: bool = True
    catalog: bool = True
    queue: str = "turn-step"
    lease_ttl_s: float = 10.0  # a crashed step keeps its session's lease this long at most
    policy_timeout_s: float = 5.0
    provider_timeout_s: float = 300.0
    hook_timeout_ms: int = 500
