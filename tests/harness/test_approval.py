"""The approval-gate worker on a real engine: resolve, per-session settings, the mode matrix."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.approval import HUMAN_ONLY, create_worker
from teamster.harness.contracts import DECIDED_STREAM
from teamster.sdk import Worker
from tests.conftest import Connect, eventually, expect_bad_input

DEFAULTS = {"mode": "manual", "always_allow": [], "approved_always": [], "mode_set_at": 0}


@pytest.fixture
async def client(connect: Connect) -> Worker:
    await connect(create_worker())
    return await connect(Worker("client"))


async def stored(client: Worker, scope: str, key: str) -> Any:
    return await client.trigger("state::get", {"scope": scope, "key": key})


def granted(settings: dict[str, Any], which: str) -> list[str]:
    return [grant["function_id"] for grant in settings[which]]


async def test_resolve_writes_exactly_the_decision(engine: Engine) -> None:
    async with create_worker().attach(engine), Worker("client").attach(engine) as client:
        reply = await client.trigger(
            "approval::resolve", {"session_id": "s1", "function_call_id": "c1", "decision": "allow", "reason": "ok"}
        )
        assert reply == {"ok": True}
        assert await stored(client, "approvals", "s1/c1") == {"decision": "allow", "reason": "ok"}
        await client.trigger("approval::resolve", {"session_id": "s1", "function_call_id": "c2", "decision": "deny"})
        assert await stored(client, "approvals", "s1/c2") == {"decision": "deny", "reason": None}


async def test_a_decision_is_announced_once_and_read_back_through_approval_decisions(connect: Connect) -> None:
    """The orchestrator wakes on the announcement and reads decisions through the approval worker, never
    from its scope: each decided call comes back, an undecided one is left out; a client's retry is
    announced again (its first announcement may have been lost) with the decision that stands."""
    await connect(create_worker())
    watcher = Worker("watcher")
    announced: list[dict[str, Any]] = []

    @watcher.function("watcher::decided")
    async def decided(frame: dict[str, Any]) -> None:
        announced.append({"group": frame["groupId"], **frame["event"]["event"]})

    watcher.register_trigger("stream", "watcher::decided", {"stream_name": DECIDED_STREAM})
    client = await connect(watcher)
    resolve = {"session_id": "s1", "function_call_id": "c1", "decision": "deny", "reason": "no"}
    assert await client.trigger("approval::resolve", resolve) == {"ok": True}
    retry = {**resolve, "reason": "changed my wording"}
    assert await client.trigger("approval::resolve", retry) == {"ok": True}  # already recorded: written once
    made = {"session_id": "s1", "function_call_id": "c1", "decision": "deny", "reason": "no"}
    await eventually(lambda: announced == [{"group": "s1", "type": "decided", "data": made}] * 2)
    query = {"session_id": "s1", "function_call_ids": ["c1", "c2", "c/3"]}
    assert await client.trigger("approval::decisions", query) == {
        "decisions": {"c1": {"decision": "deny", "reason": "no"}}
    }


@pytest.mark.parametrize(("session_id", "call_id"), [("", "c1"), ("s1", ""), ("s/1", "c1"), ("s1", "c/1")])
async def test_resolve_refuses_bad_ids(client: Worker, session_id: str, call_id: str) -> None:
    payload = {"session_id": session_id, "function_call_id": call_id, "decision": "allow"}
    assert await client.trigger("approval::resolve", payload) == {"ok": False, "error": "invalid_payload"}
    assert await client.trigger("state::list", {"scope": "approvals"}) == []


async def test_settings_default_to_the_configured_mode(connect: Connect) -> None:
    await connect(create_worker(default_mode="auto"))
    client = await connect(Worker("client"))
    assert await client.trigger("approval::get_settings", {"session_id": "s1"}) == {**DEFAULTS, "mode": "auto"}


async def test_settings_defaults(client: Worker) -> None:
    assert await client.trigger("approval::get_settings", {"session_id": "s1"}) == DEFAULTS


async def test_set_mode(client: Worker) -> None:
    before = time.time_ns() // 1_000_000
    settings = await client.trigger("approval::set_mode", {"session_id": "s1", "mode": "full"})
    assert settings["mode"] == "full"
    assert before <= settings["mode_set_at"] <= time.time() * 1000
    assert await client.trigger("approval::get_settings", {"session_id": "s1"}) == settings
    assert await stored(client, "approval_settings", "s1") == {"mode": "full", "mode_set_at": settings["mode_set_at"]}


@pytest.mark.parametrize(
    ("function_id", "which"), [("add_always_allow", "always_allow"), ("approve_always", "approved_always")]
)
async def test_grants_are_recorded_once(client: Worker, function_id: str, which: str) -> None:
    payload = {"session_id": "s1", "function_id": "fs::read"}
    first = await client.trigger(f"approval::{function_id}", payload)
    [grant] = first[which]
    assert grant["function_id"] == "fs::read"
    assert grant["granted_by"] == "user_click"
    assert isinstance(grant["granted_at"], int)
    assert await client.trigger(f"approval::{function_id}", payload) == first
    assert await stored(client, "approval_settings", "s1") == {which: [grant]}


async def test_remove_always_allow(client: Worker) -> None:
    for function_id in ("a::x", "b::y"):
        await client.trigger("approval::add_always_allow", {"session_id": "s1", "function_id": function_id})
    await client.trigger("approval::approve_always", {"session_id": "s1", "function_id": "a::x"})
    settings = await client.trigger("approval::remove_always_allow", {"session_id": "s1", "function_id": "a::x"})
    assert granted(settings, "always_allow") == ["b::y"]
    assert granted(settings, "approved_always") == ["a::x"]
    again = await client.trigger("approval::remove_always_allow", {"session_id": "s1", "function_id": "a::x"})
    assert again == settings


async def test_mutations_keep_the_other_fields(client: Worker) -> None:
    await client.trigger("approval::add_always_allow", {"session_id": "s1", "function_id": "a::x"})
    settings = await client.trigger("approval::set_mode", {"session_id": "s1", "mode": "auto"})
    assert granted(settings, "always_allow") == ["a::x"]
    settings = await client.trigger("approval::approve_always", {"session_id": "s1", "function_id": "b::y"})
    assert settings["mode"] == "auto"
    assert granted(settings, "always_allow") == ["a::x"]


async def test_clear_settings(client: Worker) -> None:
    await client.trigger("approval::set_mode", {"session_id": "s1", "mode": "full"})
    await client.trigger("approval::add_always_allow", {"session_id": "s1", "function_id": "a::x"})
    assert await client.trigger("approval::clear_settings", {"session_id": "s1"}) == DEFAULTS
    assert await stored(client, "approval_settings", "s1") is None
    assert await client.trigger("approval::get_settings", {"session_id": "s1"}) == DEFAULTS


async def test_concurrent_edits_all_land(client: Worker) -> None:
    def grant(function_id: str) -> Any:
        return client.trigger("approval::add_always_allow", {"session_id": "s1", "function_id": function_id})

    await asyncio.gather(*(grant(f"fn::{n}") for n in range(20)))
    settings = await client.trigger("approval::get_settings", {"session_id": "s1"})
    assert sorted(granted(settings, "always_allow")) == sorted(f"fn::{n}" for n in range(20))

    await asyncio.gather(
        *(grant("same::fn") for _ in range(10)),
        *(
            client.trigger("approval::remove_always_allow", {"session_id": "s1", "function_id": f"fn::{n}"})
            for n in range(10)
        ),
        client.trigger("approval::set_mode", {"session_id": "s1", "mode": "auto"}),
    )
    settings = await client.trigger("approval::get_settings", {"session_id": "s1"})
    assert sorted(granted(settings, "always_allow")) == sorted([*(f"fn::{n}" for n in range(10, 20)), "same::fn"])
    assert settings["mode"] == "auto"


@pytest.mark.parametrize(
    ("mode", "grant", "verdict"),
    [
        ("manual", None, {"decision": "ask", "reason": "no_grant"}),
        ("manual", "add_always_allow", {"decision": "ask", "reason": "no_grant"}),
        ("manual", "approve_always", {"decision": "allow", "reason": "approved_always"}),
        ("auto", None, {"decision": "ask", "reason": "no_grant"}),
        ("auto", "add_always_allow", {"decision": "allow", "reason": "always_allow"}),
        ("auto", "approve_always", {"decision": "allow", "reason": "approved_always"}),
        ("full", None, {"decision": "allow", "reason": "mode_full"}),
    ],
)
async def test_decide_follows_the_mode_matrix(client: Worker, mode: str, grant: str | None, verdict: Any) -> None:
    await client.trigger("approval::set_mode", {"session_id": "s1", "mode": mode})
    if grant is not None:
        await client.trigger(f"approval::{grant}", {"session_id": "s1", "function_id": "fs::write"})
    assert await client.trigger("approval::decide", {"session_id": "s1", "function_id": "fs::write"}) == verdict
    other = await client.trigger("approval::decide", {"session_id": "s1", "function_id": "fs::other"})
    assert other["decision"] == ("allow" if mode == "full" else "ask")


async def test_human_only_functions_are_denied_in_every_mode(client: Worker) -> None:
    await client.trigger("approval::set_mode", {"session_id": "s1", "mode": "full"})
    for function_id in sorted(HUMAN_ONLY):
        await client.trigger("approval::approve_always", {"session_id": "s1", "function_id": function_id})
        verdict = await client.trigger("approval::decide", {"session_id": "s1", "function_id": function_id})
        assert verdict == {"decision": "deny", "reason": "human_only_function"}, function_id
    assert {
        "approval::resolve",
        "approval::get_settings",
        "approval::set_mode",
        "approval::add_always_allow",
        "approval::remove_always_allow",
        "approval::approve_always",
        "approval::clear_settings",
    } == HUMAN_ONLY


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("approval::resolve", {"session_id": "s", "function_call_id": "c", "decision": "maybe"}, "decision"),
        ("approval::resolve", {"function_call_id": "c", "decision": "allow"}, "session_id"),
        ("approval::resolve", {"session_id": "s", "function_call_id": "c", "decision": "deny", "reason": 3}, "reason"),
        ("approval::get_settings", {"session_id": ""}, "session_id"),
        ("approval::set_mode", {"session_id": "s", "mode": "yolo"}, "mode"),
        ("approval::add_always_allow", {"session_id": "s"}, "function_id"),
        ("approval::remove_always_allow", {"session_id": "s", "function_id": ""}, "function_id"),
        ("approval::approve_always", {"session_id": 1, "function_id": "f"}, "session_id"),
        ("approval::clear_settings", {}, "session_id"),
        ("approval::decide", {"session_id": "s"}, "function_id"),
    ],
)
async def test_bad_input(client: Worker, function_id: str, payload: Any, field: str) -> None:
    await expect_bad_input(client, function_id, payload, field)
