"""Who may open the worker socket: bearer tokens and the roles they carry, browser origins, `Host` names.

The rules (constant-time compare, loopback, origin and `Host` matching) are `access`'s; this module
applies them to the three paths of an `iii-worker-manager` listener before the upgrade, so a refused
client gets a plain HTTP status and never a frame.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from teamster.engine.access import ADMIN_TOKEN_ENV, ListenerAccess, bearer, host_allowed, origin_allowed, token_matches
from teamster.engine.config import ConfigError
from teamster.engine.roles import Role

log = logging.getLogger("teamster.engine")

TOKENLESS_ROLE: Role = "admin"  # a tokenless listener is loopback-only: same-machine processes are trusted, as before


class Credential(BaseModel):
    """A further token for the listener and the role its connections get."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = None
    token_env: str | None = None
    role: Role

    @model_validator(mode="after")
    def _one_source(self) -> Credential:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("a credential has exactly one of 'token' or 'token_env'")
        return self


class WorkerAccess(ListenerAccess):
    """The access fields of an `iii-worker-manager` entry."""

    credentials: list[Credential] = Field(default_factory=list)
    token_role: Role = "worker"  # the role of connections presenting `token` (or `$token_env`)
    # The operator's credential (a person's CLI acting on the engine), role `admin`; ignored when unset.
    admin_token_env: str | None = ADMIN_TOKEN_ENV

    def tokens(self, env: Mapping[str, str] | None = None) -> list[tuple[str, Role]]:
        """Every (token, role) this listener accepts; ConfigError for a credential with no value or a
        token given twice, since either would leave someone holding a token that does not do what it says."""
        found: list[tuple[str, Role]] = []
        main = self.resolved_token(env)
        if main is not None:
            found.append((main, self.token_role))
        admin = ListenerAccess(token_env=self.admin_token_env).resolved_token(env)
        if admin is not None:
            if main is not None and admin == main:
                raise ConfigError(f"${self.admin_token_env} must differ from the worker token")
            found.append((admin, "admin"))
        for index, credential in enumerate(self.credentials):
            value = ListenerAccess(token=credential.token, token_env=credential.token_env).resolved_token(env)
            if value is None:
                source = f"${credential.token_env}" if credential.token_env else "its token"
                raise ConfigError(f"credentials[{index}] (role {credential.role}): {source} is empty or unset")
            if any(value == token for token, _role in found):
                raise ConfigError(f"credentials[{index}] (role {credential.role}): the same token is given twice")
            found.append((value, credential.role))
        return found


class Gate:
    """Checks one listener's upgrade requests; built at start, when the tokens are read."""

    def __init__(self, access: WorkerAccess, env: Mapping[str, str] | None = None) -> None:
        self.access = access
        self.tokens = access.tokens(env)

    def check_browser(self, request: web.Request) -> None:
        """Refuse (403) a foreign `Origin`, which only a web page sends, and on a tokenless listener a
        `Host` that is neither loopback nor allowed (DNS rebinding). The channel path stops here: its
        unguessable key is the credential, since the Node SDK cannot send a token there."""
        host = request.headers.get("Host")
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, host, self.access.allowed_origins):
            raise _refuse(request, web.HTTPForbidden(text=f"forbidden: origin {origin} is not allowed"))
        if not self.tokens and not host_allowed(host, self.access.allowed_hosts):
            raise _refuse(request, web.HTTPForbidden(text=f"forbidden: Host {host or '(none)'} is not allowed"))

    def admit(self, request: web.Request) -> Role:
        """The role of a worker (or telemetry) connection, or an HTTP refusal: `check_browser`'s 403s,
        then 401 for a missing or wrong token (`Authorization: Bearer …`, or `?token=` for clients that
        cannot set headers)."""
        self.check_browser(request)
        if not self.tokens:
            return TOKENLESS_ROLE
        given = bearer({name.lower(): value for name, value in request.headers.items()}) or request.query.get("token")
        # Compared with every token, so the time taken does not tell which one nearly matched.
        roles = [role for token, role in self.tokens if token_matches(given, token)]
        if not roles:
            raise _refuse(
                request,
                web.HTTPUnauthorized(
                    text="unauthorized: missing or wrong token; send Authorization: Bearer <token>",
                    headers={"WWW-Authenticate": "Bearer"},
                ),
            )
        return roles[0]


def _refuse(request: web.Request, refusal: web.HTTPException) -> web.HTTPException:
    log.info("worker socket %s from %s refused: %s", request.path, request.remote, refusal.text)
    return refusal
