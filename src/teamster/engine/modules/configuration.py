"""`configuration`: schema-checked configuration entries kept in the engine's storage, and their trigger (§4.10)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import orjson
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from referencing import Registry
from referencing.exceptions import Unresolvable

from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.config import ConfigError, expand_env
from teamster.engine.modules.state import storage_errors
from teamster.engine.registry import Invocation
from teamster.protocol import InvocationError
from teamster.protocol.access import mark
from teamster.protocol.errors import ErrorCode
from teamster.storage import StateChange, compare_and_set

SCOPE = "__teamster::configuration"  # one state key per id: {id, name, description, schema, value, metadata?}

_ID = re.compile(r"[a-z0-9_-]{1,64}")  # iii's rule, so an id teamster accepts is one iii accepts
_LONE_PLACEHOLDER = re.compile(r"\s*\$\{[^}]*\}\s*")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
_NO_REMOTE_REFS = Registry()  # an explicit registry: a `$ref` to a URL is never fetched

Stored = dict[str, Any]
EventType = Literal["configuration:registered", "configuration:updated", "configuration:deleted"]


class ConfigurationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter: Any = None  # accepted for iii config files; entries always live in the engine's storage


class Ref(Input):
    id: str


class Get(Ref):
    raw: bool = False


class SetValue(Ref):
    value: Any


class Register(Ref):
    name: str
    description: str
    json_schema: dict[str, Any] | StrictBool = Field(alias="schema")
    initial_value: Any = None  # null or absent: keep the stored value (a new entry starts as null)
    metadata: Any = None


class ConfigurationTrigger(Input):
    configuration_id: str | None = None
    event_types: list[EventType] | None = None
    condition_function_id: str | None = None  # run by Engine.fire; declared so a non-string is refused

    def wants(self, event: dict[str, Any]) -> bool:
        """Absent filters match every id and every event type."""
        return self.configuration_id in (None, event["id"]) and (
            self.event_types is None or event["event_type"] in self.event_types
        )


class Configuration(Module):
    name = "configuration"
    Config = ConfigurationConfig

    async def start(self) -> None:
        self._bindings = BindingSet(ConfigurationTrigger)
        for function_id, handler, description in (
            ("configuration::register", self._register, "Register an id with a name, description and JSON Schema"),
            ("configuration::set", self._set, "Replace the value of a registered id, checked against its schema"),
            ("configuration::get", self._get, "Read the value of an id, ${VAR:default} expanded unless raw"),
            ("configuration::list", self._list, "List registered ids with their schemas, without values"),
            ("configuration::schema", self._schema, "Read the name, description and schema of an id"),
        ):
            self.engine.builtin(function_id, handler, description=description)
        await self.engine.builtin_type(
            "configuration", self._bindings, "A configuration entry was registered, updated or deleted"
        )
        # Fired from the adapter's change feed, so writes from any engine sharing the store fire alike.
        self._unwatch = self.engine.storage.state.watch(self._changed)

    async def stop(self) -> None:
        self._unwatch()

    async def _register(self, inv: Invocation) -> Stored:
        req = parse(Register, inv.data, inv.function_id)
        _check_id(req.id, inv.function_id)
        try:
            validator_for(req.json_schema, default=Draft202012Validator).check_schema(req.json_schema)
        except SchemaError as exc:
            raise InvocationError(
                ErrorCode.SCHEMA_INVALID,
                f"{inv.function_id}: invalid JSON Schema: {_where(exc)}",
                function_id=inv.function_id,
            ) from None
        if req.initial_value is not None:
            _check_value(req.json_schema, req.initial_value, req.id, inv.function_id)
            _check_may_name_env(inv, req.initial_value)

        def registered(old: Stored | None) -> Stored:
            kept = None if old is None else old["value"]
            entry = {
                "id": req.id,
                "name": req.name,
                "description": req.description,
                "schema": req.json_schema,
                "value": kept if req.initial_value is None else req.initial_value,
            }
            return entry if req.metadata is None else {**entry, "metadata": req.metadata}

        _, entry = await self._write(req.id, registered, inv.function_id)
        return entry

    async def _set(self, inv: Invocation) -> dict[str, Any]:
        req = parse(SetValue, inv.data, inv.function_id)
        _check_id(req.id, inv.function_id)
        _check_may_name_env(inv, req.value)

        def replaced(old: Stored | None) -> Stored:
            if old is None:
                raise InvocationError(
                    ErrorCode.NOT_REGISTERED,
                    f"{inv.function_id}: {req.id!r} is not registered; call configuration::register first",
                    function_id=inv.function_id,
                )
            _check_value(old["schema"], req.value, req.id, inv.function_id)
            return {**old, "value": req.value}

        old, new = await self._write(req.id, replaced, inv.function_id)
        return {"old_value": None if old is None else old["value"], "new_value": new["value"]}

    async def _get(self, inv: Invocation) -> dict[str, Any]:
        req = parse(Get, inv.data, inv.function_id)
        entry = await self._read(req.id, inv.function_id)
        if req.raw:
            return {"id": req.id, "value": entry["value"]}
        try:
            value = expand(entry["value"])
        except ConfigError as exc:
            raise InvocationError(
                ErrorCode.EXPAND_FAILED, f"{inv.function_id}: {req.id!r}: {exc}", function_id=inv.function_id
            ) from None
        # The environment may have changed since the value was set: never hand out one that breaks the schema.
        _check_match(entry["schema"], value, req.id, inv.function_id)
        return {"id": req.id, "value": value}

    async def _list(self, inv: Invocation) -> dict[str, Any]:
        with storage_errors(ErrorCode.ADAPTER_ERROR, inv.function_id):
            entries = await self.engine.storage.state.list(SCOPE)
        return {"configurations": [_view(entry) for _, entry in entries]}

    async def _schema(self, inv: Invocation) -> Stored:
        req = parse(Ref, inv.data, inv.function_id)
        return _view(await self._read(req.id, inv.function_id))

    async def _read(self, config_id: str, function_id: str) -> Stored:
        with storage_errors(ErrorCode.ADAPTER_ERROR, function_id):
            stored = await self.engine.storage.state.get(SCOPE, config_id)
        if stored is None:
            raise InvocationError(
                ErrorCode.NOT_FOUND, f"{function_id}: {config_id!r} is not registered", function_id=function_id
            )
        entry: Stored = stored.value
        return entry

    async def _write(
        self, config_id: str, compute: Callable[[Stored | None], Stored], function_id: str
    ) -> tuple[Stored | None, Stored]:
        """Store `compute(old)` with compare-and-set, recomputing until no other write got in between."""
        with storage_errors(ErrorCode.ADAPTER_ERROR, function_id):
            replaced, new = await compare_and_set(
                self.engine.storage.state,
                SCOPE,
                config_id,
                lambda entry: compute(None if entry is None else entry.value),
            )
        return (None if replaced is None else replaced.value), new

    def _changed(self, change: StateChange) -> None:
        if change.scope != SCOPE:
            return
        old, new = change.old_value, None if change.deleted else change.new_value
        if change.deleted:
            event_type = "configuration:deleted"
        else:
            event_type = "configuration:registered" if old is None else "configuration:updated"
        event = {
            "type": "configuration",
            "event_type": event_type,
            **_view(new if new is not None else old),
            "old_value": None if old is None else _expanded_if_possible(old["value"]),
            "new_value": None if new is None else _expanded_if_possible(new["value"]),
        }
        self.engine.fire_in_order(self._bindings.matching(lambda c: c.wants(event)), event)


def _check_may_name_env(inv: Invocation, value: Any) -> None:
    """A value naming `${VAR}` makes every later `get` read the engine's environment, where the keys
    live: writing one is reading a secret, for connections cleared for `secret` (and in-process callers)."""
    session = inv.session
    if session is None or session.allows(inv.function_id, "default", mark("secret")) or not _names_env(value):
        return
    raise InvocationError(
        ErrorCode.FORBIDDEN,
        f"{inv.function_id}: a value naming ${{VAR}} reads the engine's environment; "
        "only provider and admin connections may write one",
        function_id=inv.function_id,
    )


def _names_env(value: Any) -> bool:
    if isinstance(value, str):
        return _PLACEHOLDER.search(value) is not None
    if isinstance(value, list):
        return any(_names_env(item) for item in value)
    if isinstance(value, dict):
        return any(_names_env(item) for item in value.values())
    return False


def expand(value: Any) -> Any:
    """`value` with `${VAR}`/`${VAR:default}` expanded in every string (ConfigError for an unset var, no default).

    A string that is a lone placeholder is read as JSON when it parses, so `"${PORT:3111}"` becomes 3111.
    """
    if isinstance(value, str):
        text = expand_env(value)
        if _LONE_PLACEHOLDER.fullmatch(value) and text.strip():
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                pass
        return text
    if isinstance(value, list):
        return [expand(item) for item in value]
    if isinstance(value, dict):
        return {key: expand(item) for key, item in value.items()}
    return value


def _expanded_if_possible(value: Any) -> Any:
    """Trigger events carry expanded values where they can; get is where an unset variable is reported."""
    try:
        return expand(value)
    except ConfigError:
        return value


def _check_id(config_id: str, function_id: str) -> None:
    if not _ID.fullmatch(config_id):
        raise InvocationError(
            ErrorCode.INVALID_ID,
            f"{function_id}: invalid configuration id {config_id!r}: it must match [a-z0-9_-]{{1,64}}",
            function_id=function_id,
        )


def _check_value(schema: dict[str, Any] | bool, value: Any, config_id: str, function_id: str) -> None:
    """Check a value about to be stored as it will be applied, with its placeholders expanded."""
    try:
        applied = expand(value)
    except ConfigError:
        return  # refers to a variable that is not set yet: checked by get, once the value can be applied
    _check_match(schema, applied, config_id, function_id)


def _check_match(schema: dict[str, Any] | bool, applied: Any, config_id: str, function_id: str) -> None:
    """Raise SCHEMA_INVALID listing every way `applied` breaks `schema`."""
    validator = validator_for(schema, default=Draft202012Validator)(schema, registry=_NO_REMOTE_REFS)
    try:
        problems = [_where(error) for error in sorted(validator.iter_errors(applied), key=lambda e: e.json_path)]
    except Unresolvable as exc:
        problems = [f"the schema has a $ref that cannot be resolved: {exc}"]
    if problems:
        raise InvocationError(
            ErrorCode.SCHEMA_INVALID,
            f"{function_id}: the value of {config_id!r} does not match its schema: {'; '.join(problems)}",
            function_id=function_id,
        )


def _where(error: Any) -> str:
    """A jsonschema error on one line: `$.path: what`."""
    return f"{error.json_path}: {error.message}"


def _view(entry: Stored) -> Stored:
    """An entry without its value: what list and schema answer."""
    return {key: entry[key] for key in ("id", "name", "description", "schema", "metadata") if key in entry}
