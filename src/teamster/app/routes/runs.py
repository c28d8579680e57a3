"""`/runs`: start a pattern run, read it, follow its events, and act on it while it runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from teamster.app.context import App
from teamster.app.errors import ApiError
from teamster.app.http import Reply, Request, Route, sse_frame, stream_sse
from teamster.app.idempotency import key_of
from teamster.app.schemas import (
    Aborted,
    Answer,
    ApprovalList,
    Decided,
    Decision,
    EventsPage,
    EventsQuery,
    Ok,
    RunCreate,
    RunCreated,
    RunList,
    RunQuery,
    RunView,
    TraceTree,
)
from teamster.sdk import telemetry


def routes(app: App) -> list[Route]:
    runs = app.runs

    async def create(req: Request) -> Reply:
        body: RunCreate = req.body
        ids = telemetry.current_ids()
        key = key_of(req.headers)

        async def start() -> str:
            live = await runs.start(body, trace_id=ids[0] if ids else None)
            return live.record.run_id

        if key is None:
            run_id, replayed = await start(), False
        else:
            run_id, replayed = await runs.keys.once(key, body, start)
        view = await runs.view(run_id)
        created = RunCreated(run_id=run_id, session_id=view.session_id, events_url=view.events_url)
        return Reply(created, 200, {"idempotent-replayed": "true"}) if replayed else Reply(created, 202)

    async def listing(req: Request) -> RunList:
        query: RunQuery = req.query
        found, total = await runs.views(session_id=query.session_id, status=query.status, limit=query.limit)
        return RunList(runs=found, total=total)

    async def show(req: Request) -> RunView:
        return await runs.view(req.params["run_id"])

    async def events(req: Request) -> object:
        run_id = req.params["run_id"]
        query: EventsQuery = req.query
        if req.accepts_sse():
            await runs.view(run_id)  # an unknown run is a 404, before any stream starts
            after = max(query.after, _last_event_id(req))
            return await stream_sse(app.worker, req, frames(app, run_id, after))
        found, done = await runs.wait(run_id, query.after, query.wait)
        cursor = found[-1]["seq"] if found else query.after
        return EventsPage(run_id=run_id, events=found, cursor=cursor, done=done)

    async def decide(req: Request) -> Decided:
        body: Decision = req.body
        call_id = req.params["call_id"]
        await runs.decide(req.params["run_id"], call_id, body.decision, body.reason)
        return Decided(call_id=call_id, decision=body.decision)

    async def answer(req: Request) -> Ok:
        body: Answer = req.body
        await runs.answer(req.params["run_id"], body.request_id, body.answer)
        return Ok()

    async def abort(req: Request) -> Aborted:
        record = await runs.abort(req.params["run_id"])
        return Aborted(status=record.status)

    async def trace(req: Request) -> TraceTree:
        view = await runs.view(req.params["run_id"])
        if view.trace_id is None:
            return TraceTree(trace_id=None, span_count=0, roots=[])
        tree = await app.worker.trigger("engine::traces::tree", {"trace_id": view.trace_id})
        return TraceTree.model_validate(tree)

    async def approvals(req: Request) -> ApprovalList:
        return ApprovalList(approvals=runs.approvals())

    return [
        Route(
            "POST",
            "runs",
            "runs::create",
            create,
            "Start a pattern run",
            body=RunCreate,
            reply=RunCreated,
            status=202,
            header_params=(
                (
                    "Idempotency-Key",
                    "Up to 255 characters: a retry with the same key and body gets the same run (200), "
                    "never a second one",
                ),
            ),
            also=(
                (200, "The run an earlier request with this Idempotency-Key and body started (Idempotent-Replayed)"),
                (422, "idempotency_key_reused: the Idempotency-Key came with another body before"),
            ),
        ),
        Route("GET", "runs", "runs::list", listing, "List runs, newest first", query=RunQuery, reply=RunList),
        Route("GET", "runs/:run_id", "runs::get", show, "A run's status", reply=RunView),
        Route(
            "GET",
            "runs/:run_id/events",
            "runs::events",
            events,
            "A run's events: a JSON page after a cursor, or Server-Sent Events",
            query=EventsQuery,
            reply=EventsPage,
            streams=True,
        ),
        Route(
            "POST",
            "runs/:run_id/approvals/:call_id",
            "runs::decide",
            decide,
            "Allow or deny a tool call waiting for approval",
            body=Decision,
            reply=Decided,
        ),
        Route("POST", "runs/:run_id/input", "runs::input", answer, "Answer an input request", body=Answer, reply=Ok),
        Route("POST", "runs/:run_id/abort", "runs::abort", abort, "Stop a run", reply=Aborted),
        Route("GET", "runs/:run_id/trace", "runs::trace", trace, "A run's spans as a tree", reply=TraceTree),
        Route(
            "GET", "approvals", "approvals::list", approvals, "Every tool call waiting for approval", reply=ApprovalList
        ),
    ]


async def frames(app: App, run_id: str, after: int) -> AsyncIterator[bytes]:
    """A run's events after `after` as SSE frames, with keep-alives, until its terminal event."""
    async for event in app.runs.follow(run_id, after, app.keepalive_s):
        yield sse_frame(event)


def _last_event_id(req: Request) -> int:
    raw = req.headers.get("last-event-id", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ApiError.invalid(f"Last-Event-ID: {raw!r} is not an event seq")
    return int(raw)
