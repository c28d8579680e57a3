"""One validation problem on one line: how the engine's built-ins and SDK handlers report bad input."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError, default: str = "config") -> str:
    """The first validation problem as `where: what`, on one line."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or default
    return f"{where}: {first['msg']}"
