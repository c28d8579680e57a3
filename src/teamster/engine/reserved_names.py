"""Reserved state scopes and stream names: data the in-process workers (the harness, the patterns and
the app under `teamster up`) keep on the engine, which only they and `admin` connections may reach.

`iii-state` and `iii-stream` take `reserved_scopes` / `reserved_streams`: exact names or `prefix*`
globs. A call from a connection whose session is not `admin` (a `worker` or `provider` token, or an
auth function's grants) that names a reserved scope or stream is `FORBIDDEN`, and so is a binding of
such a connection on one (a `state` trigger on the scope, a `stream` trigger on the stream, or a
`state` trigger with no scope, which would see every scope). In-process callers (no session) and
`admin` connections are unaffected. Without a session the engine trusts the caller, as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from teamster.engine.rbac import Session


def outsider(session: Session | None) -> bool:
    """Whether reserved names are closed to this caller: a session that is not `admin`."""
    return session is not None and session.role != "admin"


def check_patterns(patterns: list[str]) -> list[str]:
    """Each entry is a non-empty name, with at most one `*`, at its end (`session_tree:*`)."""
    for pattern in patterns:
        if not pattern or pattern == "*" or "*" in pattern[:-1]:
            raise ValueError(f"{pattern!r}: expected a name or a `prefix*` glob")
    return patterns


class ReservedNames:
    """`patterns` (names or `prefix*`) of what the config key `key` reserves (`what`: scope or stream)."""

    def __init__(self, patterns: Iterable[str], *, what: str, key: str) -> None:
        self.exact = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        self.what = what
        self.key = key

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def covers(self, name: str) -> bool:
        return name in self.exact or name.startswith(self.prefixes)

    def denial(self, session: Session | None, name: str) -> str | None:
        """Why `session` may not touch `name`, or None when it may."""
        if not outsider(session) or not self.covers(name):
            return None
        role = session.role if session is not None and session.role is not None else "granted"
        return (
            f"{self.what} '{name}' is reserved for the in-process workers ({self.key}); a '{role}' connection "
            f"may not reach it: use a {self.what} of your own, or connect with an admin token"
        )

    def check(self, session: Session | None, name: str, function_id: str) -> None:
        reason = self.denial(session, name)
        if reason is not None:
            raise InvocationError(ErrorCode.FORBIDDEN, f"{function_id}: {reason}", function_id=function_id)
