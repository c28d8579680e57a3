"""`iii-observability`: `engine::log::*`, the `log` trigger type and `engine::health::check` (§4.8)."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.registry import Invocation
from teamster.protocol.clock import now_ms

LEVELS = ("trace", "debug", "info", "warn", "error")
_PY_LEVEL = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

worker_log = logging.getLogger("teamster.workers")


class LogEntry(Input):
    message: str
    data: Any = None
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None


class LogTriggerConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    level: Literal["all", "trace", "debug", "info", "warn", "error"] = "all"


class Observability(Module):
    name = "iii-observability"

    async def start(self) -> None:
        self._subscribers = BindingSet(LogTriggerConfig)
        for level in LEVELS:
            self.engine.builtin(f"engine::log::{level}", self._logger(level), description=f"Log at {level} level")
        self.engine.builtin("engine::health::check", self._health, description="Engine health and counts")
        await self.engine.builtin_type("log", self._subscribers, "Log entries, filtered by level")

    def _logger(self, level: str) -> Any:
        async def log_entry(inv: Invocation) -> None:
            entry = parse(LogEntry, inv.data, inv.function_id)
            worker = inv.caller.name if inv.caller is not None else "engine"
            worker_log.log(_PY_LEVEL[level], "[%s] %s", worker, entry.message)
            event = {
                "level": level,
                "message": entry.message,
                "data": entry.data,
                "trace_id": entry.trace_id,
                "span_id": entry.span_id,
                "service_name": entry.service_name or worker,
                "timestamp_ms": now_ms(),
            }
            self.engine.fire_in_order(self._subscribers.matching(lambda c: _wants(c, level)), event)

        return log_entry

    async def _health(self, inv: Invocation) -> dict[str, Any]:
        engine = self.engine
        return {
            "status": "healthy",
            "uptime_s": round(time.time() - engine.started_at, 3),
            "workers": len(engine.connections),
            "functions": len(engine.functions.all()),
            "triggers": len(engine.triggers.bindings),
            "modules": [m.name for m in engine.modules],
            "storage": engine.config.storage,
            "telemetry_frames": dict(engine.telemetry_frames),
        }


def _wants(config: LogTriggerConfig, level: str) -> bool:
    return config.level == "all" or LEVELS.index(level) >= LEVELS.index(config.level)
