"""Where budgets live: state scope `budgets`, each budget under `budget:<id>` and each finished period
archived as `spend_log:<id>:<period_start>`.

Every change to one budget runs under an in-process `asyncio.Lock` for that budget id and is written
with `state::set`: the engine gives each function id a single owner, so this worker instance is the
only writer of its budgets and the lock is enough to make concurrent calls race-free.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from teamster.harness.budget.models import Budget, SpendLog
from teamster.harness.budget.rules import prune_exemptions, roll_over
from teamster.protocol.errors import ErrorCode
from teamster.sdk import InvocationError, Void, Worker
from teamster.sdk.keyed_lock import KeyedLock

log = logging.getLogger("teamster.harness.budget")

SCOPE = "budgets"
T = TypeVar("T")


def budget_key(budget_id: str) -> str:
    return f"budget:{budget_id}"


def spend_log_key(budget_id: str, period_start: int) -> str:
    return f"spend_log:{budget_id}:{period_start}"


class BudgetStore:
    """Storage through `state::*` and the per-budget locks; the handlers call into it."""

    def __init__(self, worker: Worker, clock: Callable[[], float]) -> None:
        self.worker = worker
        self.clock = clock
        self._locks = KeyedLock()

    def now(self) -> int:
        return int(self.clock() * 1000)

    def locked(self, budget_id: str) -> AbstractAsyncContextManager[None]:
        """Serialize every change to one budget."""
        return self._locks.hold(budget_id)

    async def change(
        self, budget_id: str, function_id: str, apply: Callable[[Budget, int], Awaitable[T]]
    ) -> tuple[Budget, T]:
        """Load the budget, roll its period over and prune exemptions, `apply` a change, save if it differs."""
        async with self.locked(budget_id):
            now = self.now()
            stored = await self.load(budget_id, function_id)
            current, archive = roll_over(stored, now)
            current = prune_exemptions(current, now).model_copy(deep=True)
            if archive is not None:
                await self.save_log(archive)
            result = await apply(current, now)
            if current != stored:
                await self.save(current)
            return current, result

    async def load(self, budget_id: str, function_id: str) -> Budget:
        value = await self.worker.trigger("state::get", {"scope": SCOPE, "key": budget_key(budget_id)})
        if value is None:
            raise InvocationError(ErrorCode.BUDGET_NOT_FOUND, f"budget {budget_id} not found", function_id=function_id)
        return Budget.model_validate(value)

    async def save(self, budget: Budget) -> None:
        await self._set(budget_key(budget.id), budget.model_dump(mode="json"))

    async def save_log(self, entry: SpendLog) -> None:
        await self._set(spend_log_key(entry.budget_id, entry.period_start), entry.model_dump(mode="json"))

    async def _set(self, key: str, value: Any) -> None:
        await self.worker.trigger("state::set", {"scope": SCOPE, "key": key, "value": value})

    async def delete(self, key: str) -> None:
        await self.worker.trigger("state::delete", {"scope": SCOPE, "key": key})

    async def everything(self) -> tuple[list[Budget], list[SpendLog]]:
        """Every budget and spend log entry in the scope (told apart by `id` and `budget_id`)."""
        values = await self.worker.trigger("state::list", {"scope": SCOPE})
        budgets = [Budget.model_validate(v) for v in values if isinstance(v, dict) and "id" in v]
        logs = [SpendLog.model_validate(v) for v in values if isinstance(v, dict) and "budget_id" in v]
        return budgets, logs

    async def logs(self, budget_id: str) -> list[SpendLog]:
        return [entry for entry in (await self.everything())[1] if entry.budget_id == budget_id]

    async def fire(self, due: list[tuple[str, dict[str, Any]]]) -> None:
        """Alert callbacks are fire-and-forget: a failure to send is logged, never the caller's problem."""
        for function_id, payload in due:
            try:
                await self.worker.trigger(function_id, payload, action=Void())
            except Exception as exc:
                log.warning("budget alert callback %s failed: %s", function_id, exc)
