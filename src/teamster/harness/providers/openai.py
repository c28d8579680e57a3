"""Provider "openai": Chat Completions streaming through the official `openai` SDK.

Any OpenAI-compatible server works through `base_url` (Ollama `http://127.0.0.1:11434/v1`, vLLM
`http://host:8000/v1`, llama.cpp's `llama-server` `http://host:8080/v1`, LM Studio …). The key comes from
`create_worker(api_key=...)`, else from `auth::get_token {provider}`; a server given by `base_url` may
need none, and then gets a placeholder.

Mapping (see docs/harness/providers.md): the system prompt becomes a `system` message; user text (and
images as data URLs) stays user; an assistant turn becomes `content` (its text blocks) plus `tool_calls`;
a `function_result` becomes `{role: tool, tool_call_id, content}`; thinking blocks are not sent back.
Function ids become tool names through `ToolNames` (`billing::charge` → `billing__charge`), and calls map
back to the original id. `reasoning_content` / `reasoning` deltas (DeepSeek, vLLM, Ollama) stream as
thinking.
"""

from __future__ import annotations

import json
from typing import Any, cast

from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from teamster.harness.contracts import (
    AssistantMessage,
    CustomMessage,
    FunctionCallBlock,
    FunctionResultMessage,
    ImageBlock,
    StopReason,
    StreamRequest,
    TextBlock,
    UserMessage,
)
from teamster.harness.providers.credentials import Credentials, credential_secret
from teamster.harness.providers.errors import ProviderError
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.messages import function_ids_in, replayable, result_text, text_of
from teamster.harness.providers.tool_names import ToolNames
from teamster.harness.providers.worker import StreamFn, provider_worker
from teamster.sdk import Worker

PLACEHOLDER_KEY = "not-needed"  # what a keyless local server is sent: the SDK insists on some key

_FINISH: dict[str, StopReason] = {
    "stop": "end",
    "length": "length",
    "tool_calls": "function_call",
    "function_call": "function_call",
}


def create_worker(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    name: str = "openai",
    max_retries: int = 2,
    timeout: float = 600.0,
) -> Worker:
    """The `provider::<name>::stream` worker (name "openai" unless given: e.g. "ollama" for a second one)."""
    stream = streamer(base_url, api_key, name=name, max_retries=max_retries, timeout=timeout)
    return provider_worker(name, stream, description=f"{name} chat-completions provider")


def streamer(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    name: str = "openai",
    max_retries: int = 2,
    timeout: float = 600.0,
) -> StreamFn:
    """The stream function alone, for callers without an engine; `max_retries` is the SDK's own retry count."""

    async def stream(req: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        key = api_key or await _resolve_key(credentials, name, base_url)
        names = ToolNames(function_ids_in(req))
        body: dict[str, Any] = {
            "model": req.model,
            "messages": to_openai_messages(req, names),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if req.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": names.name(t.name), "description": t.description, "parameters": t.parameters},
                }
                for t in req.tools
            ]
        if req.max_output_tokens is not None:
            # api.openai.com wants max_completion_tokens; compatible servers widely know only max_tokens.
            body["max_completion_tokens" if base_url is None else "max_tokens"] = req.max_output_tokens
        async with AsyncOpenAI(api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout) as client:
            chunks = cast(AsyncStream[ChatCompletionChunk], await client.chat.completions.create(**body))
            await _pump(chunks, out, names)

    return stream


async def _resolve_key(credentials: Credentials, provider: str, base_url: str | None) -> str:
    credential = await credentials(provider)
    if credential is not None:
        return credential_secret(credential)
    if base_url is not None:
        return PLACEHOLDER_KEY
    raise ProviderError(
        f"no {provider} credential: set OPENAI_API_KEY or call auth::set_token {{provider: {provider!r}}}",
        "auth_expired",
    )


async def _pump(chunks: AsyncStream[ChatCompletionChunk], out: EventWriter, names: ToolNames) -> None:
    calls: dict[int, int] = {}  # the API's tool_call index -> our content block index
    finish: str | None = None
    async for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
            details = usage.prompt_tokens_details
            cached = (details.cached_tokens if details else None) or 0
            written = (getattr(details, "cache_write_tokens", None) if details else None) or 0
            out.update_usage(
                input=max(usage.prompt_tokens - cached, 0),
                output=usage.completion_tokens,
                cache_read=cached,
                cache_write=written,
            )
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            extra = delta.model_extra or {}
            reasoning = extra.get("reasoning_content") or extra.get("reasoning")
            if isinstance(reasoning, str):
                await out.thinking(reasoning)
            if delta.content:
                await out.text(delta.content)
            if delta.refusal:
                await out.text(delta.refusal)
            for call in delta.tool_calls or []:
                fn = call.function
                if call.index not in calls:
                    function_id = names.function_id(fn.name or "") if fn else ""
                    calls[call.index] = await out.function_call_start(call.id or f"call_{call.index}", function_id)
                if fn is not None and fn.arguments:
                    await out.function_call_delta(fn.arguments, index=calls[call.index])
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    if finish == "content_filter":
        raise ProviderError("the response was stopped by the content filter", "permanent")
    await out.finish(_FINISH.get(finish or "stop", "end"))


def to_openai_messages(req: StreamRequest, names: ToolNames) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system_prompt:
        out.append({"role": "system", "content": req.system_prompt})
    for message in req.messages:
        if not replayable(message):
            continue
        if isinstance(message, UserMessage):
            out.append({"role": "user", "content": _user_content(message.content)})
        elif isinstance(message, AssistantMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": None}
            text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
            if text:
                entry["content"] = text
            calls = [
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": names.name(b.function_id), "arguments": json.dumps(b.arguments)},
                }
                for b in message.content
                if isinstance(b, FunctionCallBlock)
            ]
            if calls:
                entry["tool_calls"] = calls
            if text or calls:
                out.append(entry)
        elif isinstance(message, FunctionResultMessage):
            out.append({"role": "tool", "tool_call_id": message.function_call_id, "content": result_text(message)})
        elif isinstance(message, CustomMessage):
            text = text_of(message.content)
            if text:
                out.append({"role": "user", "content": text})
    return out


def _user_content(content: Any) -> Any:
    """A plain string when the message is only text (every compatible server takes that), else parts."""
    if isinstance(content, str):
        return content
    if not any(isinstance(b, ImageBlock) for b in content):
        return text_of(content)
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": f"data:{block.mime};base64,{block.data}"}})
    return parts
