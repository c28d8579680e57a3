"""The two backends keep one contract: same events for the same request, a session tree per run on the
engine, human input on both (surviving a page reload on the engine), and the harness's gates reaching the
pattern as results and errors, not crashes."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from teamster.harness.contracts import StreamRequest
from teamster.patterns import PATTERN_NAMES, InprocAgents, RunRequest, run_pattern
from teamster.patterns import functions as patterns
from teamster.patterns.agents import AgentCall, AgentError, Step
from teamster.patterns.evaluator_optimizer import CRITIC_SYSTEM
from teamster.patterns.events import Event, InputRequest
from teamster.patterns.tools import ALL, CRITIQUE, SUBMIT_DRAFT, DraftArgs, Tool
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker
from tests.patterns.conftest import (
    PatternEngine,
    assert_contract,
    call,
    only,
    run_engine,
    run_inproc,
    say,
    shared_engine,
    types,
)

# ---- the same request, the same events ----------------------------------------------------------

# Differ legitimately between two runs of one backend: ids, clocks and durations. Usage and cost do not.
VOLATILE = frozenset({"run_id", "seq", "ts", "duration_ms", "total_duration_ms", "request_id"})
CALL_EVENTS = frozenset({"iteration_start", "agent_step", "iteration_end"})
# Events a parallel task emits right after its own call ends (a swarm contribution, a self-consistency sample).
REPORTS = frozenset({"trace", "sample"})
Lane = tuple[int, str]  # (iteration, agent): one agent call


def projection(event: Event) -> Any:
    return _strip(event.model_dump(mode="json"))


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def normalised(events: list[Event]) -> list[Any]:
    """The projected events, with the one normalisation the backends need: the interleaving of parallel calls.

    Between two pattern-level events (anything but a call's own events), each agent call's events — with its
    `tool_call`s and the REPORTS that directly follow its `iteration_end` — are grouped, calls in iteration
    order (iterations are assigned before a parallel phase starts). Each call's own order, the phase
    boundaries and every payload are compared as they are.
    """
    out: list[Any] = []
    segment: list[tuple[Lane, Any]] = []
    open_lanes: dict[str, Lane] = {}  # agent -> its call in progress
    ended: Lane | None = None  # the call whose iteration_end (and reports) came just before

    def flush() -> None:
        out.extend(p for _, p in sorted(segment, key=lambda item: item[0]))
        segment.clear()

    for event in events:
        kind, agent = event.type, getattr(event, "agent", None)  # type: ignore[attr-defined]
        lane: Lane | None = None
        if kind in CALL_EVENTS:
            lane = (event.iteration, agent)  # type: ignore[attr-defined]
            open_lanes[agent] = lane
        elif kind == "tool_call":
            lane = open_lanes.get(agent)
        elif kind in REPORTS:
            lane = ended
        ended = lane if kind == "iteration_end" or (kind in REPORTS and lane is not None) else None
        if lane is None:
            flush()
            out.append(projection(event))
        else:
            segment.append((lane, projection(event)))
    flush()
    return out


def available(pattern: str) -> bool:
    return importlib.util.find_spec(f"teamster.patterns.{pattern}") is not None


@pytest.mark.parametrize("pattern", PATTERN_NAMES)
async def test_an_unscripted_request_gives_the_same_events_on_both_backends(pattern: str) -> None:
    if not available(pattern):
        pytest.skip(f"teamster.patterns.{pattern} has not landed yet")
    query = "Plan a small launch for a note-taking app."
    history = [{"role": "user", "content": "We are three people."}, {"role": "assistant", "content": "Noted."}]
    inproc = await run_inproc(pattern, query, history=history)
    engine = await run_engine(pattern, query, history=history)
    assert_contract(engine)
    assert types(engine)[-1] == types(inproc)[-1] == "workflow_complete"
    assert normalised(engine) == normalised(inproc)


def test_the_normalisation_only_reorders_calls_between_pattern_events() -> None:
    from teamster.patterns.events import AgentStep, IterationEnd, IterationStart, Sample, TaskPosted

    def start(agent: str, i: int) -> Event:
        return IterationStart(iteration=i, agent=agent)

    def step(agent: str, i: int) -> Event:
        return AgentStep(agent=agent, iteration=i, step_index=0, text=agent)

    def end(agent: str, i: int) -> Event:
        return IterationEnd(iteration=i, agent=agent, duration_ms=i, step_count=1, output_preview="")

    serial = [start("a", 1), step("a", 1), end("a", 1), Sample(index=1, preview="a"), start("b", 2), end("b", 2)]
    interleaved = [start("a", 1), start("b", 2), step("a", 1), end("a", 1), Sample(index=1, preview="a"), end("b", 2)]
    assert normalised(interleaved) == normalised(serial)
    moved_report = [start("a", 1), start("b", 2), step("a", 1), end("a", 1), end("b", 2), Sample(index=1, preview="a")]
    assert normalised(moved_report) != normalised(serial)  # a report belongs right after its own call
    across_a_boundary = [start("a", 1), end("a", 1), TaskPosted(task_id="t", title="t"), start("b", 2), end("b", 2)]
    swapped = [start("b", 2), end("b", 2), TaskPosted(task_id="t", title="t"), start("a", 1), end("a", 1)]
    assert normalised(swapped) != normalised(across_a_boundary)  # phases keep their order
    out_of_order = [start("a", 1), end("a", 1), step("a", 1)]
    assert normalised(out_of_order) != normalised([start("a", 1), step("a", 1), end("a", 1)])


async def test_step_caps_mean_the_same_on_both_backends() -> None:
    """The last allowed step's tool calls run, then the call stops; the harness's max_turns note is no step."""
    book = {"generator": [[call("submitDraft", draft=f"d{i}") for i in range(1, 6)]], "critic": [[say("fine")]]}
    runs = [await run("evaluator_optimizer", book=book, max_rounds=1) for run in (run_inproc, run_engine)]
    for events in runs:
        generator = only(events, "iteration_end")[0]
        assert (generator.agent, generator.step_count, generator.output_preview) == ("generator", 3, "d3")
        assert [s.step_index for s in only(events, "agent_step") if s.agent == "generator"] == [0, 1, 2]
    assert normalised(runs[1]) == normalised(runs[0])


async def test_bad_tool_arguments_read_the_same_on_both_backends() -> None:
    book = {"critic": [[call("critique", score=99), say("sorry")]]}
    runs = [await run("evaluator_optimizer", book=book, max_rounds=1) for run in (run_inproc, run_engine)]
    assert normalised(runs[1]) == normalised(runs[0])  # usage too: the model read the same error text
    assert [(c.score, c.passed) for c in only(runs[1], "critique")] == [(0, False)]


async def test_the_patterns_worker_offers_each_tool_with_the_schema_inproc_offers() -> None:
    engine = await shared_engine()
    ids = [tool.function_id for tool in ALL]
    info = await engine.submit(engine.host.client.worker.trigger("engine::functions::info", {"function_ids": ids}))
    offered = {row["function_id"]: (row["request_format"], row["description"]) for row in info["functions"]}
    assert offered == {tool.function_id: (tool.schema(), tool.description) for tool in ALL}


async def test_an_engine_agent_is_offered_its_tools_alone() -> None:
    seen: list[StreamRequest] = []
    await run_engine("evaluator_optimizer", book={"critic": [[call("critique", score=9)]]}, seen=seen)
    offered = {(r.agent_id, tuple(t.name for t in r.tools)) for r in seen}
    assert offered == {("generator", (SUBMIT_DRAFT.function_id,)), ("critic", (CRITIQUE.function_id,))}
    assert {r.system_prompt for r in seen if r.agent_id == "critic"} == {CRITIC_SYSTEM}  # verbatim


# ---- the session tree ---------------------------------------------------------------------------


async def test_an_engine_run_is_a_root_session_with_one_child_per_agent_call() -> None:
    engine = await shared_engine()
    host = engine.host

    async def tree_run() -> tuple[list[Event], str, dict[str, Any], list[list[dict[str, Any]]]]:
        agents = host.agents(await host.load(None), run_id="tree-run")
        events: list[Event] = []
        request = RunRequest(pattern="evaluator_optimizer", query="Name a color.", run_id="tree-run")
        await run_pattern(request, agents, events.append)
        worker = host.client.worker
        children = await worker.trigger("session-tree::children", {"session_id": agents.session_id})
        transcripts = []
        for child in children["sessions"]:
            reply = await worker.trigger("session-tree::messages", {"session_id": child["session_id"]})
            transcripts.append([row["message"] for row in reply["messages"]])
        return events, agents.session_id, children, transcripts

    events, root, children, transcripts = await engine.submit(tree_run())
    assert events[-1].type == "workflow_complete"
    calls = only(events, "iteration_start")
    assert [c["display_name"] for c in children["sessions"]] == [c.agent for c in calls]
    assert children["total"] == len(calls) == 8  # four rounds of generator and critic: the test model scores 1
    assert {c["parent_session_id"] for c in children["sessions"]} == {root}
    first = transcripts[0]
    assert first[0]["role"] == "user" and first[0]["content"].endswith("Name a color.")
    assert [m["role"] for m in first] == ["user", "assistant", "function_result", "assistant"]


async def test_a_cancelled_agent_call_aborts_its_turn(tmp_path: Path) -> None:
    book = {"generator": [[call("submitDraft", draft="x"), say("never", latency_ms=30_000)]]}
    async with PatternEngine(tmp_path) as host:
        agents = host.agents(await host.load(book))
        first_step = asyncio.Event()

        def on_step(step: Step) -> None:
            first_step.set()

        running = asyncio.ensure_future(agents.run(AgentCall("generator", "s", "p", [SUBMIT_DRAFT]), on_step))
        await first_step.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        worker = host.client.worker
        (child,) = (await worker.trigger("session-tree::children", {"session_id": agents.session_id}))["sessions"]
        state = await worker.trigger("turn::get_state", {"session_id": child["session_id"]})
        assert state["state"] == "stopped"
        events = (await worker.trigger("events::list", {"session_id": child["session_id"]}))["events"]
        last = [e["message"] for e in events if e["type"] == "message_complete"][-1]
        assert (last["stop_reason"], last["content"]) == ("aborted", [{"type": "text", "text": "run aborted by user"}])


# ---- human input --------------------------------------------------------------------------------

ASKS = {
    "coordinator": [
        [call("requestUserInput", question="Which audience?")],
        [call("markComplete", finalResponse="For developers.")],
    ]
}


async def test_human_input_inproc_is_answered_through_inputs_resolve() -> None:
    if not available("orchestrated"):
        pytest.skip("teamster.patterns.orchestrated has not landed yet")
    from teamster.harness.providers import scripted

    scripts = scripted.Scripts()
    scripts.load(scripted.LoadRequest.model_validate({"name": "book", "agents": ASKS}))
    agents = InprocAgents("scripted", "scripted:book", streams={"scripted": scripted.streamer(scripts)})
    events: list[Event] = []
    accepted: list[bool] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, InputRequest):  # answered the instant it is announced: the request is already open
            assert agents.inputs.pending() == [event.request_id]
            accepted.append(agents.inputs.resolve(event.request_id, "developers"))

    await run_pattern(RunRequest(pattern="orchestrated", query="Write a post.", model="scripted:book"), agents, sink)
    (request,) = only(events, "input_request")
    assert accepted == [True]
    assert not agents.inputs.resolve(request.request_id, "again")  # nothing waits for it any more
    assert only(events, "input_resolved")[0].answer == "developers"
    assert events[-1].result == "For developers."


async def test_human_input_on_the_engine_survives_a_page_reload(tmp_path: Path) -> None:
    if not available("orchestrated"):
        pytest.skip("teamster.patterns.orchestrated has not landed yet")
    async with PatternEngine(tmp_path) as host:
        model = await host.load(ASKS)
        first_page, stored = _page("page-1")
        await first_page.open_local(host.engine)
        events: list[Event] = []
        request = RunRequest(pattern="orchestrated", query="Write a post.", model="scripted:book", run_id="r-input")
        running = asyncio.ensure_future(run_pattern(request, host.agents(model, run_id="r-input"), events.append))
        await stored.wait()
        await first_page.close()  # the reload: whatever the page held is gone

        fresh = Worker("page-2")
        await fresh.open_local(host.engine)
        try:
            listed = (await fresh.trigger("patterns::input::pending", {"run_id": "r-input"}))["requests"]
            assert [(r["agent"], r["question"], r["run_id"]) for r in listed] == [
                ("coordinator", "Which audience?", "r-input")
            ]
            assert (await fresh.trigger("patterns::input::pending", {"run_id": "another run"}))["requests"] == []
            request_id = listed[0]["request_id"]
            answer = {"request_id": request_id, "answer": "developers"}
            assert await fresh.trigger("patterns::input::resolve", answer) == {"request_id": request_id, "ok": True}
            await running
            assert await _error_code(fresh, {**answer, "answer": "twice"}) == ErrorCode.INPUT_ANSWERED
            assert await _error_code(fresh, {"request_id": "nobody-asked", "answer": "x"}) == ErrorCode.INPUT_NOT_FOUND
            assert (await fresh.trigger("patterns::input::pending", {}))["requests"] == []
        finally:
            await fresh.close()
    assert_contract(events)
    (resolved,) = only(events, "input_resolved")
    assert (resolved.request_id, resolved.answer, resolved.timed_out) == (request_id, "developers", False)
    assert events[-1].result == "For developers."


async def test_an_engine_input_request_times_out_or_closes_with_its_run(tmp_path: Path) -> None:
    async with PatternEngine(tmp_path) as host:
        agents = host.agents("scripted", run_id="r-wait")
        worker = host.client.worker
        assert await agents.ask("late", "coordinator", "Anyone?", 0.05, lambda: None) is None
        assert await _error_code(worker, {"request_id": "late", "answer": "now"}) == ErrorCode.INPUT_CLOSED
        page, stored = _page("page")
        await page.open_local(host.engine)
        waiting = asyncio.ensure_future(agents.ask("dropped", "coordinator", "Still there?", 60, lambda: None))
        await stored.wait()
        assert [r["request_id"] for r in (await worker.trigger("patterns::input::pending", {}))["requests"]] == [
            "dropped"
        ]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await worker.trigger("patterns::input::pending", {}))["requests"] == []
        assert await _error_code(worker, {"request_id": "dropped", "answer": "yes"}) == ErrorCode.INPUT_CLOSED
        await page.close()


def _page(name: str) -> tuple[Worker, asyncio.Event]:
    """A client that, like a page, follows the pattern inputs; the event is set once a request is stored."""
    page = Worker(name)
    stored = asyncio.Event()

    async def changed(event: dict[str, Any]) -> None:
        stored.set()

    page.register_function(f"{name}::input_changed", changed)
    page.register_trigger("state", f"{name}::input_changed", {"scope": patterns.INPUTS})
    return page, stored


async def _error_code(worker: Worker, answer: dict[str, Any]) -> str:
    with pytest.raises(InvocationError) as caught:
        await worker.trigger("patterns::input::resolve", answer)
    return caught.value.code


# ---- the harness's gates ------------------------------------------------------------------------


async def test_a_policy_deny_on_a_pattern_tool_is_a_tool_error_the_pattern_reads(tmp_path: Path) -> None:
    rules = "version: 1\nrules:\n  - '!pattern::critique'\n  - 'pattern::*'\n"
    book = {"critic": [[call("critique", score=9, issues=[]), say("denied, so no score")]]}
    async with PatternEngine(tmp_path, rules=rules) as host:
        events = await host.run("evaluator_optimizer", book=book, max_rounds=1)
        agents = host.agents(await host.load(book))
        result = await agents.run(AgentCall("critic", "s", "Review: x", [CRITIQUE], 3), lambda step: None)
    assert_contract(events)
    assert events[-1].type == "workflow_complete"
    assert [(c.score, c.passed) for c in only(events, "critique")] == [(0, False)]  # no critique was recorded
    assert [s.tool_names for s in only(events, "agent_step") if s.agent == "critic"] == [["critique"], []]
    (use,) = result.steps[0].tool_uses
    assert (use.name, use.is_error) == ("critique", True)
    assert use.result.startswith("Permission denied: pattern::critique matched rule pattern::critique")
    assert result.last(CRITIQUE) is None and result.text == "denied, so no score"


PRICED = """
models:
  - provider: scripted
    id: "scripted:priced"
    context_window: 128000
    pricing: {input_per_1m: 0, output_per_1m: 1000000}
"""


async def test_a_budget_cap_hit_mid_pattern_is_a_workflow_error(tmp_path: Path) -> None:
    # One output token costs 1 USD: the generator's two turns spend 2 of 1.5; the critic is refused.
    usage = {"input": 10, "output": 1}
    book = {"generator": [[{**call("submitDraft", draft="x"), "usage": usage}, say("sent", usage=usage)]]}
    async with PatternEngine(tmp_path, catalog=PRICED) as host:
        budget = await host.client.worker.trigger("budget::create", {"ceiling_usd": 1.5, "period": "day"})
        events = await host.run("evaluator_optimizer", book=book, name="priced", budget_id=budget["budget_id"])
        spent = await host.client.worker.trigger("budget::get", {"budget_id": budget["budget_id"]})
    assert_contract(events)
    assert types(events)[-3:] == ["iteration_end", "iteration_start", "workflow_error"]
    assert events[-2].agent == "critic"
    assert events[-1].error.startswith("critic: Budget exceeded: the run stopped before calling the model")
    assert spent["budget"]["spent_usd"] == pytest.approx(2.0)


async def test_a_provider_error_or_a_failed_turn_is_an_agent_error(tmp_path: Path) -> None:
    unserved = Tool("notServed", "no worker serves it", DraftArgs, DraftArgs, lambda args: args)
    async with PatternEngine(tmp_path) as host:
        agents = host.agents(await host.load({"critic": [[{"error": {"message": "upstream down"}}]]}))
        with pytest.raises(AgentError, match=r"^critic: scripted: upstream down$"):  # inproc's wording
            await agents.run(AgentCall("critic", "s", "p", [CRITIQUE]), lambda step: None)
        with pytest.raises(AgentError) as caught:
            await agents.run(AgentCall("critic", "s", "p", [unserved]), lambda step: None)
    assert str(caught.value) == (
        "critic: the turn failed: from provisioning: run::start names function pattern::notServed, "
        "which no worker serves"
    )
