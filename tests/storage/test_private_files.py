"""The data directory a real `teamster engine` process keeps its SQLite file in is its owner's alone."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from teamster.harness import credentials
from teamster.sdk import Worker
from tests.engine_proc import EngineProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The usual umask, under which a plain create gives 0644 files and 0755 directories."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def test_a_new_data_directory_is_0700_and_every_file_in_it_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = EngineProcess(data).start()
    try:
        keys = credentials.create_worker(data_dir=data)
        client = Worker("client")
        async with keys.connect(engine.ws_url, wait=5), client.connect(engine.ws_url, wait=5):
            await client.trigger("state::set", {"scope": "s", "key": "k", "value": "v"})
            credential = {"type": "api_key", "key": "sk-test-0123456789"}
            await client.trigger("auth::set_token", {"provider": "openai", "credential": credential})
            assert mode(data) == 0o700
            files = sorted(path.name for path in data.iterdir())
            assert files[:2] == ["credentials.json", "teamster.db"] and "teamster.db-wal" in files
            assert {name: mode(data / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        engine.stop()


def test_files_left_open_by_an_older_teamster_are_tightened_and_an_open_directory_is_warned_of(
    tmp_path: Path,
) -> None:
    data = tmp_path / "shared"
    data.mkdir(mode=0o755)
    sqlite3.connect(data / "teamster.db").close()
    (data / "teamster.db-wal").touch()
    assert mode(data / "teamster.db") == mode(data / "teamster.db-wal") == 0o644
    engine = EngineProcess(data).start()
    try:
        assert mode(data / "teamster.db") == mode(data / "teamster.db-wal") == 0o600
        assert mode(data) == 0o755  # left as the owner made it…
        assert any("data directory" in line and "open to others" in line for line in engine.output)  # …but named
    finally:
        engine.stop()
