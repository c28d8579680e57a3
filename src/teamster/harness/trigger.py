"""Turn intake: `harness::trigger`, bound to HTTP `POST /run`, stores the request, then starts the run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from teamster.protocol.clock import now_ms
from teamster.sdk import Worker

REQUESTS = "harness_requests"
RUN_START_TIMEOUT_S = 600.0


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str | None = None
    message_id: str | None = None
    payload: dict[str, Any]


def create_worker(*, http: bool = True) -> Worker:
    """`http`: bind `POST /run` to `harness::trigger`; off where the run API's own `POST /run` serves the
    path and hands harness-shaped bodies on (`teamster up`, which reserves the app's routes)."""
    worker = Worker("harness")

    @worker.function("harness::trigger", description="Accept a turn request (HTTP POST /run) and start it")
    async def trigger(data: Any) -> dict[str, Any]:
        # Called over HTTP the request arrives wrapped; called directly it is the body itself.
        body = data.get("body") if isinstance(data, dict) and "trigger" in data else data
        try:
            req = TriggerRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _reply(400, {"error": f"{where}: {first['msg']}"})
        session_id = req.session_id or req.payload.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            return _reply(400, {"error": "payload.session_id: a non-empty session id is required"})
        received = now_ms()
        key = f"{session_id}/{req.message_id or received}"
        record = {"payload": req.payload, "message_id": req.message_id, "received_at_ms": received}
        await worker.trigger("state::set", {"scope": REQUESTS, "key": key, "value": record})
        result = await worker.trigger(
            "run::start", {**req.payload, "session_id": session_id}, timeout=RUN_START_TIMEOUT_S
        )
        return _reply(200 if result.get("started") else 409, result)

    if http:
        worker.register_trigger("http", "harness::trigger", {"api_path": "run", "http_method": "POST"})
    return worker


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": status, "headers": {"content-type": "application/json"}, "body": body}
