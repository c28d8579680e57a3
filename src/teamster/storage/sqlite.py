"""SQLite adapters: one WAL-mode file, one connection, every completed call durable on return.

The stdlib driver is called synchronously from the async methods: each statement takes tens of
microseconds, less than handing it to a thread would. Since no method awaits in the middle, a
multi-statement transaction is never interleaved with another coroutine's.

The file belongs to one engine at a time: the connection holds SQLite's exclusive lock for as long as
it is open (a second engine on the same data directory gets StorageInUse), which also spares every
statement the shared-memory locking that several processes would need.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from teamster.protocol import clock
from teamster.protocol.jsontext import dumps

from .base import Entry, QueueMessage, RevisionConflict, StateChange, StateWatcher, Storage
from .memory import DEAD, IN_FLIGHT, PARKED, READY, LocalPubSub, StateWatchers
from .private import private_dir, private_file, tighten

DB_FILE = "teamster.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0  # how long a new engine waits for the one that still holds the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    function_id TEXT NOT NULL,
    data BLOB NOT NULL,
    namespace TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    message_group TEXT,
    traceparent TEXT,
    baggage TEXT,
    enqueued_at_ms INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_by_status ON queue_messages (queue, status, seq);

CREATE TABLE IF NOT EXISTS stream_items (
    stream TEXT NOT NULL,
    item_group TEXT NOT NULL,
    item TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream, item_group, item)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS locks (
    name TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block as one write transaction, rolled back if it raises."""
    # IMMEDIATE takes the write lock at BEGIN; in exclusive locking mode the first one keeps the file (_connect).
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class StorageInUse(RuntimeError):
    """Another process (another engine) has the database open."""


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path`, lock it for this process, bring its schema up to date."""
    # isolation_level=None: no implicit transactions, so a lone statement commits on its own.
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    # Before the first access: in WAL mode an exclusive connection keeps its index in memory, not in -shm.
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with _transaction(conn):  # takes the lock now, not at the first write after start-up
            pass
    except sqlite3.OperationalError as error:
        conn.close()
        if "locked" not in str(error):
            raise
        raise StorageInUse(
            f"{path} is in use by another process (is another engine running on this data directory?)"
        ) from None
    # In WAL mode NORMAL loses nothing when the process dies, only on an OS crash or power loss.
    conn.execute("PRAGMA synchronous=NORMAL")
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(f"{path} has schema version {version}; this teamster knows up to {SCHEMA_VERSION}")
    with _transaction(conn):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


class SqliteState:
    """Scoped key/value store with per-key revisions, in the `state` table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._watchers = StateWatchers()

    def _read(self, scope: str, key: str) -> Entry | None:
        row = self._conn.execute(
            "SELECT value, revision FROM state WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        return None if row is None else Entry(orjson.loads(row[0]), row[1])

    async def get(self, scope: str, key: str) -> Entry | None:
        """The entry under `key`, or None."""
        return self._read(scope, key)

    async def put(self, scope: str, key: str, value: Any, *, revision: int | None = None) -> Entry:
        """Store `value`; with `revision`, only if the stored revision still equals it (0 = absent)."""
        encoded = dumps(value)
        if revision is None:
            with _transaction(self._conn):
                current = self._read(scope, key)
                self._write(scope, key, encoded, current)
        else:
            # No transaction needed: the write itself checks the revision, so the value read is the one replaced.
            current = self._read(scope, key)
            found = 0 if current is None else current.revision
            if found != revision or not self._write(scope, key, encoded, current):
                raise RevisionConflict(f"{scope}/{key}: expected revision {revision}, found {found}")
        new_revision = 1 if current is None else current.revision + 1
        self._watchers.notify(StateChange(scope, key, None if current is None else current.value, value))
        return Entry(value, new_revision)

    def _write(self, scope: str, key: str, encoded: bytes, current: Entry | None) -> bool:
        """Replace `current` (None: create); False when another writer got there first."""
        if current is None:
            cursor = self._conn.execute(
                "INSERT INTO state (scope, key, value, revision) VALUES (?, ?, ?, 1) ON CONFLICT DO NOTHING",
                (scope, key, encoded),
            )
        else:
            cursor = self._conn.execute(
                "UPDATE state SET value = ?, revision = ? WHERE scope = ? AND key = ? AND revision = ?",
                (encoded, current.revision + 1, scope, key, current.revision),
            )
        return cursor.rowcount == 1

    async def delete(self, scope: str, key: str) -> Entry | None:
        """Remove and return the entry, or None when there was none."""
        with _transaction(self._conn):
            current = self._read(scope, key)
            if current is None:
                return None
            self._conn.execute("DELETE FROM state WHERE scope = ? AND key = ?", (scope, key))
        self._watchers.notify(StateChange(scope, key, current.value, None, deleted=True))
        return current

    async def list(self, scope: str) -> builtins.list[tuple[str, Any]]:
        """(key, value) pairs of one scope, ordered by key."""
        rows = self._conn.execute("SELECT key, value FROM state WHERE scope = ? ORDER BY key", (scope,))
        return [(key, orjson.loads(value)) for key, value in rows]

    async def scopes(self) -> builtins.list[str]:
        """Sorted scopes that hold at least one key."""
        return [scope for (scope,) in self._conn.execute("SELECT DISTINCT scope FROM state ORDER BY scope")]

    def watch(self, watcher: StateWatcher) -> Callable[[], None]:
        """Call `watcher` after every stored change; returns a function that stops watching."""
        return self._watchers.add(watcher)


_MESSAGE_COLUMNS = (
    "id, queue, function_id, data, namespace, attempts, message_group, traceparent, baggage, enqueued_at_ms, last_error"
)


def _message(row: tuple[Any, ...]) -> QueueMessage:
    id_, queue, function_id, data, namespace, attempts, group, traceparent, baggage, enqueued_at_ms, last_error = row
    return QueueMessage(
        id=id_,
        queue=queue,
        function_id=function_id,
        data=orjson.loads(data),
        namespace=namespace,
        attempts=attempts,
        group=group,
        traceparent=traceparent,
        baggage=baggage,
        enqueued_at_ms=enqueued_at_ms,
        last_error=last_error,
    )


class SqliteQueues:
    """Named queues in the `queue_messages` table, FIFO by the autoincrement `seq`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def enqueue(self, message: QueueMessage, *, visible_at_ms: int = 0) -> None:
        """Add `message` at the back of its queue; raises ValueError if its id is already queued."""
        try:
            self._conn.execute(
                f"INSERT INTO queue_messages (status, visible_at_ms, {_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    READY,
                    visible_at_ms,
                    message.id,
                    message.queue,
                    message.function_id,
                    dumps(message.data),
                    message.namespace,
                    message.attempts,
                    message.group,
                    message.traceparent,
                    message.baggage,
                    message.enqueued_at_ms,
                    message.last_error,
                ),
            )
        except sqlite3.IntegrityError as error:
            raise ValueError(f"message {message.id} is already queued") from error

    def _oldest(self, queue: str, status: str) -> tuple[Any, ...] | None:
        # One lookup per status rather than `status IN (...)`, which would sort the whole queue.
        row: tuple[Any, ...] | None = self._conn.execute(
            f"SELECT seq, visible_at_ms, {_MESSAGE_COLUMNS} FROM queue_messages"
            " WHERE queue = ? AND status = ? ORDER BY seq LIMIT 1",
            (queue, status),
        ).fetchone()
        return row

    async def reserve(self, queue: str, limit: int, now_ms: int, *, fifo: bool = False) -> list[QueueMessage]:
        """Take up to `limit` visible messages, mark them in flight and count the delivery."""
        if limit <= 0:
            return []
        if self._oldest(queue, READY) is None:
            return []  # the common case for a polled queue: no write, so no transaction to commit
        rows: list[tuple[Any, ...]]
        with _transaction(self._conn):
            if fifo:
                # Only the oldest live message may go: not when an older one is in flight or parked, or it is invisible.
                ready = self._oldest(queue, READY)
                ahead = (self._oldest(queue, status) for status in (IN_FLIGHT, PARKED))
                if ready is None or ready[1] > now_ms or any(row is not None and row[0] < ready[0] for row in ahead):
                    rows = []
                else:
                    rows = [ready]
            else:
                rows = self._conn.execute(
                    f"SELECT seq, visible_at_ms, {_MESSAGE_COLUMNS} FROM queue_messages"
                    " WHERE queue = ? AND status = ? AND visible_at_ms <= ? ORDER BY seq LIMIT ?",
                    (queue, READY, now_ms, limit),
                ).fetchall()
            self._conn.executemany(
                "UPDATE queue_messages SET status = ?, attempts = attempts + 1 WHERE seq = ?",
                [(IN_FLIGHT, row[0]) for row in rows],
            )
        messages = [_message(row[2:]) for row in rows]
        for message in messages:
            message.attempts += 1
        return messages

    async def ack(self, message_id: str) -> None:
        """Remove the message for good."""
        self._conn.execute("DELETE FROM queue_messages WHERE id = ?", (message_id,))

    async def retry(self, message_id: str, visible_at_ms: int, error: str) -> None:
        """Return an in-flight message to the queue, invisible until `visible_at_ms`."""
        self._conn.execute(
            "UPDATE queue_messages SET status = ?, visible_at_ms = ?, last_error = ? WHERE id = ?",
            (READY, visible_at_ms, error, message_id),
        )

    async def dead_letter(self, message_id: str, error: str) -> None:
        """Keep the message aside as dead, with the error that killed it."""
        self._conn.execute(
            "UPDATE queue_messages SET status = ?, last_error = ? WHERE id = ?", (DEAD, error, message_id)
        )

    async def park(self, message_id: str, until_ms: int, error: str) -> None:
        """Set an in-flight message aside until `unpark` or `until_ms`; the delivery is not counted."""
        self._conn.execute(
            "UPDATE queue_messages SET status = ?, visible_at_ms = ?, attempts = attempts - 1, last_error = ?"
            " WHERE id = ?",
            (PARKED, until_ms, error, message_id),
        )

    async def unpark(self, namespace: str, function_id: str) -> list[str]:
        """Make the messages parked for this function ready now; returns the queues they are in."""
        rows = self._conn.execute(
            "UPDATE queue_messages SET status = ?, visible_at_ms = 0"
            " WHERE status = ? AND namespace = ? AND function_id = ? RETURNING queue",
            (READY, PARKED, namespace, function_id),
        ).fetchall()
        return list(dict.fromkeys(queue for (queue,) in rows))

    async def parked(self) -> dict[tuple[str, str], int]:
        """Each (namespace, function_id) that has parked messages, with the earliest `until_ms` among them."""
        rows = self._conn.execute(
            "SELECT namespace, function_id, MIN(visible_at_ms) FROM queue_messages WHERE status = ?"
            " GROUP BY namespace, function_id",
            (PARKED,),
        )
        return {(namespace, function_id): until for namespace, function_id, until in rows}

    async def expire_parked(self, namespace: str, function_id: str, now_ms: int, error: str) -> list[str]:
        """Dead-letter this function's parked messages whose `until_ms` is past, with `error`; returns their queues."""
        rows = self._conn.execute(
            "UPDATE queue_messages SET status = ?, last_error = ?"
            " WHERE status = ? AND namespace = ? AND function_id = ? AND visible_at_ms <= ? RETURNING queue",
            (DEAD, error, PARKED, namespace, function_id, now_ms),
        ).fetchall()
        return list(dict.fromkeys(queue for (queue,) in rows))

    async def recover(self) -> int:
        """Make every in-flight message ready again (after a crash or restart); returns how many."""
        cursor = self._conn.execute("UPDATE queue_messages SET status = ? WHERE status = ?", (READY, IN_FLIGHT))
        return cursor.rowcount

    async def queues(self) -> list[str]:
        """Names of queues that hold ready, in-flight or dead-lettered messages."""
        return [queue for (queue,) in self._conn.execute("SELECT DISTINCT queue FROM queue_messages ORDER BY queue")]

    async def stats(self, queue: str) -> dict[str, int]:
        """`{ready, in_flight, dead}` counts; parked messages are waiting to be delivered, so count as ready."""
        counts = {READY: 0, IN_FLIGHT: 0, DEAD: 0}
        rows = self._conn.execute(
            "SELECT status, COUNT(*) FROM queue_messages WHERE queue = ? GROUP BY status", (queue,)
        )
        for status, count in rows:
            counts[READY if status == PARKED else status] += count
        return counts

    async def dead_letters(self, queue: str, offset: int = 0, limit: int = 50) -> list[QueueMessage]:
        """Dead-lettered messages of `queue`, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM queue_messages WHERE queue = ? AND status = ?"
            " ORDER BY seq LIMIT ? OFFSET ?",
            (queue, DEAD, limit, offset),
        )
        return [_message(row) for row in rows]

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move dead-lettered messages (all, or one) back to ready with attempts reset; returns how many."""
        cursor = self._conn.execute(
            "UPDATE queue_messages SET status = ?, attempts = 0, visible_at_ms = 0"
            " WHERE queue = ? AND status = ? AND (? IS NULL OR id = ?)",
            (READY, queue, DEAD, message_id, message_id),
        )
        return cursor.rowcount

    async def discard(self, queue: str, message_id: str) -> bool:
        """Remove one message of `queue`; returns whether it was there."""
        cursor = self._conn.execute("DELETE FROM queue_messages WHERE queue = ? AND id = ?", (queue, message_id))
        return cursor.rowcount > 0


class SqliteStreams:
    """Items addressed by (stream, group, item), in the `stream_items` table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _read(self, stream: str, group: str, item: str) -> Any | None:
        row = self._conn.execute(
            "SELECT data FROM stream_items WHERE stream = ? AND item_group = ? AND item = ?", (stream, group, item)
        ).fetchone()
        return None if row is None else orjson.loads(row[0])

    async def get(self, stream: str, group: str, item: str) -> Any | None:
        """The item's data, or None."""
        return self._read(stream, group, item)

    async def set(self, stream: str, group: str, item: str, data: Any) -> Any | None:
        """Store and return the previous value."""
        encoded = dumps(data)
        # No transaction: nothing here awaits, so only another process writing this very item between the two
        # statements could make `previous` stale, and stream items have a single writer each.
        previous = self._read(stream, group, item)
        self._conn.execute(
            "INSERT OR REPLACE INTO stream_items (stream, item_group, item, data) VALUES (?, ?, ?, ?)",
            (stream, group, item, encoded),
        )
        return previous

    async def delete(self, stream: str, group: str, item: str) -> Any | None:
        """Remove the item; returns its data, or None when there was none."""
        with _transaction(self._conn):
            previous = self._read(stream, group, item)
            self._conn.execute(
                "DELETE FROM stream_items WHERE stream = ? AND item_group = ? AND item = ?", (stream, group, item)
            )
        return previous

    async def list(self, stream: str, group: str) -> builtins.list[Any]:
        """Data of a group's items, ordered by item id."""
        rows = self._conn.execute(
            "SELECT data FROM stream_items WHERE stream = ? AND item_group = ? ORDER BY item", (stream, group)
        )
        return [orjson.loads(data) for (data,) in rows]

    async def groups(self, stream: str) -> builtins.list[str]:
        """Sorted groups of `stream` that hold items."""
        rows = self._conn.execute(
            "SELECT DISTINCT item_group FROM stream_items WHERE stream = ? ORDER BY item_group", (stream,)
        )
        return [group for (group,) in rows]

    async def streams(self) -> builtins.list[dict[str, Any]]:
        """`[{id, groups:[...]}]` for every stream that holds items, sorted by id."""
        result: builtins.list[dict[str, Any]] = []
        rows = self._conn.execute("SELECT DISTINCT stream, item_group FROM stream_items ORDER BY stream, item_group")
        for stream, group in rows:
            if not result or result[-1]["id"] != stream:
                result.append({"id": stream, "groups": []})
            result[-1]["groups"].append(group)
        return result


class SqliteLocks:
    """Expiring leases in the `locks` table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def acquire(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease if it is free, expired or already ours (then extend it)."""
        now_ms = clock.now_ms()
        cursor = self._conn.execute(
            "INSERT INTO locks (name, owner, expires_at_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms"
            " WHERE locks.owner = excluded.owner OR locks.expires_at_ms <= ?",
            (name, owner, now_ms + ttl_ms, now_ms),
        )
        return cursor.rowcount > 0

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up, if `owner` holds it."""
        self._conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))


def open_sqlite(data_dir: Path) -> Storage:
    """Storage in one file, `<data_dir>/teamster.db`, creating the directory and schema as needed;
    the directory is made 0700 and the files 0600 (see `private`).

    Waits up to BUSY_TIMEOUT_S for an engine that is closing the file; StorageInUse after that.
    """
    private_dir(data_dir)
    path = data_dir / DB_FILE
    # SQLite gives the -wal and -shm files it creates the database file's mode; ones left by an
    # older teamster are reused as they are, so they are tightened too.
    private_file(path)
    for leftover in ("-wal", "-shm"):
        tighten(path.with_name(path.name + leftover))
    conn = _connect(path)

    async def close() -> None:
        conn.close()

    return Storage(
        state=SqliteState(conn),
        queues=SqliteQueues(conn),
        streams=SqliteStreams(conn),
        pubsub=LocalPubSub(),
        locks=SqliteLocks(conn),
        closers=[close],
    )
