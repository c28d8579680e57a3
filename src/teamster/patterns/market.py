"""Market (v7): a dispatcher posts tasks, four specialist workers bid on them, the best fits win and deliver
in parallel, and the dispatcher synthesises the deliverables into one answer.

Cap: `tasks_per_agent` (default 2), a soft cap on awards per worker; a task nobody can take within the cap
still goes to the least-loaded worker, so every task is awarded exactly once. One iteration per agent call:
the dispatcher, each bid, each execution, the synthesis. No tasks posted: the dispatcher answers directly.

Deviations from the reference: the dispatcher's first prompt carries the conversation history (so does the
direct answer); duplicate task ids are posted once (the first wins); a worker is offered only the tool of its
mode (submitBids to bid, deliver to execute); the synthesis call has no tools; an empty synthesis falls
back to the deliverables themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import Award, Bid, MarketBid, MarketSummary, MarketTask, TaskAwarded, TaskPosted
from teamster.patterns.history import with_history
from teamster.patterns.parallel import gather_all
from teamster.patterns.run import Run
from teamster.patterns.tools import DELIVER, POST_TASKS, SUBMIT_BIDS, TaskSpec

DISPATCHER = "dispatcher"
ROSTER = ("researcher", "engineer", "designer", "analyst")

DISPATCHER_SYSTEM = (
    "You are the DISPATCHER of a market-based team. Break the user's request into 2-5 INDEPENDENT tasks that "
    "different specialists can do in parallel. Each task must be self-contained, with a specific title and a "
    "concrete description of what to produce; prefer tasks that map to distinct specialties (research, "
    "engineering, design, analysis) and never one task that repeats the whole request. Call postTasks exactly "
    "once with the full list, then stop."
)
SYNTHESIS_SYSTEM = (
    "You are the DISPATCHER of a market-based team. Write the final answer for the user in clear markdown. "
    "You have no tools: just write the answer."
)


def worker_system(role: str) -> str:
    return (
        f'You are the "{role}" worker of a market-based team: a capable generalist whose strength is {role} '
        "work. When given posted tasks, bid HONESTLY with submitBids: fit close to 1 only for tasks that "
        f"genuinely match {role} work, low fit (or no bid) otherwise, and an honest cost estimate. When AWARDED "
        "a task, do the work to a high standard and call deliver exactly once with concrete content."
    )


def award(task_ids: Sequence[str], bids: Sequence[MarketBid], roster: Sequence[str], cap: int) -> dict[str, str]:
    """Each task id → its winner, in task order: greedy by fit, at most `cap` awards per worker while possible.

    Bids are taken by fit descending, then task id, then agent (so the result does not depend on bid order);
    a task still open afterwards goes to the least-loaded worker (roster order breaks ties), cap or not.
    Bids on unknown tasks or from workers off the roster are ignored.
    """
    load = dict.fromkeys(roster, 0)
    open_tasks = set(task_ids)
    winners: dict[str, str] = {}
    for bid in sorted(bids, key=lambda b: (-b.fit, b.task_id, b.agent)):
        if bid.task_id in open_tasks and bid.agent in load and load[bid.agent] < cap:
            winners[bid.task_id] = bid.agent
            load[bid.agent] += 1
            open_tasks.discard(bid.task_id)
    for task_id in task_ids:
        if task_id in open_tasks:
            least = min(roster, key=load.__getitem__)  # min keeps the first of equals: roster order
            winners[task_id] = least
            load[least] += 1
            open_tasks.discard(task_id)
    return {task_id: winners[task_id] for task_id in task_ids}


def _tasks(result: AgentResult) -> list[TaskSpec]:
    unique: dict[str, TaskSpec] = {}
    for posted in result.results(POST_TASKS):
        for task in posted.tasks:
            unique.setdefault(task.id, task)
    return list(unique.values())


def _bids(result: AgentResult, agent: str) -> list[MarketBid]:
    return [
        MarketBid(task_id=b.task_id, agent=agent, fit=b.fit, est_cost_usd=b.est_cost_usd, rationale=b.rationale)
        for submitted in result.results(SUBMIT_BIDS)
        for b in submitted.bids
    ]


def _output(result: AgentResult) -> str:
    delivered = result.last(DELIVER)
    return (delivered.output if delivered is not None else "").strip() or result.text


def _bid_prompt(query: str, tasks: list[TaskSpec]) -> str:
    listing = "\n".join(f"- {t.id}: {t.title} — {t.description}" for t in tasks)
    return (
        f"Original request: {query}\n\nPosted tasks:\n{listing}\n\nBid on the tasks that fit your specialty by "
        "calling submitBids. Use fit 0-1 (high only for genuine matches) and an honest estimated cost in USD."
    )


def _execute_prompt(query: str, task: TaskSpec) -> str:
    return (
        f"Original request (context): {query}\n\nYou were AWARDED this task. Do the work and call deliver with "
        f"your complete output.\n\nTask {task.id}: {task.title}\n{task.description}"
    )


def _synthesis_prompt(query: str, blocks: str) -> str:
    return (
        f"Original request: {query}\n\nThe market's winning workers delivered these results:\n\n{blocks}\n\n"
        "Synthesize them into a single, coherent markdown deliverable that fully answers the original request. "
        "Integrate the parts and resolve any overlap."
    )


async def _bid(run: Run, role: str, iteration: int, prompt: str) -> list[MarketBid]:
    result = await run.call(
        AgentCall(role, worker_system(role), prompt, [SUBMIT_BIDS], max_steps=5),
        iteration=iteration,
        preview_of=lambda r: f"submitted {len(_bids(r, role))} bid(s)",
    )
    return _bids(result, role)


async def _bid_round(run: Run, tasks: list[TaskSpec]) -> list[MarketBid]:
    """Every worker bids at once (iterations 2…); the bids on posted tasks are emitted once all are in."""
    prompt = _bid_prompt(run.query, tasks)
    rounds = await gather_all(*(_bid(run, role, 2 + i, prompt) for i, role in enumerate(ROSTER)))
    posted = {task.id for task in tasks}
    bids = [b for worker_bids in rounds for b in worker_bids if b.task_id in posted]
    for b in bids:
        run.emit(Bid(task_id=b.task_id, agent=b.agent, fit=b.fit, est_cost_usd=b.est_cost_usd))
    return bids


async def _execute(run: Run, role: str, task: TaskSpec, iteration: int) -> str:
    prompt = _execute_prompt(run.query, task)
    result = await run.call(
        AgentCall(role, worker_system(role), prompt, [DELIVER], max_steps=5), iteration=iteration, preview_of=_output
    )
    return _output(result)


async def _synthesize(run: Run, prompt: str, iteration: int) -> str:
    result = await run.call(
        AgentCall(DISPATCHER, SYNTHESIS_SYSTEM, prompt, max_steps=3),
        iteration=iteration,
        preview_of=lambda r: f"[synthesis] {r.text}",
    )
    return result.text


async def run(run: Run) -> None:
    run.start(DISPATCHER)
    history = run.history()
    post_prompt = f"Decompose this request into 2-5 independent, awardable tasks and call postTasks:\n\n{run.query}"
    posted = await run.call(
        AgentCall(DISPATCHER, DISPATCHER_SYSTEM, with_history(history, post_prompt), [POST_TASKS], max_steps=3),
        iteration=1,
        preview_of=lambda r: f"posted {len(_tasks(r))} task(s)",
    )
    tasks = _tasks(posted)
    if not tasks:
        direct = with_history(history, f"Answer this request directly in clear markdown:\n\n{run.query}")
        answer = await _synthesize(run, direct, iteration=2)
        run.complete(result=answer, iterations=2, agents_used=[], summary=MarketSummary(tasks=[], bids=[], awards=[]))
        return
    for task in tasks:
        run.emit(TaskPosted(task_id=task.id, title=task.title))
    bids = await _bid_round(run, tasks)
    winners = award([task.id for task in tasks], bids, ROSTER, run.options.tasks_per_agent)
    for task in tasks:
        run.emit(TaskAwarded(task_id=task.id, agent=winners[task.id]))

    # Iteration numbers are fixed before the launch: executions follow the bids, in task order.
    first = 2 + len(ROSTER)
    outputs = await gather_all(*(_execute(run, winners[t.id], t, first + j) for j, t in enumerate(tasks)))
    blocks = "\n\n---\n\n".join(
        f"### {task.title} ({winners[task.id]})\n{output}" for task, output in zip(tasks, outputs, strict=True)
    )
    answer = await _synthesize(run, _synthesis_prompt(run.query, blocks), first + len(tasks))
    summary = MarketSummary(
        tasks=[MarketTask(task_id=t.id, title=t.title, description=t.description) for t in tasks],
        bids=bids,
        awards=[
            Award(task_id=t.id, agent=winners[t.id], output=output or None)
            for t, output in zip(tasks, outputs, strict=True)
        ],
    )
    run.complete(
        result=answer or blocks,
        iterations=first + len(tasks),
        agents_used=list(dict.fromkeys(winners.values())),
        summary=summary,
    )
