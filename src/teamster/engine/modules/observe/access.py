"""Who may observe what. Observers see other workers' payloads, so observing asks more than calling.

- A connection without a session (a plain listener, an in-process worker) and an `admin` session may
  observe every function, and deliver to any target.
- Any other session may observe a function only when it may call it, the function carries no access
  mark (`human`, `secret`, …: their payloads are admin-only, even for a `provider` that may call a
  `secret` function), and a remote worker serves it: the functions of the engine and of in-process
  workers (the reserved services of `teamster.engine.roles`) carry every worker's data. The target must
  be a function the session may call, since an activation is a call made on its behalf.
"""

from __future__ import annotations

from teamster.engine.connection import Connection
from teamster.engine.registry import FunctionEntry, FunctionRegistry
from teamster.engine.roles import reserved
from teamster.protocol.access import access_of


def unrestricted(conn: Connection) -> bool:
    return conn.session is None or conn.session.role == "admin"


def observe_denial(conn: Connection, entry: FunctionEntry, functions: FunctionRegistry) -> str | None:
    """Why `conn` may not observe `entry`, or None when it may."""
    session = conn.session
    if session is None or session.role == "admin":
        return None
    denied = session.denial(entry.id, entry.namespace, entry.metadata)
    if denied is not None:
        return denied
    if access_of(entry.metadata) is not None:
        return f"function '{entry.id}' is marked {access_of(entry.metadata)}: only admin may observe it"
    if reserved(entry.id, entry.namespace, functions):
        return f"function '{entry.id}' belongs to the engine or an in-process worker: only admin may observe it"
    return None


def target_denial(conn: Connection, entry: FunctionEntry) -> str | None:
    """Why `conn` may not have `entry` activated on its behalf, or None when it may."""
    session = conn.session
    return None if session is None else session.denial(entry.id, entry.namespace, entry.metadata)
