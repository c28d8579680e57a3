"""auth-credentials: a provider's credential, stored first, else its environment variable (iii-harness.md §7.4)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from teamster.harness.contracts import ApiKeyCredential, Credential
from teamster.protocol import InvocationError
from teamster.protocol.access import mark
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker
from teamster.storage.private import private_dir

ENV_VARS: dict[str, str] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openai-codex": "OPENAI_API_KEY",
    "azure-openai": "AZURE_OPENAI_API_KEY",
    "google": "GOOGLE_API_KEY",
    "google-vertex": "GOOGLE_APPLICATION_CREDENTIALS",
    "amazon-bedrock": "AWS_ACCESS_KEY_ID",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "xai": "XAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "vercel-ai-gateway": "VERCEL_AI_GATEWAY_API_KEY",
    "zai": "ZAI_API_KEY",
    "minimax": "MINIMAX_API_KEY",
    "huggingface": "HF_TOKEN",
    "fireworks": "FIREWORKS_API_KEY",
    "kimi": "MOONSHOT_API_KEY",
    "kimi-coding": "MOONSHOT_API_KEY",
    "lmstudio": "LMSTUDIO_API_KEY",
    "opencode-zen": "OPENCODE_ZEN_API_KEY",
    "opencode-go": "OPENCODE_GO_API_KEY",
}

Provider = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", max_length=64)]
Source = Literal["stored", "environment"]

FILE_SHAPE = TypeAdapter(dict[Provider, Credential])


class ProviderRequest(BaseModel):
    provider: Provider


class SetTokenRequest(ProviderRequest):
    # A payload that fails validation must not come back in the error text: it carries a secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    credential: Credential


class NoInput(BaseModel):
    pass


class Ok(BaseModel):
    ok: Literal[True] = True


class Deleted(BaseModel):
    deleted: bool


class Status(BaseModel):
    """What is configured for a provider; never the secret itself."""

    configured: bool
    source: Source | None = None
    label: str | None = None


class ProviderRow(BaseModel):
    provider: str
    configured: bool
    source: Source | None = None
    env_var: str | None = None


class Providers(BaseModel):
    providers: list[ProviderRow]


class CredentialStore:
    """A JSON file of provider → credential, read on every call and replaced atomically, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # handlers run on threads: one read-modify-write at a time

    def load(self) -> dict[str, Credential]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            return FILE_SHAPE.validate_json(raw)
        except ValidationError as exc:
            # Only location and message: pydantic's full text would echo the secrets it read.
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "file"
            raise InvocationError(
                ErrorCode.CREDENTIALS_CORRUPT,
                f"{self.path} is not a valid credentials file ({where}: {first['msg']}); fix or remove it",
            ) from None

    def put(self, provider: str, credential: Credential) -> None:
        with self._lock:
            self._write({**self.load(), provider: credential})

    def remove(self, provider: str) -> bool:
        with self._lock:
            stored = self.load()
            if stored.pop(provider, None) is None:
                return False
            self._write(stored)
            return True

    def _write(self, credentials: dict[str, Credential]) -> None:
        private_dir(self.path.parent)
        # mkstemp creates the file with os.open(..., 0o600): the secrets are never readable by others, even briefly.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(FILE_SHAPE.dump_json(credentials, indent=2, exclude_none=True))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def resolve(provider: str, stored: dict[str, Credential]) -> tuple[Credential, Source] | None:
    """Stored first, then the provider's environment variable as an api key."""
    if provider in stored:
        return stored[provider], "stored"
    env_var = ENV_VARS.get(provider)
    key = os.environ.get(env_var) if env_var else None
    return (ApiKeyCredential(key=key), "environment") if key else None


def label(credential: Credential) -> str:
    """`api key …abcd`: enough to tell keys apart; the last four characters only, and only of a long secret."""
    kind, secret = (
        ("api key", credential.key)
        if isinstance(credential, ApiKeyCredential)
        else ("oauth token", credential.access_token)
    )
    return f"{kind} …{secret[-4:]}" if len(secret) >= 12 else kind


def create_worker(*, path: str | Path | None = None, data_dir: str | Path = ".teamster") -> Worker:
    """The auth-credentials worker, storing in `path` (default `<data_dir>/credentials.json`).

    The functions that reveal or change a key are marked `secret`: over the bus only `provider` and
    `admin` connections reach them. `auth::status` and `auth::list_providers` never show a key."""
    store = CredentialStore(Path(path) if path is not None else Path(data_dir) / "credentials.json")
    worker = Worker("auth-credentials")

    @worker.function("auth::get_token", metadata=mark("secret"))
    def get_token(req: ProviderRequest) -> Credential | None:
        """The provider's credential: stored, else synthesised from its environment variable, else null."""
        found = resolve(req.provider, store.load())
        return found[0] if found else None

    @worker.function("auth::set_token", metadata=mark("secret"))
    def set_token(req: SetTokenRequest) -> Ok:
        """Store a credential for the provider, replacing any stored one."""
        store.put(req.provider, req.credential)
        return Ok()

    @worker.function("auth::delete_token", metadata=mark("secret"))
    def delete_token(req: ProviderRequest) -> Deleted:
        """Forget the stored credential (the environment variable, if any, still applies)."""
        return Deleted(deleted=store.remove(req.provider))

    @worker.function("auth::status")
    def status(req: ProviderRequest) -> Status:
        """Whether the provider is configured, from where, and a label; never the secret."""
        found = resolve(req.provider, store.load())
        return Status(configured=True, source=found[1], label=label(found[0])) if found else Status(configured=False)

    @worker.function("auth::list_providers")
    def list_providers(req: NoInput | None) -> Providers:
        """Every known provider and every stored one, with where its credential would come from."""
        stored = store.load()
        rows = []
        for provider in sorted(ENV_VARS.keys() | stored.keys()):
            found = resolve(provider, stored)
            rows.append(
                ProviderRow(
                    provider=provider,
                    configured=found is not None,
                    source=found[1] if found else None,
                    env_var=ENV_VARS.get(provider),
                )
            )
        return Providers(providers=rows)

    return worker
