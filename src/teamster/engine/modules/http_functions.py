"""`iii-http-functions`: functions a worker registers with an HTTP target, which the engine calls by request.

A `registerfunction` carrying `invocation: {url, method, timeout_ms, headers, auth}` (the iii SDKs'
`HttpInvocationConfig`) makes a function whose calls the engine sends as an HTTP request with the
payload as its JSON body; the reply's JSON body is the result. That puts an outgoing HTTP client in
the engine, aimed by whoever may register functions, so every target is checked when it is
registered and again when it is called:

- only connections whose role is in `allowed_roles` (and in-process workers) may register one;
- the URL must be http(s), https unless `require_https` is off, and start with an entry of
  `security.url_allowlist` (`*` allows any);
- with `block_private_ips` the host may not be, or resolve to, a loopback, private, link-local or
  otherwise non-public address, checked on the addresses actually connected to (DNS rebinding);
- redirects are not followed, a call lasts at most `max_timeout_ms`, a reply over
  `max_response_bytes` fails the call;
- `auth` names environment variables of the engine, so only the names in `secret_env` may be used.

A target that fails a registration check is still registered, so the worker is not disconnected
(the iii SDKs treat unknown rejection codes as fatal), but every call to it fails with
`function_not_invokable` and the reason, and nothing is sent.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teamster.engine.builtin import Module
from teamster.engine.registry import Executor, Invocation
from teamster.engine.roles import Role
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.validation import first_error

if TYPE_CHECKING:
    from teamster.engine.rbac import Session

log = logging.getLogger("teamster.engine")

# Set by the request itself, or naming the engine's own connection: never taken from a registration.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-type"})


class Security(BaseModel):
    """iii's `security` block of `iii-http-functions`, with safe defaults."""

    model_config = ConfigDict(extra="forbid")

    url_allowlist: list[str] = Field(default_factory=list)  # URL prefixes; "*" = any; empty = none
    block_private_ips: bool = True
    require_https: bool = True


def _admin_only() -> list[Role]:
    return ["admin"]


class HttpFunctionsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    security: Security = Field(default_factory=Security)
    allowed_roles: list[Role] = Field(default_factory=_admin_only)  # who may register a target
    secret_env: list[str] = Field(default_factory=list)  # variables `auth` may name
    default_timeout_ms: int = Field(default=30_000, gt=0)
    max_timeout_ms: int = Field(default=300_000, gt=0)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, gt=0)


class Bearer(BaseModel):
    type: Literal["bearer"]
    token_key: str


class ApiKey(BaseModel):
    type: Literal["api_key"]
    header: str
    value_key: str


class Hmac(BaseModel):
    type: Literal["hmac"]
    secret_key: str


class Target(BaseModel):
    """The `invocation` of a `registerfunction`: where and how its calls are sent."""

    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    timeout_ms: int | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Annotated[Bearer | ApiKey | Hmac, Field(discriminator="type")] | None = None

    def env_names(self) -> list[str]:
        match self.auth:
            case Bearer(token_key=name) | ApiKey(value_key=name) | Hmac(secret_key=name):
                return [name]
        return []


class Refused(Exception):
    """A target the configuration does not allow; the message says which check failed."""


class HttpFunctions(Module):
    """Builds the executor of each HTTP-invoked function; the engine asks it at registration."""

    name = "iii-http-functions"
    Config = HttpFunctionsConfig
    config: HttpFunctionsConfig

    async def start(self) -> None:
        resolver = _PublicResolver() if self.config.security.block_private_ips else None
        connector = aiohttp.TCPConnector(resolver=resolver, limit=64)
        self._client = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        self.engine.http_functions = self

    async def stop(self) -> None:
        self.engine.http_functions = None
        await self._client.close()

    def executor(self, function_id: str, invocation: dict[str, Any], session: Session | None) -> Executor:
        """What a call to `function_id` runs: the request to its target, or the refusal of a target not allowed."""
        try:
            target = self._vet(invocation, session)
        except Refused as exc:
            log.warning("HTTP function %s refused: %s", function_id, exc)
            return _refusing(str(exc))
        return lambda inv: self._call(target, inv)

    def _vet(self, invocation: dict[str, Any], session: Session | None) -> Target:
        if session is not None and session.role not in self.config.allowed_roles:
            role = session.role or "granted by an auth function"
            raise Refused(f"role {role!r} may not register HTTP functions (iii-http-functions allowed_roles)")
        try:
            target = Target.model_validate(invocation)
        except ValidationError as exc:
            raise Refused(f"invocation: {first_error(exc)}") from None
        self._check_url(target.url)
        if target.timeout_ms is not None and target.timeout_ms > self.config.max_timeout_ms:
            raise Refused(f"timeout_ms {target.timeout_ms} is over max_timeout_ms {self.config.max_timeout_ms}")
        for name in target.env_names():
            if name not in self.config.secret_env:
                raise Refused(f"auth names ${name}, which is not in iii-http-functions secret_env")
        for header in target.headers:
            if header.lower() in _RESERVED_HEADERS:
                raise Refused(f"header {header!r} may not be set by a registration")
        return target

    def _check_url(self, url: str) -> None:
        security = self.config.security
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"url {url!r} is not an http(s) URL")
        if security.require_https and parts.scheme != "https":
            raise Refused(f"url {url!r} is not https (security.require_https)")
        if not any(entry == "*" or url.startswith(entry) for entry in security.url_allowlist):
            raise Refused(f"url {url!r} matches no entry of security.url_allowlist")
        if security.block_private_ips and _is_ip(parts.hostname) and not _public(parts.hostname):
            raise Refused(f"url {url!r} is a non-public address (security.block_private_ips)")

    async def _call(self, target: Target, inv: Invocation) -> Any:
        body = b"" if target.method == "GET" else json.dumps(inv.data, separators=(",", ":")).encode()
        headers = {**target.headers, **_auth_headers(target, body, inv.function_id)}
        if body:
            headers["Content-Type"] = "application/json"
        timeout_ms = min(target.timeout_ms or self.config.default_timeout_ms, self.config.max_timeout_ms)
        try:
            async with self._client.request(
                target.method,
                target.url,
                data=body or None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000),
            ) as response:
                raw = await _read_capped(response.content, self.config.max_response_bytes)
                status = response.status
        except TimeoutError:
            raise InvocationError(
                ErrorCode.TIMEOUT, f"{target.url} did not answer within {timeout_ms} ms", function_id=inv.function_id
            ) from None
        except aiohttp.ClientError as exc:
            raise InvocationError(
                ErrorCode.HTTP_INVOCATION_FAILED, f"{target.url}: {exc}", function_id=inv.function_id
            ) from None
        if len(raw) > self.config.max_response_bytes:
            raise InvocationError(
                ErrorCode.HTTP_INVOCATION_FAILED,
                f"{target.url} answered more than max_response_bytes ({self.config.max_response_bytes})",
                function_id=inv.function_id,
            )
        if not 200 <= status < 300:
            text = raw[:512].decode(errors="replace")
            raise InvocationError(
                ErrorCode.HTTP_INVOCATION_FAILED, f"{target.url} answered {status}: {text}", function_id=inv.function_id
            )
        return _decoded(raw)


async def _read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    """The whole body, or its first `cap + 1` bytes when it is longer (the caller refuses that).

    `StreamReader.read(n)` returns what has arrived so far, not n bytes, so one read would cut a reply
    that comes in several pieces."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap and (chunk := await content.read(cap + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _auth_headers(target: Target, body: bytes, function_id: str) -> dict[str, str]:
    """The auth header, its secret read from the engine's environment at each call (so it can rotate)."""
    names = target.env_names()
    if not names:
        return {}
    secret = os.environ.get(names[0])
    if not secret:
        raise InvocationError(
            ErrorCode.HTTP_INVOCATION_FAILED, f"${names[0]} is not set in the engine", function_id=function_id
        )
    match target.auth:
        case Bearer():
            return {"Authorization": f"Bearer {secret}"}
        case ApiKey(header=header):
            return {header: secret}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-iii-Signature": f"sha256={digest}"}


def _decoded(raw: bytes) -> Any:
    """The reply's JSON; a reply that is not JSON is returned as text, an empty one as null."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _refusing(reason: str) -> Executor:
    async def refuse(inv: Invocation) -> Any:
        raise InvocationError(ErrorCode.FUNCTION_NOT_INVOKABLE, reason, function_id=inv.function_id)

    return refuse


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _public(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


class _PublicResolver(AbstractResolver):
    """Resolves names as usual, keeping only public addresses: the check holds for the address connected to."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = [entry for entry in await self._inner.resolve(host, port, family) if _public(entry["host"])]
        if not found:
            # With an errno, aiohttp's connection error shows the reason.
            raise OSError(errno.EHOSTUNREACH, f"{host} resolves to no public address (security.block_private_ips)")
        return found

    async def close(self) -> None:
        await self._inner.close()
