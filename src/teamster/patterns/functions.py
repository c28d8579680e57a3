"""The `patterns` worker: every pattern tool as a function, and human input that survives a page reload.

Tools are registered under their function ids (`pattern::<name>`) with their JSON Schemas, so the
orchestrator offers them to the model as native tools; policy, approvals and hooks apply to them like to
any function. A pending question (`requestUserInput`) is a record in state scope `pattern_inputs`, keyed
by its request id: `patterns::input::pending` lists the open ones, `patterns::input::resolve` answers one.

A request closes once: whoever closes it (an answer, the asker's timeout, the run ending) appends to its
`closes` list in one atomic `state::update`, and the first entry wins, so two answers racing, or an answer
racing the timeout, can never both count.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from teamster.patterns.tools import ALL, Shape, Tool, ToolError
from teamster.protocol import InvocationError
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker
from teamster.sdk.state import update_state

INPUTS = "pattern_inputs"  # state scope: one InputRecord per request id


class InputClose(BaseModel):
    """How a request ended: answered by a person, timed out, or its run stopped waiting."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)  # tells the winner apart from an equal loser
    reason: Literal["answered", "timed_out", "cancelled"]
    answer: str | None = None
    at: int = Field(default_factory=lambda: now_ms())


class InputRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str
    run_id: str | None = None
    session_id: str | None = None  # the run's root session on the engine
    agent: str
    question: str
    asked_at: int
    closes: list[InputClose] = Field(default_factory=list)  # the first one counts

    @property
    def closed(self) -> InputClose | None:
        return self.closes[0] if self.closes else None


class PendingQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str | None = None


class PendingInput(BaseModel):
    request_id: str
    run_id: str | None
    session_id: str | None
    agent: str
    question: str
    asked_at: int


class PendingList(BaseModel):
    requests: list[PendingInput]


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1)
    answer: str = Field(max_length=20_000)


class Resolved(BaseModel):
    request_id: str
    ok: bool = True


async def close_input(worker: Worker, request_id: str, close: InputClose) -> InputClose:
    """Close a stored request; returns the close that counts (ours, or an earlier one)."""
    updated = await update_state(
        worker, INPUTS, request_id, {"type": "append", "path": "closes", "value": close.model_dump(mode="json")}
    )
    return InputClose.model_validate(updated.new_value["closes"][0])


def create_worker() -> Worker:
    """The `patterns` worker, ready to connect or attach."""
    worker = Worker("patterns", description="Pattern tools and human input")
    for tool in ALL:
        _serve(worker, tool)

    @worker.function("patterns::input::pending", description="Open human-input requests, oldest first")
    async def pending(req: PendingQuery) -> PendingList:
        rows = [InputRecord.model_validate(row) for row in await worker.trigger("state::list", {"scope": INPUTS})]
        open_rows = [r for r in rows if r.closed is None and (req.run_id is None or r.run_id == req.run_id)]
        open_rows.sort(key=lambda r: (r.asked_at, r.request_id))
        return PendingList(requests=[PendingInput.model_validate(r.model_dump()) for r in open_rows])

    @worker.function("patterns::input::resolve", description="Answer a human-input request, once")
    async def resolve(req: Answer) -> Resolved:
        if await worker.trigger("state::get", {"scope": INPUTS, "key": req.request_id}) is None:
            raise InvocationError(ErrorCode.INPUT_NOT_FOUND, f"no input request {req.request_id}")
        mine = InputClose(reason="answered", answer=req.answer)
        won = await close_input(worker, req.request_id, mine)
        if won.id == mine.id:
            return Resolved(request_id=req.request_id)
        if won.reason == "answered":
            raise InvocationError(ErrorCode.INPUT_ANSWERED, f"input request {req.request_id} was already answered")
        ended = "timed out" if won.reason == "timed_out" else "was closed: its run stopped waiting"
        raise InvocationError(ErrorCode.INPUT_CLOSED, f"input request {req.request_id} {ended}")

    return worker


def _serve(worker: Worker, tool: Tool[Any, Any]) -> None:
    """Register one tool under its function id: `tool.execute` decides, a ToolError is a clear error."""

    async def handle(arguments: Any) -> dict[str, Any]:
        try:
            return tool.execute(arguments)
        except ToolError as exc:
            raise InvocationError(ErrorCode.INPUT_INVALID_ARGUMENTS, str(exc)) from None

    # The SDK derives the request schema, and validation, from the first parameter's type.
    handle.__annotations__ = {"arguments": _unchecked(tool.args), "return": dict[str, Any]}
    worker.register_function(tool.function_id, handle, description=tool.description)


def _unchecked(args: type[Shape]) -> type[Shape]:
    """`args` with its JSON Schema unchanged but no validation: the tool validates, in the words inproc uses,
    so a model that sends bad arguments reads the same reason on both backends."""

    class Arguments(args):  # type: ignore[valid-type,misc]
        model_config = ConfigDict(title=args.model_config.get("title") or args.__name__)

        @model_validator(mode="wrap")
        @classmethod
        def _as_given(cls, data: Any, handler: Any) -> Any:
            return data  # the raw arguments reach the handler

    return Arguments
