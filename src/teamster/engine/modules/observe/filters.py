"""The observer filter language (`iii-filter` v1), as the official SDKs evaluate it.

A filter is a JSON object of clauses over a document `{input, output, error, caller, metadata}`:
a path (`input.amount`, `caller.function_id`, `output.items.0.sku`) with an operator object
(`{"$gte": 500}`), or `$and` / `$or` (arrays of filters) and `$not` (one filter). Operators:
`$eq $ne $in $nin $gt $gte $lt $lte $exists $prefix $any`. `{}` matches everything. Literal
values in place of an operator object are refused, so a filter never means more than it says.

Limits (the SDKs' own, so a filter an SDK accepts is accepted here): nesting depth 8, 64
operator nodes, 256 items in one `$in`/`$nin`, 16 path segments, 8192 bytes of compact JSON.
A filter that breaks a rule raises `FilterError` (wire code `INVALID_FILTER`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from teamster.protocol.errors import ErrorCode

MAX_DEPTH = 8
MAX_NODES = 64
MAX_SET_ITEMS = 256
MAX_PATH_SEGMENTS = 16
MAX_ENCODED_BYTES = 8192
ROOTS = frozenset({"input", "output", "error", "caller", "metadata"})
VALUE_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$prefix", "$any"})

ABSENT: Any = object()  # a path that leads nowhere, as opposed to a `null` value

Pred = Callable[[Mapping[str, Any], Any], bool]  # (document, current `$any` element) -> match
Op = Callable[[Any], bool]


class FilterError(ValueError):
    """A filter the language refuses; `code` is the wire error code."""

    code = ErrorCode.INVALID_FILTER


class Filter:
    """A validated filter: `normal` is the form pushed to the function's owner, `matches` evaluates."""

    __slots__ = ("_pred", "normal", "source")

    def __init__(self, source: Any) -> None:
        if not isinstance(source, dict):
            raise FilterError("a filter must be a JSON object")
        try:
            text = json.dumps(source, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FilterError(f"a filter must be JSON: {exc}") from None
        if len(text.encode("utf-8", "surrogatepass")) > MAX_ENCODED_BYTES:
            raise FilterError(f"the filter encodes to more than {MAX_ENCODED_BYTES} bytes")
        self.source: dict[str, Any] = json.loads(text)
        self._pred = _Compiler().filter(self.source, 1, inside_any=False)
        clauses = [{key: value} for key, value in self.source.items()]
        self.normal: dict[str, Any] = {"$and": clauses} if clauses else {}

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Total: an evaluation that fails on odd values is a non-match, never an error."""
        try:
            return self._pred(document, ABSENT)
        except Exception:
            return False


class _Compiler:
    def __init__(self) -> None:
        self.nodes = 0

    def _node(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"more than {MAX_NODES} operator nodes")

    def filter(self, source: Any, depth: int, *, inside_any: bool) -> Pred:
        if depth > MAX_DEPTH:
            raise FilterError(f"filters nested deeper than {MAX_DEPTH} levels")
        if not isinstance(source, dict):
            raise FilterError("a filter must be a JSON object")
        clauses: list[Pred] = []
        for key, value in source.items():
            if key == "$and":
                clauses.extend(self.filter(item, depth, inside_any=inside_any) for item in _filters(key, value))
            elif key == "$or":
                self._node()
                options = [self.filter(item, depth + 1, inside_any=inside_any) for item in _filters(key, value)]
                clauses.append(_either(options))
            elif key == "$not":
                self._node()
                clauses.append(_negation(self.filter(value, depth + 1, inside_any=inside_any)))
            elif key.startswith("$"):
                raise FilterError(f"`{key}` is not a clause here (a filter holds paths, `$and`, `$or` and `$not`)")
            else:
                clauses.append(self._path_clause(key, value, depth, inside_any))
        return lambda doc, el: all(clause(doc, el) for clause in clauses)

    def _path_clause(self, path: str, operators: Any, depth: int, inside_any: bool) -> Pred:
        resolve = _resolver(path, inside_any)
        if not isinstance(operators, dict) or not operators or any(not k.startswith("$") for k in operators):
            raise FilterError(f'`{path}`: expected an operator object such as {{"$eq": ...}}')
        ops = [self._operator(path, name, operand, depth) for name, operand in operators.items()]
        return lambda doc, el: _all_ops(ops, resolve(doc, el), doc)

    def _operator(self, path: str, name: str, operand: Any, depth: int) -> Callable[[Any, Mapping[str, Any]], bool]:
        self._node()
        if name == "$any":
            return self._any(path, operand, depth)
        op = _value_operator(path, name, operand)
        return lambda value, _doc: op(value)

    def _any(self, path: str, operand: Any, depth: int) -> Callable[[Any, Mapping[str, Any]], bool]:
        if not isinstance(operand, dict):
            raise FilterError(f"`{path}`: `$any` takes an operator object or a filter over `@`")
        if depth + 1 > MAX_DEPTH:
            raise FilterError(f"filters nested deeper than {MAX_DEPTH} levels")
        if operand and all(k in VALUE_OPERATORS for k in operand):
            ops = [self._operator(path, name, value, depth + 1) for name, value in operand.items()]
            return lambda value, doc: isinstance(value, list) and any(_all_ops(ops, item, doc) for item in value)
        inner = self.filter(operand, depth + 1, inside_any=True)
        return lambda value, doc: isinstance(value, list) and any(inner(doc, item) for item in value)


def _either(options: list[Pred]) -> Pred:
    return lambda doc, el: any(option(doc, el) for option in options)


def _negation(inner: Pred) -> Pred:
    return lambda doc, el: not inner(doc, el)


def _all_ops(ops: list[Callable[[Any, Mapping[str, Any]], bool]], value: Any, doc: Mapping[str, Any]) -> bool:
    return all(op(value, doc) for op in ops)


def _filters(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise FilterError(f"`{name}` takes a non-empty array of filters")
    return value


def _segments(path: str) -> list[str]:
    """`a.b\\.c` → `["a", "b.c"]`: `\\.` and `\\\\` escape inside a key."""
    parts, current, i = [], [], 0
    while i < len(path):
        ch = path[i]
        if ch == "\\":
            if i + 1 >= len(path) or path[i + 1] not in ".\\":
                raise FilterError(f"path `{path}`: a backslash escapes only `.` and `\\`")
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    if any(part == "" for part in parts):
        raise FilterError(f"path `{path}`: empty segment")
    return parts


def _resolver(path: str, inside_any: bool) -> Callable[[Mapping[str, Any], Any], Any]:
    root, *keys = _segments(path)
    if inside_any and root != "@":
        raise FilterError(f"path `{path}`: inside `$any` paths start at `@`, the element")
    if not inside_any and root not in ROOTS:
        raise FilterError(f"path `{path}`: unknown root `{root}` (one of {', '.join(sorted(ROOTS))})")
    if len(keys) > MAX_PATH_SEGMENTS:
        raise FilterError(f"path `{path}`: more than {MAX_PATH_SEGMENTS} segments")

    def resolve(doc: Mapping[str, Any], element: Any) -> Any:
        value = element if root == "@" else doc.get(root, ABSENT)
        for key in keys:
            if isinstance(value, dict):
                value = value.get(key, ABSENT)
            elif isinstance(value, list) and key.isdigit() and (key == "0" or not key.startswith("0")):
                index = int(key)
                value = value[index] if index < len(value) else ABSENT
            else:
                return ABSENT
        return value

    return resolve


def _value_operator(path: str, name: str, operand: Any) -> Op:
    if name == "$eq":
        return lambda v: v is not ABSENT and _equal(v, operand)
    if name == "$ne":
        return lambda v: v is ABSENT or not _equal(v, operand)
    if name in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(f"`{path}`: `{name}` takes an array")
        if len(operand) > MAX_SET_ITEMS:
            raise FilterError(f"`{path}`: `{name}` has more than {MAX_SET_ITEMS} items")
        if name == "$in":
            return lambda v: v is not ABSENT and any(_equal(v, item) for item in operand)
        return lambda v: v is ABSENT or not any(_equal(v, item) for item in operand)
    if name in ("$gt", "$gte", "$lt", "$lte"):
        return _ordering(path, name, operand)
    if name == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(f"`{path}`: `$exists` takes a boolean")
        return lambda v: (v is not ABSENT) is operand
    if name == "$prefix":
        if not isinstance(operand, str):
            raise FilterError(f"`{path}`: `$prefix` takes a string")
        return lambda v: isinstance(v, str) and v.startswith(operand)
    raise FilterError(f"`{path}`: unknown operator `{name}`")


def _ordering(path: str, name: str, bound: Any) -> Op:
    accept: dict[str, Callable[[int], bool]] = {
        "$gt": lambda c: c > 0,
        "$gte": lambda c: c >= 0,
        "$lt": lambda c: c < 0,
        "$lte": lambda c: c <= 0,
    }
    test = accept[name]
    if _is_number(bound):
        return lambda v: _is_number(v) and test((v > bound) - (v < bound))
    if isinstance(bound, str):
        return lambda v: isinstance(v, str) and test((v > bound) - (v < bound))
    raise FilterError(f"`{path}`: `{name}` takes a number or a string")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(value: Any, literal: Any) -> bool:
    """JSON equality: numbers by value (`1 == 1.0`), no coercion between types, key order ignored."""
    if _is_number(literal):
        return _is_number(value) and float(value) == float(literal)
    if isinstance(literal, bool) or literal is None:
        return value is literal
    if isinstance(literal, list):
        return (
            isinstance(value, list)
            and len(value) == len(literal)
            and all(_equal(a, b) for a, b in zip(value, literal, strict=True))
        )
    if isinstance(literal, dict):
        return (
            isinstance(value, dict)
            and value.keys() == literal.keys()
            and all(_equal(value[k], literal[k]) for k in literal)
        )
    return type(value) is type(literal) and bool(value == literal)
