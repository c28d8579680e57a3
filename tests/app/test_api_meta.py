"""The bearer token, `/health`, `/openapi.json`, `/models` and `/credentials`, and the `/run` + `/events` compat."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from teamster import __version__
from teamster.harness.credentials import ENV_VARS
from teamster.patterns.request import PATTERN_NAMES
from teamster.sdk import InvocationError, Worker
from tests.app.conftest import TOKEN, Api, AppServer, event_frames, read_sse
from tests.conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

PUBLIC = {("GET", "/health"), ("GET", "/"), ("GET", "/static/{name}")}
ROUTES = {  # every route of docs/api.md
    ("POST", "/runs"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("GET", "/runs/{run_id}/events"),
    ("POST", "/runs/{run_id}/approvals/{call_id}"),
    ("POST", "/runs/{run_id}/input"),
    ("POST", "/runs/{run_id}/abort"),
    ("GET", "/runs/{run_id}/trace"),
    ("GET", "/approvals"),
    ("GET", "/sessions"),
    ("GET", "/sessions/{session_id}/tree"),
    ("POST", "/sessions/{session_id}/fork"),
    ("GET", "/sessions/{session_id}/export"),
    ("GET", "/models"),
    ("GET", "/credentials"),
    ("PUT", "/credentials/{provider}"),
    ("DELETE", "/credentials/{provider}"),
    ("POST", "/run"),
    ("GET", "/events"),
    ("GET", "/openapi.json"),
    *PUBLIC,
}
HEALTH_FEATURES = {"backends", "patterns", "auth", "approvals", "budgets", "traces", "sessions"}
RUN_CREATE_FIELDS = {
    "pattern",
    "message",
    "backend",
    "model",
    "provider",
    "history",
    "session_id",
    "budget",
    "policy",
    "max_turns",
    "caps",
}


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud models are available only with a key: none comes from this machine's environment."""
    for name in set(ENV_VARS.values()):
        monkeypatch.delenv(name, raising=False)


async def spec(api: Api) -> dict[str, Any]:
    reply = await api.get("/openapi.json")
    assert reply.status == 200
    return dict(reply.body)


def concrete(path: str) -> str:
    """A documented path with every parameter filled in."""
    return path.replace("{name}", "index.html").replace("{provider}", "openai").replace("{", "x-").replace("}", "")


# ---- auth ---------------------------------------------------------------------------------------


async def test_every_route_but_health_and_the_playground_needs_the_token(api: Api) -> None:
    before = (await api.get("/runs")).body["total"]
    for method, path in sorted(ROUTES - PUBLIC):
        url = concrete(path) + ("?runId=r1" if path == "/events" else "")
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            reply = await api.call(method, url, {}, headers=headers, auth=False)
            assert reply.status == 401, (method, path, headers, reply.status)
            assert reply.body["code"] == "unauthorized" and reply.body["error"].startswith("unauthorized: ")
        with_token = await api.call(method, url, {})
        assert with_token.status != 401, (method, path)
    assert (await api.get("/runs")).body["total"] == before  # nothing was started without the token
    for method, path in sorted(PUBLIC):
        reply = await api.call(method, concrete(path), auth=False)
        assert reply.status == 200, (path, reply.body)


@pytest.mark.parametrize("path", ["/runs", "/approvals", "/sessions", "/models", "/credentials", "/openapi.json"])
async def test_the_right_token_opens_each_listing(api: Api, path: str) -> None:
    assert (await api.get(path)).status == 200
    assert (await api.get(path, auth=False)).body == {
        "error": "unauthorized: missing bearer token; send Authorization: Bearer <TEAMSTER_TOKEN>",
        "code": "unauthorized",
    }


async def test_a_refused_credential_change_changes_nothing(api: Api) -> None:
    reply = await api.call("PUT", "/credentials/openai", {"token": "sk-intruder"}, auth=False)
    assert reply.status == 401
    assert await configured(api, "openai") == {"provider": "openai", "configured": False, "source": None}


async def test_no_worker_can_shadow_the_apps_credentials_route(server: AppServer, api: Api) -> None:
    intruder = Worker("intruder")
    intruder.register_function("intruder::credentials", lambda req: {"body": {"providers": []}})
    await intruder.open_local(server.engine)
    try:
        put = {"api_path": "credentials/:p", "http_method": "PUT"}
        shadows = [{"api_path": "credentials"}, {"api_path": ":any"}, put]
        for config in shadows:
            with pytest.raises(InvocationError) as refused:
                request = {"trigger_type": "http", "function_id": "intruder::credentials", "config": config}
                await intruder.trigger("engine::register_trigger", request)
            assert refused.value.code == "trigger_registration_failed", config
    finally:
        await intruder.close()
    reply = await api.get("/credentials")
    assert reply.status == 200 and {p["provider"] for p in reply.body["providers"]} >= {"openai", "anthropic"}


async def test_post_run_needs_the_bearer_header_not_a_token_in_the_body(api: Api) -> None:
    body = {"mode": "debate", "message": "Tabs?"}
    # The engine checks the token before it reads any body, so `auth_token` in the body opens nothing.
    assert (await api.post("/run", {**body, "auth_token": TOKEN}, auth=False)).status == 401
    reply = await api.post("/run", body)
    assert reply.status == 202 and reply.body["queued"] is True


# ---- health and OpenAPI -----------------------------------------------------------------------


async def test_health_says_what_this_teamster_can_do(api: Api) -> None:
    reply = await api.get("/health", auth=False)
    assert reply.status == 200
    features = set(reply.body["features"])
    assert features == HEALTH_FEATURES, f"not in docs/api.md: {sorted(features - HEALTH_FEATURES)}"
    assert reply.body == {
        "ok": True,
        "worker": "app",
        "version": __version__,
        "uptime_ms": reply.body["uptime_ms"],
        "profile": "thick",
        "features": {
            "backends": ["inproc", "engine"],
            "patterns": list(PATTERN_NAMES),
            "auth": True,
            "approvals": True,
            "budgets": True,
            "traces": True,
            "sessions": True,
        },
    }
    assert isinstance(reply.body["uptime_ms"], int) and reply.body["uptime_ms"] >= 0


async def test_the_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    document = await spec(api)
    validate(document)
    assert document["openapi"].startswith("3.1")
    operations = {(m.upper(), p): op for p, item in document["paths"].items() for m, op in item.items()}
    assert set(operations) == ROUTES, f"documented but not in /openapi.json: {sorted(ROUTES - set(operations))}"
    assert {key for key, op in operations.items() if "security" not in op} == PUBLIC


async def test_the_openapi_document_describes_run_create(api: Api) -> None:
    document = await spec(api)
    create = document["paths"]["/runs"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == RUN_CREATE_FIELDS
    assert sorted(schema["required"]) == ["message", "pattern"]
    props = schema["properties"]
    assert props["pattern"]["enum"] == list(PATTERN_NAMES)
    assert props["backend"]["enum"] == ["inproc", "engine"] and props["backend"]["default"] == "inproc"
    assert props["policy"]["enum"] == ["manual", "auto", "full"] and props["policy"]["default"] == "full"
    assert props["message"]["maxLength"] == 8000 and props["model"]["default"] == "scripted"
    assert {"202", "400", "401"} <= set(create["responses"])
    events = document["paths"]["/runs/{run_id}/events"]["get"]
    assert {"application/json", "text/event-stream"} <= set(events["responses"]["200"]["content"])
    assert {p["name"] for p in events["parameters"]} == {"run_id", "after", "wait"}


# ---- models and credentials -------------------------------------------------------------------


async def models(api: Api) -> dict[str, dict[str, Any]]:
    reply = await api.get("/models")
    assert reply.status == 200
    return {f"{m['provider']}/{m['id']}": m for m in reply.body["models"]}


async def configured(api: Api, provider: str) -> dict[str, Any]:
    rows = (await api.get("/credentials")).body["providers"]
    return next((r for r in rows if r["provider"] == provider), {"provider": provider, "configured": False})


def available(found: dict[str, dict[str, Any]], provider: str) -> set[bool]:
    return {m["available"] for m in found.values() if m["provider"] == provider}


async def test_scripted_is_always_available_and_cloud_models_need_a_key(
    api: Api, server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await models(api)
    assert found["scripted/scripted"] == {
        "id": "scripted",
        "provider": "scripted",
        "label": "scripted · test model, no AI",
        "available": True,
        "local": True,
        "context_window": found["scripted/scripted"]["context_window"],
        "input_per_1m": 0.0,
        "output_per_1m": 0.0,
    }
    assert available(found, "openai") == available(found, "anthropic") == {False}
    assert not any(m["local"] for m in found.values() if m["provider"] in ("openai", "anthropic"))
    assert await configured(api, "openai") == {"provider": "openai", "configured": False, "source": None}

    secret = "sk-test-0123456789abcdef"
    stored = await api.call("PUT", "/credentials/openai", {"token": secret})
    assert (stored.status, stored.body) == (200, {"ok": True})
    found = await models(api)
    assert (available(found, "openai"), available(found, "anthropic")) == ({True}, {False})
    assert await configured(api, "openai") == {"provider": "openai", "configured": True, "source": "file"}
    for path in ("/credentials", "/models"):
        assert secret not in str((await api.get(path)).body)
    assert secret in (server.data_dir / "credentials.json").read_text()  # kept in the data dir, not the repo

    forgotten = await api.call("DELETE", "/credentials/openai")
    assert (forgotten.status, forgotten.body) == (200, {"ok": True})
    assert available(await models(api), "openai") == {False}
    assert secret not in (server.data_dir / "credentials.json").read_text()

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    assert available(await models(api), "anthropic") == {True}
    assert await configured(api, "anthropic") == {"provider": "anthropic", "configured": True, "source": "env"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/credentials/openai", {"token": ""}, "token"),
        ("PUT", "/credentials/openai", {"token": "k", "extra": 1}, "extra"),
        ("PUT", "/credentials/open%20ai", {"token": "k"}, "provider"),
        ("DELETE", "/credentials/a.b", None, "provider"),
    ],
)
async def test_a_bad_credential_request_is_400(api: Api, method: str, path: str, body: Any, field: str) -> None:
    reply = await api.call(method, path, body)
    assert (reply.status, reply.body["code"], reply.body["error"].split(":")[0]) == (400, "invalid_request", field)


# ---- the original app's POST /run and GET /events -------------------------------------------------


async def test_post_run_streams_a_numbered_mode_to_its_end(api: Api) -> None:
    async with api.http.post(
        f"{api.base}/run", json={"mode": "v5", "message": "Tabs?"}, headers=api.headers({"accept": "text/event-stream"})
    ) as response:
        assert response.status == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        events = [f.data for f in event_frames(await read_sse(response))]
    assert events[0] is not None and events[-1] is not None
    assert (events[0]["type"], events[0]["mode"]) == ("workflow_start", "debate")  # v5 is debate
    assert events[-1]["type"] == "workflow_complete"
    assert [e["seq"] for e in events if e] == list(range(1, len(events) + 1))


async def test_post_run_queues_a_run_paged_by_get_events(api: Api) -> None:
    conversation = "compat-conversation"
    reply = await api.post("/run", {"mode": "swarm", "message": "Tabs?", "conversationId": conversation})
    assert reply.status == 202
    run_id = reply.body["runId"]
    assert reply.body == {"queued": True, "runId": run_id, "streamName": reply.body["streamName"], "group": run_id}
    events = await api.finish(run_id)
    assert (await api.get(f"/runs/{run_id}")).body["session_id"] == conversation

    page = await api.get(f"/events?runId={run_id}&after=3")
    assert page.body == {"runId": run_id, "cursor": len(events), "events": events[3:], "done": True}
    end = await api.get(f"/events?runId={run_id}&after={len(events)}")
    assert end.body == {"runId": run_id, "cursor": len(events), "events": [], "done": True}
    unknown = await api.get("/events?runId=no-such-run")
    assert (unknown.status, unknown.body["code"]) == (404, "run_not_found")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"mode": "v10", "message": "x"}, "mode: 'v10' is not v1…v9 or one of orchestrated, choreographed"),
        ({"mode": "chorus", "message": "x"}, "mode: 'chorus' is not v1…v9"),
        ({"message": "x"}, "mode: Field required"),
        ({"mode": "v1", "message": " "}, "message: String should match pattern"),
    ],
)
async def test_post_run_refuses_a_bad_mode_or_message(api: Api, body: dict[str, Any], error: str) -> None:
    reply = await api.post("/run", body)
    assert (reply.status, reply.body["code"]) == (400, "invalid_request")
    assert reply.body["error"].startswith(error), reply.body["error"]


async def test_post_run_hands_a_harness_turn_to_the_harness(api: Api) -> None:
    session_id = "compat-harness-turn"
    turn = {"payload": {"session_id": session_id, "messages": [{"role": "user", "content": "hi there"}]}}
    reply = await api.post("/run", turn)
    assert (reply.status, reply.body) == (200, {"session_id": session_id, "started": True})
    refused = await api.post("/run", {"payload": {"messages": []}})
    assert (refused.status, refused.body) == (400, {"error": "payload.session_id: a non-empty session id is required"})

    async def answered() -> bool:  # the harness ran the turn: the model's reply follows the message in the session
        tree = (await api.get(f"/sessions/{session_id}/tree")).body.get("tree")
        return tree is not None and bool(tree["children"])

    await eventually(answered, timeout=20, interval=0.05)
    tree = (await api.get(f"/sessions/{session_id}/tree")).body["tree"]
    assert tree["entry"]["message"]["content"] == "hi there"
    assert tree["children"][0]["entry"]["message"]["role"] == "assistant"
