"""Hierarchical (v3): a lead decomposes the task into sub-agents, which may decompose again; parents synthesise.

Caps: `max_depth` (default 2; the root is depth 0), `max_children` (default 4 per node) and `max_nodes`
(default 15, the root included). The node cap holds with parallel children: the root owns `max_nodes - 1`
slots, and a parent hands each child its share of the slots it did not use for the children themselves
(earlier siblings get the remainder) before it launches them, so no race decides which nodes exist. Spawns
past a cap are not run; the parent's synthesis prompt lists them so it can cover them itself.
Agent calls are named by node id (`root`, `root.0`, `root.0.1`…), which is also how a scripted book
addresses one node; the role is on `agent_spawn`. A node's iteration number is reserved with its slot, so
numbers are unique, deterministic and ≤ `max_nodes` (a subtree that spawns less leaves numbers unused).
Deviations from the reference: the node cap holds (the reference could run 21 nodes); iteration numbers are
per node, not a racy global counter; a node that cannot spawn is not offered `spawnSubAgent`; the history
reaches the root; no web search.
"""

from __future__ import annotations

from dataclasses import dataclass

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import AgentSpawn
from teamster.patterns.history import with_history
from teamster.patterns.parallel import gather_all
from teamster.patterns.run import Run
from teamster.patterns.tools import FINALIZE, REPORT, SPAWN, ReportArgs, Spawn

ROOT = "root"
LEAD = "lead"

RULES = (
    "RULES:\n"
    "- Be concrete and useful. Produce real content (specs, code, analysis), not meta-talk.\n"
    "- Always end by calling finalize exactly once with your deliverable."
)
REPORT_GUIDANCE = (
    "When the content has data worth visualizing, also call generateReport: put comparison or tabular data in its "
    "`tables` (columns + rows), not as markdown tables in prose, numeric series in `charts`, headline metrics in "
    "`kpis`, and use `sections` only for narrative. Use real numbers from the sub-agents' work."
)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    parent_id: str | None
    role: str
    task: str
    depth: int
    iteration: int
    first_free: int  # the first iteration number reserved for this node's descendants
    budget: int  # how many descendants this node may add: its share of `max_nodes`


def _answer(result: AgentResult) -> str:
    """The finalized deliverable, or what the agent said when it did not finalize."""
    finalized = result.last(FINALIZE)
    return finalized.deliverable if finalized is not None and finalized.deliverable.strip() else result.text


def _parts(limit: int) -> str:
    return f"2–{limit}" if limit > 1 else "1"


def _guidance(node: Node, limit: int) -> str:
    """What the node may do about delegation; `limit` is how many children it may have (0: none)."""
    if limit == 0:
        return "You CANNOT delegate. Do the work yourself, then call finalize with your deliverable."
    if node.depth == 0:
        return (
            f"You are the LEAD. Your job is to DECOMPOSE this task, not answer it yourself. Identify its "
            f"{_parts(limit)} natural parts and call spawnSubAgent once per part, each with a focused role and a "
            "self-contained task. Do this in ONE batch, then stop and wait for their results. Do NOT call "
            "finalize on the first turn, and do NOT do the work yourself unless the task is genuinely a single "
            "indivisible step."
        )
    return (
        f"You MAY break this task down. If it has clearly separable parts, call spawnSubAgent once per part (at most "
        f"{limit}) in ONE batch, giving each child a focused role and a self-contained task, then stop and wait. "
        "Spawn ONLY when delegation genuinely helps; otherwise do the work yourself and call finalize."
    )


def _system(role: str, guidance: str) -> str:
    return (
        f'You are a "{role}" agent in a hierarchical team. Your job is to fulfil the task you are given.\n\n'
        f"{guidance}\n\n{RULES}"
    )


def _synthesis_prompt(node: Node, children: list[Node], outputs: list[str], dropped: list[Spawn]) -> str:
    results = "\n\n---\n\n".join(
        f"### {child.role}\nTask: {child.task}\n\nResult:\n{output}"
        for child, output in zip(children, outputs, strict=True)
    )
    uncovered = "".join(f"- {s.role}: {s.task}\n" for s in dropped)
    note = (
        f"These parts were not delegated because the team's size caps were reached; cover them yourself:\n{uncovered}\n"
        if dropped
        else ""
    )
    return (
        f"Original task: {node.task}\n\nYour sub-agents returned these results:\n\n{results}\n\n{note}"
        "Synthesize them into a single, coherent deliverable that fulfils the original task. Integrate the parts, "
        "resolve overlaps, and call finalize with the combined result."
    )


def _report_markdown(report: ReportArgs) -> str:
    """A report as markdown: the result when the root synthesis reported without finalizing."""
    sections = "".join(f"\n\n## {s.heading}\n\n{s.body}" for s in report.sections)
    return f"# {report.title}\n\n{report.summary}{sections}"


def _children(node: Node, spawns: list[Spawn]) -> list[Node]:
    """Children for `spawns`, numbered right after the parent's reserved numbers, each with its share of slots."""
    count = len(spawns)
    base, extra = divmod(node.budget - count, count)
    free = node.first_free + count
    children: list[Node] = []
    for i, spawn in enumerate(spawns):
        share = base + (1 if i < extra else 0)
        children.append(
            Node(
                id=f"{node.id}.{i}",
                parent_id=node.id,
                role=spawn.role,
                task=spawn.task,
                depth=node.depth + 1,
                iteration=node.first_free + i,
                first_free=free,
                budget=share,
            )
        )
        free += share
    return children


class Hierarchy:
    """One run's tree: runs nodes recursively and keeps what the final event reports."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.options = run.options
        self.history = run.history()
        self.nodes_run = 0
        self.report: ReportArgs | None = None

    def spawned(self, node: Node) -> None:
        self.run.emit(
            AgentSpawn(id=node.id, parent_id=node.parent_id, role=node.role, task=node.task, depth=node.depth)
        )

    def _prompt(self, node: Node, text: str) -> str:
        """The root's prompts carry the conversation so far; the children's tasks are self-contained."""
        return with_history(self.history, text) if node.depth == 0 else text

    async def node(self, node: Node) -> str:
        """Run one node: a first pass, then (if it spawned) its children in parallel and a synthesis pass."""
        self.nodes_run += 1
        limit = min(self.options.max_children, node.budget) if node.depth < self.options.max_depth else 0
        first = AgentCall(
            node.id,
            _system(node.role, _guidance(node, limit)),
            self._prompt(node, node.task),
            [SPAWN, FINALIZE] if limit else [FINALIZE],
            max_steps=limit + 4 if limit else 5,
        )
        result = await self.run.call(first, iteration=node.iteration, preview_of=_answer)
        answer, spawns = _answer(result), result.results(SPAWN)
        if node.depth == 0 and limit and not spawns:
            retry = await self._retry(node, first, limit)
            answer, spawns = answer or _answer(retry), retry.results(SPAWN)
        if not spawns:
            return answer
        children = _children(node, spawns[:limit])
        for child in children:
            self.spawned(child)
        outputs = await gather_all(*(self.node(child) for child in children))
        return await self._synthesis(node, children, outputs, spawns[limit:])

    async def _retry(self, node: Node, first: AgentCall, limit: int) -> AgentResult:
        """The lead answered without decomposing: one firm nudge (the reference's extra `iteration_end`)."""
        prompt = (
            f"{first.prompt}\n\nYou did not break this down. Decompose it now: identify its {_parts(limit)} natural "
            "parts and call spawnSubAgent once for EACH part (focused role + self-contained task). Do not answer it "
            "yourself this time."
        )
        call = AgentCall(node.id, first.system, prompt, first.tools, first.max_steps)
        return await self.run.call(call, iteration=node.iteration, start=False, preview_of=_answer)

    async def _synthesis(self, node: Node, children: list[Node], outputs: list[str], dropped: list[Spawn]) -> str:
        root = node.depth == 0
        guidance = "Your sub-agents have finished; combine their results yourself. You cannot delegate again."
        call = AgentCall(
            node.id,
            _system(node.role, f"{guidance}\n\n{REPORT_GUIDANCE}" if root else guidance),
            self._prompt(node, _synthesis_prompt(node, children, outputs, dropped)),
            [FINALIZE, REPORT] if root else [FINALIZE],
            max_steps=5,
        )
        result = await self.run.call(
            call, iteration=node.iteration, start=False, preview_of=lambda r: f"[synthesis] {_answer(r)}"
        )
        reported = result.last(REPORT) if root else None
        if reported is None:
            return _answer(result)
        self.report = reported.report
        finalized = result.last(FINALIZE)
        if finalized is not None and finalized.deliverable.strip():
            return finalized.deliverable
        return _report_markdown(reported.report)  # the lead reported without finalizing: the report is the answer


async def run(run: Run) -> None:
    run.start(ROOT)
    tree = Hierarchy(run)
    root = Node(ROOT, None, LEAD, run.query, depth=0, iteration=1, first_free=2, budget=run.options.max_nodes - 1)
    tree.spawned(root)
    result = await tree.node(root)
    report = tree.report.model_dump(mode="json") if tree.report is not None else None
    run.complete(result=result, iterations=tree.nodes_run, report=report)
