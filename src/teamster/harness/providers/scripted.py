"""Provider "scripted": a deterministic, scriptable model for tests, demos and pattern runs.

A script is a list of turns; turn *i* answers the *i*-th assistant turn of the conversation (the number of
assistant messages already in `request.messages`). Scripts come from `create_worker(script=...)` (model
`scripted`, or any model without a `scripted:` prefix) or from `provider::scripted::load {name, turns}`
(model `scripted:<name>`). A *book* (`load {name, agents}`) scripts several agents at once: the request's
`agent_id` picks the agent, and that agent's k-th conversation plays its k-th list of turns; past the end
of a list, or for an agent the book does not name, it behaves like the test model.

With no script it is a test model: it calls every offered tool once, with arguments built from the tool's
JSON Schema; once the results are in it answers "Done: called N function(s)."; with no tools it answers
"Hello from the scripted model.". Usage is `ceil(chars / 4)` of the prompt and of the reply, unless a
turn gives its own.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from teamster.harness.contracts import (
    AssistantMessage,
    CustomMessage,
    ErrorKind,
    FunctionCallBlock,
    FunctionResultMessage,
    FunctionSpec,
    StopReason,
    StreamRequest,
    TextBlock,
    ThinkingBlock,
    Usage,
    UserMessage,
)
from teamster.harness.providers.credentials import Credentials
from teamster.harness.providers.errors import ProviderError
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.messages import result_text, text_of
from teamster.harness.providers.worker import StreamFn, provider_worker
from teamster.harness.schema_example import example_for
from teamster.protocol.handles import handles
from teamster.sdk import Worker

NAME = "scripted"
MODEL_PREFIX = "scripted:"
HELLO = "Hello from the scripted model."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a script is an error, not a silent no-op


class ScriptedCall(_Strict):
    function_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None  # default: call_<turn>_<n>


class ScriptedError(_Strict):
    message: str
    kind: ErrorKind = "permanent"


class Turn(_Strict):
    """One assistant turn: thinking, then text, then function calls, each streamed in `chunk_size` pieces."""

    text: str | None = None
    thinking: str | None = None
    function_calls: list[ScriptedCall] = Field(default_factory=list)
    usage: Usage | None = None
    latency_ms: int = Field(default=0, ge=0)  # waited before the first content event
    error: ScriptedError | None = None  # streamed content first, then this error
    chunk_size: int | None = Field(default=None, gt=0)  # None: each block in one delta
    chunk_delay_ms: int = Field(default=0, ge=0)  # waited between two deltas of a block
    stop_reason: StopReason | None = None  # default: function_call when there are calls, else end


class LoadRequest(BaseModel):  # lenient at the top: the engine may add keys such as `_caller_worker_id`
    """Either `turns` (one conversation) or `agents` (a book: each agent's k-th conversation plays its k-th list)."""

    name: str = Field(min_length=1)
    turns: list[Turn] | None = None
    agents: dict[str, list[list[Turn]]] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> LoadRequest:
        if (self.turns is None) == (self.agents is None):
            raise ValueError("give exactly one of turns or agents")
        return self


class NameRequest(BaseModel):
    name: str = Field(min_length=1)


class LoadResult(BaseModel):
    name: str
    model: str
    turns: int


class Scripts:
    """Named scripts and books; picks the turn that answers a request."""

    def __init__(self, default: list[Turn] | None = None) -> None:
        self.default = default
        self._named: dict[str, LoadRequest] = {}
        self._started: dict[tuple[str, str], int] = {}  # (book, agent) -> conversations started
        self._current: dict[tuple[str, str, str], int] = {}  # (book, agent, opening) -> its conversation

    def load(self, req: LoadRequest) -> LoadResult:
        self._named[req.name] = req
        for key in [k for k in self._started if k[0] == req.name]:
            del self._started[key]
        count = (
            len(req.turns) if req.turns is not None else sum(len(c) for cs in (req.agents or {}).values() for c in cs)
        )
        return LoadResult(name=req.name, model=MODEL_PREFIX + req.name, turns=count)

    def get(self, name: str) -> LoadRequest | None:
        return self._named.get(name)

    def turn(self, req: StreamRequest) -> Turn:
        index = sum(isinstance(m, AssistantMessage) for m in req.messages)
        if not req.model.startswith(MODEL_PREFIX):
            return _nth(self.default, index, req)
        name = req.model[len(MODEL_PREFIX) :]
        script = self._named.get(name)
        if script is None:
            raise ProviderError(f"no script named {name!r}; load one with provider::scripted::load", "permanent")
        if script.agents is None:
            return _nth(script.turns, index, req)
        agent = req.agent_id or ""
        opening = _opening(req)
        if index == 0:
            k = self._started.get((name, agent), 0)
            self._started[(name, agent)] = k + 1
            self._current[(name, agent, opening)] = k
        k = self._current.get((name, agent, opening), -1)
        conversations = script.agents.get(agent, [])
        turns = conversations[k] if 0 <= k < len(conversations) else []
        return turns[index] if index < len(turns) else test_model_turn(req)


def _nth(turns: list[Turn] | None, index: int, req: StreamRequest) -> Turn:
    if turns is None:
        return test_model_turn(req)
    if index < len(turns):
        return turns[index]
    raise ProviderError(f"the script has {len(turns)} turn(s); this is assistant turn {index + 1}", "permanent")


def _opening(req: StreamRequest) -> str:
    """The first message's text: tells apart concurrent conversations of one agent."""
    first = next((m for m in req.messages if isinstance(m, UserMessage)), None)
    return text_of(first.content) if first is not None else ""


class ScriptLibrary:
    """The `provider::scripted::load` and `::get` handlers over the worker's `Scripts`."""

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts

    @handles(f"provider::{NAME}::load", description="Load a script or a per-agent book, answered as scripted:<name>")
    async def load(self, req: LoadRequest) -> LoadResult:
        return self.scripts.load(req)

    @handles(f"provider::{NAME}::get", description="A loaded script or book by name (null when none), to replay")
    async def get(self, req: NameRequest) -> LoadRequest | None:
        return self.scripts.get(req.name)


def create_worker(script: list[Turn] | list[dict[str, Any]] | None = None) -> Worker:
    """The `provider::scripted::stream` worker; `script` answers model `scripted` (and unprefixed models)."""
    scripts = Scripts([Turn.model_validate(t) for t in script] if script is not None else None)
    worker = provider_worker(NAME, streamer(scripts), description="deterministic scripted model")
    worker.serve(ScriptLibrary(scripts))
    return worker


def streamer(scripts: Scripts | None = None) -> StreamFn:
    """The stream function alone, for callers without an engine."""
    scripts = scripts or Scripts()

    async def stream(req: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        index = sum(isinstance(m, AssistantMessage) for m in req.messages)
        await play(scripts.turn(req), index, req, out)

    return stream


async def play(turn: Turn, index: int, req: StreamRequest, out: EventWriter) -> None:
    if turn.latency_ms:
        await asyncio.sleep(turn.latency_ms / 1000)
    reply_chars = 0
    if turn.thinking:
        await out.thinking_start()
        async for piece in _paced(turn.thinking, turn):
            await out.thinking(piece)
        await out.end_block()
        reply_chars += len(turn.thinking)
    if turn.text:
        await out.text_start()
        async for piece in _paced(turn.text, turn):
            await out.text(piece)
        await out.end_block()
        reply_chars += len(turn.text)
    for n, call in enumerate(turn.function_calls):
        # Unique like a real provider's ids: a run's agents share one approval list keyed by call id.
        await out.function_call_start(call.id or f"call_{index}_{n}_{uuid.uuid4().hex[:8]}", call.function_id)
        encoded = json.dumps(call.arguments)
        async for piece in _paced(encoded, turn):
            await out.function_call_delta(piece)
        await out.function_call_end(call.arguments)
        reply_chars += len(encoded)
    if turn.usage is not None:
        out.update_usage(**turn.usage.model_dump(exclude={"cost_usd"}))
    if turn.error is not None:
        raise ProviderError(turn.error.message, turn.error.kind)
    if turn.usage is None:
        out.update_usage(input=_tokens(prompt_chars(req)), output=_tokens(reply_chars))
    stop: StopReason = turn.stop_reason or ("function_call" if turn.function_calls else "end")
    await out.finish(stop)


def test_model_turn(req: StreamRequest) -> Turn:
    """No script: call each tool once, then report; with no tools, say hello."""
    messages = req.messages
    if messages and isinstance(messages[-1], FunctionResultMessage):
        results = 0
        for message in reversed(messages):
            if not isinstance(message, FunctionResultMessage):
                break
            results += 1
        return Turn(text=f"Done: called {results} function(s).")
    if req.tools:
        return Turn(
            function_calls=[ScriptedCall(function_id=tool.name, arguments=_object_example(tool)) for tool in req.tools]
        )
    return Turn(text=HELLO)


def prompt_chars(req: StreamRequest) -> int:
    total = len(req.system_prompt or "")
    for message in req.messages:
        if isinstance(message, FunctionResultMessage):
            total += len(result_text(message))
        elif isinstance(message, UserMessage | AssistantMessage):
            content = message.content
            if isinstance(content, str):
                total += len(content)
                continue
            for block in content:
                if isinstance(block, TextBlock | ThinkingBlock):
                    total += len(block.text)
                elif isinstance(block, FunctionCallBlock):
                    total += len(json.dumps(block.arguments))
        elif isinstance(message, CustomMessage):
            total += len(text_of(message.content))
    return total


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


async def _paced(text: str, turn: Turn) -> AsyncIterator[str]:
    """`text` in `chunk_size` pieces, `chunk_delay_ms` apart."""
    size = turn.chunk_size or len(text) or 1
    for i in range(0, len(text), size):
        if i and turn.chunk_delay_ms:
            await asyncio.sleep(turn.chunk_delay_ms / 1000)
        yield text[i : i + size]


def _object_example(tool: FunctionSpec) -> dict[str, Any]:
    value = example_for(tool.parameters)
    return value if isinstance(value, dict) else {}
