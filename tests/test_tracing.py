"""Tracing: W3C context on every call, a span per handler, spans queryable at the engine, OTLP export on request."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from teamster.engine.engine import Engine
from teamster.protocol.ids import rng
from teamster.protocol.otlp import MalformedTelemetry, SpanRecord, decode_otlp, encode_otlp
from teamster.sdk import Enqueue, InvocationError, Void, Worker, telemetry
from teamster.sdk.telemetry import (
    TraceParent,
    Tracer,
    format_baggage,
    ids_from_payload,
    parse_baggage,
    parse_traceparent,
)
from tests.conftest import Opener, engine_config, eventually
from tests.raw import RawPeer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
OTEL_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS")


def _base64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


@pytest.fixture(autouse=True)
def no_collector_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell exports, these tests decide where spans go."""
    for name in (*OTEL_ENV, "OTEL_ENABLED"):
        monkeypatch.delenv(name, raising=False)


async def chain(open_worker: Opener) -> tuple[Worker, dict[str, Any]]:
    """Functions a → b → c, each in its own worker; returns a, and what c saw (its baggage and span ids)."""
    a, b, c = Worker("svc-a"), Worker("svc-b"), Worker("svc-c")
    seen: dict[str, Any] = {}

    @a.function("chain::a")
    async def step_a(data: Any) -> Any:
        telemetry.set_baggage("tenant", "acme, inc")  # needs escaping on the wire
        return await a.trigger("chain::b", {"n": 1})

    @b.function("chain::b")
    async def step_b(data: Any) -> Any:
        return await b.trigger("chain::c", {"n": 2})

    @c.function("chain::c")
    async def step_c(data: Any) -> Any:
        seen["baggage"] = telemetry.baggage()
        seen["ids"] = telemetry.current_ids()
        return "done"

    for worker in (c, b, a):
        await open_worker(worker)
    await eventually(lambda: _callable(a, "chain::a"))
    return a, seen


async def _callable(worker: Worker, function_id: str) -> bool:
    listed = await worker.trigger("engine::functions::list", {})
    return function_id in {f["function_id"] for f in listed["functions"]}


async def spans_of(worker: Worker, count: int, **query: Any) -> list[dict[str, Any]]:
    """`engine::traces::list` once it holds `count` matching spans (spans arrive in batches)."""
    result: dict[str, Any] = {}

    async def arrived() -> bool:
        result.update(await worker.trigger("engine::traces::list", query))
        return bool(result["total"] >= count)

    await eventually(arrived)
    spans: list[dict[str, Any]] = result["spans"]
    return spans


# ---- one trace per turn -------------------------------------------------------------------------


async def test_a_chain_is_one_trace_with_parent_links(open_worker: Opener, engine: Engine) -> None:
    a, seen = await chain(open_worker)
    assert await a.trigger("chain::a", {"session_id": "sess-1", "message_id": "msg-1"}) == "done"

    (root,) = await spans_of(a, 1, function_id="chain::a")
    await eventually(lambda: _tree_size(a, root["trace_id"], 3))
    tree = await a.trigger("engine::traces::tree", {"trace_id": root["trace_id"]})
    assert tree["span_count"] == 3
    (top,) = tree["roots"]
    (middle,) = top["children"]
    (leaf,) = middle["children"]
    assert [top["name"], middle["name"], leaf["name"]] == ["chain::a", "chain::b", "chain::c"]
    assert [top["service_name"], middle["service_name"], leaf["service_name"]] == ["svc-a", "svc-b", "svc-c"]
    assert top["parent_span_id"] is None
    assert middle["parent_span_id"] == top["span_id"] and leaf["parent_span_id"] == middle["span_id"]
    assert leaf["children"] == []
    for span in (top, middle, leaf):
        assert span["trace_id"] == root["trace_id"]
        assert span["kind"] == "server" and span["status"] == "ok"
        assert span["attributes"]["iii.function.id"] == span["name"]
        # a carries the ids in its payload; b and c get them from the baggage
        assert span["attributes"]["iii.session.id"] == "sess-1"
        assert span["attributes"]["iii.message.id"] == "msg-1"
        assert span["end_time_unix_nano"] >= span["start_time_unix_nano"] > 0
    assert seen["ids"] == (root["trace_id"], leaf["span_id"])


async def _tree_size(worker: Worker, trace_id: str, size: int) -> bool:
    tree = await worker.trigger("engine::traces::tree", {"trace_id": trace_id})
    return bool(tree["span_count"] == size)


async def test_baggage_propagates_down_the_chain(open_worker: Opener) -> None:
    a, seen = await chain(open_worker)
    await a.trigger("chain::a", {"session_id": "sess-2"})
    assert seen["baggage"]["tenant"] == "acme, inc"
    assert seen["baggage"]["iii.session.id"] == "sess-2"
    assert seen["baggage"]["iii.function.id"] == "chain::c"  # what c's own calls would carry

    spans = {s["name"]: s for s in await spans_of(a, 3, session_id="sess-2")}
    assert "tenant" not in spans["chain::a"]["attributes"]  # set after a's span began: it is for a's calls
    assert spans["chain::b"]["attributes"]["tenant"] == "acme, inc"
    assert spans["chain::c"]["attributes"]["tenant"] == "acme, inc"


async def test_queued_and_void_calls_stay_in_the_trace(open_worker: Opener) -> None:
    worker = await open_worker(Worker("queued"))

    @worker.function("queued::start")
    async def start(data: Any) -> None:
        await worker.trigger("queued::later", {"via": "queue"}, action=Enqueue("tracing-test"))
        await worker.trigger("queued::later", {"via": "void"}, action=Void())

    @worker.function("queued::later")
    async def later(data: Any) -> None:
        return None

    await eventually(lambda: _callable(worker, "queued::later"))
    await worker.trigger("queued::start", {"session_id": "sess-q"})
    spans = await spans_of(worker, 3, session_id="sess-q")
    (parent,) = [s for s in spans if s["name"] == "queued::start"]
    children = [s for s in spans if s["name"] == "queued::later"]
    assert len(children) == 2
    assert {(s["trace_id"], s["parent_span_id"]) for s in children} == {(parent["trace_id"], parent["span_id"])}


async def test_worker_spans_travel_as_otlp_frames(engine: Engine, ws_url: str) -> None:
    async with Worker("framed").connect(ws_url, wait=5) as worker:

        @worker.function("framed::echo")
        async def echo(data: Any) -> Any:
            return data

        await eventually(lambda: _callable(worker, "framed::echo"))
        await worker.trigger("framed::echo", {"session_id": "sess-frames"})
        (span,) = await spans_of(worker, 1, session_id="sess-frames")
    assert span["service_name"] == "framed"
    assert engine.telemetry_frames["OTLP"] >= 1
    assert worker.tracer.exported >= 1 and worker.tracer.dropped == 0


async def test_a_seeded_global_random_sequence_is_left_alone(engine: Engine, ws_url: str) -> None:
    """Span ids, frame masks and backoff jitter come from teamster's own generator."""
    random.seed(2026)
    expected = [random.random() for _ in range(3)]
    random.seed(2026)
    async with Worker("seeded").connect(ws_url, wait=5) as worker:

        @worker.function("seeded::echo")
        async def echo(data: Any) -> Any:
            return data

        await eventually(lambda: _callable(worker, "seeded::echo"))
        for i in range(5):  # each a span with fresh ids and masked frames both ways
            await worker.trigger("seeded::echo", {"session_id": "sess-seeded", "i": i})
        await spans_of(worker, 5, session_id="sess-seeded")
    assert [random.random() for _ in range(3)] == expected


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only writes and exits
        os.write(write, f"{rng.getrandbits(128):032x}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert len(theirs) == 32 and theirs != f"{rng.getrandbits(128):032x}"


async def test_handler_failure_marks_the_span(open_worker: Opener) -> None:
    worker = await open_worker(Worker("failing"))

    @worker.function("failing::boom")
    async def boom(data: Any) -> None:
        raise ValueError("kaboom")

    await eventually(lambda: _callable(worker, "failing::boom"))
    with pytest.raises(InvocationError):
        await worker.trigger("failing::boom", {"session_id": "sess-err"})
    (span,) = await spans_of(worker, 1, session_id="sess-err")
    assert span["status"] == "error"
    assert span["status_description"] == "kaboom"
    assert span["attributes"]["iii.error.code"] == "invocation_failed"


async def test_ids_come_from_the_http_body(engine: Engine, ws_url: str, http_url: str) -> None:
    async with Worker("web").connect(ws_url, wait=5) as worker:

        @worker.function("web::turn")
        async def turn(req: dict[str, Any]) -> dict[str, Any]:
            return {"status_code": 200, "body": {"ok": True}}

        binding = worker.register_trigger("http", "web::turn", {"api_path": "turn", "http_method": "POST"})
        await eventually(lambda: engine.triggers.bindings.get(binding) is not None)
        async with aiohttp.ClientSession() as http:

            async def served() -> bool:
                async with http.post(f"{http_url}/turn", json={"session_id": "sess-http", "message_id": "m-9"}) as r:
                    return r.status == 200

            await eventually(served)
        (span,) = await spans_of(worker, 1, session_id="sess-http")
    assert span["attributes"]["iii.message.id"] == "m-9"
    assert span["parent_span_id"] is None  # nobody upstream: a trigger starts the trace


def test_ids_are_looked_for_in_payload_body_and_body_payload() -> None:
    assert ids_from_payload({"session_id": "s", "message_id": "m"}) == ("s", "m")
    assert ids_from_payload({"body": {"session_id": "s"}, "message_id": "m"}) == ("s", "m")
    assert ids_from_payload({"body": {"payload": {"session_id": "s", "message_id": "m"}}}) == ("s", "m")
    assert ids_from_payload({"session_id": "outer", "body": {"session_id": "inner"}}) == ("outer", None)
    # not printable ASCII, too long, or not a string: not an id
    assert ids_from_payload({"session_id": "tab\there", "message_id": "x" * 129}) == (None, None)
    assert ids_from_payload({"session_id": 7, "message_id": "é"}) == (None, None)
    assert ids_from_payload(["session_id"]) == (None, None)
    assert ids_from_payload({"session_id": "x" * 128}) == ("x" * 128, None)


# ---- the wire: traceparent in, traceparent out ----------------------------------------------------


async def test_incoming_traceparent_is_the_parent_and_calls_carry_the_span(engine: Engine, ws_url: str) -> None:
    """A raw peer calls a worker with a traceparent and serves the function that worker calls next."""
    worker = Worker("middle")

    @worker.function("middle::hop")
    async def hop(data: Any) -> Any:
        return await worker.trigger("peer::sink", {})

    async with RawPeer(ws_url) as peer, worker.connect(ws_url, wait=5):
        await peer.name("peer")
        await peer.send({"type": "registerfunction", "id": "peer::sink"})
        await eventually(lambda: _callable(worker, "middle::hop"))
        await eventually(lambda: _callable(worker, "peer::sink"))
        await peer.send(
            {
                "type": "invokefunction",
                "invocation_id": "hop-1",
                "function_id": "middle::hop",
                "data": {},
                "traceparent": f"00-{TRACE}-{PARENT}-01",
                "baggage": "iii.session.id=sess-wire,k=v%20w;prop=1",
            }
        )
        sink_call = await peer.recv_type("invokefunction")
        await peer.send({"type": "invocationresult", "invocation_id": sink_call["invocation_id"], "result": 1})
        assert (await peer.recv_type("invocationresult"))["result"] == 1
        (span,) = await spans_of(worker, 1, trace_id=TRACE)

    assert span["parent_span_id"] == PARENT
    assert span["attributes"]["iii.session.id"] == "sess-wire"
    assert span["attributes"]["k"] == "v w"
    assert sink_call["traceparent"] == f"00-{TRACE}-{span['span_id']}-01"
    assert parse_baggage(sink_call["baggage"]) == {
        "iii.session.id": "sess-wire",
        "k": "v w",
        "iii.function.id": "middle::hop",
    }


@pytest.mark.parametrize(("flags", "tracing"), [("00", True), ("01", False)])
async def test_unrecorded_calls_pass_the_context_on(engine: Engine, ws_url: str, flags: str, tracing: bool) -> None:
    """An unsampled parent, or a worker with tracing off: no span, and the incoming context goes on unchanged."""
    worker = Worker("quiet", tracing=tracing)

    @worker.function("quiet::hop")
    async def hop(data: Any) -> Any:
        return await worker.trigger("peer::sink", {})

    async with RawPeer(ws_url) as peer, worker.connect(ws_url, wait=5):
        await peer.name("peer")
        await peer.send({"type": "registerfunction", "id": "peer::sink"})
        await eventually(lambda: _callable(worker, "quiet::hop"))
        await eventually(lambda: _callable(worker, "peer::sink"))
        traceparent = f"00-{TRACE}-{PARENT}-{flags}"
        await peer.send(
            {"type": "invokefunction", "invocation_id": "q-1", "function_id": "quiet::hop", "traceparent": traceparent}
        )
        sink_call = await peer.recv_type("invokefunction")
        await peer.send({"type": "invocationresult", "invocation_id": sink_call["invocation_id"], "result": 1})
        await peer.recv_type("invocationresult")
    assert sink_call["traceparent"] == traceparent
    assert parse_baggage(sink_call["baggage"]) == {"iii.function.id": "quiet::hop"}
    assert worker.tracer.exported == 0
    assert (await engine.call("engine::traces::list", {"trace_id": TRACE}))["total"] == 0


def test_traceparent_parsing_follows_w3c() -> None:
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == TraceParent(TRACE, PARENT, True)
    assert parse_traceparent(f" 00-{TRACE}-{PARENT}-00 ") == TraceParent(TRACE, PARENT, False)
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-03-future-field") is not None  # later versions may add fields
    for bad in (
        "",
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{PARENT}0-01",
        f"00-{TRACE}-{PARENT}-1",
        f"00_{TRACE}_{PARENT}_01",
    ):
        assert parse_traceparent(bad) is None, bad


def test_baggage_parsing_skips_what_does_not_parse() -> None:
    assert parse_baggage("a=1, b = two ;p=q,bad key=3,=4,c,d=%E2%9C%93") == {"a": "1", "b": "two", "d": "✓"}
    assert parse_baggage("x=" + "y" * 9000) == {}  # past the W3C size limit
    assert format_baggage({"a": "1", "t": "acme, inc; 100%"}) == "a=1,t=acme%2C%20inc%3B%20100%25"
    assert format_baggage({}) is None


@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True), st.text(max_size=30), max_size=8))
def test_baggage_round_trips(entries: dict[str, str]) -> None:
    assert parse_baggage(format_baggage(entries)) == entries


# ---- the engine's store -------------------------------------------------------------------------


async def test_list_filters_and_limits(open_worker: Opener) -> None:
    worker = await open_worker(Worker("filters"))

    @worker.function("filters::one")
    async def one(data: Any) -> None:
        return None

    @worker.function("filters::two")
    async def two(data: Any) -> None:
        return None

    await eventually(lambda: _callable(worker, "filters::two"))
    for session in ("sess-x", "sess-x", "sess-y"):
        await worker.trigger("filters::one", {"session_id": session, "message_id": f"m-{session}"})
    await worker.trigger("filters::two", {"session_id": "sess-y"})

    await spans_of(worker, 4, service_name="filters")
    by_session = await worker.trigger("engine::traces::list", {"session_id": "sess-x"})
    assert by_session["total"] == 2
    assert {s["attributes"]["iii.session.id"] for s in by_session["spans"]} == {"sess-x"}
    by_function = await worker.trigger("engine::traces::list", {"function_id": "filters::two"})
    assert [s["name"] for s in by_function["spans"]] == ["filters::two"]
    both = await worker.trigger("engine::traces::list", {"session_id": "sess-y", "function_id": "filters::one"})
    assert both["total"] == 1 and both["spans"][0]["attributes"]["iii.message.id"] == "m-sess-y"
    by_message = await worker.trigger("engine::traces::list", {"message_id": "m-sess-x"})
    assert by_message["total"] == 2
    limited = await worker.trigger("engine::traces::list", {"service_name": "filters", "limit": 1})
    assert limited["total"] == 4 and len(limited["spans"]) == 1
    assert limited["spans"][0]["name"] == "filters::two"  # newest first
    trace_id = by_function["spans"][0]["trace_id"]
    by_trace = await worker.trigger("engine::traces::list", {"trace_id": trace_id})
    assert [s["trace_id"] for s in by_trace["spans"]] == [trace_id]
    with pytest.raises(InvocationError) as bad:
        await worker.trigger("engine::traces::list", {"limit": 0})
    assert bad.value.code == "deserialization_error"
    unknown = await worker.trigger("engine::traces::tree", {"trace_id": "f" * 32})
    assert unknown == {"trace_id": "f" * 32, "span_count": 0, "roots": []}
    assert (await worker.trigger("engine::traces::clear", {}))["cleared"] == 4
    assert (await worker.trigger("engine::traces::list", {}))["total"] == 0


async def test_the_ring_is_bounded() -> None:
    config = engine_config(iii_traces={"max_spans": 3})
    async with Engine(config) as engine:
        worker = Worker("ring")

        @worker.function("ring::tick")
        async def tick(data: Any) -> None:
            return None

        async with worker.attach(engine):
            for i in range(5):
                await worker.trigger("ring::tick", {"message_id": f"m{i}"})
        listed = await engine.call("engine::traces::list", {})
        assert [s["attributes"]["iii.message.id"] for s in listed["spans"]] == ["m4", "m3", "m2"]
        stats = await engine.call("engine::traces::stats", {})
        assert (stats["stored"], stats["capacity"], stats["evicted"]) == (3, 3, 2)
        assert (await engine.call("engine::traces::list", {"message_id": "m0"}))["total"] == 0


async def test_malformed_telemetry_is_counted_and_dropped(engine: Engine, ws_url: str) -> None:
    good = {"traceId": TRACE, "spanId": PARENT, "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    frames = [
        b"OTLP{not json",
        b"OTLP[1,2]",
        b'OTLP{"resourceSpans":{}}',
        b'OTLP{"resourceSpans":[{"scopeSpans":[{"spans":7}]}]}',
        b'OTLP{"resourceSpans":[{"resource":{"attributes":{"service.name":"x"}}}]}',
        b"OTLP"
        + orjson.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [good, {**good, "traceId": "zz"}, {"name": 1}]}]}]}
        ),
    ]
    async with RawPeer(ws_url) as peer:
        assert peer.ws is not None
        for frame in frames:
            await peer.ws.send_bytes(frame)
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{ws_url}/otel") as otel:
            await otel.send_bytes(b"OTLP\xff\xfe")
            await otel.send_bytes(b'MTRC{"resourceMetrics":[]}')  # metrics and logs: counted, not stored
        await eventually(lambda: engine.telemetry_frames.get("OTLP") == 7)
        # the connection still works, and the good span of the mixed frame was kept
        assert (await peer.call("engine::traces::stats", {}))["result"] == {
            "stored": 1,
            "capacity": 10_000,
            "evicted": 0,
            "malformed_frames": 6,
            "malformed_spans": 2,
            "export": None,
        }
        listed = await peer.call("engine::traces::list", {}, invocation_id="call-2")
        assert [s["name"] for s in listed["result"]["spans"]] == ["ok"]
    assert engine.telemetry_frames["MTRC"] == 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)


def _or_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | _JSON


def _fields(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object with any of these fields, or any JSON value in its place."""
    return _or_junk(st.fixed_dictionaries({}, optional={k: _or_junk(v) for k, v in fields.items()}))


_HEXISH = st.sampled_from([TRACE, PARENT, "", "zz", _base64(TRACE)]) | st.text(max_size=4)
_VALUE = _fields(stringValue=_JSON, intValue=_JSON, boolValue=_JSON, arrayValue=_fields(values=st.lists(_JSON)))
_ATTRIBUTES = st.lists(_fields(key=_JSON, value=_VALUE), max_size=3)
_SPAN = _fields(
    traceId=_HEXISH,
    spanId=_HEXISH,
    parentSpanId=_HEXISH,
    name=_JSON,
    kind=_JSON,
    startTimeUnixNano=_JSON,
    attributes=_ATTRIBUTES,
    events=st.lists(_fields(name=_JSON, timeUnixNano=_JSON, attributes=_ATTRIBUTES), max_size=2),
    status=_fields(code=_JSON, message=_JSON),
)
_EXPORT = _fields(
    resourceSpans=st.lists(
        _fields(
            resource=_fields(attributes=_ATTRIBUTES),
            scopeSpans=st.lists(_fields(scope=_fields(name=_JSON), spans=st.lists(_SPAN, max_size=3)), max_size=2),
        ),
        max_size=2,
    )
)


@given(_EXPORT)
def test_any_export_decodes_or_is_refused_cleanly(doc: Any) -> None:
    """Near-valid exports broken at any level: decoding yields spans or MalformedTelemetry, never another error."""
    with contextlib.suppress(MalformedTelemetry):
        decode_otlp(orjson.dumps(doc))


_HEX_ID = st.binary(min_size=16, max_size=16).filter(any).map(bytes.hex)
_ATTRIBUTE_VALUE = st.recursive(
    st.text(max_size=5) | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
_RECORD = st.builds(
    SpanRecord,
    trace_id=_HEX_ID,
    span_id=_HEX_ID.map(lambda hexed: hexed[:16]).filter(lambda hexed: hexed != "0" * 16),
    parent_span_id=st.none() | st.just(PARENT),
    name=st.text(max_size=8),
    service_name=st.just("svc"),
    start_ns=st.integers(0, 2**63 - 1),
    end_ns=st.integers(0, 2**63 - 1),
    kind=st.sampled_from(["unspecified", "internal", "server", "client", "producer", "consumer"]),
    status=st.sampled_from(["unset", "ok", "error"]),
    status_message=st.none() | st.text(min_size=1, max_size=5),
    attributes=st.dictionaries(st.text(max_size=4), _ATTRIBUTE_VALUE, max_size=3),
    scope=st.just("teamster"),
)


@given(st.lists(_RECORD, max_size=4), st.lists(st.tuples(st.integers(0, 4), _JSON), max_size=3))
def test_a_frames_good_spans_survive_its_bad_ones(good: list[SpanRecord], bad: list[tuple[int, Any]]) -> None:
    """Junk spans anywhere in a frame are counted and skipped; every good span is kept, unchanged and in order."""
    frame = orjson.loads(encode_otlp(good)) if good else {"resourceSpans": [{"scopeSpans": [{"spans": []}]}]}
    spans = frame["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for position, junk in bad:
        spans.insert(min(position, len(spans)), junk)
    assert decode_otlp(orjson.dumps(frame)) == (good, len(bad))


async def test_official_sdk_frames_are_ingested(engine: Engine, ws_url: str) -> None:
    """The shape iii-sdk's exporter sends: hex ids, int64 as strings, typed attribute values."""
    child = "b7ad6b7169203331"
    frame = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "iii-py"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "iii-python-sdk", "version": ""},
                        "spans": [
                            {
                                "traceId": TRACE,
                                "spanId": child,
                                "parentSpanId": PARENT,
                                "name": "execute iii::leaf",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000002000000",
                                "attributes": [
                                    {"key": "iii.session.id", "value": {"stringValue": "sess-iii"}},
                                    {"key": "n", "value": {"intValue": "7"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {"key": "tags", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}}},
                                ],
                                "events": [{"name": "iii.invocation.input", "timeUnixNano": "1700000000000000001"}],
                                "links": [],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{ws_url}/otel") as otel:
        await otel.send_bytes(b"OTLP" + orjson.dumps(frame))
        await eventually(lambda: engine.telemetry_frames.get("OTLP") == 1)
    (span,) = (await engine.call("engine::traces::list", {"session_id": "sess-iii"}))["spans"]
    assert span == {
        "trace_id": TRACE,
        "span_id": child,
        "parent_span_id": PARENT,
        "name": "execute iii::leaf",
        "kind": "internal",
        "service_name": "iii-py",
        "start_time_unix_nano": 1700000000000000000,
        "end_time_unix_nano": 1700000000002000000,
        "duration_ms": 2.0,
        "status": "error",
        "status_description": "boom",
        "attributes": {"iii.session.id": "sess-iii", "n": 7, "ok": True, "tags": [1.5]},
        "events": [{"name": "iii.invocation.input", "time_unix_nano": 1700000000000000001, "attributes": {}}],
        "instrumentation_scope_name": "iii-python-sdk",
    }
    # its parent is not stored: the span roots its own tree
    tree = await engine.call("engine::traces::tree", {"trace_id": TRACE})
    assert [root["span_id"] for root in tree["roots"]] == [child]


async def test_a_frame_larger_than_the_ring_keeps_its_newest_spans() -> None:
    async with Engine(engine_config(iii_traces={"max_spans": 3})) as engine:
        assert engine.traces is not None
        spans = [SpanRecord(f"{i + 1:032x}", PARENT, None, f"s{i}", "svc", i) for i in range(5)]
        engine.ingest_telemetry("OTLP", encode_otlp(spans))
        listed = await engine.call("engine::traces::list", {})
        assert [s["name"] for s in listed["spans"]] == ["s4", "s3", "s2"]
        stats = await engine.call("engine::traces::stats", {})
        assert (stats["stored"], stats["evicted"]) == (3, 2)
        tree = await engine.call("engine::traces::tree", {"trace_id": f"{4:032x}"})
        assert [root["name"] for root in tree["roots"]] == ["s3"]


def test_otlp_encoding_round_trips() -> None:
    span = SpanRecord(
        TRACE, PARENT, None, "n", "svc", 5, 9, "client", "error", "bad", {"a": 1, "b": [True, {"c": "d"}]}
    )
    span.events = [{"name": "e", "time_unix_nano": 6, "attributes": {"x": 1.5}}]
    spans, skipped = decode_otlp(encode_otlp([span]))
    assert (spans, skipped) == ([span], 0)
    plain_proto3 = {  # plain proto3 JSON is understood too: base64 ids, enum names, numbers either way
        "traceId": _base64(TRACE),
        "spanId": _base64(PARENT),
        "name": "b64",
        "kind": "SPAN_KIND_CLIENT",
        "status": {"code": "STATUS_CODE_ERROR"},
        "startTimeUnixNano": 5,
        "attributes": [{"key": "d", "value": {"doubleValue": "1.5"}}, {"key": "i", "value": {"intValue": 7}}],
    }
    frame = {"resourceSpans": [{"scopeSpans": [{"spans": [plain_proto3]}]}]}
    (decoded,), skipped = decode_otlp(orjson.dumps(frame))
    assert skipped == 0
    assert (decoded.trace_id, decoded.span_id, decoded.kind, decoded.status) == (TRACE, PARENT, "client", "error")
    assert (decoded.start_ns, decoded.attributes) == (5, {"d": 1.5, "i": 7})


# ---- what leaves the machine ----------------------------------------------------------------------


async def test_nothing_is_exported_by_default(engine: Engine, ws_url: str) -> None:
    assert engine.traces is not None and engine.traces.exporter is None
    assert (await engine.call("engine::traces::stats", {}))["export"] is None


class Collector:
    """A local OTLP/HTTP collector: keeps every request body posted to /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[tuple[str | None, Any]] = []  # (authorization header, body)
        self.url = ""

    async def receive(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("authorization"), await request.json()))
        return web.json_response({})

    def spans(self) -> list[tuple[str, dict[str, Any]]]:
        """(service name, OTLP span) of every span received."""
        out = []
        for _, body in self.requests:
            for resource in body["resourceSpans"]:
                attrs = {a["key"]: a["value"]["stringValue"] for a in resource["resource"]["attributes"]}
                out += [(attrs["service.name"], s) for scope in resource["scopeSpans"] for s in scope["spans"]]
        return out


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    received = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", received.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    received.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield received
    await runner.cleanup()


@pytest.mark.parametrize("via", ["env", "config"])
async def test_otlp_export_to_a_configured_collector(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    traces: dict[str, Any] = {"otlp_interval_ms": 20}
    if via == "env":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken")
    else:
        traces |= {"otlp_endpoint": collector.url + "/", "otlp_headers": {"authorization": "Bearer t0ken"}}
    async with Engine(engine_config(iii_traces=traces)) as engine:
        exporter = engine.traces.exporter if engine.traces is not None else None
        assert exporter is not None
        opened: list[Worker] = []

        async def opener(worker: Worker) -> Worker:
            """c over the socket, a and b in-process: both kinds of spans reach the collector."""
            if worker.name == "svc-c":
                await worker.open(f"ws://127.0.0.1:{engine.ports['ws']}", wait=5)
            else:
                await worker.open_local(engine)
            opened.append(worker)
            return worker

        a, _ = await chain(opener)
        await a.trigger("chain::a", {"session_id": "sess-otlp"})
        await eventually(lambda: exporter.exported >= 3)
        for worker in opened:
            await worker.close()
        stats = await engine.call("engine::traces::stats", {})
    exported = {service: span for service, span in collector.spans() if span["name"].startswith("chain::")}
    assert set(exported) == {"svc-a", "svc-b", "svc-c"}
    assert len({span["traceId"] for span in exported.values()}) == 1
    assert exported["svc-b"]["parentSpanId"] == exported["svc-a"]["spanId"]
    attributes = {a["key"]: a["value"] for a in exported["svc-c"]["attributes"]}
    assert attributes["iii.session.id"] == {"stringValue": "sess-otlp"}
    assert {authorization for authorization, _ in collector.requests} == {"Bearer t0ken"}
    assert stats["export"]["exported"] >= 3 and stats["export"]["failed"] == 0


# ---- the SDK's buffer ---------------------------------------------------------------------------


async def test_a_stalled_export_drops_spans_instead_of_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "MAX_BUFFER", 4)
    monkeypatch.setattr(telemetry, "MAX_BATCH", 2)
    release = asyncio.Event()
    batches: list[list[SpanRecord]] = []

    async def stalled(spans: list[SpanRecord]) -> bool:
        batches.append(spans)
        await release.wait()
        return True

    tracer = Tracer("stalled")
    tracer.export = stalled

    def handle(i: int) -> None:
        active, token = tracer.open("t::f", {"message_id": f"m{i}"}, None, None)
        tracer.close(active, token, None)  # never waits, however stuck the export is

    handle(0)
    handle(1)  # a full batch: its export starts, and stalls
    await eventually(lambda: len(batches) == 1)
    for i in range(2, 9):
        handle(i)
    # two spans in flight, four waiting in the buffer, three found it full
    assert tracer.dropped == 3
    release.set()
    await tracer.flush()
    assert tracer.exported == 6 and tracer.dropped == 3
    assert [s.attributes["iii.message.id"] for b in batches for s in b] == [f"m{i}" for i in range(6)]


# ---- an official iii-sdk worker in the same trace ----------------------------------------------------

III_LEAF = """
import sys
from iii import InitOptions, register_worker

otel = {"enabled": True, "service_name": "iii-leaf", "logs_enabled": False, "metrics_enabled": False,
        "fetch_instrumentation_enabled": False}
options = InitOptions(worker_name="iii-leaf", enable_metrics_reporting=False, otel=otel)
client = register_worker(sys.argv[1], options)
client.register_function("iii::leaf", lambda data: {"leaf": True})
print("ready", flush=True)
sys.stdin.read()
client.shutdown()
"""


@pytest.mark.slow
async def test_an_official_sdk_worker_joins_the_trace(engine: Engine, ws_url: str, tmp_path: Path) -> None:
    """iii-sdk with OTel on, in its own process (its tracer provider is process-global): its span, sent over
    `/otel`, is a child of the teamster span that called it and carries the session id from our baggage."""
    script = tmp_path / "iii_leaf.py"
    script.write_text(III_LEAF)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), ws_url, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        async with Worker("caller").connect(ws_url, wait=5) as caller:

            @caller.function("caller::turn")
            async def turn(data: Any) -> Any:
                return await caller.trigger("iii::leaf", {})

            await eventually(lambda: _callable(caller, "caller::turn"))
            await eventually(lambda: _callable(caller, "iii::leaf"), timeout=20)
            assert await caller.trigger("caller::turn", {"session_id": "sess-mixed"}) == {"leaf": True}
            spans = {s["name"]: s for s in await spans_of(caller, 2, session_id="sess-mixed")}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the script shuts its client down and exits
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    ours, theirs = spans["caller::turn"], spans["execute iii::leaf"]
    assert theirs["trace_id"] == ours["trace_id"]
    assert theirs["parent_span_id"] == ours["span_id"]
    assert theirs["service_name"] == "iii-leaf"
    assert theirs["attributes"]["iii.session.id"] == "sess-mixed"
