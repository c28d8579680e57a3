"""Where runs are kept on the engine: records in state scope `app_runs`, events in stream `app::run_events`,
the idempotency keys of `POST /runs` in state scope `app_run_keys`.

Each run's events are one stream group (the run id), item ids the zero-padded `seq`, so a group lists
in event order. Both survive a restart on the durable storages (SQLite, NATS).
"""

from __future__ import annotations

from typing import Any

from teamster.app.schemas import RunKey, RunRecord
from teamster.sdk import Worker

RUNS = "app_runs"
EVENTS = "app::run_events"
KEYS = "app_run_keys"


class RunStore:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def save(self, record: RunRecord) -> None:
        await self.worker.trigger("state::set", {"scope": RUNS, "key": record.run_id, "value": record.model_dump()})

    async def load(self, run_id: str) -> RunRecord | None:
        found = await self.worker.trigger("state::get", {"scope": RUNS, "key": run_id})
        return RunRecord.model_validate(found) if found is not None else None

    async def records(self) -> list[RunRecord]:
        return [RunRecord.model_validate(value) for value in await self.worker.trigger("state::list", {"scope": RUNS})]

    async def save_key(self, key: str, found: RunKey) -> None:
        await self.worker.trigger("state::set", {"scope": KEYS, "key": key, "value": found.model_dump()})

    async def load_key(self, key: str) -> RunKey | None:
        found = await self.worker.trigger("state::get", {"scope": KEYS, "key": key})
        return RunKey.model_validate(found) if found is not None else None

    async def append(self, run_id: str, event: dict[str, Any]) -> None:
        item = {"stream_name": EVENTS, "group_id": run_id, "item_id": f"{event['seq']:08d}", "data": event}
        await self.worker.trigger("stream::set", item)

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        found = await self.worker.trigger("stream::list", {"stream_name": EVENTS, "group_id": run_id})
        return list(found or [])
