"""models-catalog: the shipped catalog, capability checks, and extra YAML merged over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.catalog import CAPABILITIES, create_worker
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, expect_bad_input

FIREWORKS = "accounts/fireworks/models/"


@pytest.fixture
async def client(connect: Connect) -> Worker:
    await connect(create_worker())
    return await connect(Worker("client"))


async def ids(client: Worker, **filters: str) -> list[str]:
    return [m["id"] for m in (await client.trigger("models::list", filters))["models"]]


async def test_get_returns_the_whole_record(client: Worker) -> None:
    assert await client.trigger("models::get", {"provider": "openai", "model_id": "gpt-5.5"}) == {
        "id": "gpt-5.5",
        "provider": "openai",
        "api": "openai-responses",
        "display_name": "GPT-5.5",
        "context_window": 400000,
        "max_output_tokens": 128000,
        "supports_thinking": True,
        "supports_xhigh": True,
        "supports_tools": True,
        "supports_vision": True,
        "supports_cache": True,
        "pricing": {
            "input_per_1m": 1.75,
            "output_per_1m": 14.0,
            "cache_read_per_1m": 0.175,
            "cache_write_per_1m": None,
        },
    }
    sonnet = await client.trigger("models::get", {"provider": "anthropic", "model_id": "claude-sonnet-4-6"})
    assert sonnet["pricing"] == {
        "input_per_1m": 3.0,
        "output_per_1m": 15.0,
        "cache_read_per_1m": 0.3,
        "cache_write_per_1m": 3.75,
    }
    assert await client.trigger("models::get", {"provider": "openai", "model_id": "gpt-9"}) is None
    assert await client.trigger("models::get", {"provider": "anthropic", "model_id": "gpt-5.5"}) is None


async def test_the_shipped_catalog(client: Worker) -> None:
    models = (await client.trigger("models::list", {}))["models"]
    assert [(m["provider"], m["id"]) for m in models] == [
        ("openai", "gpt-5.5"),
        ("openai", "gpt-5.4"),
        ("openai", "gpt-5.4-mini"),
        ("openai", "gpt-5.4-nano"),
        ("openai", "gpt-4.1"),
        ("openai", "o4-mini"),
        ("anthropic", "claude-opus-4-8"),
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-haiku-4-5-20251001"),
        ("mistral", "mistral-large-latest"),
        ("mistral", "mistral-medium-latest"),
        ("mistral", "mistral-small-latest"),
        ("mistral", "magistral-medium-latest"),
        ("fireworks", FIREWORKS + "deepseek-v4-pro"),
        ("fireworks", FIREWORKS + "kimi-k2p6"),
        ("fireworks", FIREWORKS + "gpt-oss-120b"),
        ("local", "smollm2-135m-instruct"),
        ("scripted", "scripted"),
    ]
    prices = {
        m["id"].removeprefix(FIREWORKS): (m["pricing"]["input_per_1m"], m["pricing"]["output_per_1m"]) for m in models
    }
    # mat-patterns.md §4, every one of them.
    assert prices == {
        "gpt-5.5": (1.75, 14),
        "gpt-5.4": (1.25, 10),
        "gpt-5.4-mini": (0.25, 2),
        "gpt-5.4-nano": (0.05, 0.4),
        "gpt-4.1": (2, 8),
        "o4-mini": (1.1, 4.4),
        "claude-opus-4-8": (5, 25),
        "claude-sonnet-4-6": (3, 15),
        "claude-haiku-4-5-20251001": (1, 5),
        "mistral-large-latest": (2, 6),
        "mistral-medium-latest": (0.4, 2),
        "magistral-medium-latest": (2, 5),
        "mistral-small-latest": (0.1, 0.3),
        "deepseek-v4-pro": (0.9, 0.9),
        "kimi-k2p6": (0.6, 2.5),
        "gpt-oss-120b": (0.15, 0.6),
        "smollm2-135m-instruct": (0, 0),
        "scripted": (0, 0),
    }
    local = await client.trigger("models::get", {"provider": "local", "model_id": "smollm2-135m-instruct"})
    assert (local["display_name"], local["context_window"], local["supports_tools"]) == (
        "SmolLM2-135M-Instruct",
        8192,
        False,
    )


async def test_list_filters(client: Worker) -> None:
    assert await ids(client, provider="anthropic") == [
        "claude-opus-4-8",
        "claude-sonnet-4-6",
        "claude-haiku-4-5-20251001",
    ]
    assert await ids(client, provider="mistral", capability="vision") == [
        "mistral-medium-latest",
        "mistral-small-latest",
    ]
    assert await ids(client, provider="fireworks", capability="thinking:high") == [FIREWORKS + "gpt-oss-120b"]
    assert await ids(client, capability="thinking:xhigh") == ["gpt-5.5", "gpt-5.4"]
    assert await ids(client, provider="nobody") == []
    assert "smollm2-135m-instruct" not in await ids(client, capability="tools")


@pytest.mark.parametrize(
    ("provider", "model_id", "capability", "supported"),
    [
        ("openai", "gpt-4.1", "tools", True),
        ("openai", "gpt-4.1", "vision", True),
        ("openai", "gpt-4.1", "thinking", False),
        ("openai", "o4-mini", "thinking:medium", True),
        ("openai", "gpt-5.4-mini", "thinking:xhigh", False),
        ("anthropic", "claude-haiku-4-5-20251001", "cache", True),
        ("fireworks", FIREWORKS + "gpt-oss-120b", "vision", False),
        ("scripted", "scripted", "tools", True),
        ("local", "smollm2-135m-instruct", "tools", False),
        ("openai", "no-such-model", "tools", False),
        ("nobody", "gpt-5.5", "tools", False),
    ],
)
async def test_supports(client: Worker, provider: str, model_id: str, capability: str, supported: bool) -> None:
    payload = {"provider": provider, "model_id": model_id, "capability": capability}
    assert await client.trigger("models::supports", payload) == {"supported": supported}


@pytest.mark.parametrize(
    ("function_id", "payload"),
    [
        ("models::supports", {"provider": "openai", "model_id": "gpt-5.5", "capability": "telepathy"}),
        ("models::supports", {"provider": "openai", "model_id": "no-such-model", "capability": "thinking:extreme"}),
        ("models::list", {"capability": "Tools"}),
    ],
)
async def test_an_unknown_capability_is_an_error(client: Worker, function_id: str, payload: dict[str, Any]) -> None:
    with pytest.raises(InvocationError) as caught:
        await client.trigger(function_id, payload)
    assert caught.value.code == "INVALID_CAPABILITY"
    assert repr(payload["capability"]) in caught.value.message
    assert all(capability in caught.value.message for capability in CAPABILITIES)


async def test_extra_yaml_overrides_and_adds(engine: Engine, tmp_path: Path) -> None:
    extra = tmp_path / "models.yaml"
    extra.write_text(
        """
models:
  - {provider: openai, id: gpt-5.5, context_window: 1000, pricing: {input_per_1m: 1, output_per_1m: 2}}
  - provider: local
    id: qwen3-0.6b
    display_name: Qwen3 0.6B
    context_window: 32768
    supports_thinking: true
"""
    )
    async with create_worker(extra=[extra]).attach(engine), Worker("client").attach(engine) as client:
        listed = await ids(client)
        assert listed[0] == "gpt-5.5" and listed[-1] == "qwen3-0.6b" and len(listed) == 19
        assert await client.trigger("models::get", {"provider": "openai", "model_id": "gpt-5.5"}) == {
            "id": "gpt-5.5",
            "provider": "openai",
            "api": "",
            "display_name": "",
            "context_window": 1000,
            "max_output_tokens": None,
            "supports_thinking": False,
            "supports_xhigh": False,
            "supports_tools": True,
            "supports_vision": False,
            "supports_cache": False,
            "pricing": {
                "input_per_1m": 1.0,
                "output_per_1m": 2.0,
                "cache_read_per_1m": None,
                "cache_write_per_1m": None,
            },
        }
        assert await ids(client, provider="local", capability="thinking") == ["qwen3-0.6b"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("models:\n  - {provider: openai, id: x, context_window: 1, context_windw: 2}\n", "context_windw"),
        ("models:\n  - {provider: openai, id: x}\n", "context_window"),
        ("- just a list\n", "models"),
        ("models: [\n", "while parsing"),
    ],
)
def test_a_bad_extra_file_stops_the_worker(tmp_path: Path, content: str, problem: str) -> None:
    extra = tmp_path / "models.yaml"
    extra.write_text(content)
    with pytest.raises(ValueError, match=problem) as caught:
        create_worker(extra=[extra])
    assert str(extra) in str(caught.value)


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("models::get", {"model_id": "gpt-5.5"}, "provider"),
        ("models::get", {"provider": "openai"}, "model_id"),
        ("models::supports", {"provider": "openai", "model_id": "gpt-5.5"}, "capability"),
        ("models::list", {"provider": 5}, "provider"),
    ],
)
async def test_bad_input_is_a_deserialization_error(
    client: Worker, function_id: str, payload: dict[str, Any], field: str
) -> None:
    await expect_bad_input(client, function_id, payload, field)
