"""`iii-http` routes: an `http` trigger's config, URL matching, and who may bind which method and path.

A route belongs to the function that bound it while that binding lives. Another function asking for
the same method and path — or a path that differs only in its parameter names, which would match the
same URLs (`items/:listId/:userId` against `items/:userId/:listId`) — is refused, as iii refuses it
("conflicts with already-registered route"). Otherwise a worker could take over a route whose callers
send it their data (a stored API key, say). The same function binding its route again (a worker that
reconnects before its old connection is gone) is not a conflict: the newest of its bindings serves.

Routes also can be *reserved* by config for functions whose id starts with a prefix, so they stay out
of reach while their worker is not connected (`reserved_routes`, see docs/engine.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from teamster.engine.triggers import Binding, TriggerConfigError

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
METHODS: tuple[str, ...] = get_args(Method)
RouteKey = tuple[str, tuple[str, ...]]  # (method, segments with every parameter as ":")


class RouteConfig(BaseModel):
    """An `http` trigger's config."""

    model_config = ConfigDict(extra="ignore")

    api_path: str = Field(min_length=1)
    http_method: Method = "GET"
    condition_function_id: str | None = None
    middleware_function_ids: list[str] = Field(default_factory=list)
    public: bool = False  # served without the listener's token (health checks, static files)

    @field_validator("http_method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_path")
    @classmethod
    def _named_params(cls, value: str) -> str:
        if ":" in value.split("/"):
            raise ValueError("a ':' path segment needs a parameter name")
        return value


def segments_of(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/") if s)


def key_of(method: str, segments: tuple[str, ...]) -> RouteKey:
    """Routes with equal keys match the same URLs, whatever their parameters are called."""
    return method, tuple(":" if s.startswith(":") else s for s in segments)


def overlaps(a: RouteKey, b: RouteKey) -> bool:
    """Whether some request matches both: same method and length, and no two literals differ."""
    return (
        a[0] == b[0]
        and len(a[1]) == len(b[1])
        and all(x == y or ":" in (x, y) for x, y in zip(a[1], b[1], strict=True))
    )


@dataclass(slots=True)
class Route:
    binding: Binding
    config: RouteConfig
    segments: tuple[str, ...]

    @classmethod
    def of(cls, binding: Binding, config: RouteConfig) -> Route:
        return cls(binding, config, segments_of(config.api_path))

    @property
    def path(self) -> str:
        """The pattern as payloads name it: no leading slash (the root stays "/")."""
        return "/".join(self.segments) or "/"

    @property
    def key(self) -> RouteKey:
        return key_of(self.config.http_method, self.segments)

    @property
    def owner(self) -> tuple[str, str]:
        """The function the route belongs to: (namespace, function id)."""
        return self.binding.namespace, self.binding.function_id

    @property
    def rank(self) -> tuple[bool, ...]:
        """Literal segments outrank parameters, left to right (`users/me` before `users/:id`)."""
        return tuple(not s.startswith(":") for s in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(self.segments, parts, strict=True):
            if segment.startswith(":"):
                params[segment[1:]] = part
            elif segment != part:
                return None
        return params


def reserved_key(entry: str) -> RouteKey:
    """The key of a `reserved_routes` entry, `METHOD path` (`GET runs/:run_id`); ValueError if malformed."""
    method, _, path = entry.strip().partition(" ")
    if method.upper() not in METHODS or not path.strip():
        raise ValueError(f"{entry!r} is not `METHOD path` with METHOD one of {', '.join(METHODS)}")
    return key_of(method.upper(), segments_of(path))


class Reservations:
    """Routes only functions with a given id prefix may bind (`{"app::": ["GET credentials", …]}`)."""

    def __init__(self, reserved: dict[str, list[str]]) -> None:
        self._keys = [(prefix, reserved_key(entry), entry) for prefix, entries in reserved.items() for entry in entries]

    def check(self, route: Route) -> None:
        """Refuse `route` when it could answer a request meant for a route reserved to other functions."""
        for prefix, key, entry in self._keys:
            if not route.binding.function_id.startswith(prefix) and overlaps(route.key, key):
                raise TriggerConfigError(
                    f"http trigger: {route.config.http_method} {route.path} overlaps the route {entry!r}, "
                    f"reserved for functions {prefix}*"
                )


def check_conflict(route: Route, bound: dict[RouteKey, list[Route]]) -> None:
    """Refuse `route` when another function's live binding already answers its method and path."""
    for other in bound.get(route.key, []):
        if other.owner != route.owner:
            raise TriggerConfigError(
                f"http trigger: {route.config.http_method} {route.path} conflicts with already-registered "
                f"route {other.path} of function {other.binding.function_id}"
            )
