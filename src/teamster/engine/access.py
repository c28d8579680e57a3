"""Who may reach a listener: the shared bearer token, loopback, browser origins and `Host` names.

Every listener of the engine (the worker socket, HTTP triggers, the stream socket) applies the same
rules, so they live here once:

- **The token.** A listener's config may carry `token` (a literal, best read from `${VAR}`) or
  `token_env` (the variable to read it from; `TEAMSTER_TOKEN` by default). With a token, a request
  without `Authorization: Bearer <token>` gets nothing. Tokens are compared in constant time so the
  time a refusal takes says nothing about how much of a guess was right.
- **Loopback.** A listener reachable beyond this machine with no credential check refuses to start
  (`Unguarded`), whichever command started it.
- **Browsers.** A browser always sends `Origin` on a cross-site WebSocket upgrade and on every
  cross-site `fetch`; anything not the listener's own origin or on its allow-list is refused.
  Non-browser clients send no `Origin` and are judged by their token alone.
- **DNS rebinding.** A page on `evil.example` that re-points its name at 127.0.0.1 reaches a loopback
  listener as same-origin, but its requests still say `Host: evil.example`. A listener with no token
  therefore answers only `Host` names that are loopback or explicitly allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from teamster.engine.config import ConfigError

DEFAULT_TOKEN_ENV = "TEAMSTER_TOKEN"
ADMIN_TOKEN_ENV = "TEAMSTER_ADMIN_TOKEN"  # the worker socket's operator credential
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class Unguarded(ConfigError):
    """A listener would be reachable beyond this machine with nothing checking who connects."""


class ListenerAccess(BaseModel):
    """The access fields a listener's config shares; a module's config inherits them."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = None
    token_env: str | None = DEFAULT_TOKEN_ENV  # None or "": only `token` counts
    allowed_origins: list[str] = Field(default_factory=list)  # browser origins besides the listener's own
    allowed_hosts: list[str] = Field(default_factory=list)  # `Host` names besides loopback, for a tokenless listener

    def resolved_token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The token this listener demands, or None when it has none; an empty value counts as none."""
        if self.token is not None and self.token.get_secret_value():
            return self.token.get_secret_value()
        if self.token_env:
            value = (os.environ if env is None else env).get(self.token_env, "")
            return value or None
        return None


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credential of an `Authorization: Bearer …` header (header names lower-cased), or None."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing credential never matches."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or a name, brackets allowed) stays on this machine."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_unguarded(listener: str, host: str, guarded: bool, how: str) -> None:
    """Raise `Unguarded` when `listener` would listen beyond loopback with nothing checking credentials."""
    if not guarded and not is_loopback(host):
        raise Unguarded(f"{listener} listens on {host}, beyond this machine, with no credential check: {how}")


def host_name(host_header: str) -> str:
    """The name of a `Host` header without its port (`[::1]:80` → `::1`)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    name, _, _port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """For a listener without a token: a loopback `Host`, or one named in `allowed` (ports ignored)."""
    if not host_header:
        return False  # HTTP/1.1 requires Host; a request without one is no browser's
    name = host_name(host_header)
    return is_loopback(name) or name in {host_name(a) for a in allowed}


def origin_allowed(origin: str | None, host_header: str | None, allowed: Iterable[str]) -> bool:
    """No `Origin` (not a browser), the listener's own origin, or one on the allow-list (`*` allows any)."""
    if origin is None:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    if origin == "null" or not host_header:  # sandboxed frames and file:// pages have no origin to match
        return False
    return urlsplit(origin).netloc.lower() == host_header.strip().lower()
