"""A tiny worker: `demo::echo` returns what it is given, and `POST /echo` answers with the request body.

Run it against an engine with `teamster worker examples/echo_worker.py`.
"""

from __future__ import annotations

from typing import Any

from teamster.sdk import Worker

worker = Worker("echo", description="Echoes its input back")


@worker.function("demo::echo")
async def echo(data: Any) -> Any:
    """Return the input unchanged."""
    return data


@worker.function("demo::echo-http")
async def echo_http(request: dict[str, Any]) -> dict[str, Any]:
    """Answer an HTTP request with its own JSON body."""
    return {"status_code": 200, "body": request.get("body")}


worker.register_trigger("http", "demo::echo-http", {"api_path": "/echo", "http_method": "POST"})
