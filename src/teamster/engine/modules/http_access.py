"""Who `iii-http` answers: `Host`, `Origin` and the bearer token, checked before a body is read.

The order matters. A `Host` that is not this listener's (DNS rebinding) and a browser `Origin` that is
not allowed are refused first, with no CORS headers, so a cross-site page learns nothing and its
"simple" POST — which a browser sends without asking first — runs nothing. Then the token: every route
not declared `public` needs `Authorization: Bearer <token>` before its body is read or any function,
middleware included, is called. The rules themselves are `teamster.engine.access`'s, shared with the
other listeners.
"""

from __future__ import annotations

from aiohttp import web

from teamster.engine.access import ListenerAccess, bearer, host_allowed, origin_allowed, token_matches
from teamster.engine.modules.http_response import refusal
from teamster.protocol.errors import ErrorCode


class Gate:
    """The access checks of one HTTP listener, with its resolved token and allow-lists."""

    def __init__(self, token: str | None, access: ListenerAccess, allowed_methods: list[str]) -> None:
        self.token = token
        self.origins = access.allowed_origins
        self.hosts = access.allowed_hosts
        self.methods = allowed_methods

    def refuse_caller(self, request: web.Request) -> web.Response | None:
        """403/421 for a foreign origin or host, before anything else; None when the caller may go on."""
        if self.token is None and not host_allowed(request.headers.get("Host"), self.hosts):
            host = request.headers.get("Host", "")
            return refusal(
                421, ErrorCode.UNKNOWN_HOST, f"this server does not answer for Host {host!r}; see allowed_hosts"
            )
        if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), self.origins):
            return refusal(403, ErrorCode.FORBIDDEN_ORIGIN, f"origin {request.headers['Origin']!r} is not allowed")
        return None

    def refuse_unauthorized(self, request: web.Request, public: bool) -> web.Response | None:
        """401 for a non-public route without the right bearer token; None when it may go on."""
        if self.token is None or public or self.authorized(request):
            return None
        why = "missing bearer token" if "Authorization" not in request.headers else "wrong token"
        return refusal(401, ErrorCode.UNAUTHORIZED, f"unauthorized: {why}; send Authorization: Bearer <TEAMSTER_TOKEN>")

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries this listener's token."""
        given = bearer({"authorization": request.headers.get("Authorization", "")})
        return self.token is not None and token_matches(given, self.token)

    def preflight(self, request: web.Request) -> web.Response:
        """The answer to a CORS preflight from an allowed origin (others were refused by `refuse_caller`)."""
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": ", ".join(self.methods) if self.methods else "*",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
            },
        )

    def cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`Access-Control-Allow-Origin` for an origin on the allow-list (`*` only when `*` is listed)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return
        response.headers.add("Vary", "Origin")
        if "*" in self.origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in self.origins:
            response.headers["Access-Control-Allow-Origin"] = origin
