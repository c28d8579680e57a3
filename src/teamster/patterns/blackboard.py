"""Blackboard (v6): an analyst, a planner and a critic coordinate only through a shared board of sections.

Caps: `board_rounds` (default 8); a round ends the run when a write sets `solutionReady`, or when it is the
`stale_rounds`-th (default 2) consecutive round in which the board did not grow (no new section, no changed
content; a round without a write counts). One contributor writes per round, picked by `options.controller`:
"rotation" picks the role with the fewest contributions (roster order breaks ties); "model" asks a controller
agent, which calls chooseNext and falls back to rotation when it picks nothing valid. Every call of round r is
iteration r, the controller's too; `iterations` is the number of rounds run.
A write is applied and published (`blackboard_update`) just before the writer's `iteration_end`, as in the
reference. Deviations from it: every write of a call is applied, not only the last; the model controller is
new (the reference only suggested it).
"""

from __future__ import annotations

from collections.abc import Mapping

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import BlackboardSummary, BlackboardUpdate, Section, preview
from teamster.patterns.history import with_history
from teamster.patterns.run import Run
from teamster.patterns.tools import CHOOSE_NEXT, WRITE_SECTION, Written

ROLES = ("analyst", "planner", "critic")
CONTROLLER = "controller"
SOLUTION = "solution"
EMPTY_BOARD = "(the blackboard is empty — be the first to contribute)"

CONTROLLER_SYSTEM = (
    "You are the CONTROLLER of a blackboard team. Three contributors share the board: the analyst surfaces facts, "
    "constraints and assumptions; the planner lays out concrete steps or structure; the critic finds gaps and "
    "proposes fixes. Each round you read the board and pick the ONE contributor whose turn would move the board "
    "furthest toward a complete solution. You never write on the board yourself. Call chooseNext exactly once."
)

Board = dict[str, Section]  # by section name, in the order sections first appeared


def contributor_system(role: str) -> str:
    return (
        f'You are the "{role}" contributor on a shared BLACKBOARD team. You coordinate ONLY through the board; you '
        "never message other agents directly.\n\n"
        "Each turn you are shown the CURRENT BLACKBOARD (all sections written so far). Your job:\n"
        "- Read the whole board to understand what others have contributed.\n"
        f'- Add or refine the section(s) you, as the "{role}", are responsible for. As an analyst, surface '
        "facts/constraints/assumptions; as a planner, lay out concrete steps or structure; as a critic, find gaps "
        "and propose fixes.\n"
        "- Build on existing sections rather than repeating them. If a section is good enough, improve a different "
        "one instead.\n\n"
        "RULES:\n"
        "- Be concrete and useful: produce real content, not meta-talk.\n"
        "- Call writeSection exactly once with your contribution this turn.\n"
        "- Set solutionReady=true ONLY when the overall task is fully solved on the board; if so, write or finalize "
        'the "solution" section with the complete answer.'
    )


def render_board(board: Board) -> str:
    return "\n\n".join(f"## {s.section}  _(by {s.author})_\n{s.content}" for s in board.values()) or EMPTY_BOARD


def render_result(board: Board) -> str:
    """The board as the final markdown: the solution section first, then the others with their author."""
    lines = ["# Blackboard"]
    solution = next((s for s in board.values() if s.section.lower() == SOLUTION), None)
    if solution is not None:
        lines.append(f"\n## ✅ Solution\n{solution.content}")
    lines += [f"\n## {s.section}\n_{s.author}_\n\n{s.content}" for s in board.values() if s.section.lower() != SOLUTION]
    return "\n".join(lines)


def rotation(contributions: Mapping[str, int]) -> str:
    """The role with the fewest contributions; `min` keeps the first of equals, so roster order breaks ties."""
    return min(ROLES, key=lambda role: contributions[role])


def _written(result: AgentResult) -> str:
    writes = result.results(WRITE_SECTION)
    return writes[-1].content if writes else result.text


def _contributor_prompt(query: str, board: Board, role: str) -> str:
    return (
        f"TASK:\n{query}\n\nCURRENT BLACKBOARD:\n{render_board(board)}\n\n"
        f'You are the "{role}". Read the board above, then call writeSection once to add or refine your section. '
        "Set solutionReady=true only if the task is now fully solved."
    )


def _controller_prompt(query: str, board: Board, contributions: Mapping[str, int]) -> str:
    counts = ", ".join(f"{role} {contributions[role]}" for role in ROLES)
    return (
        f"TASK:\n{query}\n\nCURRENT BLACKBOARD:\n{render_board(board)}\n\nContributions so far: {counts}.\n\n"
        "Call chooseNext with the role that should write next."
    )


async def _choose(run: Run, round_no: int, board: Board, contributions: Mapping[str, int]) -> str:
    """The controller agent's pick, or the rotation's when it picked nothing valid."""
    fallback = rotation(contributions)

    def shown(result: AgentResult) -> str:
        choice = result.last(CHOOSE_NEXT)
        if choice is None:
            return f"{fallback} (rotation: no valid choice)"
        return f"{choice.role}: {choice.reason}" if choice.reason else choice.role

    prompt = _controller_prompt(run.query, board, contributions)
    result = await run.call(
        AgentCall(CONTROLLER, CONTROLLER_SYSTEM, prompt, [CHOOSE_NEXT], max_steps=3),
        iteration=round_no,
        preview_of=shown,
    )
    choice = result.last(CHOOSE_NEXT)  # the tool admits only roster roles
    return choice.role if choice is not None else fallback


def _apply(run: Run, board: Board, role: str, writes: list[Written]) -> None:
    """Write each section and publish it."""
    for write in writes:
        board[write.section] = Section(section=write.section, author=role, content=write.content)
        run.emit(BlackboardUpdate(section=write.section, author=role, preview=preview(write.content)))


def _contents(board: Board) -> dict[str, str]:
    """What counts for growth: section names and content, not who wrote them."""
    return {name: section.content for name, section in board.items()}


async def run(run: Run) -> None:
    opts = run.options
    run.start(CONTROLLER if opts.controller == "model" else ROLES[0])
    history = run.history()
    board: Board = {}
    contributions = dict.fromkeys(ROLES, 0)
    stale = rounds = 0
    for rounds in range(1, opts.board_rounds + 1):
        if opts.controller == "model":
            role = await _choose(run, rounds, board, contributions)
        else:
            role = rotation(contributions)
        prompt = with_history(history, _contributor_prompt(run.query, board, role))
        before = _contents(board)

        def publish(result: AgentResult, role: str = role) -> None:
            _apply(run, board, role, result.results(WRITE_SECTION))

        result = await run.call(
            AgentCall(role, contributor_system(role), prompt, [WRITE_SECTION], max_steps=3),
            iteration=rounds,
            preview_of=_written,
            on_result=publish,
        )
        contributions[role] += 1
        writes = result.results(WRITE_SECTION)
        stale = 0 if _contents(board) != before else stale + 1
        if any(w.solution_ready for w in writes) or stale >= opts.stale_rounds:
            break
    summary = BlackboardSummary(sections=list(board.values()))
    run.complete(result=render_result(board), iterations=rounds, summary=summary)
