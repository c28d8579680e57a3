"""`llm-budget`: USD ceilings per day, week or month, checked before and recorded after model calls (iii-harness §5).

Callers ask `budget::check` before a model call and report the cost with `budget::record` after it;
this worker only answers, it never blocks anything itself. Every budget lives in state scope
`budgets` under `budget:<id>`; finished periods are archived there as `spend_log:<id>:<period_start>`.

Modules: `worker` (the handlers and `create_worker`), `store` (the state scope and the per-budget
locks), `rules` (the pure transitions: roll-over, check, spend, forecast), `periods` (calendar
periods), `money` (USD rounding), `models` (the stored shapes), `requests` and `replies` (the
functions' payloads and answers).
"""

from __future__ import annotations

from teamster.harness.budget.store import SCOPE
from teamster.harness.budget.worker import WORKER_NAME, create_worker

__all__ = ["SCOPE", "WORKER_NAME", "create_worker"]
