"""The nine patterns by name (module `teamster.patterns.<name>`); `run_pattern` ends each run exactly once."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import cast

from teamster.patterns.agents import AgentError, Agents
from teamster.patterns.events import Sink
from teamster.patterns.request import PATTERN_NAMES, PatternRequest
from teamster.patterns.run import Pattern, Run

log = logging.getLogger("teamster.patterns")


def pattern(name: str) -> Pattern:
    """The `run` function of `teamster.patterns.<name>`; each pattern module defines one."""
    if name not in PATTERN_NAMES:
        raise KeyError(f"unknown pattern {name!r}: one of {', '.join(PATTERN_NAMES)}")
    return cast(Pattern, importlib.import_module(f"teamster.patterns.{name}").run)


async def run_pattern(request: PatternRequest, agents: Agents, sink: Sink) -> Run:
    """Run `request.pattern`; whatever happens, exactly one `workflow_complete` or `workflow_error` is emitted."""
    return await drive(Run(request, agents, sink))


async def drive(run: Run) -> Run:
    """Run a prepared `Run` to its one terminal event (for callers that emit into the run themselves)."""
    request = run.request
    try:
        await pattern(request.pattern)(run)
        if not run.finished:
            run.fail(f"{request.pattern} ended without a result")
    except AgentError as exc:
        run.fail(str(exc))
    except asyncio.CancelledError:
        run.fail("run aborted")
        raise
    except Exception as exc:  # a bug in a pattern still ends the run with a reason, not silence
        log.exception("pattern %s failed", request.pattern)
        run.fail(f"{type(exc).__name__}: {exc}")
    return run
