"""Roles: what a connection admitted by a listener token may call and register, with no auth function.

| role       | calls                                  | registers                                   |
|------------|----------------------------------------|---------------------------------------------|
| `admin`    | every function                         | any id (ownership conflicts still apply)    |
| `provider` | unmarked and `secret` functions        | any id outside the reserved services        |
| `worker`   | unmarked functions                     | any id outside the reserved services        |

Marks are the `access` metadata of `teamster.protocol.access`. A reserved service is one the engine
itself serves (`engine::…`, `state::…`, `stream::…`, `iii::…`, `configuration::…`, `publish`,
whether or not that module is on), or the service of a function the engine or an in-process worker
registered in the same namespace: the harness's own `auth::…` or `approval::…`, say. A function's
service is its id without the last `::` segment (`provider::scripted::stream` → `provider::scripted`),
so a remote provider may still serve `provider::mine::stream` beside the built-in ones.
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

from teamster.engine.connection import InprocConnection
from teamster.engine.registry import FunctionRegistry
from teamster.protocol.access import access_of

Role = Literal["admin", "provider", "worker"]
ROLES: frozenset[str] = frozenset(get_args(Role))
ENGINE_SERVICES = frozenset({"engine", "state", "stream", "iii", "configuration", "publish"})


def role_named(name: str) -> Role:
    """`name` as a Role; ValueError for any other name."""
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r} (expected one of: {', '.join(sorted(ROLES))})")
    return cast(Role, name)


def cleared(role: str, metadata: Any) -> bool:
    """Whether `role` may call a function registered with `metadata`."""
    access = access_of(metadata)
    if access is None or role == "admin":
        return True
    return role == "provider" and access == "secret"  # an unknown mark is admin-only


def service_of(function_id: str) -> str:
    """`a::b::c` → `a::b`; an id without `::` is its own service."""
    return function_id.rpartition("::")[0] or function_id


def reserved(function_id: str, namespace: str, functions: FunctionRegistry) -> bool:
    """Whether only the engine and in-process workers may register `function_id` in `namespace`."""
    if function_id.split("::", 1)[0] in ENGINE_SERVICES:
        return True
    service = service_of(function_id)
    return any(
        entry.namespace == namespace
        and (entry.owner is None or isinstance(entry.owner, InprocConnection))
        and service_of(entry.id) == service
        for entry in functions.all()
    )
