"""The one way a worker declares its functions: a class whose handler methods carry `@handles(...)`.

Every worker, an SDK worker on the bus or a module built into the engine, is written the same way:
a class whose constructor takes what the handlers share (a store, a clock, settings) and whose
methods are the handlers, each marked with the function id it serves. The mark is plain data on the
method, so a handler is importable and testable on its own (build the class, await the method),
and whoever hosts the class (`Worker.serve`, `Module.start`) reads the marks to register them.
The marks live here, below both the SDK and the engine, because both read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__teamster_handles__"


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a handler is registered as: its function id, a description for the catalog, and metadata."""

    function_id: str
    description: str | None = None
    metadata: dict[str, Any] | None = None


def handles(
    function_id: str, *, description: str | None = None, metadata: dict[str, Any] | None = None
) -> Callable[[F], F]:
    """Mark a method as the handler of `function_id`; the method itself is returned unchanged."""

    def mark(fn: F) -> F:
        setattr(fn, _MARK, Declaration(function_id, description, metadata))
        return fn

    return mark


def declared(service: object) -> Iterator[tuple[Declaration, Callable[..., Any]]]:
    """The marked methods of `service`, bound, in the order the class (then its bases) defines them.

    Definition order is registration order, which is the order the engine's catalog lists them in."""
    seen: set[str] = set()
    for klass in type(service).__mro__:
        for name, member in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            declaration = getattr(member, _MARK, None)
            if isinstance(declaration, Declaration):
                yield declaration, getattr(service, name)
