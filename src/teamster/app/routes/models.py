"""`/models` and `/credentials`: which models can run here, and the API keys that unlock the cloud ones."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from teamster.app.context import App
from teamster.app.errors import ApiError
from teamster.app.http import Request, Route
from teamster.app.schemas import ModelList, ModelRow, Ok, ProviderList, ProviderStatus, TokenBody
from teamster.harness import catalog
from teamster.harness.contracts import Model
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode

RUNNABLE = frozenset({"scripted", "local", "openai", "anthropic"})  # providers with a stream worker
KEYLESS = frozenset({"scripted", "local"})
SOURCES: dict[str, Literal["env", "file"]] = {"stored": "file", "environment": "env"}


def routes(app: App) -> list[Route]:
    async def configured() -> dict[str, Any]:
        found = await app.worker.trigger("auth::list_providers", {})
        return {row["provider"]: row for row in found["providers"]}

    async def models(req: Request) -> ModelList:
        keys = await configured()
        try:
            listed = [Model.model_validate(m) for m in (await app.worker.trigger("models::list", {}))["models"]]
        except InvocationError as exc:
            if exc.code != ErrorCode.FUNCTION_NOT_FOUND:
                raise
            listed = list(catalog.load([catalog.SHIPPED]).values())  # the thin profile runs no catalog worker
        return ModelList(models=[_row(model, keys) for model in listed])

    async def credentials(req: Request) -> ProviderList:
        rows = (await configured()).values()
        return ProviderList(
            providers=[
                ProviderStatus(
                    provider=row["provider"], configured=row["configured"], source=SOURCES.get(row["source"])
                )
                for row in rows
            ]
        )

    async def store(req: Request) -> Ok:
        body: TokenBody = req.body
        provider = _provider(req)
        await app.worker.trigger(
            "auth::set_token", {"provider": provider, "credential": {"type": "api_key", "key": body.token}}
        )
        return Ok()

    async def forget(req: Request) -> Ok:
        await app.worker.trigger("auth::delete_token", {"provider": _provider(req)})
        return Ok()

    return [
        Route("GET", "models", "models::list", models, "Models, and whether each can run here now", reply=ModelList),
        Route(
            "GET",
            "credentials",
            "credentials::list",
            credentials,
            "Which providers have a key (never the key)",
            reply=ProviderList,
        ),
        Route(
            "PUT",
            "credentials/:provider",
            "credentials::set",
            store,
            "Store a provider's API key",
            body=TokenBody,
            reply=Ok,
        ),
        Route(
            "DELETE", "credentials/:provider", "credentials::delete", forget, "Forget a provider's stored key", reply=Ok
        ),
    ]


def _provider(req: Request) -> str:
    provider = req.params["provider"]
    if not provider.replace("-", "").replace("_", "").isalnum() or len(provider) > 100:
        raise ApiError.invalid(f"provider: {provider!r} is not a provider name")
    return provider


def _row(model: Model, keys: dict[str, Any]) -> ModelRow:
    provider = model.provider
    price = model.pricing
    if provider == "local":
        available, label = (
            importlib.util.find_spec("llama_cpp") is not None,
            f"{model.display_name or model.id} · local, on this machine",
        )
    elif provider == "scripted":
        available, label = True, "scripted · test model, no AI"
    else:
        has_key = bool(keys.get(provider, {}).get("configured"))
        available, label = provider in RUNNABLE and has_key, f"{model.display_name or model.id} · {provider}"
    return ModelRow(
        id=model.id,
        provider=provider,
        label=label,
        available=available,
        local=provider in KEYLESS,
        context_window=model.context_window,
        input_per_1m=price.input_per_1m if price else 0.0,
        output_per_1m=price.output_per_1m if price else 0.0,
    )
