"""Access marks: a function's registration metadata saying who may call it, `metadata: {"access": …}`.

- `human`: only a person should call it, through the app or HTTP API (in-process, so unchecked) or an
  `admin` connection; a model's function call never reaches it.
- `secret`: it reveals or changes a secret (a provider's key); `provider` and `admin` connections only.

Unmarked functions are open to every role. A remote worker marks its own functions the same way; the
engine enforces the marks on every connection that has a session (`teamster.engine.roles`). Any other
`access` value is honoured as the strictest mark, so a typo never opens a function up.
"""

from __future__ import annotations

from typing import Any, Literal

ACCESS = "access"
Access = Literal["human", "secret"]


def mark(access: Access) -> dict[str, Any]:
    """Registration metadata carrying `access` (a new dict each time, so no caller can change another's)."""
    return {ACCESS: access}


def access_of(metadata: Any) -> str | None:
    """The mark in `metadata` (any non-null `access` value), or None when the function is unmarked."""
    if not isinstance(metadata, dict):
        return None
    value = metadata.get(ACCESS)
    return None if value is None else str(value)
