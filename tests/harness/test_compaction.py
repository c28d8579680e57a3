"""The `context-compaction` worker: the cut rule, the lease, compact_now on a real engine, and whole turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teamster.app.profiles import HarnessOptions, harness_workers
from teamster.harness import compaction, events, sessions
from teamster.harness.compaction import SUMMARY_SYSTEM, cut_point, tokens
from teamster.harness.contracts import (
    AgentMessage,
    AssistantMessage,
    FunctionCallBlock,
    FunctionResultMessage,
    StreamRequest,
    TextBlock,
    UserMessage,
)
from teamster.harness.providers.stream import Credentials, EventWriter, ProviderError, provider_worker
from teamster.harness.sessions import COMPACTED_PREFIX
from teamster.protocol.errors import ErrorCode
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, eventually, expect_bad_input
from tests.harness.test_turns import ADD, Harness, start_harness_with, text_of

# ---- the cut rule, without an engine ---------------------------------------------------------


def user(text: str) -> UserMessage:
    return UserMessage(content=text)


def said(text: str) -> AssistantMessage:
    return AssistantMessage(content=[TextBlock(text=text)])


def calls(*ids: str, padding: str = "") -> AssistantMessage:
    return AssistantMessage(
        content=[FunctionCallBlock(id=i, function_id="demo::add", arguments={"pad": padding}) for i in ids],
        stop_reason="function_call",
    )


def result(call_id: str, text: str = "42") -> FunctionResultMessage:
    return FunctionResultMessage(function_call_id=call_id, function_id="demo::add", content=[TextBlock(text=text)])


def test_the_cut_never_parts_a_call_from_its_results() -> None:
    messages: list[AgentMessage] = [
        user("add twice"),
        calls("c1", "c2", padding="p" * 2000),
        result("c1"),
        result("c2"),
        said("2 and 4"),
    ]
    # Tails from index 2 or 3 fit this budget, but either would keep a result without its call.
    budget = tokens(messages[2:])
    assert tokens(messages[1:]) > budget
    assert cut_point(messages, budget) == 4


def test_a_call_and_its_results_stay_together_even_over_budget() -> None:
    messages: list[AgentMessage] = [user("add"), calls("c1"), result("c1")]
    assert cut_point(messages, 0) == 1  # the shortest tail there is: the call with its result


def test_the_longest_tail_within_budget_is_kept() -> None:
    messages: list[AgentMessage] = [user(f"u{i}") if i % 2 == 0 else said(f"a{i}") for i in range(6)]
    assert cut_point(messages, tokens(messages[3:])) == 3
    assert cut_point(messages, tokens(messages[3:]) - 1) == 4
    assert cut_point(messages, 10**6) == 1  # everything fits: the head still keeps the first message


def test_no_cut_when_nothing_would_be_left_to_summarise() -> None:
    assert cut_point([user("only")], 0) is None
    assert cut_point([user("summary"), said("a")], 0, first=2) is None
    assert cut_point([user("q"), calls("c1"), result("c1")], 0, first=2) is None  # 2 is a result
    assert cut_point([user("q"), result("orphan"), said("a")], 10**6) == 2  # a result never opens the tail


@st.composite
def conversations(draw: st.DrawFn) -> list[AgentMessage]:
    """User turns, texts and batches of calls whose results come back in any order, maybe with a user between."""
    messages: list[AgentMessage] = []
    for n in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["user", "text", "calls"]))
        if kind == "user":
            messages.append(user("u" * draw(st.integers(0, 400))))
        elif kind == "text":
            messages.append(said("a" * draw(st.integers(0, 400))))
        else:
            ids = [f"c{n}-{k}" for k in range(draw(st.integers(1, 3)))]
            messages.append(calls(*ids, padding="p" * draw(st.integers(0, 400))))
            results: list[AgentMessage] = [
                result(i, "r" * draw(st.integers(0, 400))) for i in draw(st.permutations(ids))
            ]
            if draw(st.booleans()):
                results.insert(draw(st.integers(0, len(results))), user("steer"))
            messages.extend(results)
    return messages


@given(conversations(), st.integers(0, 800))
def test_no_cut_ever_separates_a_call_from_a_result(messages: list[AgentMessage], budget: int) -> None:
    cut = cut_point(messages, budget)
    if cut is None:
        return
    assert 1 <= cut < len(messages)
    assert not isinstance(messages[cut], FunctionResultMessage)
    head_calls = {
        b.id for m in messages[:cut] if isinstance(m, AssistantMessage) for b in m.content if b.type == "function_call"
    }
    tail_results = {m.function_call_id for m in messages[cut:] if isinstance(m, FunctionResultMessage)}
    assert not head_calls & tail_results


# ---- compact_now on a real engine --------------------------------------------------------------

SUMMARY = "## Goal\nAdd numbers for the user."
MODEL = {"id": "fake-model", "provider": "fake", "context_window": 4000, "max_output_tokens": 1000}  # usable 3000
LONG = "please add these: " + "x" * 4000  # over 1000 tokens: more than the 750 a tail may hold here


class FakeSummariser:
    """`provider::fake::stream` on the real provider plumbing: records requests, can hold or fail them."""

    def __init__(self) -> None:
        self.requests: list[StreamRequest] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: str | None = None
        self.worker = provider_worker("fake", self.stream)

    async def stream(self, req: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        self.requests.append(req)
        await self.gate.wait()
        if self.failure is not None:
            raise ProviderError(self.failure, "permanent")
        await out.text(SUMMARY)
        await out.finish()


class Bench:
    """A client beside the session, events and compaction workers and the fake summariser."""

    def __init__(self, client: Worker, fake: FakeSummariser, connect: Connect) -> None:
        self.client = client
        self.fake = fake
        self.connect = connect

    async def session(self, session_id: str, *messages: AgentMessage) -> list[str]:
        payload = {"session_id": session_id, "messages": [m.model_dump(mode="json") for m in messages]}
        ids: list[str] = (await self.client.trigger("session-tree::append_batch", payload))["entry_ids"]
        return ids

    async def compact(self, session_id: str, **options: Any) -> dict[str, Any]:
        payload = {"session_id": session_id, "model": MODEL, "wait_ms": 0, **options}
        reply: dict[str, Any] = await self.client.trigger("context-compaction::compact_now", payload)
        return reply

    async def view(self, session_id: str) -> list[dict[str, Any]]:
        reply = await self.client.trigger("session-tree::messages", {"session_id": session_id})
        return list(reply["messages"])

    async def lease(self, session_id: str) -> Any:
        return await self.client.trigger("state::get", {"scope": compaction.LEASE_SCOPE, "key": session_id})

    async def set_lease(self, session_id: str, claims: dict[str, int]) -> None:
        await self.client.trigger("state::set", {"scope": compaction.LEASE_SCOPE, "key": session_id, "value": claims})

    async def events(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        page = await self.client.trigger("events::list", {"session_id": session_id})
        return [e for e in page["events"] if e["type"] == kind]


@pytest.fixture
async def bench(connect: Connect) -> Bench:
    fake = FakeSummariser()
    for worker in (sessions.create_worker(), events.create_worker(), compaction.create_worker(), fake.worker):
        await connect(worker)
    return Bench(await connect(Worker("client")), fake, connect)


async def test_compact_now_summarises_the_head_and_keeps_the_tail(bench: Bench) -> None:
    messages: list[AgentMessage] = [user(LONG), calls("c1"), result("c1"), said("It is 42."), user("and now?")]
    ids = await bench.session("s1", *messages)
    reply = await bench.compact("s1")
    assert reply["status"] == "ok"
    assert reply["tail_start_id"] == ids[1]  # the call opens the tail, its result with it
    assert reply["tokens_before"] == tokens(messages)
    assert reply["tokens_after"] < tokens(messages[1:]) + 100  # the summary replaced the long request

    [request] = bench.fake.requests
    assert (request.model, request.system_prompt, request.tools) == ("fake-model", SUMMARY_SYSTEM, [])
    [prompt] = request.messages
    assert isinstance(prompt, UserMessage) and isinstance(prompt.content, str)
    assert LONG in prompt.content
    assert "It is 42." not in prompt.content  # the tail is kept, not summarised

    view = await bench.view("s1")
    assert view[0]["entry_id"] == reply["compaction_entry_id"]
    assert (view[0]["message"]["role"], view[0]["message"]["content"]) == ("user", f"{COMPACTED_PREFIX}\n\n{SUMMARY}")
    assert [row["entry_id"] for row in view[1:]] == ids[1:]
    assert [row["message"] for row in view[1:]] == [m.model_dump(mode="json") for m in messages[1:]]

    [done] = await bench.events("s1", "compaction_done")
    assert {k: done[k] for k in ("mode", "summary_text", "compaction_entry_id", "tail_start_id")} == {
        "mode": "sync",
        "summary_text": SUMMARY,
        "compaction_entry_id": reply["compaction_entry_id"],
        "tail_start_id": ids[1],
    }
    assert (done["tokens_before"], done["tokens_after"]) == (reply["tokens_before"], reply["tokens_after"])
    assert await bench.lease("s1") == {}  # released


async def test_a_second_compaction_folds_in_the_first_summary(bench: Bench) -> None:
    await bench.session("s2", user(LONG), said("noted"))
    assert (await bench.compact("s2"))["status"] == "ok"
    # The view is now [summary, "noted"]: the summary alone is not worth summarising again.
    assert (await bench.compact("s2"))["status"] == "empty"
    assert len(bench.fake.requests) == 1

    ids = await bench.session("s2", user(LONG + " again"), said("noted again"))
    second = await bench.compact("s2")
    assert (second["status"], second["tail_start_id"]) == ("ok", ids[1])
    prompt = bench.fake.requests[-1].messages[0]
    assert isinstance(prompt.content, str) and f"{COMPACTED_PREFIX}\n\n{SUMMARY}" in prompt.content
    assert [row["entry_id"] for row in await bench.view("s2")] == [second["compaction_entry_id"], ids[1]]


async def test_what_cannot_be_cut_is_empty_or_overflow(bench: Bench) -> None:
    await bench.session("small", user("hi"))
    assert (await bench.compact("small"))["status"] == "empty"
    await bench.session("huge", user("y" * 13_000))
    reply = await bench.compact("huge")
    assert (reply["status"], reply["compaction_entry_id"]) == ("overflow", None)
    assert reply["tokens_before"] >= 3000
    assert bench.fake.requests == []


async def test_tail_tokens_overrides_the_budget(bench: Bench) -> None:
    ids = await bench.session("s3", user("q1"), said("a1"), user("q2"), said("a2"))
    assert (await bench.compact("s3"))["tail_start_id"] == ids[1]  # all of it fits the default 750 tokens
    ids = await bench.session("s4", user("q1"), said("a1"), user("q2"), said("a2"))
    assert (await bench.compact("s4", tail_tokens=0))["tail_start_id"] == ids[3]


async def test_two_concurrent_compactions_one_compacts_one_is_busy(bench: Bench) -> None:
    await bench.session("race", user(LONG), said("noted"))
    bench.fake.gate.clear()  # the winner holds the lease inside its summary call
    first = asyncio.ensure_future(bench.compact("race"))
    second = asyncio.ensure_future(bench.compact("race"))
    done, pending = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    [loser] = done
    assert loser.result()["status"] == "busy"
    assert loser.result()["compaction_entry_id"] is None
    bench.fake.gate.set()
    [winner] = pending
    assert (await winner)["status"] == "ok"
    assert len(bench.fake.requests) == 1
    assert len(await bench.events("race", "compaction_done")) == 1
    assert await bench.lease("race") == {}


async def test_a_live_lease_of_another_holder_is_busy_and_left_alone(bench: Bench) -> None:
    await bench.session("held", user(LONG), said("noted"))
    claim = {"someone": compaction.now_ms() + 60_000}
    await bench.set_lease("held", claim)
    assert (await bench.compact("held"))["status"] == "busy"
    assert await bench.lease("held") == claim  # our claim withdrawn, theirs untouched
    assert bench.fake.requests == []


async def test_an_expired_lease_is_taken_over(bench: Bench) -> None:
    await bench.session("stale", user(LONG), said("noted"))
    await bench.set_lease("stale", {"crashed": compaction.now_ms() - 1})
    assert (await bench.compact("stale"))["status"] == "ok"
    assert await bench.lease("stale") == {}  # the stale claim cleared, ours released


async def test_a_waiting_compaction_defers_to_one_that_finished_meanwhile(bench: Bench) -> None:
    ids = await bench.session("wait", user(LONG), said("noted"))
    await bench.set_lease("wait", {"holder": compaction.now_ms() + 60_000})
    tried = asyncio.Event()
    watcher = Worker("lease-watch")

    async def on_lease(change: dict[str, Any]) -> None:
        if len(change.get("new_value") or {}) > 1:  # a claim beside the holder's: compact_now is waiting
            tried.set()

    watcher.register_function("test::on_lease", on_lease)
    watcher.register_trigger("state", "test::on_lease", {"scope": compaction.LEASE_SCOPE, "key": "wait"})
    await bench.connect(watcher)
    await watcher.trigger("state::get", {"scope": compaction.LEASE_SCOPE, "key": "wait"})  # binding is in place

    waiting = asyncio.ensure_future(bench.compact("wait", wait_ms=60_000))
    await tried.wait()
    other = await bench.client.trigger(
        "session-tree::compact", {"session_id": "wait", "summary": "done elsewhere", "tail_start_id": ids[1]}
    )
    remove = {"scope": compaction.LEASE_SCOPE, "key": "wait", "ops": [{"type": "remove", "path": "holder"}]}
    await bench.client.trigger("state::update", remove)
    reply = await waiting
    assert (reply["status"], reply["compaction_entry_id"]) == ("concurrent", other["entry_id"])
    assert bench.fake.requests == []


async def test_a_failed_summary_writes_nothing_and_frees_the_lease(bench: Bench) -> None:
    await bench.session("fail", user(LONG), said("noted"))
    bench.fake.failure = "model unavailable"
    with pytest.raises(InvocationError) as caught:
        await bench.compact("fail")
    assert caught.value.code == ErrorCode.SUMMARY_FAILED
    assert "model unavailable" in caught.value.message
    assert await bench.client.trigger("session-tree::compactions", {"session_id": "fail"}) == {"entries": []}
    assert await bench.lease("fail") == {}
    bench.fake.failure = None
    assert (await bench.compact("fail"))["status"] == "ok"


async def test_bad_input_is_refused_with_a_clear_error(bench: Bench) -> None:
    function_id = "context-compaction::compact_now"
    with pytest.raises(InvocationError) as unknown:
        await bench.client.trigger(function_id, {"session_id": "nobody", "model": MODEL})
    assert unknown.value.code == ErrorCode.SESSION_NOT_FOUND
    await bench.session("no-run", user("hi"))
    with pytest.raises(InvocationError) as no_model:  # no model given, and no run request to find one from
        await bench.client.trigger(function_id, {"session_id": "no-run"})
    assert no_model.value.code == ErrorCode.MODEL_UNKNOWN
    await expect_bad_input(bench.client, function_id, {"model": MODEL}, "session_id")
    await expect_bad_input(bench.client, function_id, {"session_id": "s", "tail_tokens": -1}, "tail_tokens")
    await expect_bad_input(bench.client, function_id, {"session_id": "s", "model": {"id": "m"}}, "model.provider")


# ---- whole turns on the thick profile ----------------------------------------------------------

SMALL_WINDOW = """
models:
  - {provider: tape, id: "scripted:tight", context_window: 4000, max_output_tokens: 1000}
  - {provider: tape, id: "scripted:after", context_window: 4000, max_output_tokens: 1000}
"""
SESSION_SUMMARY = "SUMMARY: the user asked to add 2 and 40."


class Tape:
    """`provider::tape::stream`: records each request, then lets the scripted provider answer it.

    Summary requests are answered by the script `summary`, so a session's script numbers only its own turns.
    """

    def __init__(self) -> None:
        self.requests: list[StreamRequest] = []
        self.worker = Worker("provider-tape")
        self.worker.register_function("provider::tape::stream", self.stream)

    async def stream(self, payload: dict[str, Any]) -> Any:
        request = StreamRequest.model_validate(payload)
        self.requests.append(request)
        forwarded = {k: v for k, v in payload.items() if not k.startswith("_")}
        if request.system_prompt == SUMMARY_SYSTEM:
            forwarded["model"] = "scripted:summary"
        return await self.worker.trigger("provider::scripted::stream", forwarded)

    def calls(self, summaries: bool) -> list[StreamRequest]:
        return [r for r in self.requests if (r.system_prompt == SUMMARY_SYSTEM) == summaries]


@pytest.fixture
async def thick(connect: Connect, tmp_path: Path) -> AsyncIterator[tuple[Harness, Tape]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - demo::add\n")
    models = tmp_path / "models.yaml"
    models.write_text(SMALL_WINDOW)
    tape = Tape()
    await connect(tape.worker)
    options = HarnessOptions(data_dir=tmp_path, policy_file=rules, catalog_files=(models,))
    harness = await start_harness_with(connect, harness_workers("thick", options))
    await harness.script("summary", [{"text": SESSION_SUMMARY}])
    yield harness, tape


def only(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def content_of(message: AgentMessage) -> str:
    assert isinstance(message, UserMessage) and isinstance(message.content, str)
    return message.content


async def test_usage_near_the_window_compacts_after_the_turn(thick: tuple[Harness, Tape]) -> None:
    harness, tape = thick
    model = await harness.script(
        "tight",
        [
            {"function_calls": [ADD], "usage": {"input": 300, "output": 20}},
            {"text": "It is 42.", "usage": {"input": 2500, "output": 20}},  # 2520 >= 0.8 of the usable 3000
            {"text": "You are welcome.", "usage": {"input": 400, "output": 10}},
        ],
    )
    await harness.run("grow", LONG, provider="tape", model=model)

    async def compacted() -> bool:
        return bool(only(await harness.events("grow"), "compaction_done"))

    await eventually(compacted)
    [done] = only(await harness.events("grow"), "compaction_done")
    assert (done["mode"], done["summary_text"]) == ("async", SESSION_SUMMARY)
    [summary_call] = tape.calls(summaries=True)
    assert summary_call.model == model  # the session's own provider (tape) and model
    assert LONG in content_of(summary_call.messages[0])
    assert "It is 42." not in content_of(summary_call.messages[0])

    events = await harness.run("grow", "thanks", provider="tape", model=model)
    assert text_of(only(events, "message_complete")[-1]["message"]) == "You are welcome."
    seen = tape.calls(summaries=False)[-1].messages  # what the next turn's provider call was given
    assert content_of(seen[0]) == f"{COMPACTED_PREFIX}\n\n{SESSION_SUMMARY}"
    assert [m.role for m in seen[1:]] == ["assistant", "function_result", "assistant", "user"]
    assert isinstance(seen[1], AssistantMessage) and seen[1].content[0].type == "function_call"
    assert isinstance(seen[3], AssistantMessage) and text_of(seen[3].model_dump()) == "It is 42."
    assert not any(LONG in m.model_dump_json() for m in seen)
    assert len(only(await harness.events("grow"), "compaction_done")) == 1  # the small second turn left it be


async def test_a_transcript_over_the_window_is_compacted_before_the_call(thick: tuple[Harness, Tape]) -> None:
    harness, tape = thick
    big = await harness.script("big", [{"text": "B" * 12_400, "usage": {"input": 50, "output": 10}}])
    await harness.run("full", "hi", provider="tape", model=big)
    # One turn: without the compaction this call would be the conversation's second assistant turn, and fail.
    after = await harness.script("after", [{"text": "Fine."}])
    events = await harness.run("full", "next", provider="tape", model=after)

    [done] = only(events, "compaction_done")
    assert (done["mode"], done["summary_text"]) == ("sync", SESSION_SUMMARY)
    answer = only(events, "message_complete")[-1]
    assert text_of(answer["message"]) == "Fine."
    assert done["seq"] < answer["seq"]  # compacted before the provider call
    [summary_call] = tape.calls(summaries=True)
    assert summary_call.model == after
    seen = tape.calls(summaries=False)[-1].messages
    assert [content_of(m) for m in seen] == [f"{COMPACTED_PREFIX}\n\n{SESSION_SUMMARY}", "next"]
    transcript = await harness.client.trigger("session-tree::messages", {"session_id": "full"})
    assert transcript["messages"][1]["entry_id"] == done["tail_start_id"]
