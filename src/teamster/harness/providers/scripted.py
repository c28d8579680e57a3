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
import copy
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
from teamster.harness.providers.stream import (
    Credentials,
    EventWriter,
    ProviderError,
    StreamFn,
    provider_worker,
    result_text,
    text_of,
)
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


def create_worker(script: list[Turn] | list[dict[str, Any]] | None = None) -> Worker:
    """The `provider::scripted::stream` worker; `script` answers model `scripted` (and unprefixed models)."""
    scripts = Scripts([Turn.model_validate(t) for t in script] if script is not None else None)
    worker = provider_worker(NAME, streamer(scripts), description="deterministic scripted model")

    async def load(req: LoadRequest) -> LoadResult:
        return scripts.load(req)

    async def get(req: NameRequest) -> LoadRequest | None:
        return scripts.get(req.name)

    worker.register_function(
        f"provider::{NAME}::load",
        load,
        description="Load a script or a per-agent book, answered as scripted:<name>",
    )
    worker.register_function(
        f"provider::{NAME}::get", get, description="A loaded script or book by name (null when none), to replay"
    )
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


# ---- JSON Schema → an example value ----------------------------------------------------------

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def example_for(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value that satisfies `schema` for the common keywords.

    Handles `$ref` (local), `const`, `default`, `enum`, `anyOf`/`oneOf` (the first non-null branch),
    `allOf` (merged), types string/number/integer/boolean/null/array/object, required properties,
    nested objects, `minLength`/`maxLength`, `format`, `minimum`/`maximum` (and exclusive ones),
    `multipleOf`, `minItems`/`maxItems`, `uniqueItems`, `minProperties`. Not `pattern`.
    """
    if root is None:
        root = schema
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return example_for(_merge(target, rest) if rest else target, root, depth + 1)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return copy.deepcopy(schema["enum"][0])
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            rest = {k: v for k, v in schema.items() if k != key}
            pick = next((o for o in options if not _is_null(o, root)), options[0])
            return example_for(_merge(rest, pick), root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = _resolve(root, part["$ref"])
            merged = _merge(merged, part)
        return example_for(merged, root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    found = schema.get("properties")
    props: dict[str, Any] = found if isinstance(found, dict) else {}
    extra = schema.get("additionalProperties")
    out: dict[str, Any] = {}
    required = [k for k in schema.get("required", []) if isinstance(k, str)]
    for key in required:
        sub = props.get(key, extra if isinstance(extra, dict) else {})
        out[key] = example_for(sub, root, depth + 1)
    want = schema.get("minProperties", 0)
    for key, sub in props.items():
        if len(out) >= want:
            break
        if key not in out:
            out[key] = example_for(sub, root, depth + 1)
    return out


def _array(schema: dict[str, Any], root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft-04 tuple form
        prefix, items = items, schema.get("additionalItems", {})
    low = int(schema.get("minItems", 0))
    high = schema.get("maxItems")
    count = max(low, 1, len(prefix) if isinstance(prefix, list) else 0)
    if isinstance(high, int):
        count = min(count, high)
    out: list[Any] = []
    for i in range(count):
        if isinstance(prefix, list) and i < len(prefix):
            value = example_for(prefix[i], root, depth + 1)
        else:
            value = example_for(items if isinstance(items, dict) else {}, root, depth + 1)
        if schema.get("uniqueItems") and value in out:
            value = _vary(value, i)
        out.append(value)
    return out


def _vary(value: Any, i: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + i
    if isinstance(value, str):
        return f"{value}{i}"
    return value


def _string(schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    text = _FORMATS.get(fmt, "example") if isinstance(fmt, str) else "example"
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is exclusive, high, high is exclusive), for draft-04 and later forms."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_min, bool):
        low_ex = ex_min and low is not None
    elif isinstance(ex_min, int | float) and (low is None or ex_min >= low):
        low, low_ex = ex_min, True
    if isinstance(ex_max, bool):
        high_ex = ex_max and high is not None
    elif isinstance(ex_max, int | float) and (high is None or ex_max <= high):
        high, high_ex = ex_max, True
    return low, low_ex, high, high_ex


def _integer(schema: dict[str, Any]) -> int:
    low, low_ex, high, high_ex = _bounds(schema)
    lo = None if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
    hi = None if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
    value = 1
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        value = math.ceil(value / step) * step
        if hi is not None and value > hi:
            value = math.floor(hi / step) * step
    return value


def _number(schema: dict[str, Any]) -> float | int:
    low, low_ex, high, high_ex = _bounds(schema)
    step = schema.get("multipleOf")
    value: float = 1
    if low is not None and (value < low or (low_ex and value <= low)):
        value = low + 1 if low_ex else low
    if high is not None and (value > high or (high_ex and value >= high)):
        value = high - 1 if high_ex else high
    if (
        low is not None
        and high is not None
        and not ((value > low if low_ex else value >= low) and (value < high if high_ex else value <= high))
    ):
        value = (low + high) / 2
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        snapped = math.ceil(value / step) * step
        if high is not None and (snapped > high or (high_ex and snapped >= high)):
            snapped = math.floor(value / step) * step
        value = snapped
    return value


def _resolve(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node


def _merge(base: Any, extra: Any) -> dict[str, Any]:
    out = dict(base) if isinstance(base, dict) else {}
    if not isinstance(extra, dict):
        return out
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        else:
            out[key] = value
    return out


def _is_null(option: Any, root: Any) -> bool:
    if isinstance(option, dict) and "$ref" in option:
        option = _resolve(root, option["$ref"])
    return isinstance(option, dict) and option.get("type") == "null"
