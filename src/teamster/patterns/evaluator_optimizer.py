"""Evaluator–optimizer (v4): a generator drafts, a critic scores; revise until the score passes or rounds run out.

Caps: `threshold` (default 8) and `max_rounds` (default 4). The best-scoring draft is kept, not the last.
Events per round: generator call, critic call, then `critique`. Two agent calls per round.
"""

from __future__ import annotations

from teamster.patterns.agents import AgentCall, AgentResult
from teamster.patterns.events import Critique, EvaluatorRound, EvaluatorSummary
from teamster.patterns.history import with_history
from teamster.patterns.run import Run
from teamster.patterns.tools import CRITIQUE, SUBMIT_DRAFT, CritiqueArgs

GENERATOR = "generator"
CRITIC = "critic"

GENERATOR_SYSTEM = (
    "You are the GENERATOR. Write real, complete content optimised for clarity, correctness, completeness and "
    "usefulness, then submit it with submitDraft. On a revision, fix EVERY issue raised and keep what works."
)
CRITIC_SYSTEM = (
    "You are the CRITIC, a demanding reviewer. Score the draft 0-10 on clarity, correctness, completeness and "
    "usefulness with the critique tool. Give 8 or more only to genuinely strong work and keep 10 for excellent "
    "work. Every issue must be concrete and actionable."
)


def _draft(result: AgentResult) -> str:
    submitted = result.last(SUBMIT_DRAFT)
    return (submitted.draft if submitted is not None else result.text).strip()


def _critique(result: AgentResult) -> CritiqueArgs:
    return result.last(CRITIQUE) or CritiqueArgs(score=0, issues=[])


def _revision_prompt(query: str, draft: str, score: float, issues: list[str]) -> str:
    numbered = "\n".join(f"{i}. {issue}" for i, issue in enumerate(issues, 1)) or "(no specific issues)"
    return (
        f"Original request:\n{query}\n\nYour latest draft:\n{draft}\n\nIt scored {score:g}/10. Issues:\n{numbered}\n\n"
        "Revise so that EVERY issue is addressed, then submit the full revised draft with submitDraft."
    )


async def run(run: Run) -> None:
    opts = run.options
    run.start(GENERATOR)
    rounds: list[EvaluatorRound] = []
    best: EvaluatorRound | None = None
    calls = 0
    for round_no in range(1, opts.max_rounds + 1):
        if rounds:
            last = rounds[-1]
            prompt = _revision_prompt(run.query, last.draft, last.score, last.issues)
        else:
            prompt = with_history(run.history(), f"Produce a high-quality deliverable for this request:\n{run.query}")
        calls += 1
        generated = await run.call(
            AgentCall(GENERATOR, GENERATOR_SYSTEM, prompt, [SUBMIT_DRAFT], max_steps=3),
            iteration=calls,
            preview_of=_draft,
        )
        draft = _draft(generated)
        if not draft:
            break
        calls += 1
        judged = await run.call(
            AgentCall(CRITIC, CRITIC_SYSTEM, f"Request:\n{run.query}\n\nDraft to review:\n{draft}", [CRITIQUE], 3),
            iteration=calls,
            preview_of=lambda r: f"score {_critique(r).score:g}/10 · {len(_critique(r).issues)} issue(s)",
        )
        verdict = _critique(judged)
        passed = verdict.score >= opts.threshold
        run.emit(Critique(round=round_no, score=verdict.score, passed=passed, issues=verdict.issues))
        rounds.append(
            EvaluatorRound(round=round_no, score=verdict.score, passed=passed, issues=verdict.issues, draft=draft)
        )
        if best is None or verdict.score > best.score:
            best = rounds[-1]
        if passed:
            break
    if best is None:
        run.fail("the generator produced no draft")
        return
    footer = f"_Evaluator–optimizer: final score {best.score:g}/10 after {len(rounds)} round(s)._"
    run.complete(result=f"{best.draft}\n\n{footer}", iterations=calls, summary=EvaluatorSummary(rounds=rounds))
