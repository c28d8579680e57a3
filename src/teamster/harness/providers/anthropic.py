"""Provider "anthropic": the Messages API, streamed through the official `anthropic` SDK.

The key comes from `create_worker(api_key=...)`, else from `auth::get_token {provider: 'anthropic'}` (an
OAuth credential is sent as a bearer token). Raw stream events map one to one: `content_block_start` /
`_delta` / `_stop` of type text, thinking (with its signature) and tool_use (`input_json_delta`) become
the §2.5 block events; usage comes from `message_start` and `message_delta`.

Mapping (see docs/harness/providers.md): the system prompt goes in `system`; assistant turns send text,
signed thinking and `tool_use` blocks; `function_result` messages become `tool_result` blocks in a user
turn (consecutive same-role turns are merged, as the API wants one user turn after a tool-use turn).
Function ids become tool names through `ToolNames` (`billing::charge` → `billing__charge`) and calls map
back to the original id; call ids are made safe for the API's `^[a-zA-Z0-9_-]+$`.
"""

from __future__ import annotations

import re
from typing import Any, cast

from anthropic import AsyncAnthropic, AsyncStream
from anthropic.types import RawMessageStreamEvent

from teamster.harness.contracts import (
    AssistantMessage,
    ContentBlock,
    CustomMessage,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    StopReason,
    StreamRequest,
    TextBlock,
    ThinkingBlock,
    UserMessage,
)
from teamster.harness.providers.credentials import Credentials, credential_secret
from teamster.harness.providers.errors import ProviderError
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.messages import function_ids_in, replayable, result_text, text_of
from teamster.harness.providers.tool_names import ToolNames
from teamster.harness.providers.worker import StreamFn, provider_worker
from teamster.sdk import Worker

DEFAULT_MAX_TOKENS = 8192
PLACEHOLDER_KEY = "not-needed"

_STOP: dict[str, StopReason] = {
    "end_turn": "end",
    "stop_sequence": "end",
    "pause_turn": "end",
    "max_tokens": "length",
    "tool_use": "function_call",
}
_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


def create_worker(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    name: str = "anthropic",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_retries: int = 2,
    timeout: float = 600.0,
) -> Worker:
    """The `provider::<name>::stream` worker; `max_tokens` applies when a request gives no limit."""
    stream = streamer(base_url, api_key, name=name, max_tokens=max_tokens, max_retries=max_retries, timeout=timeout)
    return provider_worker(name, stream, description=f"{name} messages provider")


def streamer(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    name: str = "anthropic",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_retries: int = 2,
    timeout: float = 600.0,
) -> StreamFn:
    """The stream function alone, for callers without an engine."""

    async def stream(req: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        key, token = await _resolve_auth(credentials, name, base_url, api_key)
        names = ToolNames(function_ids_in(req))
        body: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_output_tokens or max_tokens,
            "messages": to_anthropic_messages(req, names),
            "stream": True,
        }
        if req.system_prompt:
            body["system"] = req.system_prompt
        if req.tools:
            body["tools"] = [
                {"name": names.name(t.name), "description": t.description, "input_schema": t.parameters}
                for t in req.tools
            ]
        async with AsyncAnthropic(
            api_key=key, auth_token=token, base_url=base_url, max_retries=max_retries, timeout=timeout
        ) as client:
            events = cast(AsyncStream[RawMessageStreamEvent], await client.messages.create(**body))
            await _pump(events, out, names)

    return stream


async def _resolve_auth(
    credentials: Credentials, provider: str, base_url: str | None, api_key: str | None
) -> tuple[str | None, str | None]:
    """(api_key, auth_token): an OAuth credential goes as a bearer token, everything else as a key."""
    if api_key:
        return api_key, None
    credential = await credentials(provider)
    if credential is not None:
        secret = credential_secret(credential)
        return (None, secret) if getattr(credential, "type", None) == "oauth" else (secret, None)
    if base_url is not None:
        return PLACEHOLDER_KEY, None
    raise ProviderError(
        f"no {provider} credential: set ANTHROPIC_API_KEY or call auth::set_token {{provider: {provider!r}}}",
        "auth_expired",
    )


async def _pump(events: AsyncStream[RawMessageStreamEvent], out: EventWriter, names: ToolNames) -> None:
    kinds: dict[int, str] = {}  # the API's block index -> text | thinking | tool_use | skip
    start_input: dict[str, Any] = {}
    saw_json = False
    stop: str | None = None
    async for event in events:
        if event.type == "message_start":
            usage = event.message.usage
            out.update_usage(
                input=usage.input_tokens,
                output=usage.output_tokens,
                cache_read=usage.cache_read_input_tokens or 0,
                cache_write=usage.cache_creation_input_tokens or 0,
            )
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "text":
                kinds[event.index] = "text"
                await out.text_start()
                await out.text(block.text)
            elif block.type == "thinking":
                kinds[event.index] = "thinking"
                await out.thinking_start(block.signature or None)
                await out.thinking(block.thinking)
            elif block.type == "tool_use":
                kinds[event.index] = "tool_use"
                start_input, saw_json = dict(block.input or {}), False
                await out.function_call_start(block.id, names.function_id(block.name))
            else:  # redacted thinking, server tools: not part of the §2.5 message
                kinds[event.index] = "skip"
        elif event.type == "content_block_delta":
            delta = event.delta
            kind = kinds.get(event.index)
            if delta.type == "text_delta" and kind == "text":
                await out.text(delta.text)
            elif delta.type == "thinking_delta" and kind == "thinking":
                await out.thinking(delta.thinking)
            elif delta.type == "signature_delta" and kind == "thinking":
                out.thinking_signature(delta.signature)
            elif delta.type == "input_json_delta" and kind == "tool_use":
                saw_json = saw_json or bool(delta.partial_json)
                await out.function_call_delta(delta.partial_json)
        elif event.type == "content_block_stop":
            kind = kinds.get(event.index)
            if kind == "tool_use":
                await out.function_call_end(None if saw_json else start_input)
            elif kind in ("text", "thinking"):
                await out.end_block()
        elif event.type == "message_delta":
            if event.delta.stop_reason is not None:
                stop = event.delta.stop_reason
            du = event.usage
            out.update_usage(
                input=du.input_tokens,
                output=du.output_tokens,
                cache_read=du.cache_read_input_tokens,
                cache_write=du.cache_creation_input_tokens,
            )
        elif event.type == "message_stop":
            break
    if stop == "refusal":
        raise ProviderError("the model refused to answer", "permanent")
    if stop == "model_context_window_exceeded":
        raise ProviderError("the model's context window was exceeded", "context_overflow")
    await out.finish(_STOP.get(stop or "end_turn", "end"))


def to_anthropic_messages(req: StreamRequest, names: ToolNames) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for message in req.messages:
        if not replayable(message):
            continue
        if isinstance(message, UserMessage):
            add("user", _blocks(message.content))
        elif isinstance(message, AssistantMessage):
            blocks: list[dict[str, Any]] = []
            for block in message.content:
                if isinstance(block, TextBlock) and block.text:
                    blocks.append({"type": "text", "text": block.text})
                elif isinstance(block, ThinkingBlock) and block.signature:
                    blocks.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
                elif isinstance(block, FunctionCallBlock):
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": safe_call_id(block.id),
                            "name": names.name(block.function_id),
                            "input": block.arguments,
                        }
                    )
            add("assistant", blocks)
        elif isinstance(message, FunctionResultMessage):
            content = _blocks(message.content) or [{"type": "text", "text": result_text(message) or "(no output)"}]
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": safe_call_id(message.function_call_id),
                "content": content,
            }
            if message.is_error:
                result["is_error"] = True
            add("user", [result])
        elif isinstance(message, CustomMessage):
            text = text_of(message.content)
            if text:
                add("user", [{"type": "text", "text": text}])
    return out


def safe_call_id(call_id: str) -> str:
    return _UNSAFE_ID.sub("_", call_id) or "call"


def _blocks(content: str | list[ContentBlock]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, TextBlock) and block.text:
            blocks.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": block.mime, "data": block.data}})
    return blocks
