"""State adapter behaviour, identical on every backend."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from teamster.storage import RevisionConflict, StateChange, Storage, open_sqlite, open_storage


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store = open_storage(request.param, tmp_path)
    yield store
    await store.close()


async def test_revisions_start_at_one_and_count_puts(storage: Storage) -> None:
    assert await storage.state.get("s", "k") is None
    assert (await storage.state.put("s", "k", {"n": 1})).revision == 1
    entry = await storage.state.put("s", "k", {"n": 2})
    assert (entry.value, entry.revision) == ({"n": 2}, 2)
    fetched = await storage.state.get("s", "k")
    assert fetched is not None
    assert (fetched.value, fetched.revision) == ({"n": 2}, 2)
    assert (await storage.state.put("s", "other", 1)).revision == 1


async def test_matching_revision_wins(storage: Storage) -> None:
    assert (await storage.state.put("s", "k", "a", revision=0)).revision == 1
    assert (await storage.state.put("s", "k", "b", revision=1)).revision == 2


async def test_cas_conflict_changes_nothing(storage: Storage) -> None:
    await storage.state.put("s", "k", "first")
    changes: list[StateChange] = []
    storage.state.watch(changes.append)

    with pytest.raises(RevisionConflict):
        await storage.state.put("s", "k", "stale", revision=5)
    with pytest.raises(RevisionConflict):
        await storage.state.put("s", "k", "create-only", revision=0)

    entry = await storage.state.get("s", "k")
    assert entry is not None
    assert (entry.value, entry.revision) == ("first", 1)
    assert changes == []


async def test_delete_returns_old_entry_and_revisions_restart(storage: Storage) -> None:
    assert await storage.state.delete("s", "missing") is None
    await storage.state.put("s", "k", [1, 2])
    await storage.state.put("s", "k", [3])
    old = await storage.state.delete("s", "k")
    assert old is not None
    assert (old.value, old.revision) == ([3], 2)
    assert await storage.state.get("s", "k") is None
    assert (await storage.state.put("s", "k", "again", revision=0)).revision == 1


async def test_list_orders_by_key_and_scopes_are_sorted(storage: Storage) -> None:
    for scope, key in [("b", "z"), ("b", "a"), ("a", "m"), ("c", "only")]:
        await storage.state.put(scope, key, f"{scope}:{key}")
    assert await storage.state.list("b") == [("a", "b:a"), ("z", "b:z")]
    assert await storage.state.list("nope") == []
    await storage.state.delete("c", "only")
    assert await storage.state.scopes() == ["a", "b"]


async def test_values_round_trip_as_json(storage: Storage) -> None:
    value = {"text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}
    await storage.state.put("s", "k", value)
    entry = await storage.state.get("s", "k")
    assert entry is not None
    assert entry.value == value


async def test_watchers_receive_exact_changes(storage: Storage) -> None:
    changes: list[StateChange] = []
    stop = storage.state.watch(changes.append)
    await storage.state.put("s", "k", {"v": 1})
    await storage.state.put("s", "k", {"v": 2})
    await storage.state.delete("s", "k")
    await storage.state.delete("s", "k")
    stop()
    await storage.state.put("s", "k", {"v": 3})
    assert changes == [
        StateChange("s", "k", None, {"v": 1}),
        StateChange("s", "k", {"v": 1}, {"v": 2}),
        StateChange("s", "k", {"v": 2}, None, deleted=True),
    ]


async def test_failing_watcher_is_logged_and_put_still_lands(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(change: StateChange) -> None:
        raise RuntimeError("watcher bug")

    seen: list[StateChange] = []
    storage.state.watch(broken)
    storage.state.watch(seen.append)
    with caplog.at_level(logging.ERROR, logger="teamster.storage"):
        entry = await storage.state.put("s", "k", 1)

    assert entry.revision == 1
    assert seen == [StateChange("s", "k", None, 1)]
    assert any(r.name == "teamster.storage" and r.exc_info for r in caplog.records)


def test_open_storage_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown storage kind 'redis'"):
        open_storage("redis", tmp_path)
    with pytest.raises(ValueError, match="data directory"):
        open_storage("sqlite", None)


async def test_sqlite_file_is_wal_versioned_and_reopens(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    store = open_sqlite(data_dir)
    await store.state.put("s", "k", "kept")
    await store.state.put("s", "k", "kept")
    await store.close()

    with sqlite3.connect(data_dir / "teamster.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    reopened = open_sqlite(data_dir)
    entry = await reopened.state.get("s", "k")
    await reopened.close()
    assert entry is not None
    assert (entry.value, entry.revision) == ("kept", 2)
