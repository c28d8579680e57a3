"""auth-credentials: stored first, then the environment; a 0600 file replaced atomically; never a secret in status."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.credentials import ENV_VARS, create_worker
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, expect_bad_input

SECRET = "sk-test-0123456789-wxyz"


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own keys must not leak into (or out of) these tests."""
    for env_var in set(ENV_VARS.values()):
        monkeypatch.delenv(env_var, raising=False)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "credentials.json"


@pytest.fixture
async def client(connect: Connect, path: Path) -> Worker:
    await connect(create_worker(path=path))
    return await connect(Worker("client"))


async def test_set_get_status_delete(client: Worker, path: Path) -> None:
    credential = {"type": "api_key", "key": SECRET}
    assert await client.trigger("auth::set_token", {"provider": "openai", "credential": credential}) == {"ok": True}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(await asyncio.to_thread(path.read_text)) == {"openai": credential}
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temp file left behind

    assert await client.trigger("auth::get_token", {"provider": "openai"}) == credential
    status = await client.trigger("auth::status", {"provider": "openai"})
    assert status == {"configured": True, "source": "stored", "label": "api key …wxyz"}
    assert SECRET not in json.dumps(status)

    assert await client.trigger("auth::delete_token", {"provider": "openai"}) == {"deleted": True}
    assert await client.trigger("auth::delete_token", {"provider": "openai"}) == {"deleted": False}
    assert await client.trigger("auth::get_token", {"provider": "openai"}) is None
    assert await client.trigger("auth::status", {"provider": "openai"}) == {
        "configured": False,
        "source": None,
        "label": None,
    }
    assert json.loads(await asyncio.to_thread(path.read_text)) == {}


async def test_environment_fallback_and_stored_wins(client: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOONSHOT_API_KEY", "env-key-000000-abcd")
    env_credential = {"type": "api_key", "key": "env-key-000000-abcd"}
    assert await client.trigger("auth::get_token", {"provider": "kimi-coding"}) == env_credential
    assert await client.trigger("auth::status", {"provider": "kimi"}) == {
        "configured": True,
        "source": "environment",
        "label": "api key …abcd",
    }

    stored = {"type": "api_key", "key": SECRET}
    await client.trigger("auth::set_token", {"provider": "kimi", "credential": stored})
    assert await client.trigger("auth::get_token", {"provider": "kimi"}) == stored
    assert (await client.trigger("auth::status", {"provider": "kimi"}))["source"] == "stored"
    await client.trigger("auth::delete_token", {"provider": "kimi"})
    assert await client.trigger("auth::get_token", {"provider": "kimi"}) == env_credential


async def test_oauth_credentials_and_short_secrets(client: Worker) -> None:
    oauth = {"type": "oauth", "access_token": "at-0123456789-1234", "refresh_token": "rt-secret", "expires_at": 99}
    await client.trigger("auth::set_token", {"provider": "anthropic", "credential": oauth})
    assert await client.trigger("auth::get_token", {"provider": "anthropic"}) == {
        **oauth,
        "scopes": None,
        "provider_extra": None,
    }
    status = await client.trigger("auth::status", {"provider": "anthropic"})
    assert status == {"configured": True, "source": "stored", "label": "oauth token …1234"}
    assert "rt-secret" not in json.dumps(status)

    # Four characters of a short key would be most of it: the label then shows none.
    await client.trigger("auth::set_token", {"provider": "groq", "credential": {"type": "api_key", "key": "k-12345"}})
    assert (await client.trigger("auth::status", {"provider": "groq"}))["label"] == "api key"


async def test_list_providers(client: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "env-key-000000-abcd")
    await client.trigger("auth::set_token", {"provider": "my_proxy", "credential": {"type": "api_key", "key": SECRET}})
    listing = await client.trigger("auth::list_providers", {})
    rows = {row["provider"]: row for row in listing["providers"]}
    assert [row["provider"] for row in listing["providers"]] == sorted(rows)
    assert rows.keys() == ENV_VARS.keys() | {"my_proxy"}
    assert rows["my_proxy"] == {"provider": "my_proxy", "configured": True, "source": "stored", "env_var": None}
    assert rows["mistral"] == {
        "provider": "mistral",
        "configured": True,
        "source": "environment",
        "env_var": "MISTRAL_API_KEY",
    }
    assert rows["openai"] == {"provider": "openai", "configured": False, "source": None, "env_var": "OPENAI_API_KEY"}
    text = json.dumps(listing)
    assert SECRET not in text and "env-key-000000-abcd" not in text
    assert await client.trigger("auth::list_providers") == listing  # no payload at all is fine too


async def test_concurrent_sets_all_land(client: Worker, path: Path) -> None:
    providers = [f"p{i}" for i in range(12)]
    await asyncio.gather(
        *(
            client.trigger("auth::set_token", {"provider": p, "credential": {"type": "api_key", "key": f"key-{p}"}})
            for p in providers
        )
    )
    assert sorted(json.loads(await asyncio.to_thread(path.read_text))) == sorted(providers)


@pytest.mark.parametrize(
    "content",
    ["{not json", '["a list"]', '{"openai": {"type": "api_key"}}', '{"openai": {"type": "password", "key": "sk-x"}}'],
)
async def test_a_corrupt_file_is_an_error_not_a_reset(client: Worker, path: Path, content: str) -> None:
    path.parent.mkdir(parents=True)
    await asyncio.to_thread(path.write_text, content)
    for function_id, payload in [
        ("auth::get_token", {"provider": "openai"}),
        ("auth::status", {"provider": "openai"}),
        ("auth::list_providers", {}),
        ("auth::set_token", {"provider": "openai", "credential": {"type": "api_key", "key": SECRET}}),
        ("auth::delete_token", {"provider": "openai"}),
    ]:
        with pytest.raises(InvocationError) as caught:
            await client.trigger(function_id, payload)
        assert caught.value.code == "CREDENTIALS_CORRUPT"
        assert str(path) in caught.value.message and "fix or remove it" in caught.value.message
        assert "sk-x" not in caught.value.message
    assert await asyncio.to_thread(path.read_text) == content


async def test_in_process(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with create_worker().attach(engine), Worker("client").attach(engine) as client:
        credential = {"type": "api_key", "key": SECRET}
        await client.trigger("auth::set_token", {"provider": "fireworks", "credential": credential})
        assert await client.trigger("auth::get_token", {"provider": "fireworks"}) == credential
    default = tmp_path / ".teamster" / "credentials.json"
    assert stat.S_IMODE(os.stat(default).st_mode) == 0o600


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("auth::get_token", {}, "provider"),
        ("auth::status", {"provider": "Open AI"}, "provider"),
        ("auth::delete_token", {"provider": "../etc"}, "provider"),
        ("auth::set_token", {"provider": "openai"}, "credential"),
        ("auth::set_token", {"provider": "openai", "credential": {"type": "api_key"}}, "credential.api_key.key"),
        ("auth::set_token", {"provider": "Open AI", "credential": {"type": "api_key", "key": SECRET}}, "provider"),
        ("auth::set_token", {"provider": "openai", "credential": {"type": "password", "key": SECRET}}, "credential"),
    ],
)
async def test_bad_input_is_a_deserialization_error(
    client: Worker, function_id: str, payload: dict[str, Any], field: str
) -> None:
    error = await expect_bad_input(client, function_id, payload, field)
    assert SECRET[-8:] not in error.message


async def test_the_directory_it_creates_is_its_owners_alone(client: Worker, path: Path) -> None:
    previous = os.umask(0o022)  # under which a plain mkdir gives 0755
    try:
        credential = {"type": "api_key", "key": SECRET}
        await client.trigger("auth::set_token", {"provider": "openai", "credential": credential})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
