"""`iii-cron`: the `cron` trigger type, fired on a seconds-first cron schedule (§4.6)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from teamster.engine.builtin import Module, config_of
from teamster.engine.cronexpr import CronError, CronExpression
from teamster.engine.engine import ConditionNotMet
from teamster.engine.triggers import Binding, TriggerConfigError
from teamster.protocol import InvocationError

log = logging.getLogger("teamster.engine")


class CronConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lock_ttl_ms: int = Field(default=30000, ge=1)
    adapter: Any = None  # accepted for iii config files; teamster always locks through the engine's storage


class CronTriggerConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expression: str
    condition_function_id: str | None = None


class Cron(Module):
    name = "iii-cron"
    Config = CronConfig
    config: CronConfig

    async def start(self) -> None:
        self._owner = str(uuid.uuid4())  # this engine's name on the fire locks
        self._jobs: dict[str, asyncio.Task[None]] = {}
        await self.engine.builtin_type("cron", self, "Fire on a cron schedule (seconds first)")

    async def stop(self) -> None:
        for binding_id in list(self._jobs):
            await self._cancel(binding_id)

    async def register(self, binding: Binding) -> None:
        """Refuse a bad expression, else (re)start the binding's scheduler."""
        config = config_of(CronTriggerConfig, binding)
        try:
            expression = CronExpression.parse(config.expression)
        except CronError as exc:
            raise TriggerConfigError(str(exc)) from None
        await self._cancel(binding.id)
        self._jobs[binding.id] = asyncio.create_task(self._schedule(binding, expression))

    async def unregister(self, binding: Binding) -> None:
        await self._cancel(binding.id)

    async def _cancel(self, binding_id: str) -> None:
        task = self._jobs.pop(binding_id, None)
        if task is None:
            return
        task.cancel()
        if task is not asyncio.current_task():  # a job may unregister itself from inside its own fire
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _schedule(self, binding: Binding, expression: CronExpression) -> None:
        """Fire at each scheduled instant, one run at a time; instants missed by a slow run are skipped."""
        warned = False
        due = expression.next_after(_now())
        while due is not None:
            # Re-check after waking: the loop clock may wake us a hair early, or the wall clock may jump.
            while (delay := (due - _now()).total_seconds()) > 0:  # noqa: ASYNC110 - waiting on a clock, not an event
                await asyncio.sleep(delay)
            await self._fire(binding, due)
            now = _now()
            upcoming = expression.next_after(due)  # from the schedule, so a slow run never shifts it
            if upcoming is not None and upcoming <= now:
                if not warned:
                    log.warning(
                        "cron %s (%s) ran past its next fire; missed fires are skipped", binding.id, binding.function_id
                    )
                    warned = True
                upcoming = expression.next_after(now)
            due = upcoming

    async def _fire(self, binding: Binding, scheduled: datetime) -> None:
        stamp = scheduled.isoformat()
        # Never released: it lapses after the ttl, so an engine that wakes late cannot run the same instant again.
        lock = f"cron:{binding.id}:{stamp}"
        try:
            if not await self.engine.storage.locks.acquire(lock, self._owner, self.config.lock_ttl_ms):
                return
            event = {
                "trigger": "cron",
                "job_id": binding.id,
                "scheduled_time": stamp,
                "actual_time": _now().isoformat(),
            }
            await self.engine.fire(binding, event)
        except ConditionNotMet:
            pass
        except InvocationError as exc:
            log.warning("cron %s (-> %s) failed: %s", binding.id, binding.function_id, exc)
        except Exception:  # a broken lock adapter or built-in must not end the schedule
            log.exception("cron %s (-> %s) failed", binding.id, binding.function_id)


def _now() -> datetime:
    return datetime.now(UTC)
