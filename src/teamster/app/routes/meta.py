"""`/health`, `/openapi.json`, and the playground's static files at `/` and `/static/<name>`."""

from __future__ import annotations

from importlib import resources

from teamster import __version__
from teamster.app.context import App
from teamster.app.errors import ApiError
from teamster.app.http import Reply, Request, Route
from teamster.app.openapi import document
from teamster.app.schemas import Health
from teamster.patterns.request import PATTERN_NAMES
from teamster.protocol import InvocationError
from teamster.protocol.clock import monotonic_ms
from teamster.protocol.errors import ErrorCode

STATIC = resources.files("teamster.app") / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


def routes(app: App, api: list[Route]) -> list[Route]:
    async def health(req: Request) -> Health:
        found = await app.worker.trigger("engine::functions::list", {})
        ids = {f["function_id"] for f in found["functions"]}
        features = {
            "backends": ["inproc", "engine"],
            "patterns": list(PATTERN_NAMES),
            "auth": app.auth,
            "approvals": "approval::resolve" in ids,
            "budgets": "budget::create" in ids,
            "traces": await _answers(app, "engine::traces::stats"),  # engine built-ins are not listed
            "sessions": "session-tree::list" in ids,
        }
        uptime = monotonic_ms() - app.started
        return Health(version=__version__, uptime_ms=uptime, profile=app.profile, features=features)

    async def openapi(req: Request) -> dict[str, object]:
        return spec

    async def index(req: Request) -> Reply:
        return _file("index.html")

    async def static(req: Request) -> Reply:
        return _file(req.params["name"])

    own = [
        Route("GET", "health", "health", health, "Liveness, uptime and enabled features", reply=Health, public=True),
        Route("GET", "openapi.json", "openapi", openapi, "This API's OpenAPI document"),
        Route("GET", "/", "playground", index, "The web playground", public=True, media="text/html; charset=utf-8"),
        Route("GET", "static/:name", "static", static, "The playground's files", public=True, media="text/plain"),
    ]
    spec = document([*api, *own])
    return own


async def _answers(app: App, function_id: str) -> bool:
    try:
        await app.worker.trigger(function_id, {})
    except InvocationError:
        return False
    return True


def _file(name: str) -> Reply:
    suffix = name[name.rfind(".") :] if "." in name else ""
    found = STATIC / name
    if "/" in name or name.startswith(".") or suffix not in TYPES or not found.is_file():
        raise ApiError.not_found(ErrorCode.FILE_NOT_FOUND, f"no file {name}")
    return Reply(
        found.read_text(encoding="utf-8"), headers={"content-type": TYPES[suffix], "cache-control": "no-cache"}
    )
