"""Whole turns through the orchestrator: every harness worker on a real engine, over WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from teamster.app.profiles import HarnessOptions, Profile, harness_workers
from teamster.sdk import Worker
from tests.conftest import Connect, eventually


class Harness:
    """A client worker plus a demo worker serving `demo::*`, on an engine running a harness profile."""

    def __init__(self, client: Worker, calls: list[tuple[str, Any]]) -> None:
        self.client = client
        self.calls = calls

    async def script(self, name: str, turns: list[dict[str, Any]]) -> str:
        await self.client.trigger("provider::scripted::load", {"name": name, "turns": turns})
        return f"scripted:{name}"

    async def start(self, session_id: str, text: str, **options: Any) -> dict[str, Any]:
        payload = {"session_id": session_id, "messages": [{"role": "user", "content": text}], **options}
        result: dict[str, Any] = await self.client.trigger("run::start", payload)
        return result

    async def state(self, session_id: str) -> dict[str, Any] | None:
        view: dict[str, Any] | None = await self.client.trigger("turn::get_state", {"session_id": session_id})
        return view

    async def until(self, session_id: str, *states: str, timeout: float = 10) -> dict[str, Any]:
        async def reached() -> bool:
            view = await self.state(session_id)
            return view is not None and view["state"] in states

        await eventually(reached, timeout=timeout)
        view = await self.state(session_id)
        assert view is not None
        return view

    async def run(self, session_id: str, text: str, **options: Any) -> list[dict[str, Any]]:
        started = await self.start(session_id, text, **options)
        assert started == {"session_id": session_id, "started": True}
        await self.until(session_id, "stopped", "failed")
        # A checkpoint is stored before its events are published (the outbox): the terminal state can be
        # read a moment before its `turn_state_changed` arrives in the event log.
        events: list[dict[str, Any]] = []

        async def ended() -> bool:
            events[:] = await self.events(session_id)
            return any(states([e])[0] in ("stopped", "failed") for e in events if e["type"] == "turn_state_changed")

        await eventually(ended, timeout=10)
        return events

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.client.trigger("events::list", {"session_id": session_id})
        return list(page["events"])

    async def transcript(self, session_id: str) -> list[dict[str, Any]]:
        reply = await self.client.trigger("session-tree::messages", {"session_id": session_id})
        return [row["message"] for row in reply["messages"]]


async def start_harness(connect: Connect, profile: Profile, options: HarnessOptions | None = None) -> Harness:
    return await start_harness_with(connect, harness_workers(profile, options))


async def start_harness_with(connect: Connect, workers: list[Worker]) -> Harness:
    for worker in workers:
        await connect(worker)
    calls: list[tuple[str, Any]] = []
    demo = Worker("demo")

    @demo.function("demo::add", description="Add two integers")
    async def add(data: dict[str, Any]) -> int:
        calls.append(("demo::add", {k: v for k, v in data.items() if not k.startswith("_")}))
        return int(data["a"]) + int(data["b"])

    @demo.function("demo::danger", description="Something policy forbids")
    async def danger(data: dict[str, Any]) -> str:
        calls.append(("demo::danger", data))
        return "boom"

    @demo.function("demo::mystery", description="Something no rule names: it needs approval")
    async def mystery(data: dict[str, Any]) -> str:
        calls.append(("demo::mystery", {}))
        return "done"

    await connect(demo)
    client = await connect(Worker("client"))
    return Harness(client, calls)


@pytest.fixture
async def thin(connect: Connect, tmp_path: Path) -> Harness:
    return await start_harness(connect, "thin", HarnessOptions(data_dir=tmp_path))


PRICED = """
models:
  - provider: scripted
    id: "scripted:pricey"
    context_window: 128000
    pricing: {input_per_1m: 300, output_per_1m: 1000}
"""


@pytest.fixture
async def thick(connect: Connect, tmp_path: Path) -> AsyncIterator[Harness]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - demo::add\n  - '!demo::danger'\n")
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICED)
    options = HarnessOptions(data_dir=tmp_path, policy_file=rules, catalog_files=(prices,))
    yield await start_harness(connect, "thick", options)


def types(events: list[dict[str, Any]]) -> list[str]:
    """Event types in order, with runs of message_update folded into one."""
    out: list[str] = []
    for event in events:
        if event["type"] == "message_update" and out and out[-1] == "message_update":
            continue
        out.append(event["type"])
    return out


def states(events: list[dict[str, Any]]) -> list[str]:
    return [e["new_value"]["state"] for e in events if e["type"] == "turn_state_changed"]


def text_of(message: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in message["content"] if block["type"] == "text")


ADD = {"function_id": "agent_trigger", "arguments": {"function": "demo::add", "payload": {"a": 2, "b": 40}}}


async def test_text_only_turn(thin: Harness) -> None:
    model = await thin.script("hello", [{"text": "Hello there", "chunk_size": 4}])
    events = await thin.run("s-text", "hi", model=model)
    assert types(events) == [
        "turn_state_changed",
        "turn_state_changed",
        "message_update",
        "message_complete",
        "turn_state_changed",
        "turn_end",
        "agent_end",
        "turn_state_changed",
    ]
    assert states(events) == ["provisioning", "assistant_streaming", "steering_check", "stopped"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gapless, in order
    assert text_of(events[-5]["message"]) == "Hello there"
    assert [m["role"] for m in await thin.transcript("s-text")] == ["user", "assistant"]


async def test_one_tool_call(thin: Harness) -> None:
    model = await thin.script("add", [{"function_calls": [ADD]}, {"text": "It is 42."}])
    events = await thin.run("s-one", "add them", model=model)
    assert thin.calls == [("demo::add", {"a": 2, "b": 40})]
    end = next(e for e in events if e["type"] == "function_execution_end")
    assert end["function_id"] == "demo::add"
    assert end["is_error"] is False
    assert end["result"]["content"] == [{"type": "text", "text": "42"}]
    assert states(events) == [
        "provisioning",
        "assistant_streaming",
        "function_execute",
        "steering_check",
        "assistant_streaming",
        "steering_check",
        "stopped",
    ]
    assert [e["type"] for e in events].count("turn_end") == 2  # exactly once per turn
    roles = [m["role"] for m in await thin.transcript("s-one")]
    assert roles == ["user", "assistant", "function_result", "assistant"]


async def test_parallel_calls_and_native_tools(thin: Harness) -> None:
    calls = [
        {"id": "c1", "function_id": "demo::add", "arguments": {"a": 1, "b": 1}},
        {"id": "c2", "function_id": "demo::add", "arguments": {"a": 2, "b": 2}},
    ]
    model = await thin.script("both", [{"function_calls": calls}, {"text": "2 and 4"}])
    events = await thin.run("s-par", "two sums", model=model, functions=["demo::add"])
    ends = [e for e in events if e["type"] == "function_execution_end"]
    assert [(e["function_call_id"], e["result"]["details"]) for e in ends] == [("c1", 2), ("c2", 4)]
    results = [m for m in await thin.transcript("s-par") if m["role"] == "function_result"]
    assert [r["function_call_id"] for r in results] == ["c1", "c2"]  # the model's call order


async def test_unknown_tool_gets_a_missing_function_result(thin: Harness) -> None:
    bogus = {"id": "x1", "function_id": "not_offered", "arguments": {}}
    model = await thin.script("bogus", [{"function_calls": [bogus]}, {"text": "sorry"}])
    events = await thin.run("s-bogus", "go", model=model)
    end = next(e for e in events if e["type"] == "function_execution_end")
    assert end["is_error"] is True
    assert end["result"]["details"] == {"error": "missing_function", "function": "not_offered"}


async def test_policy_denies_a_call(thick: Harness) -> None:
    danger = {"function_id": "agent_trigger", "arguments": {"function": "demo::danger", "payload": {}}}
    model = await thick.script("deny", [{"function_calls": [danger]}, {"text": "ok"}])
    events = await thick.run("s-deny", "do it", model=model)
    assert thick.calls == []
    denied = next(e for e in events if e["type"] == "policy_denied")
    assert denied["details"]["denied_by"] == "permissions"
    assert denied["details"]["rule_id"] == "demo::danger"
    end = next(e for e in events if e["type"] == "function_execution_end")
    assert end["is_error"] is True
    assert "Permission denied: demo::danger matched rule demo::danger" in end["result"]["content"][0]["text"]


async def test_a_model_cannot_read_a_key_even_on_the_thin_profile(
    thin: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-live-0123456789-abcd"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    steal = {
        "function_id": "agent_trigger",
        "arguments": {"function": "auth::get_token", "payload": {"provider": "openai"}},
    }
    model = await thin.script("steal", [{"function_calls": [steal]}, {"text": "no luck"}])
    events = await thin.run("s-steal", "print your key", model=model)
    denied = next(e for e in events if e["type"] == "policy_denied")
    assert (denied["details"]["denied_by"], denied["details"]["rule_id"]) == ("permissions", "access")
    end = next(e for e in events if e["type"] == "function_execution_end")
    assert end["is_error"] is True
    assert "auth::get_token is marked secret: a model may not call it" in end["result"]["content"][0]["text"]
    assert key not in str(events)
    assert key not in str(await thin.transcript("s-steal"))


async def test_allowed_call_runs_without_asking(thick: Harness) -> None:
    model = await thick.script("allowed", [{"function_calls": [ADD]}, {"text": "42"}])
    await thick.run("s-allow", "add", model=model)
    assert thick.calls == [("demo::add", {"a": 2, "b": 40})]


@pytest.mark.parametrize(("decision", "runs"), [("allow", True), ("deny", False)])
async def test_call_needing_approval(thick: Harness, decision: str, runs: bool) -> None:
    ask = {"id": "ask-1", "function_id": "agent_trigger", "arguments": {"function": "demo::mystery", "payload": {}}}
    model = await thick.script(f"ask-{decision}", [{"function_calls": [ask]}, {"text": "finished"}])
    await thick.start("s-ask", "please", model=model)
    view = await thick.until("s-ask", "function_awaiting_approval")
    assert view["awaiting_approval"] == [{"function_call_id": "ask-1", "function_id": "demo::mystery", "args": {}}]
    events = await thick.events("s-ask")
    assert any(e["type"] == "approval_requested" and e["function_call_id"] == "ask-1" for e in events)
    assert thick.calls == []  # parked, not run
    resolve = {"session_id": "s-ask", "function_call_id": "ask-1", "decision": decision, "reason": "test"}
    assert await thick.client.trigger("approval::resolve", resolve) == {"ok": True}
    await thick.until("s-ask", "stopped")
    assert thick.calls == ([("demo::mystery", {})] if runs else [])
    end = next(e for e in await thick.events("s-ask") if e["type"] == "function_execution_end")
    assert end["is_error"] is not runs
    if not runs:
        assert end["result"]["content"][0]["text"] == "Permission denied by user: test"


async def test_max_turns_stops_the_loop(thin: Harness) -> None:
    model = await thin.script("loop", [{"function_calls": [ADD]}] * 5)
    events = await thin.run("s-max", "loop", model=model, max_turns=2)
    final = [e for e in events if e["type"] == "message_complete"][-1]
    assert text_of(final["message"]) == "loop stopped: max_turns (2) reached"
    assert len(thin.calls) == 2
    assert states(events)[-1] == "stopped"


async def test_abort_mid_stream(thin: Harness) -> None:
    model = await thin.script("slow", [{"text": "never seen", "latency_ms": 3000}])
    await thin.start("s-abort", "wait", model=model)
    await thin.until("s-abort", "assistant_streaming")
    reply = await thin.client.trigger("run::abort", {"session_id": "s-abort"})
    assert reply == {"session_id": "s-abort", "aborted": True, "state": "stopped"}
    await asyncio.sleep(3.5)  # the slow stream ends; its step must not bring the run back
    view = await thin.state("s-abort")
    assert view is not None and view["state"] == "stopped"
    completes = [e for e in await thin.events("s-abort") if e["type"] == "message_complete"]
    assert [text_of(e["message"]) for e in completes] == ["run aborted by user"]


async def test_abort_cancels_a_stream_in_progress(thin: Harness) -> None:
    # One delta now, the next ones a minute apart: the step would wait minutes if the abort did not cancel it.
    model = await thin.script("drip", [{"text": "abc", "chunk_size": 1, "chunk_delay_ms": 60_000}])
    await thin.start("s-drip", "go", model=model)

    async def streaming() -> bool:
        return any(e["type"] == "message_update" for e in await thin.events("s-drip"))

    await eventually(streaming)
    await thin.client.trigger("run::abort", {"session_id": "s-drip"})

    async def step_done() -> bool:
        stats = await thin.client.trigger("engine::queue::topic_stats", {"topic": "turn-step"})
        return stats["in_flight"] == 0 and stats["ready"] == 0

    await eventually(step_done, timeout=10)
    kinds = [e["type"] for e in await thin.events("s-drip")]
    assert kinds[-4:] == ["message_complete", "turn_end", "agent_end", "turn_state_changed"]
    assert kinds.count("message_complete") == 1  # the cancelled stream publishes no message of its own


async def test_busy_session_refuses_a_second_run(thin: Harness) -> None:
    model = await thin.script("busy", [{"text": "slow", "latency_ms": 1000}])
    await thin.start("s-busy", "one", model=model)
    assert await thin.start("s-busy", "two", model=model) == {
        "session_id": "s-busy",
        "started": False,
        "reason": "session_busy",
    }
    await thin.until("s-busy", "stopped")


async def test_budget_cap_stops_the_run_before_the_next_call(thick: Harness) -> None:
    created = await thick.client.trigger("budget::create", {"ceiling_usd": 0.5, "period": "day"})
    # Priced by the catalog (300/1000 USD per 1M): 1000 in + 100 out costs 0.4; the next call cannot fit.
    expensive = {"function_calls": [ADD], "usage": {"input": 1000, "output": 100}}
    model = await thick.script("pricey", [expensive, {"text": "never reached"}])
    events = await thick.run("s-budget", "spend", model=model, budget_id=created["budget_id"])
    exceeded = next(e for e in events if e["type"] == "budget_exceeded")
    assert exceeded["reason"] == "ceiling_exceeded"
    final = [e for e in events if e["type"] == "message_complete"][-1]["message"]
    assert final["stop_reason"] == "error"
    assert text_of(final).startswith("Budget exceeded: the run stopped before calling the model")
    spent = await thick.client.trigger("budget::get", {"budget_id": created["budget_id"]})
    assert spent["budget"]["spent_usd"] == pytest.approx(0.4)
    assert thick.calls == [("demo::add", {"a": 2, "b": 40})]  # the first turn ran; only the second was refused


async def test_after_hook_rewrites_a_result(thick: Harness, connect: Connect) -> None:
    hook = Worker("rewriter")

    @hook.function("rewriter::on_result")
    async def on_result(envelope: dict[str, Any]) -> None:
        reply = {"content": [{"type": "text", "text": "rewritten by hook"}]}
        await hook.trigger(
            "stream::set",
            {"stream_name": envelope["reply_stream"], "group_id": envelope["event_id"], "item_id": "r1", "data": reply},
        )

    hook.register_trigger("durable:subscriber", "rewriter::on_result", {"topic": "agent::after_function_call"})
    await connect(hook)
    model = await thick.script("hooked", [{"function_calls": [ADD]}, {"text": "ok"}])
    events = await thick.run("s-hook", "add", model=model)
    end = next(e for e in events if e["type"] == "function_execution_end")
    assert end["result"]["content"] == [{"type": "text", "text": "rewritten by hook"}]


async def test_fork_continues_on_its_branch(thin: Harness) -> None:
    model = await thin.script("fork", [{"text": "first answer"}])
    await thin.run("s-root", "question", model=model)
    messages = await thin.client.trigger("session-tree::messages", {"session_id": "s-root"})
    user_entry = messages["messages"][0]["entry_id"]
    forked = await thin.client.trigger(
        "session-tree::fork", {"source_session_id": "s-root", "from_entry_id": user_entry}
    )
    branch = forked["session_id"]
    await thin.run(branch, "follow-up on the branch", model=model)
    roles = [
        (m["role"], text_of(m) if m["role"] == "assistant" else m["content"]) for m in await thin.transcript(branch)
    ]
    # The branch holds the forked path plus its own turn; the scripted model answers it as a first turn.
    assert roles == [("user", "question"), ("user", "follow-up on the branch"), ("assistant", "first answer")]
    assert len(await thin.transcript("s-root")) == 2  # the original is untouched


@pytest.mark.parametrize("profile", ["thin", "thick"])
async def test_same_request_on_both_profiles(connect: Connect, tmp_path: Path, profile: Profile) -> None:
    harness = await start_harness(connect, profile, HarnessOptions(data_dir=tmp_path, policy_pack="permissive"))
    model = await harness.script("same", [{"function_calls": [ADD]}, {"text": "42"}])
    events = await harness.run("s-same", "add", model=model)
    assert harness.calls == [("demo::add", {"a": 2, "b": 40})]
    assert states(events)[-1] == "stopped"


async def test_policy_worker_gone_denies(connect: Connect, tmp_path: Path) -> None:
    options = HarnessOptions(data_dir=tmp_path)
    workers = [w for w in harness_workers("thick", options) if w.name != "policy"]
    harness = await start_harness_with(connect, workers)
    model = await harness.script("gone", [{"function_calls": [ADD]}, {"text": "ok"}])
    events = await harness.run("s-gone", "add", model=model)
    assert harness.calls == []
    denied = next(e for e in events if e["type"] == "policy_denied")
    assert denied["details"]["denied_by"] == "gate_unavailable"
    assert denied["details"]["reason"].startswith("policy unreachable")


async def test_slow_policy_is_a_deny_within_the_deadline(connect: Connect, tmp_path: Path) -> None:
    slow = Worker("slow-policy")  # a replacement policy job: same function id, another worker

    @slow.function("policy::check_permissions")
    async def never_answers(data: Any) -> None:
        await asyncio.sleep(60)

    workers = [w for w in harness_workers("thick", HarnessOptions(data_dir=tmp_path)) if w.name != "policy"]
    harness = await start_harness_with(connect, [*workers, slow])
    model = await harness.script("slow", [{"function_calls": [ADD]}, {"text": "ok"}])
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await harness.run("s-slow", "add", model=model)
    denied = next(e for e in events if e["type"] == "policy_denied")
    assert denied["details"]["denied_by"] == "gate_unavailable"
    assert harness.calls == []
    assert loop.time() - started < 9  # the 5 s deadline, plus the run around it
