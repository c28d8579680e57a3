"""models-catalog: what each model supports and costs, loaded from YAML and kept in memory (iii-harness.md §7.3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teamster.harness.contracts import Model
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

SHIPPED = Path(__file__).with_name("catalog.yaml")
CAPABILITIES = {
    "thinking": "supports_thinking",
    "thinking:low": "supports_thinking",
    "thinking:medium": "supports_thinking",
    "thinking:high": "supports_thinking",
    "thinking:xhigh": "supports_xhigh",
    "tools": "supports_tools",
    "vision": "supports_vision",
    "cache": "supports_cache",
}
CAPABILITY_HELP = "one of: " + ", ".join(CAPABILITIES)


class CatalogEntry(Model):
    """A model as written in a catalog file, where an unknown key is a typo and refused."""

    model_config = ConfigDict(extra="forbid")


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[CatalogEntry]


class ListRequest(BaseModel):
    provider: str | None = None
    capability: str | None = Field(default=None, description=CAPABILITY_HELP)


class ModelRef(BaseModel):
    provider: str
    model_id: str


class SupportsRequest(ModelRef):
    capability: str = Field(description=CAPABILITY_HELP)


class ModelList(BaseModel):
    models: list[Model]


class Supported(BaseModel):
    supported: bool


def load(paths: Iterable[Path]) -> dict[tuple[str, str], Model]:
    """Models by (provider, id) in file order; a later file's entry replaces an earlier one in place."""
    catalog: dict[tuple[str, str], Model] = {}
    for path in paths:
        try:
            parsed = CatalogFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"model catalog {path}: {exc}") from None
        for entry in parsed.models:
            catalog[(entry.provider, entry.id)] = entry
    return catalog


def flag(capability: str) -> str:
    """The Model field behind a capability string."""
    try:
        return CAPABILITIES[capability]
    except KeyError:
        raise InvocationError(
            ErrorCode.INVALID_CAPABILITY, f"unknown capability {capability!r}, {CAPABILITY_HELP}"
        ) from None


def create_worker(*, extra: Sequence[str | Path] = ()) -> Worker:
    """The models-catalog worker: the shipped catalog, then each `extra` YAML file merged over it."""
    catalog = load([SHIPPED, *map(Path, extra)])
    worker = Worker("models-catalog")

    @worker.function("models::list")
    async def list_models(req: ListRequest | None) -> ModelList:
        """Models in catalog order, optionally only one provider's or only those with a capability."""
        req = req or ListRequest()
        field = flag(req.capability) if req.capability is not None else None
        return ModelList(
            models=[
                model
                for model in catalog.values()
                if req.provider in (None, model.provider) and (field is None or getattr(model, field))
            ]
        )

    @worker.function("models::get")
    async def get_model(req: ModelRef) -> Model | None:
        """One model, or null when the catalog does not know it."""
        return catalog.get((req.provider, req.model_id))

    @worker.function("models::supports")
    async def supports(req: SupportsRequest) -> Supported:
        """Whether the model has the capability; an unknown model supports nothing."""
        field = flag(req.capability)
        model = catalog.get((req.provider, req.model_id))
        return Supported(supported=model is not None and bool(getattr(model, field)))

    return worker
