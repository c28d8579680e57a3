"""Provisioning: the system prompt (mode, identity, skills) and the functions the model is offered."""

from __future__ import annotations

from teamster.harness.contracts import FunctionDescriptions, FunctionSpec, SkillListing, SkillText
from teamster.harness.orchestrator.record import RunSpec
from teamster.harness.orchestrator.runtime import Runtime

AGENT_TRIGGER = "agent_trigger"
MODES = {
    "agent": "You are in agent mode: work the task through to the end, calling functions as you need them.",
    "plan": "You are in plan mode: lay out the steps you would take and the functions you would call; call none.",
    "ask": "You are in ask mode: answer the question; call a function only when the answer depends on it.",
}
IDENTITY = (
    "You run inside teamster, a harness where every capability is a function on a shared bus. "
    f"Call any function with the `{AGENT_TRIGGER}` tool, giving its id (like `billing::charge`) and a payload. "
    "Some calls are checked by policy or wait for a person to approve them; a denied call comes back "
    "with the reason, so adapt rather than retry it unchanged."
)


def agent_trigger_spec() -> FunctionSpec:
    return FunctionSpec(
        name=AGENT_TRIGGER,
        description="Call a function on the bus by id, with a JSON payload.",
        parameters={
            "type": "object",
            "properties": {
                "function": {"type": "string", "description": "The function id, e.g. `state::get`."},
                "payload": {"type": "object", "description": "The function's input."},
            },
            "required": ["function"],
        },
    )


async def system_prompt(runtime: Runtime, request: RunSpec) -> str:
    """A non-empty `system_prompt` on the run wins verbatim; otherwise mode, identity and skills."""
    if request.system_prompt:
        return request.system_prompt
    parts = [MODES[request.mode or "agent"], IDENTITY]
    if runtime.settings.skills:
        parts.extend(await _skills(runtime))
    return "\n\n".join(parts)


async def _skills(runtime: Runtime) -> list[str]:
    listing = SkillListing.model_validate(await runtime.call("directory::skills::list", {})).skills
    if not listing:
        return []
    index = "\n".join(f"- iii://{s.id}: {s.title} — {s.description}" for s in listing)
    parts = [f"Skills you can read with `directory::skills::get`:\n{index}"]
    for skill in listing:
        if skill.default:
            body = SkillText.model_validate(await runtime.call("directory::skills::get", {"id": skill.id})).body
            parts.append(f"# iii://{skill.id}\n\n{body.strip()}")
    return parts


async def function_specs(runtime: Runtime, function_ids: list[str], meta: bool = True) -> list[FunctionSpec]:
    """The meta-tool (unless `meta` is off), plus each requested function as a native tool with its schema."""
    specs = [agent_trigger_spec()] if meta else []
    if function_ids:
        info = await runtime.call("engine::functions::info", {"function_ids": function_ids})
        found = {row.function_id: row for row in FunctionDescriptions.model_validate(info).functions}
        for function_id in function_ids:
            row = found.get(function_id)
            if row is None:
                raise LookupError(f"run::start names function {function_id}, which no worker serves")
            schema = row.request_format or {"type": "object", "properties": {}}
            specs.append(FunctionSpec(name=function_id, description=row.description or "", parameters=schema))
    return specs
