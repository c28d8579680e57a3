"""Engine configuration: the YAML shape of iii §5, `${VAR:default}` expansion, flags over file over defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, FilePath, ValidationError, model_validator

from teamster.protocol.validation import first_error

DEFAULT_WS_PORT = 49134
DEFAULT_HTTP_PORT = 3111
DEFAULT_DATA_DIR = Path(".teamster")
MANDATORY = ("iii-engine-functions", "iii-observability", "configuration")
# Without iii-worker-manager the engine has no socket: in-process workers only.
DEFAULT_WORKERS = (
    "iii-worker-manager",
    *MANDATORY,
    "iii-traces",
    "iii-observe",
    "iii-state",
    "iii-stream",
    "iii-pubsub",
    "iii-queue",
    "iii-cron",
    "iii-http",
)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class ConfigError(Exception):
    """A config file that cannot be used; the message says where and why."""


class WorkerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    image: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class HarnessConfig(BaseModel):
    """The `harness:` block: which profile `teamster up` runs, and its options. The engine itself never reads it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)  # a --profile flag is checked like the file

    profile: Literal["thin", "thick"] = "thick"
    policy_pack: str | None = None  # a starter pack shipped with teamster: permissive, ask-all, read-only, no-network
    policy_file: FilePath | None = None  # default: ./iii-permissions.yaml when present
    approval_mode: Literal["manual", "auto", "full"] = "manual"
    catalog_files: list[FilePath] = Field(default_factory=list)  # merged over the shipped model catalog

    @model_validator(mode="after")
    def _one_policy_source(self) -> HarnessConfig:
        if self.policy_pack is not None and self.policy_file is not None:
            raise ValueError("give policy_pack or policy_file, not both")
        return self


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registration_namespace_grace_ms: int = Field(default=5000, ge=0)
    storage: Literal["memory", "sqlite"] = "sqlite"
    data_dir: Path = DEFAULT_DATA_DIR
    workers: list[WorkerEntry] = Field(default_factory=lambda: [WorkerEntry(name=n) for n in DEFAULT_WORKERS])
    modules: list[WorkerEntry] | None = None  # the older name for `workers`
    harness: HarnessConfig = Field(default_factory=HarnessConfig)

    @model_validator(mode="after")
    def _merge_modules(self) -> EngineConfig:
        if self.modules:
            self.workers = [*self.workers, *self.modules] if "workers" in self.model_fields_set else self.modules
            self.modules = None
        names = {w.name for w in self.workers}
        self.workers = [WorkerEntry(name=n) for n in MANDATORY if n not in names] + self.workers
        return self

    def worker(self, name: str) -> WorkerEntry | None:
        return next((w for w in self.workers if w.name == name), None)

    def set_port(self, name: str, port: int) -> None:
        entry = self.worker(name)
        if entry is None:
            entry = WorkerEntry(name=name)
            self.workers.append(entry)
        entry.config["port"] = port


def expand_env(text: str, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set and has no default (${{{name}:default}})")
        return default

    return _VAR.sub(sub, text)


def load_config(
    path: Path | None = None,
    *,
    ws_port: int | None = None,
    http_port: int | None = None,
    data_dir: Path | None = None,
    storage: str | None = None,
    profile: str | None = None,
) -> EngineConfig:
    """Defaults, then the file, then the flags."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(expand_env(text))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded or {}
    if storage is not None:
        raw["storage"] = storage
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    try:
        config = EngineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'config'}: {first_error(exc)}") from None
    if ws_port is not None:
        config.set_port("iii-worker-manager", ws_port)
    if http_port is not None:
        config.set_port("iii-http", http_port)
    if profile is not None:
        try:
            config.harness.profile = profile  # type: ignore[assignment]  # validated on assignment
        except ValidationError as exc:
            raise ConfigError(f"--profile: {exc.errors()[0]['msg']}") from None
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, on one line (PyYAML's own message spans several, with a source snippet)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())
