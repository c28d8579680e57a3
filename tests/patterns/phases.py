"""Assertions for parallel phases: each call's own event order and the boundaries between phases.

The interleaving of agents inside a parallel phase is up to the backend, so tests check what is fixed:
every call's events in order, each phase ending before the next begins, and a pattern event that reports
on a call coming right after that call's `iteration_end`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

CALL_EVENTS = ("iteration_start", "agent_step", "iteration_end")
Match = Callable[[Any], bool]
CallKey = tuple[str, int]  # (agent, iteration)


def calls(events: Sequence[Any]) -> dict[CallKey, list[str]]:
    """Each agent call's own event types in order, keyed by (agent, iteration), in order of first event."""
    found: dict[CallKey, list[str]] = {}
    for e in events:
        if e.type in CALL_EVENTS:
            found.setdefault((e.agent, e.iteration), []).append(e.type)
    return found


def call_events(steps: int) -> list[str]:
    """The own events of a call that reported `steps` steps."""
    return ["iteration_start", *["agent_step"] * steps, "iteration_end"]


def of_calls(*keys: CallKey) -> Match:
    """Matches the events of the given calls."""
    wanted = set(keys)
    return lambda e: e.type in CALL_EVENTS and (e.agent, e.iteration) in wanted


def of_type(*kinds: str) -> Match:
    return lambda e: e.type in kinds


def either(*matches: Match) -> Match:
    return lambda e: any(m(e) for m in matches)


def assert_phases(events: Sequence[Any], *phases: Match) -> None:
    """Every phase has events, and all of a phase's events come before any event of the next one."""
    spans = []
    for match in phases:
        where = [i for i, e in enumerate(events) if match(e)]
        assert where, f"phase {len(spans)} has no events"
        spans.append((min(where), max(where)))
    for (_, end), (start, _) in pairwise(spans):
        assert end < start, f"phases overlap: {spans}"


def assert_follows_its_call(events: Sequence[Any], kind: str, call_of: Callable[[Any], CallKey]) -> None:
    """Each `kind` event comes right after the `iteration_end` of the call it reports on."""
    seen = 0
    for i, e in enumerate(events):
        if e.type == kind:
            before = events[i - 1]
            assert before.type == "iteration_end" and (before.agent, before.iteration) == call_of(e), (kind, i)
            seen += 1
    assert seen, f"no {kind} events"
