"""Self-consistency (v8): independent samplers answer the same request in parallel; a judge selects the best
answer or merges them.

Cap: `samples` (default 4). Iterations: the samplers are 1..samples, the judge is samples + 1.
Judge fallbacks: no `decide` → select sample 0; no finalAnswer → the chosen sample's text (sample 0 when
merging). Deviations from the reference: every sampler's prompt and the judge's carry the conversation
history; a chosenIndex outside the samples counts as missing, and a `select` without a usable index selects
sample 0 everywhere (the note, the answer and the summary's `chosen` flag, which the reference left unset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import Sample, SampleRecord, SelfConsistencySummary, preview
from teamster.patterns.history import with_history
from teamster.patterns.parallel import gather_all
from teamster.patterns.run import Run
from teamster.patterns.tools import DECIDE, SUBMIT_ANSWER, Decision

JUDGE = "judge"

SAMPLER_SYSTEM = (
    "You are a sampler in a self-consistency team: several independent samplers answer the SAME task in "
    "parallel, then a judge picks the best answer or merges them. Give YOUR best complete answer: substantive, "
    "concrete and self-contained (nobody has seen the other answers). Reason it through, then commit by "
    "calling submitAnswer exactly once with your complete answer."
)
JUDGE_SYSTEM = (
    "You are the judge of a self-consistency team. Independent samplers each answered the SAME task. If one "
    'candidate is clearly the best (most correct, complete and well reasoned), select it (method "select" with '
    "its 0-based chosenIndex); if they have complementary strengths, merge them into one stronger answer (method "
    '"merge") that resolves their disagreements. Put the final answer in finalAnswer, explain briefly in '
    "rationale, and call decide exactly once."
)
NO_VERDICT = "Judge did not return a structured verdict; defaulted to the first sample."


@dataclass(frozen=True, slots=True)
class Verdict:
    method: Literal["select", "merge"]
    chosen: int | None  # the selected sample; None when merging
    answer: str
    rationale: str


def verdict(decision: Decision | None, samples: list[str]) -> Verdict:
    """The judge's decision with the fallbacks applied; `samples` is never empty."""
    if decision is None:
        return Verdict("select", 0, samples[0], NO_VERDICT)
    index = decision.chosen_index
    if index is not None and index >= len(samples):
        index = None  # an index past the samples counts as missing
    chosen = (index or 0) if decision.method == "select" else None  # a select without an index takes sample 0
    answer = decision.final_answer.strip() or samples[chosen or 0]  # a merge without an answer takes sample 0
    return Verdict(decision.method, chosen, answer, decision.rationale)


def _answer(result: AgentResult) -> str:
    submitted = result.last(SUBMIT_ANSWER)
    return (submitted.answer if submitted is not None else "").strip() or result.text


def _judge_prompt(query: str, samples: list[str]) -> str:
    listing = "\n\n---\n\n".join(f"### Candidate {i} (index {i})\n{text}" for i, text in enumerate(samples))
    return (
        f"Original task:\n{query}\n\nHere are the {len(samples)} candidate answers from independent samplers:\n\n"
        f"{listing}\n\nCompare them. SELECT the single best (give its 0-based chosenIndex) or MERGE them into a "
        "stronger consensus answer. Call decide with your verdict."
    )


def _note(final: Verdict, count: int) -> str:
    if final.chosen is not None:
        return f"_(self-consistency: judge selected sample {final.chosen + 1} of {count})_"
    return f"_(self-consistency: judge merged {count} samples into a consensus)_"


async def _sample(run: Run, index: int, prompt: str) -> str:
    result = await run.call(
        AgentCall(f"sample {index + 1}", SAMPLER_SYSTEM, prompt, [SUBMIT_ANSWER], max_steps=3),
        iteration=index + 1,
        preview_of=_answer,
    )
    text = _answer(result)
    run.emit(Sample(index=index, preview=preview(text)))
    return text


async def run(run: Run) -> None:
    count = run.options.samples
    run.start("sampler")
    history = run.history()
    prompt = with_history(history, run.query)
    samples = await gather_all(*(_sample(run, i, prompt) for i in range(count)))
    judge_prompt = with_history(history, _judge_prompt(run.query, samples))
    judged = await run.call(
        AgentCall(JUDGE, JUDGE_SYSTEM, judge_prompt, [DECIDE], max_steps=3),
        iteration=count + 1,
        preview_of=lambda r: verdict(r.last(DECIDE), samples).answer,
    )
    final = verdict(judged.last(DECIDE), samples)
    summary = SelfConsistencySummary(
        samples=[SampleRecord(index=i, text=text, chosen=i == final.chosen) for i, text in enumerate(samples)],
        method=final.method,
        rationale=final.rationale,
    )
    run.complete(
        result=f"{final.answer}\n\n{_note(final, count)}",
        iterations=count + 1,
        agents_used=["sampler", JUDGE],
        summary=summary,
    )
