"""`/sessions`: the conversations, each a session tree, with fork and an HTML export."""

from __future__ import annotations

from typing import Any

from teamster.app.context import App
from teamster.app.errors import ApiError
from teamster.app.http import Reply, Request, Route
from teamster.app.schemas import Fork, Forked, SessionList, SessionQuery, SessionTree
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode

NOT_FOUND_CODES = frozenset({ErrorCode.SESSION_NOT_FOUND, ErrorCode.ENTRY_NOT_FOUND})


def routes(app: App) -> list[Route]:
    async def call(function: str, payload: dict[str, Any]) -> Any:
        try:
            return await app.worker.trigger(f"session-tree::{function}", payload)
        except InvocationError as exc:
            if exc.code in NOT_FOUND_CODES:
                raise ApiError.not_found(exc.code, exc.message) from None
            raise

    async def meta(session_id: str) -> dict[str, Any]:
        found = await call("get", {"session_id": session_id})
        if found is None:
            raise ApiError.not_found(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id}")
        return dict(found)

    async def listing(req: Request) -> SessionList:
        query: SessionQuery = req.query
        found = await call("list", {})
        conversations = [row for row in found["sessions"] if not row.get("parent_session_id")]
        page = conversations[query.offset : query.offset + query.limit]
        return SessionList(sessions=page, total=len(conversations))

    async def tree(req: Request) -> SessionTree:
        session_id = req.params["session_id"]
        await meta(session_id)
        entries = await call("tree", {"session_id": session_id})
        children = await call("children", {"session_id": session_id})
        return SessionTree(session_id=session_id, tree=entries, children=children["sessions"])

    async def fork(req: Request) -> Reply:
        body: Fork = req.body
        forked = await call(
            "fork", {"source_session_id": req.params["session_id"], "from_entry_id": body.from_entry_id}
        )
        return Reply(Forked(session_id=forked["session_id"]), 201)

    async def export(req: Request) -> str:
        session_id = req.params["session_id"]
        await meta(session_id)
        return str((await call("export_html", {"session_id": session_id}))["html"])

    return [
        Route(
            "GET",
            "sessions",
            "sessions::list",
            listing,
            "Conversations, latest first",
            query=SessionQuery,
            reply=SessionList,
        ),
        Route(
            "GET",
            "sessions/:session_id/tree",
            "sessions::tree",
            tree,
            "A session's entries and agent sessions",
            reply=SessionTree,
        ),
        Route(
            "POST",
            "sessions/:session_id/fork",
            "sessions::fork",
            fork,
            "A new conversation from an entry",
            body=Fork,
            reply=Forked,
            status=201,
        ),
        Route(
            "GET",
            "sessions/:session_id/export",
            "sessions::export",
            export,
            "A session as one HTML page",
            media="text/html; charset=utf-8",
        ),
    ]
