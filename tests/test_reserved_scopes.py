"""Reserved state scopes and streams: a real engine configured as `teamster up` configures it
(`teamster.app.reserved.reserve_scopes`), the thick harness attached in-process, and callers over a
real socket admitted by a token as `worker`, `provider` or `admin`.

A `worker` that may not call `approval::resolve` must not get the same effect by writing the approval
worker's records itself, nor read the transcripts and run records the harness keeps on the engine."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import teamster
from teamster.app import reserved, store
from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.app.reserved import SCOPES, STREAMS, reserve_scopes
from teamster.app.worker import AppWorker
from teamster.engine.engine import Engine
from teamster.engine.modules.state import StateConfig
from teamster.engine.reserved_names import ReservedNames
from teamster.harness import approval, budget, events
from teamster.harness.sessions.store import META_SCOPE, entries_scope
from teamster.sdk import Worker
from tests.conftest import engine_config, eventually
from tests.raw import RawPeer

TOKEN = "reserved-worker-secret"
TOKENS = {"worker": TOKEN, "provider": "reserved-provider-secret", "admin": "reserved-admin-secret"}
PARKED = "function_awaiting_approval"


@dataclass
class Bus:
    engine: Engine
    local: Worker  # in-process, like the app: no session
    mystery: list[Any]  # calls that reached demo::mystery

    def as_(self, role: str) -> str:
        return f"ws://127.0.0.1:{self.engine.ports['ws']}/?token={TOKENS[role]}"

    async def state(self, session_id: str) -> str | None:
        view = await self.local.trigger("turn::get_state", {"session_id": session_id})
        return None if view is None else str(view["state"])

    async def park(self, session_id: str) -> None:
        """A turn whose one call waits for a person's approval."""
        ask = {"id": "ask-1", "function_id": "agent_trigger", "arguments": {"function": "demo::mystery", "payload": {}}}
        turns = [{"function_calls": [ask]}, {"text": "finished"}]
        await self.local.trigger("provider::scripted::load", {"name": session_id, "turns": turns})
        payload = {"session_id": session_id, "messages": [{"role": "user", "content": "hi"}]}
        await self.local.trigger("run::start", {**payload, "model": f"scripted:{session_id}"})

        async def parked() -> bool:
            return await self.state(session_id) == PARKED

        await eventually(parked, timeout=10)


@pytest.fixture
async def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bus]:
    monkeypatch.setenv("RESERVED_PROVIDER_TOKEN", TOKENS["provider"])
    monkeypatch.setenv("RESERVED_ADMIN_TOKEN", TOKENS["admin"])
    access = {
        "token": TOKEN,
        "credentials": [
            {"token_env": "RESERVED_PROVIDER_TOKEN", "role": "provider"},
            {"token_env": "RESERVED_ADMIN_TOKEN", "role": "admin"},
        ],
    }
    config = engine_config(iii_worker_manager=access)
    reserve_scopes(config)  # as `teamster up` does
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: []\n")
    async with Engine(config) as engine:
        local = Worker("client", tracing=False)
        mystery: list[Any] = []

        @local.function("demo::mystery", description="Something no rule names: it needs approval")
        async def run_mystery(data: Any) -> str:
            mystery.append(data)
            return "done"

        workers = [*harness_workers("thick", HarnessOptions(data_dir=tmp_path, policy_file=rules)), local]
        for worker in workers:
            await worker.open_local(engine)
        try:
            yield Bus(engine, local, mystery)
        finally:
            for worker in reversed(workers):
                await worker.close()


def forbidden(reply: dict[str, Any], name: str) -> None:
    assert reply["error"]["code"] == "FORBIDDEN", reply
    assert f"'{name}' is reserved" in reply["error"]["message"]


async def test_a_worker_cannot_approve_a_parked_call_by_writing_its_record(bus: Bus) -> None:
    await bus.park("s-ask")
    key = "s-ask/ask-1"
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        decision = {"decision": "allow", "reason": "forged"}
        forbidden(await peer.call("state::set", {"scope": "approvals", "key": key, "value": decision}), "approvals")
        ops = [{"type": "set", "path": "", "value": decision}]
        forbidden(await peer.call("state::update", {"scope": "approvals", "key": key, "ops": ops}), "approvals")
    await asyncio.sleep(0.3)
    assert await bus.state("s-ask") == PARKED  # still waiting for a person
    assert bus.mystery == []
    assert await bus.local.trigger("state::get", {"scope": approval.APPROVALS_SCOPE, "key": key}) is None
    # The person's decision still lands.
    resolve = {"session_id": "s-ask", "function_call_id": "ask-1", "decision": "deny", "reason": "no"}
    assert await bus.local.trigger("approval::resolve", resolve) == {"ok": True}

    async def stopped() -> bool:
        return await bus.state("s-ask") == "stopped"

    await eventually(stopped, timeout=10)


async def test_a_worker_cannot_act_for_a_person_through_the_run_apis_functions(bus: Bus) -> None:
    """The app's routes are functions on the bus too: their `human` mark keeps a worker token from
    approving calls or storing keys through `app::…`, around the HTTP token and `approval::resolve`."""
    app = AppWorker()
    await app.open_local(bus.engine)
    try:
        await bus.park("s-app")
        async with RawPeer(bus.as_("worker")) as peer:
            await peer.name("tool")
            for function_id in ("app::runs::decide", "app::credentials::set", "app::runs::list"):
                reply = await peer.call(function_id, {"path_params": {}, "headers": {}, "body": {}})
                assert reply["error"]["code"] == "FORBIDDEN", reply
                assert f"'{function_id}' is marked human" in reply["error"]["message"]
            health = await peer.call("app::health", {"path_params": {}, "headers": {}})
            assert health["result"]["status_code"] == 200  # public routes stay open
        assert await bus.state("s-app") == PARKED
        assert bus.mystery == []
    finally:
        await app.close()


@pytest.mark.parametrize("role", ["worker", "provider"])
async def test_a_worker_cannot_widen_approvals_or_reset_budgets(bus: Bus, role: str) -> None:
    async with RawPeer(bus.as_(role)) as peer:
        await peer.name("tool")
        full = {"mode": "full", "always_allow": [], "approved_always": []}
        reply = await peer.call("state::set", {"scope": approval.SETTINGS_SCOPE, "key": "s1", "value": full})
        forbidden(reply, "approval_settings")
        forbidden(await peer.call("state::delete", {"scope": budget.SCOPE, "key": "b1"}), "budgets")
        forbidden(await peer.call("state::list", {"scope": budget.SCOPE}), "budgets")
    assert (await bus.local.trigger("approval::get_settings", {"session_id": "s1"}))["mode"] == "manual"


async def test_a_worker_cannot_read_transcripts_or_forge_run_events(bus: Bus) -> None:
    await bus.park("s-read")
    transcript = entries_scope("s-read")
    assert await bus.local.trigger("state::list", {"scope": transcript})  # the harness keeps one
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        forbidden(await peer.call("state::list", {"scope": transcript}), transcript)
        forbidden(await peer.call("state::get", {"scope": META_SCOPE, "key": "s-read"}), "session_tree_meta")
        forbidden(await peer.call("state::get", {"scope": store.RUNS, "key": "r1"}), "app_runs")
        group = {"stream_name": events.STREAM, "group_id": "s-read"}
        forbidden(await peer.call("stream::list", group), events.STREAM)
        forbidden(await peer.call("stream::list_groups", {"stream_name": events.STREAM}), events.STREAM)
        fake = {**group, "item_id": "99999999", "data": {"type": "agent_end"}}
        forbidden(await peer.call("stream::set", fake), events.STREAM)
        forbidden(await peer.call("stream::send", {**group, "type": "agent_end"}), events.STREAM)
        forbidden(await peer.call("stream::set", {**fake, "stream_name": store.EVENTS}), store.EVENTS)
        # Nor are the names listed.
        groups = (await peer.call("state::list_groups", {}))["result"]["groups"]
        assert not [scope for scope in groups if ReservedNames(SCOPES, what="", key="").covers(scope)]
        assert "session_tree_meta" not in groups
        streams = (await peer.call("stream::list_all", {}))["result"]["stream"]
        assert events.STREAM not in [row["id"] for row in streams]
    listed = await bus.local.trigger("stream::list", group)
    assert "99999999" not in [item.get("id") for item in listed]  # nothing forged


async def test_a_worker_cannot_bind_a_trigger_on_a_reserved_scope_or_stream(bus: Bus) -> None:
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        for n, (trigger_type, config, named) in enumerate(
            [
                ("state", {"scope": "approvals"}, "'approvals' is reserved"),
                ("state", {"scope": "session_tree:s1"}, "'session_tree:s1' is reserved"),
                ("state", {}, "must name its scope"),  # every scope, the reserved ones too
                ("stream", {"stream_name": events.STREAM}, f"'{events.STREAM}' is reserved"),
            ]
        ):
            binding = {"type": "registertrigger", "id": f"t{n}", "trigger_type": trigger_type, "config": config}
            await peer.send({**binding, "function_id": "tool::watch"})
            result = await peer.recv_type("triggerregistrationresult")
            assert result["error"]["code"] == "FORBIDDEN", result
            assert named in result["error"]["message"]
        durable = {"trigger_type": "state", "function_id": "tool::watch", "config": {"scope": "budgets"}}
        forbidden(await peer.call("engine::register_trigger", durable), "budgets")
    assert not [b for b in bus.engine.triggers.bindings.values() if b.function_id == "tool::watch"]


async def test_admin_and_in_process_workers_reach_reserved_scopes(bus: Bus) -> None:
    record = {"decision": "deny", "reason": "admin"}
    async with RawPeer(bus.as_("admin")) as peer:
        await peer.name("console")
        reply = await peer.call("state::set", {"scope": "approvals", "key": "s9/c9", "value": record})
        assert reply["result"]["new_value"] == record
        assert (await peer.call("stream::list", {"stream_name": events.STREAM, "group_id": "s9"}))["result"] == []
        await peer.send(
            {
                "type": "registertrigger",
                "id": "t-admin",
                "trigger_type": "state",
                "function_id": "console::watch",
                "config": {"scope": "budgets"},
            }
        )
        await peer.nothing()  # accepted: no refusal comes back
        assert "t-admin" in bus.engine.triggers.bindings
    assert await bus.local.trigger("state::get", {"scope": "approvals", "key": "s9/c9"}) == record


async def test_a_worker_keeps_scopes_and_streams_of_its_own(bus: Bus) -> None:
    async with RawPeer(bus.as_("worker")) as peer:
        await peer.name("tool")
        assert (await peer.call("state::set", {"scope": "notes", "key": "todo", "value": 1}))["result"]
        assert (await peer.call("state::get", {"scope": "notes", "key": "todo"}))["result"] == 1
        # Near a reserved name is not reserved.
        assert "error" not in await peer.call("state::get", {"scope": "approvals2", "key": "x"})
        item = {"stream_name": "mine", "group_id": "g", "item_id": "i", "data": {"n": 1}}
        assert (await peer.call("stream::set", item))["result"]["new_value"] == {"n": 1}
        binding = {"type": "registertrigger", "id": "t-notes", "trigger_type": "state", "function_id": "tool::w"}
        await peer.send({**binding, "config": {"scope": "notes"}})
        await peer.nothing()
        assert "t-notes" in bus.engine.triggers.bindings


def test_reserved_names_are_names_or_prefix_globs() -> None:
    assert StateConfig(reserved_scopes=["a", "b:*"]).reserved_scopes == ["a", "b:*"]
    for bad in ("", "*", "a*b", "*a"):
        with pytest.raises(ValidationError):
            StateConfig(reserved_scopes=[bad])


def test_reserve_scopes_keeps_what_the_config_reserves() -> None:
    config = engine_config(iii_state={"reserved_scopes": ["mine"]})
    reserve_scopes(config)
    reserve_scopes(config)  # idempotent
    state = config.worker("iii-state")
    assert state is not None
    assert state.config["reserved_scopes"] == ["mine", *SCOPES]


def _names_used(key: str) -> set[str]:
    """Every `{"scope": …}` / `{"stream_name": …}` value (a literal, or a module constant) and every
    `*_SCOPE` / `*_STREAM` constant in the in-process workers' source: harness, patterns, app."""
    root = Path(teamster.__file__).parent
    found: set[str] = set()
    for package in ("harness", "patterns", "app"):
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            constants = {
                target.id: node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name) and isinstance(node.value.value, str)
            }
            for name, value in constants.items():
                if name.endswith("_STREAM" if key == "stream_name" else "_SCOPE"):
                    found.add(value)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Dict):
                    continue
                for k, v in zip(node.keys, node.values, strict=True):
                    if not (isinstance(k, ast.Constant) and k.value == key):
                        continue
                    if isinstance(v, ast.Constant) and isinstance(v.value, str):
                        found.add(v.value)
                    elif isinstance(v, ast.Name) and v.id in constants:
                        found.add(constants[v.id])
    return found


@pytest.mark.parametrize(("key", "names"), [("scope", SCOPES), ("stream_name", STREAMS)])
def test_every_scope_and_stream_the_workers_name_is_reserved(key: str, names: tuple[str, ...]) -> None:
    covered = ReservedNames(names, what=key, key="")
    used = _names_used(key) - {"notes"}  # the skill doc's example of a scope of one's own
    used -= {"agent::hook_reply"}  # remote hook subscribers answer there (app.reserved explains)
    assert used  # the scan finds them at all
    assert {name for name in used if not covered.covers(name)} == set(), reserved.__doc__
