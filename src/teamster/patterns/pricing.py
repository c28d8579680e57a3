"""Cost of a call from the model catalog; a model the catalog does not know is priced as gpt-5.5."""

from __future__ import annotations

from functools import cache

from teamster.harness import catalog
from teamster.harness.contracts import Model, Pricing

FALLBACK = ("openai", "gpt-5.5")


@cache
def _models() -> dict[tuple[str, str], Model]:
    return catalog.load([catalog.SHIPPED])


def provider_of(model: str) -> str:
    """The catalog's provider for a model id; `scripted:<book>` is scripted, anything unknown is openai."""
    if model == "scripted" or model.startswith("scripted:"):
        return "scripted"
    return next((provider for provider, model_id in _models() if model_id == model), "openai")


def pricing(provider: str, model: str) -> Pricing:
    if provider == "scripted":
        model = "scripted"
    found = _models().get((provider, model)) or _models()[FALLBACK]
    return found.pricing or Pricing(input_per_1m=0, output_per_1m=0)


def cost_usd(price: Pricing, input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * price.input_per_1m + output_tokens * price.output_per_1m) / 1_000_000
