"""Money: the budget check before a provider call and the pricing and recording of its usage after it."""

from __future__ import annotations

from pydantic import ValidationError

from teamster.harness.contracts import AgentMessage, AssistantMessage, BudgetCheck, Model, estimate_tokens
from teamster.harness.harness_events import BudgetExceeded
from teamster.harness.orchestrator.record import RunSpec, TurnRecord
from teamster.harness.orchestrator.runtime import Runtime, own_message, stage
from teamster.protocol import InvocationError


async def refusal(
    rt: Runtime, rec: TurnRecord, request: RunSpec, messages: list[AgentMessage]
) -> AssistantMessage | None:
    """Check the cap before the call with the prompt's input cost; a refusal (or no answer) stops the run."""
    budget_id, model, provider = request.budget_id or "", request.model, request.provider
    prompt_chars = len(request.system_prompt) + sum(len(spec.model_dump_json()) for spec in request.function_schemas)
    estimate = cost(rec.model_meta, estimate_tokens(messages) + prompt_chars // 4, 0)
    try:
        raw = await rt.call("budget::check", {"budget_id": budget_id, "estimated_cost_usd": estimate})
        verdict = BudgetCheck.model_validate(raw)
    except (InvocationError, ValidationError) as exc:
        problem = exc.message if isinstance(exc, InvocationError) else "malformed reply"
        verdict = BudgetCheck(allowed=False, reason=f"budget unreachable: {problem}")
    if verdict.allowed:
        return None
    reason = verdict.reason or "ceiling_exceeded"
    exceeded = BudgetExceeded(
        budget_id=budget_id, reason=reason, remaining_usd=verdict.remaining_usd, estimated_cost_usd=estimate
    )
    stage(rec, exceeded)
    text = f"Budget exceeded: the run stopped before calling the model ({reason}; estimated ${estimate:.4f})."
    return own_message(text, "error", error_kind="permanent", model=model, provider=provider)


async def price(rt: Runtime, rec: TurnRecord, budget_id: str | None, message: AssistantMessage) -> None:
    """Cost from the catalog's prices, then recorded against the run's budget."""
    usage = message.usage
    if usage is None:
        return
    if usage.cost_usd is None:
        usage.cost_usd = cost(rec.model_meta, usage.input + usage.cache_read + usage.cache_write, usage.output)
    if rt.settings.budgets and budget_id and usage.cost_usd:
        await rt.call("budget::record", {"budget_id": budget_id, "cost_usd": usage.cost_usd})


def cost(model: Model | None, input_tokens: int, output_tokens: int) -> float:
    """USD at the catalog's prices; nothing when the catalog has no prices for the model."""
    pricing = model.pricing if model is not None else None
    if pricing is None:
        return 0.0
    return (input_tokens * pricing.input_per_1m + output_tokens * pricing.output_per_1m) / 1e6
