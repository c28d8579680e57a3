"""Roles on the bus: a real engine, the real harness workers attached in-process (as `teamster up` runs
them), and callers over a real socket admitted as `admin`, `provider` or `worker`.

The guarded listener's auth function answers `{role}` for a role name, or iii grants for `grants`; the
token→role mapping of the listener config reaches the same `role_session`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from iii import InitOptions, register_worker
from iii import InvocationError as IIIInvocationError
from iii_helpers.observability.reconnection import ReconnectionConfig
from pydantic import BaseModel, ValidationError

from teamster.engine.engine import Engine
from teamster.engine.modules.worker_manager import WorkerManager
from teamster.engine.rbac import Role, role_session
from teamster.engine.registry import FunctionEntry, FunctionRegistry
from teamster.engine.roles import cleared, reserved
from teamster.harness import approval, credentials
from teamster.harness.credentials import ENV_VARS
from teamster.protocol.access import mark
from teamster.sdk import Worker
from tests.conftest import engine_config, eventually
from tests.raw import RawPeer

KEY = "sk-live-0123456789-abcd"
GRANTS: dict[str, Any] = {  # an iii auth function's answer: wildcards and exposure, and one id by name
    "namespaces": {"default": ["open::*"]},
    "allowed_functions": ["open::named"],
}


@dataclass
class Bus:
    engine: Engine
    url: str  # the guarded listener
    local: Worker  # in-process, like the app: no session, trusted

    def as_(self, role: str) -> str:
        return f"{self.url}/?role={role}"

    async def durable(self) -> dict[str, Any]:
        listed = await self.local.trigger("engine::registered-triggers::list", {})
        return {row["id"]: row for row in listed["registered_triggers"]}


@pytest.fixture
async def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bus]:
    for env_var in set(ENV_VARS.values()):
        monkeypatch.delenv(env_var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = engine_config()
    guarded = config.workers[0].model_copy(deep=True)
    guarded.config["rbac"] = {"auth_function_id": "roles::auth", "expose_functions": ['match("open::*")']}
    config.workers.append(guarded)
    async with Engine(config) as engine:
        local = Worker("authority", tracing=False)

        @local.function("roles::auth")
        async def auth(request: Any) -> Any:
            [who] = request["query_params"]["role"]
            return GRANTS if who == "grants" else {"role": who}

        for function_id, metadata in (
            ("open::plain", None),
            ("open::key", mark("secret")),  # covered by `open::*`: not enough for a marked function
            ("open::named", mark("secret")),
            ("open::typo", {"access": "Secret"}),
            ("open::unmarked", {"access": None}),
        ):
            local.register_function(function_id, lambda data, fid=function_id: {"served": fid}, metadata=metadata)
        harness = [credentials.create_worker(path=tmp_path / "credentials.json"), approval.create_worker()]
        for worker in (local, *harness):
            await worker.open_local(engine)
        port = [m for m in engine.modules if isinstance(m, WorkerManager)][1].port
        try:
            yield Bus(engine, f"ws://127.0.0.1:{port}", local)
        finally:
            for worker in (local, *harness):
                await worker.close()


def refused(function_id: str, access: str, role: str) -> dict[str, str]:
    return {
        "code": "FORBIDDEN",
        "message": f"function '{function_id}' is marked {access}; role '{role}' may not call it",
    }


# ---- calls ------------------------------------------------------------------------------------


async def test_a_worker_cannot_read_or_change_keys(bus: Bus) -> None:
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        reply = await peer.call("auth::get_token", {"provider": "openai"})
        assert reply["error"] == refused("auth::get_token", "secret", "worker")
        assert KEY not in orjson.dumps(reply).decode()
        new = {"provider": "openai", "credential": {"type": "api_key", "key": "sk-attacker-000000"}}
        assert (await peer.call("auth::set_token", new))["error"] == refused("auth::set_token", "secret", "worker")
        reply = await peer.call("auth::delete_token", {"provider": "openai"})
        assert reply["error"] == refused("auth::delete_token", "secret", "worker")
        # Whether a key is configured is no secret.
        status = await peer.call("auth::status", {"provider": "openai"})
        assert status["result"] == {"configured": True, "source": "environment", "label": "api key …abcd"}
        listed = await peer.call("engine::functions::list", {"prefix": "auth::"})
        assert [row["function_id"] for row in listed["result"]["functions"]] == [
            "auth::list_providers",
            "auth::status",
        ]
    # The key in use is still the one the person set.
    assert await bus.local.trigger("auth::get_token", {"provider": "openai"}) == {"type": "api_key", "key": KEY}


async def test_a_worker_cannot_approve_calls_or_widen_approvals(bus: Bus) -> None:
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        reply = await peer.call(
            "approval::resolve", {"session_id": "s1", "function_call_id": "c1", "decision": "allow"}
        )
        assert reply["error"] == refused("approval::resolve", "human", "worker")
        reply = await peer.call("approval::set_mode", {"session_id": "s1", "mode": "full"})
        assert reply["error"] == refused("approval::set_mode", "human", "worker")
        reply = await peer.call("approval::decide", {"session_id": "s1", "function_id": "fs::write"})
        assert reply["result"] == {"decision": "ask", "reason": "no_grant"}
    settings = await bus.local.trigger("approval::get_settings", {"session_id": "s1"})
    assert settings["mode"] == "manual"
    assert await bus.local.trigger("state::get", {"scope": approval.APPROVALS_SCOPE, "key": "s1/c1"}) is None


async def test_the_official_sdk_as_a_worker_gets_forbidden(bus: Bus) -> None:
    options = InitOptions(
        worker_name="iii-tool",
        enable_metrics_reporting=False,
        otel={"enabled": False},
        invocation_timeout_ms=5000,
        reconnection_config=ReconnectionConfig(initial_delay_ms=100, max_delay_ms=500),
    )
    client = await asyncio.to_thread(register_worker, bus.as_("worker"), options)
    try:
        with pytest.raises(IIIInvocationError) as caught:
            await client.trigger_async({"function_id": "auth::get_token", "payload": {"provider": "openai"}})
        assert caught.value.code == "FORBIDDEN"
        assert KEY not in str(caught.value)
    finally:
        await asyncio.to_thread(client.shutdown)


async def test_a_provider_reads_keys_but_cannot_act_for_a_person(bus: Bus) -> None:
    async with RawPeer(bus.as_("provider")) as peer:
        await peer.name("remote-model")
        reply = await peer.call("auth::get_token", {"provider": "openai"})
        assert reply["result"] == {"type": "api_key", "key": KEY}
        reply = await peer.call("approval::set_mode", {"session_id": "s1", "mode": "full"})
        assert reply["error"] == refused("approval::set_mode", "human", "provider")
        # A mark teamster does not know is the strictest: admin only.
        assert (await peer.call("open::typo", {}))["error"] == refused("open::typo", "Secret", "provider")


async def test_admin_calls_everything(bus: Bus) -> None:
    async with RawPeer(bus.as_("admin")) as peer:
        await peer.name("operator")
        assert (await peer.call("auth::get_token", {"provider": "openai"}))["result"]["key"] == KEY
        reply = await peer.call("approval::set_mode", {"session_id": "s1", "mode": "auto"})
        assert reply["result"]["mode"] == "auto"
        for function_id in ("open::typo", "engine::workers::list", "state::list_groups"):
            assert "result" in await peer.call(function_id, {}), function_id


async def test_auth_function_grants_reach_a_marked_function_only_by_its_exact_id(bus: Bus) -> None:
    async with RawPeer(bus.as_("grants")) as peer:
        await peer.name("granted")
        assert (await peer.call("open::plain", {}))["result"] == {"served": "open::plain"}
        assert (await peer.call("open::unmarked", {}))["result"] == {"served": "open::unmarked"}  # null is no mark
        assert (await peer.call("open::named", {}))["result"] == {"served": "open::named"}
        assert (await peer.call("open::key", {}))["error"] == {
            "code": "FORBIDDEN",
            "message": "function 'open::key' is marked secret (grant it by its exact id in namespace 'default')",
        }
        assert (await peer.call("auth::get_token", {"provider": "openai"}))["error"]["code"] == "FORBIDDEN"


async def test_a_worker_cannot_read_the_environment_through_configuration(bus: Bus) -> None:
    entry = {"id": "leak", "name": "Leak", "description": "d", "schema": {"type": ["string", "object", "null"]}}
    forbidden = {
        "code": "FORBIDDEN",
        "message": "{}: a value naming ${{VAR}} reads the engine's environment; only provider and admin "
        "connections may write one",
    }
    async with RawPeer(bus.as_("worker")) as peer, RawPeer(bus.as_("provider")) as provider:
        await peer.name("tool")
        await provider.name("remote-model")
        reply = await peer.call("configuration::register", {**entry, "initial_value": "${OPENAI_API_KEY}"})
        assert reply["error"] == {**forbidden, "message": forbidden["message"].format("configuration::register")}
        assert "result" in await peer.call("configuration::register", {**entry, "initial_value": "plain"})
        for value in ("${OPENAI_API_KEY}", {"nested": "Bearer ${OPENAI_API_KEY:none}"}):
            reply = await peer.call("configuration::set", {"id": "leak", "value": value})
            assert reply["error"] == {**forbidden, "message": forbidden["message"].format("configuration::set")}
        assert (await peer.call("configuration::get", {"id": "leak"}))["result"] == {"id": "leak", "value": "plain"}
        # A provider may, and then every reader gets what it chose to share.
        assert "result" in await provider.call("configuration::set", {"id": "leak", "value": "${OPENAI_API_KEY}"})
        assert (await peer.call("configuration::get", {"id": "leak"}))["result"]["value"] == KEY


async def test_only_admin_reaches_the_engines_own_state_scopes(bus: Bus) -> None:
    planted = {"trigger_type": "http", "function_id": "auth::get_token", "config": {"api_path": "/key"}}
    async with RawPeer(bus.as_("worker")) as peer, RawPeer(bus.as_("admin")) as admin:
        await peer.name("tool")
        await admin.name("operator")
        for function_id, payload in (
            ("state::set", {"scope": "__teamster::triggers", "key": "planted", "value": planted}),
            ("state::update", {"scope": "__teamster::configuration", "key": "leak", "ops": []}),
            ("state::get", {"scope": "__teamster::triggers", "key": "planted"}),
            ("state::list", {"scope": "__teamster::configuration"}),
        ):
            reply = await peer.call(function_id, payload)
            scope = payload["scope"]
            assert reply["error"] == {
                "code": "FORBIDDEN",
                "message": f"{function_id}: scope '{scope}' is the engine's own; only admin connections reach it",
            }
        assert "result" in await peer.call("state::set", {"scope": "tool", "key": "k", "value": 1})
        assert (await admin.call("state::list", {"scope": "__teamster::triggers"}))["result"] == []
    assert await bus.local.trigger("state::get", {"scope": "__teamster::triggers", "key": "planted"}) is None


# ---- registrations and bindings ---------------------------------------------------------------


async def test_a_worker_registers_only_outside_the_reserved_services(bus: Bus) -> None:
    async with RawPeer(bus.as_("worker")) as peer, RawPeer(bus.as_("admin")) as admin:
        await peer.name("tool")
        await admin.name("operator")
        for function_id in ("state::evil", "engine::x", "publish", "auth::steal", "approval::resolve_all"):
            await peer.send({"type": "registerfunction", "id": function_id})
            rejection = await peer.recv_type("registrationrejected")
            assert rejection == {
                "type": "registrationrejected",
                "code": "FUNCTION_NAMESPACE_CONFLICT",
                "namespace": "default",
                "function_id": function_id,
                "owner_worker_id": "",  # the engine's
            }
        for function_id in ("tools::grep", "provider::mine::stream"):
            await peer.send({"type": "registerfunction", "id": function_id})
        await admin.send({"type": "registerfunction", "id": "auth::rotate"})

        async def registered() -> bool:
            listed = await bus.local.trigger("engine::functions::list", {})
            ids = {row["function_id"] for row in listed["functions"]}
            return {"tools::grep", "provider::mine::stream", "auth::rotate"} <= ids

        await eventually(registered)
        listed = await bus.local.trigger("engine::functions::list", {"include_internal": True})
        ids = {row["function_id"] for row in listed["functions"]}
        assert {"state::evil", "engine::x", "auth::steal", "approval::resolve_all"}.isdisjoint(ids)


async def test_a_worker_cannot_bind_or_unbind_what_it_may_not_call(bus: Bus) -> None:
    binding = {"trigger_type": "cron", "function_id": "approval::set_mode", "config": {"expression": "0 0 * * * *"}}
    made = await bus.local.trigger("engine::register_trigger", binding)  # a person's schedule
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        reply = await peer.call("engine::register_trigger", {**binding, "function_id": "auth::get_token"})
        assert reply["error"] == refused("auth::get_token", "secret", "worker")
        reply = await peer.call("engine::unregister_trigger", {"id": made["id"]})
        assert reply["error"] == refused("approval::set_mode", "human", "worker")
        await peer.send({"type": "registertrigger", "id": "t1", **binding, "function_id": "auth::get_token"})
        result = await peer.recv_type("triggerregistrationresult")
        assert result["error"] == refused("auth::get_token", "secret", "worker")
    assert set(await bus.durable()) == {made["id"]}


# ---- the rules themselves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "metadata", "expected"),
    [
        ("worker", None, True),
        ("worker", {"team": "x"}, True),
        ("worker", mark("secret"), False),
        ("worker", mark("human"), False),
        ("provider", mark("secret"), True),
        ("provider", mark("human"), False),
        ("provider", {"access": "admin-only"}, False),
        ("admin", mark("human"), True),
        ("admin", {"access": "admin-only"}, True),
    ],
)
def test_the_matrix(role: str, metadata: Any, expected: bool) -> None:
    assert cleared(role, metadata) is expected
    assert role_session(role, None, None).allows("svc::fn", "default", metadata) is expected


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'root' \\(expected one of: admin, provider, worker\\)"):
        role_session("root", None, None)

    class ListenerToken(BaseModel):  # how a listener's config names a token's role
        role: Role

    with pytest.raises(ValidationError, match="Input should be 'admin', 'provider' or 'worker'"):
        ListenerToken.model_validate({"role": "root"})


def test_only_admin_without_middleware_skips_the_checks() -> None:
    assert role_session("admin", None, None).direct
    assert not role_session("admin", None, "mw::check").direct
    assert not role_session("worker", None, None).direct


def test_a_service_is_reserved_where_the_engine_or_an_in_process_worker_serves_it() -> None:
    functions = FunctionRegistry()
    functions.claim(FunctionEntry(id="provider::scripted::stream", namespace="default", execute=_nothing))
    assert reserved("provider::scripted::load", "default", functions)
    assert not reserved("provider::mine::stream", "default", functions)
    assert not reserved("provider::scripted::load", "orders", functions)
    assert reserved("state::anything", "orders", functions)  # the engine's services, everywhere
    assert reserved("publish", "default", FunctionRegistry())


async def _nothing(inv: Any) -> None:
    return None
