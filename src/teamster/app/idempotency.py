"""`Idempotency-Key` on `POST /runs`: a retried request gets the run its first attempt started, not a second.

The first request with a key starts the run (202); one with the same key and the same body gets that
run again (200, `Idempotent-Replayed: true`); the same key with another body is refused (422
`idempotency_key_reused`), as the IETF draft on the header has it. Keys are stored on the engine
next to the runs (state scope `app_run_keys`), so they hold across a restart on durable storage.
Requests with one key are taken one at a time: one app worker serves `/runs`, so a lock in this
process is enough for concurrent retries to start a single run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import orjson
from pydantic import BaseModel

from teamster.app.errors import ApiError
from teamster.app.schemas import RunKey
from teamster.app.store import RunStore
from teamster.protocol.clock import now_ms
from teamster.protocol.errors import ErrorCode
from teamster.sdk.keyed_lock import KeyedLock

HEADER = "idempotency-key"
MAX_KEY = 255


def key_of(headers: dict[str, str]) -> str | None:
    """The request's `Idempotency-Key` (headers in lower case), or None; a blank or overlong one is a 400."""
    if HEADER not in headers:
        return None
    key = headers[HEADER].strip()
    if not key or len(key) > MAX_KEY:
        raise ApiError.invalid(f"Idempotency-Key: must be 1 to {MAX_KEY} characters")
    return key


def fingerprint(body: BaseModel) -> str:
    """The body as validated (defaults filled in, keys sorted), hashed: equal requests, equal prints."""
    return hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotencyKeys:
    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._locks = KeyedLock()

    async def once(self, key: str, body: BaseModel, start: Callable[[], Awaitable[str]]) -> tuple[str, bool]:
        """The run id for `key`, from `start` the first time; True when it is a run started earlier."""
        printed = fingerprint(body)
        async with self._locks.hold(key):
            found = await self.store.load_key(key)
            if found is not None:
                if found.fingerprint != printed:
                    raise ApiError(
                        422,
                        ErrorCode.IDEMPOTENCY_KEY_REUSED,
                        f"Idempotency-Key {key!r} was used for run {found.run_id} with another request body; "
                        "send a new key for a new run",
                    )
                return found.run_id, True
            run_id = await start()  # a refused start stores no key: the request may be fixed and sent again
            stored = RunKey(run_id=run_id, fingerprint=printed, created_at=now_ms())
            await self.store.save_key(key, stored)
            return run_id, False
