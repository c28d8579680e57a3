"""Each state scope has one owning worker: no harness worker names another's scope.

Read from the source, as tests/test_reserved_scopes.py reads it: every `{"scope": …}` value (a literal,
or a module constant) in each worker's modules. A worker is a module of `teamster.harness`, or a package
of them (the orchestrator). Another worker's data is asked for through a function id or arrives in a
trigger or event payload, never read from its scope."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import teamster.harness

HARNESS = Path(teamster.harness.__file__).parent


def _scopes_named(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    named: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "scope":
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    named.add(value.value)
                elif isinstance(value, ast.Name) and value.id in constants:
                    named.add(constants[value.id])
    return named


def _worker_of(path: Path) -> str:
    relative = path.relative_to(HARNESS)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_scope_is_named_by_one_worker_only() -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for path in HARNESS.rglob("*.py"):
        for scope in _scopes_named(path):
            owners[scope].add(_worker_of(path))
    assert owners  # the scan finds scopes at all
    assert {"approval", "budget"} <= {worker for named in owners.values() for worker in named}
    assert {scope: sorted(named) for scope, named in owners.items() if len(named) > 1} == {}
