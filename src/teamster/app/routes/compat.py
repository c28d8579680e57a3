"""`POST /run` and `GET /events` as the original app's iii backend spoke them (mat-patterns.md §3)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from teamster.app.context import App
from teamster.app.errors import ApiError
from teamster.app.http import Reply, Request, Route, stream_sse
from teamster.app.routes.runs import frames
from teamster.app.schemas import CompatEvents, CompatEventsQuery, CompatQueued, CompatRun, RunCreate
from teamster.app.store import EVENTS
from teamster.patterns.request import PATTERN_NAMES

MODES = {f"v{n}": name for n, name in enumerate(PATTERN_NAMES, start=1)}  # the original numbered them in this order


def routes(app: App) -> list[Route]:
    async def run(req: Request) -> object:
        body = req.body
        if isinstance(body, dict) and "payload" in body:  # a harness turn request: the harness takes it
            reply = await app.worker.trigger("harness::trigger", body)
            return Reply(reply.get("body"), int(reply.get("status_code", 200)))
        create = _create(body)
        live = await app.runs.start(create)
        run_id = live.record.run_id
        if req.accepts_sse():
            return await stream_sse(app.worker, req, frames(app, run_id, 0))
        return Reply(CompatQueued(runId=run_id, streamName=EVENTS, group=run_id), 202)

    async def events(req: Request) -> CompatEvents:
        query: CompatEventsQuery = req.query
        found, done = await app.runs.events(query.runId, query.after)
        cursor = found[-1]["seq"] if found else query.after
        return CompatEvents(runId=query.runId, cursor=cursor, events=found, done=done)

    return [
        Route("POST", "run", "compat::run", run, "Start a run as the original app's iii backend did"),
        Route(
            "GET",
            "events",
            "compat::events",
            events,
            "A run's events by runId",
            query=CompatEventsQuery,
            reply=CompatEvents,
        ),
    ]


def _create(body: Any) -> RunCreate:
    try:
        compat = CompatRun.model_validate(body if body is not None else {})
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None
    pattern = MODES.get(compat.mode, compat.mode)
    if pattern not in PATTERN_NAMES:
        raise ApiError.invalid(f"mode: {compat.mode!r} is not v1…v9 or one of {', '.join(PATTERN_NAMES)}")
    fields: dict[str, Any] = {"pattern": pattern, "message": compat.message, "backend": compat.backend}
    if compat.model:
        fields["model"] = compat.model
    if compat.provider:
        fields["provider"] = compat.provider
    if compat.history is not None:
        fields["history"] = compat.history
    if compat.conversationId:
        fields["session_id"] = compat.conversationId
    try:
        return RunCreate.model_validate(fields)
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None
