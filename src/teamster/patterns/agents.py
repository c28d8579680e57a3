"""The `Agents` port: what a pattern asks of a backend, and what it gets back.

A pattern describes one agent call (`AgentCall`: who, system prompt, prompt, tools, step cap) and gets an
`AgentResult`: the steps the model took, each tool call with the value its tool recorded, and the usage
summed over all steps. Backends (`inproc`, `engine`) implement `Agents`; patterns never see which one runs,
and neither does whoever drives a run: answering a human-input request and showing calls that wait for
approval go through the port too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from teamster.patterns.events import ApprovalRequest
from teamster.patterns.tools import Tool, ToolPayload

R = TypeVar("R", bound=ToolPayload)


@dataclass(frozen=True, slots=True)
class AgentCall:
    agent: str  # the name events show, and the key a scripted book answers by
    system: str
    prompt: str
    tools: Sequence[Tool[Any, Any]] = ()
    max_steps: int = 5


@dataclass(slots=True)
class ToolUse:
    name: str  # the pattern tool's name, e.g. "critique"
    arguments: dict[str, Any]
    result: Any  # what the tool recorded; for an error, the error text
    is_error: bool = False


@dataclass(slots=True)
class Step:
    index: int
    text: str
    tool_uses: list[ToolUse] = field(default_factory=list)


@dataclass(slots=True)
class AgentResult:
    steps: list[Step] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def text(self) -> str:
        """The text of the last step that said something."""
        return next((s.text for s in reversed(self.steps) if s.text.strip()), "")

    def results(self, tool: Tool[Any, R]) -> list[R]:
        """What every successful call of `tool` recorded, in call order."""
        return [tool.read(u.result) for s in self.steps for u in s.tool_uses if u.name == tool.name and not u.is_error]

    def last(self, tool: Tool[Any, R]) -> R | None:
        """The latest successful record of `tool`, or None."""
        found = self.results(tool)
        return found[-1] if found else None

    def called(self, tool: Tool[Any, Any]) -> bool:
        return any(u.name == tool.name for s in self.steps for u in s.tool_uses)


class AgentError(Exception):
    """The model failed (provider error, exhausted budget, denied run): the run ends in `workflow_error`."""


class InputNotFound(Exception):
    """No human-input request is open under that id (never asked, or no longer waited for)."""


class InputClosed(Exception):
    """The human-input request was closed already: answered, timed out, or its run stopped waiting."""


OnStep = Callable[[Step], None]
OnApproval = Callable[[ApprovalRequest], None]


class Agents(Protocol):
    """One backend, bound to one run's model."""

    async def run(self, call: AgentCall, on_step: OnStep) -> AgentResult:
        """Run one agent call to its end; `on_step` sees each step as soon as it is complete."""
        ...

    async def ask(
        self, request_id: str, agent: str, question: str, timeout_s: float, announce: Callable[[], None]
    ) -> str | None:
        """Open the request, `announce()` it (emit `input_request`), then wait; None when `timeout_s` passes."""
        ...

    async def answer(self, request_id: str, answer: str) -> None:
        """Answer a request `ask` opened, once; InputNotFound or InputClosed when it cannot take the answer."""
        ...

    def show_approvals(self, on_approval: OnApproval) -> None:
        """From now on, hand every agent call that waits for a person's approval to `on_approval`."""
        ...
