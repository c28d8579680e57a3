"""A provider's credential, fetched over the bus from `auth::get_token`, and the secret it carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from teamster.harness.contracts import Credential
from teamster.harness.providers.errors import ProviderError
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

Credentials = Callable[[str], Awaitable[Any]]  # provider name -> Credential, or None when there is none

_CREDENTIAL: TypeAdapter[Any] = TypeAdapter(Credential)


async def get_credential(worker: Worker, provider: str, timeout: float = 5.0) -> Any:
    """`auth::get_token {provider}` → an ApiKeyCredential / OAuthCredential, or None when there is none
    (or when no worker serves `auth::get_token`)."""
    try:
        reply = await worker.trigger("auth::get_token", {"provider": provider}, timeout=timeout)
    except InvocationError as exc:
        if exc.code == ErrorCode.FUNCTION_NOT_FOUND:
            return None
        raise ProviderError(f"could not get a credential for {provider}: {exc.message}", "transient") from exc
    if reply is None:
        return None
    try:
        return _CREDENTIAL.validate_python(reply)
    except ValidationError as exc:
        raise ProviderError(f"auth::get_token returned an unusable credential for {provider}", "auth_expired") from exc


def credential_secret(credential: Any) -> str:
    """The bearer secret of a credential: the API key or the OAuth access token."""
    secret = getattr(credential, "key", None) or getattr(credential, "access_token", None)
    if not isinstance(secret, str) or not secret:
        raise ProviderError("the credential has no key", "auth_expired")
    return secret
