"""What a pattern run is asked for: the pattern, the query, the model, history and per-run caps."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

PatternName = Literal[
    "orchestrated",
    "choreographed",
    "hierarchical",
    "evaluator_optimizer",
    "debate",
    "blackboard",
    "market",
    "self_consistency",
    "swarm",
]
PATTERN_NAMES: tuple[str, ...] = get_args(PatternName)


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class Options(BaseModel):
    """Caps and switches; None means the pattern's reference default (mat-patterns.md §1)."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int | None = Field(default=None, ge=1, le=100)  # orchestrated 15, choreographed 10
    max_depth: int = Field(default=2, ge=0, le=5)  # hierarchical: the root is depth 0
    max_children: int = Field(default=4, ge=1, le=10)
    max_nodes: int = Field(default=15, ge=1, le=100)  # enforced even for parallel siblings
    threshold: float = Field(default=8, ge=0, le=10)  # evaluator: a score that passes
    max_rounds: int = Field(default=4, ge=1, le=20)  # evaluator rounds
    debate_rounds: int = Field(default=3, ge=1, le=10)
    board_rounds: int = Field(default=8, ge=1, le=50)
    stale_rounds: int = Field(default=2, ge=1, le=10)  # blackboard: rounds without growth that end the run
    controller: Literal["rotation", "model"] = "rotation"  # blackboard: who writes next
    tasks_per_agent: int = Field(default=2, ge=1, le=10)  # market: soft cap per worker
    samples: int = Field(default=4, ge=1, le=16)  # self-consistency
    swarm_size: int = Field(default=4, ge=1, le=16)
    swarm_rounds: int = Field(default=3, ge=1, le=10)
    max_turns: int | None = Field(default=None, ge=1, le=50)  # caps every agent call's model steps
    input_timeout_s: float = Field(default=300, gt=0, le=86_400)  # a human's answer to requestUserInput


class PatternRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: PatternName
    query: str = Field(min_length=1, max_length=8_000, pattern=r"\S")
    model: str = Field(default="scripted", min_length=1, max_length=200)
    provider: str | None = Field(default=None, max_length=100)  # default: the catalog's provider of `model`
    history: list[Turn] = Field(default_factory=list, max_length=50)
    options: Options = Field(default_factory=Options)
    run_id: str | None = Field(default=None, min_length=1, max_length=100)
