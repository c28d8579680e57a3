"""`iii-state`: scoped key/value functions, atomic update ops and the `state` trigger type (§4.2)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from teamster.engine.builtin import BindingSet, Input, Module, parse
from teamster.engine.rbac import Session
from teamster.engine.registry import Invocation
from teamster.engine.reserved_names import ReservedNames, check_patterns, outsider
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.protocol.handles import handles
from teamster.protocol.limits import MAX_VALUE_BYTES, check_stored
from teamster.storage import Entry, StateChange, compare_and_set

INTERNAL_PREFIX = "__"  # scopes the engine keeps for itself, such as durable trigger bindings
MISSING: Any = object()  # an absent key, as opposed to a stored null
_ROOT = ""  # ops run on {_ROOT: value}, so the root is addressed like any other field

OpErrors = list[dict[str, Any]]


class StateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_value_bytes: int | None = Field(default=MAX_VALUE_BYTES, ge=1)  # null: no cap on size (depth still is)
    triggers_enabled: bool = True
    # Scopes (names or `prefix*`) only in-process workers and admin connections reach; `teamster up`
    # adds the harness's, the patterns' and the app's (teamster.app.reserved).
    reserved_scopes: list[str] = Field(default_factory=list)

    @field_validator("reserved_scopes")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return check_patterns(value)


class Scope(Input):
    scope: str


class Key(Scope):
    key: str


class SetValue(Key):
    value: Any = Field(validation_alias=AliasChoices("value", "data"))


class UpdateOp(Input):
    type: Literal["set", "merge", "increment", "decrement", "append", "remove"]
    path: str = ""
    value: Any = None
    by: int | float = 1


class Update(Key):
    ops: list[UpdateOp]


class StateTrigger(Input):
    scope: str | None = None
    key: str | None = None
    condition_function_id: str | None = None  # run by Engine.fire; declared so a non-string is refused

    def wants(self, change: StateChange) -> bool:
        """Absent fields match everything, except that catch-all bindings never see engine-internal scopes."""
        if self.scope is None:
            return not change.scope.startswith(INTERNAL_PREFIX) and self.key in (None, change.key)
        return self.scope == change.scope and self.key in (None, change.key)


class State(Module):
    name = "iii-state"
    Config = StateConfig
    config: StateConfig

    async def start(self) -> None:
        self._bindings = BindingSet(StateTrigger)
        self._reserved = ReservedNames(self.config.reserved_scopes, what="scope", key="iii-state reserved_scopes")
        self.engine.binding_guards["state"] = self._binding_denial
        self.engine.serve(self)
        await self.engine.builtin_type("state", self._bindings, "A value was created, updated or deleted")
        # Fired from the adapter's change feed, so writes from any engine sharing the store fire alike.
        self._unwatch = self.engine.storage.state.watch(self._changed) if self.config.triggers_enabled else None

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()

    @handles("state::set", description="Store a value under scope/key")
    async def _set(self, inv: Invocation) -> dict[str, Any]:
        req = parse(SetValue, inv.data, inv.function_id)
        self._check_scope(inv, req.scope)
        old, new, _ = await self._replace(req, lambda _: (req.value, []), ErrorCode.SET_ERROR, inv.function_id)
        return {"old_value": old, "new_value": new}

    @handles("state::get", description="Read the value under scope/key")
    async def _get(self, inv: Invocation) -> Any:
        req = parse(Key, inv.data, inv.function_id)
        self._check_scope(inv, req.scope)
        with storage_errors(ErrorCode.GET_ERROR, inv.function_id):
            entry = await self.engine.storage.state.get(req.scope, req.key)
        return None if entry is None else entry.value

    @handles("state::delete", description="Delete the value under scope/key")
    async def _delete(self, inv: Invocation) -> Any:
        req = parse(Key, inv.data, inv.function_id)
        self._check_scope(inv, req.scope)
        with storage_errors(ErrorCode.DELETE_ERROR, inv.function_id):
            entry = await self.engine.storage.state.delete(req.scope, req.key)
        return None if entry is None else entry.value

    @handles("state::update", description="Apply update ops atomically to the value under scope/key")
    async def _update(self, inv: Invocation) -> dict[str, Any]:
        req = parse(Update, inv.data, inv.function_id)
        self._check_scope(inv, req.scope)
        old, new, errors = await self._replace(
            req, lambda old: apply_ops(req.ops, old), ErrorCode.UPDATE_ERROR, inv.function_id
        )
        return change_result(old, new, errors)

    @handles("state::list", description="List the values of a scope")
    async def _list(self, inv: Invocation) -> list[Any]:
        req = parse(Scope, inv.data, inv.function_id)
        self._check_scope(inv, req.scope)
        with storage_errors(ErrorCode.LIST_ERROR, inv.function_id):
            return [value for _, value in await self.engine.storage.state.list(req.scope)]

    @handles("state::list_groups", description="List the scopes that hold values")
    async def _list_groups(self, inv: Invocation) -> dict[str, Any]:
        with storage_errors(ErrorCode.LIST_GROUPS_ERROR, inv.function_id):
            scopes = await self.engine.storage.state.scopes()
        hide_reserved = outsider(inv.session)
        shown = [s for s in scopes if not s.startswith(INTERNAL_PREFIX)]
        return {"groups": [s for s in shown if not (hide_reserved and self._reserved.covers(s))]}

    def _check_scope(self, inv: Invocation, scope: str) -> None:
        """The engine's own scopes (durable bindings, configuration entries) are reached by the engine,
        in-process workers and `admin` connections only: a write there could bind a trigger to what its
        writer may not call, or plant a `${VAR}` for `configuration::get` to expand. Reserved scopes
        are the in-process workers' (`reserved_scopes`)."""
        if scope.startswith(INTERNAL_PREFIX) and outsider(inv.session):
            raise InvocationError(
                ErrorCode.FORBIDDEN,
                f"{inv.function_id}: scope '{scope}' is the engine's own; only admin connections reach it",
                function_id=inv.function_id,
            )
        self._reserved.check(inv.session, scope, inv.function_id)

    def _binding_denial(self, session: Session, config: Any) -> str | None:
        """A `state` trigger of a non-admin session may not watch a reserved scope, nor every scope."""
        scope = config.get("scope") if isinstance(config, dict) else None
        if not isinstance(scope, str):  # a malformed one is refused by the provider
            if self._reserved and outsider(session):
                return (
                    "a state trigger without a scope would see the reserved scopes "
                    f"(iii-state reserved_scopes); role '{session.role or 'granted'}' must name its scope"
                )
            return None
        if scope.startswith(INTERNAL_PREFIX) and outsider(session):
            return f"scope '{scope}' is the engine's own; only admin connections reach it"
        return self._reserved.denial(session, scope)

    async def _replace(
        self, req: Key, compute: Callable[[Any], tuple[Any, OpErrors]], code: str, function_id: str
    ) -> tuple[Any, Any, OpErrors]:
        """Store `compute(old)` with compare-and-set, recomputing until no other write got in between."""
        errors: OpErrors = []

        def store(entry: Entry | None) -> Any:
            new, found = compute(MISSING if entry is None else entry.value)
            errors[:] = found  # from the attempt that is stored
            check_stored(new, self.config.max_value_bytes, "max_value_bytes", function_id)
            return new

        with storage_errors(code, function_id):
            replaced, new = await compare_and_set(self.engine.storage.state, req.scope, req.key, store)
        return (None if replaced is None else replaced.value), new, errors

    def _changed(self, change: StateChange) -> None:
        if change.deleted:
            event_type = "state:deleted"
        else:
            event_type = "state:created" if change.old_value is None else "state:updated"
        event = {
            "type": "state",
            "event_type": event_type,
            "scope": change.scope,
            "key": change.key,
            "old_value": change.old_value,
            "new_value": change.new_value,
        }
        self.engine.fire_in_order(self._bindings.matching(lambda c: c.wants(change)), event)


@contextmanager
def storage_errors(code: str, function_id: str) -> Iterator[None]:
    """Report a storage failure as `code`; errors already phrased for the caller pass through."""
    try:
        yield
    except InvocationError:
        raise
    except Exception as exc:
        raise InvocationError(code, f"{function_id}: {exc}", function_id=function_id) from exc


def change_result(old: Any, new: Any, errors: OpErrors) -> dict[str, Any]:
    """`{old_value, new_value, errors?}`: `errors` only when an op failed."""
    result = {"old_value": old, "new_value": new}
    return {**result, "errors": errors} if errors else result


class _OpFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def apply_ops(ops: list[UpdateOp], value: Any = MISSING) -> tuple[Any, OpErrors]:
    """Apply `ops` in order to a copy of `value`; a failing op is skipped and reported, the others apply."""
    doc = {} if value is MISSING else {_ROOT: copy.deepcopy(value)}
    errors: OpErrors = []
    for index, op in enumerate(ops):
        try:
            _apply(doc, op)
        except _OpFailed as exc:
            errors.append({"op_index": index, "code": f"{op.type}.{exc.reason}", "message": str(exc)})
    return doc.get(_ROOT, {} if value is MISSING else None), errors


def _apply(doc: dict[str, Any], op: UpdateOp) -> None:
    *parents, leaf = [_ROOT, *op.path.split(".")] if op.path else [_ROOT]
    where = op.path or "root"
    if op.type == "merge" and not isinstance(op.value, dict):
        raise _OpFailed("value.not_an_object", f"merge value must be an object, got {_kind(op.value)}")
    parent = _walk(doc, parents, create=op.type != "remove")
    if parent is None:
        return  # removing under a missing parent: nothing to remove
    current = parent.get(leaf, MISSING)
    match op.type:
        case "set":
            parent[leaf] = op.value
        case "remove":
            parent.pop(leaf, None)
        case "merge":
            if current is MISSING:
                parent[leaf] = dict(op.value)
            elif isinstance(current, dict):
                current.update(op.value)
            else:
                raise _OpFailed("target_not_object", f"cannot merge into {_kind(current)} at {where}")
        case "append":
            if current is MISSING or current is None:
                parent[leaf] = op.value if isinstance(op.value, str) else [op.value]
            elif isinstance(current, list):
                current.append(op.value)
            elif isinstance(current, str) and isinstance(op.value, str):
                parent[leaf] = current + op.value
            else:
                raise _OpFailed("type_mismatch", f"cannot append {_kind(op.value)} to {_kind(current)} at {where}")
        case "increment" | "decrement":
            by = op.by if op.type == "increment" else -op.by
            if current is MISSING:
                parent[leaf] = by
            elif isinstance(current, int | float) and not isinstance(current, bool):
                parent[leaf] = current + by
            else:
                raise _OpFailed("not_number", f"expected a number at {where}, got {_kind(current)}")


def _walk(doc: dict[str, Any], segments: list[str], *, create: bool) -> dict[str, Any] | None:
    """The object at `segments`, creating missing ones (or returning None when `create` is false)."""
    node = doc
    for segment in segments:
        child = node.get(segment, MISSING)
        if child is MISSING:
            if not create:
                return None
            child = node[segment] = {}
        elif not isinstance(child, dict):
            raise _OpFailed("target_not_object", f"{segment or 'root'} is {_kind(child)}, not an object")
        node = child
    return node


_KINDS = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)
