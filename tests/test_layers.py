"""The layers hold: every import under src/teamster points down, and harness workers keep to their own state
scopes (docs/architecture.md draws the map).

Each module is parsed, not imported, so an import inside a function or under `if TYPE_CHECKING:` counts
like any other: a layer that may not depend on another may not even name it for the type checker.
A failure names the file, the line and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from teamster.harness import approval, budget, compaction, trigger
from teamster.harness.orchestrator import exclusive, runtime
from teamster.harness.sessions import inboxes, store

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "teamster"

# What each layer may import besides itself. `teamster` alone (the package, which holds only the
# version) is open to all; `teamster.cli` and `teamster.__main__` gather everything, so they sit on top.
BELOW: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "storage": frozenset({"protocol"}),
    "engine": frozenset({"protocol", "storage"}),
    "sdk": frozenset({"protocol"}),
    "harness": frozenset({"protocol", "storage", "sdk"}),
    "patterns": frozenset({"protocol", "sdk", "harness"}),
    "app": frozenset({"protocol", "storage", "engine", "sdk", "harness", "patterns"}),
    "schemas": frozenset({"protocol", "sdk", "harness", "patterns"}),
    "bench": frozenset({"protocol", "storage", "engine", "sdk", "harness", "patterns", "app"}),
    "cli": frozenset({"protocol", "storage", "engine", "sdk", "harness", "patterns", "app", "bench"}),
    "__main__": frozenset({"cli"}),
}

# Harness modules every harness worker may import: the typed contracts on the bus (the shapes workers
# exchange; the harness events), and libraries that are no worker's (a lease on a state key; a cache of what
# a worker itself wrote; an example value for a schema; the reading of a provider's stream).
HARNESS_SHARED = frozenset({"contracts", "harness_events", "lease", "owned", "schema_example", "assistant_stream"})

# Each reserved state scope of the harness, and the worker that owns it: the one that writes it. Another
# harness worker asks the owner through a function instead of reading the scope or binding a trigger on it.
SCOPE_OWNERS = {
    approval.APPROVALS_SCOPE: "approval",
    approval.SETTINGS_SCOPE: "approval",
    budget.SCOPE: "budget",
    store.META_SCOPE: "sessions",
    inboxes.INBOX_SCOPE: "sessions",
    runtime.RECORDS: "orchestrator",
    runtime.REQUESTS: "orchestrator",
    exclusive.LEASES: "orchestrator",
    compaction.LEASE_SCOPE: "compaction",
    trigger.REQUESTS: "trigger",
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module, dotted

    def __str__(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}: {self.module} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    """Every `teamster…` module `path` imports, relative imports resolved; `from m import x` names `m.x`
    too when `x` is a submodule (`from teamster.harness import approval`)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}"))]
        found += [Import(module, path, node.lineno, t) for t in targets if t.split(".")[0] == "teamster"]
    return found


def is_module(name: str) -> bool:
    where = SRC.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def broken_rule(imp: Import) -> str | None:
    """Why `imp` is not allowed, or None when it is."""
    own, target = layer_of(imp.module), layer_of(imp.target)
    if own is None or target is None or own == target:
        return _harness_rule(imp) if own == target == "harness" else None
    if own not in BELOW:
        return f"teamster.{own} is in no layer: add it to BELOW and to docs/architecture.md"
    if target not in BELOW[own]:
        return f"{own} may import only {', '.join(sorted(BELOW[own])) or 'nothing else in teamster'}"
    return None


def _harness_rule(imp: Import) -> str | None:
    """A harness worker reaches another only through function ids: it imports the shared modules and its own."""
    own = imp.module.split(".")[2:3]
    target = imp.target.split(".")[2:3]
    if not own or not target or own == target or target[0] in HARNESS_SHARED:
        return None
    return f"harness worker {own[0]} imports harness worker {target[0]}: call it through its function ids"


@dataclass(frozen=True, slots=True)
class ScopeUse:
    module: str
    path: Path
    line: int
    scope: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}: {self.module} names state scope {self.scope!r}"


def scopes_named(path: Path) -> list[ScopeUse]:
    """Every `{"scope": …}` in `path` whose value is a string, written out or a module-level constant:
    the payloads of `state::*` calls and the configs of `state` triggers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found: list[ScopeUse] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and key.value == "scope"):
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(ScopeUse(module_name(path), path, value.lineno, value.value))
            elif isinstance(value, ast.Name) and value.id in constants:
                found.append(ScopeUse(module_name(path), path, value.lineno, constants[value.id]))
    return found


def foreign_scope(use: ScopeUse) -> str | None:
    """The owner of the scope `use` names, when that is another harness worker."""
    worker = use.module.split(".")[2] if use.module.count(".") >= 2 else None
    owner = SCOPE_OWNERS.get(use.scope)
    return owner if owner is not None and worker != owner else None


def harness_scope_uses() -> list[ScopeUse]:
    return [use for path in sorted((PACKAGE / "harness").rglob("*.py")) for use in scopes_named(path)]


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def test_every_import_points_down() -> None:
    broken = [f"{imp}: {why}" for imp in all_imports() if (why := broken_rule(imp)) is not None]
    assert not broken, "\n".join(broken)


def test_harness_workers_name_only_their_own_scopes() -> None:
    broken = [
        f"{use}, which {owner} owns: ask {owner} through a function"
        for use in harness_scope_uses()
        if (owner := foreign_scope(use)) is not None
    ]
    assert not broken, "\n".join(broken)


def test_every_owner_names_the_scopes_it_owns() -> None:
    written = {(use.module.split(".")[2], use.scope) for use in harness_scope_uses()}
    owned = {(owner, scope) for scope, owner in SCOPE_OWNERS.items()}
    # Scopes passed to a helper as a parameter (the orchestrator's runtime, the leases) are not literal here.
    assert owned - written <= {
        ("orchestrator", runtime.RECORDS),
        ("orchestrator", runtime.REQUESTS),
        ("orchestrator", exclusive.LEASES),
        ("compaction", compaction.LEASE_SCOPE),
    }


def test_the_rules_catch_what_they_are_for() -> None:
    def rule(module: str, target: str, file: str = "x.py") -> str | None:
        return broken_rule(Import(module, SRC / file, 1, target))

    assert rule("teamster.sdk.worker", "teamster.engine.registry") is not None
    assert rule("teamster.engine.engine", "teamster.sdk") is not None
    assert rule("teamster.protocol.messages", "teamster.storage") is not None
    assert rule("teamster.storage.sqlite", "teamster.engine.config") is not None
    assert rule("teamster.harness.policy", "teamster.engine.rbac") is not None
    assert rule("teamster.patterns.run", "teamster.app.runs") is not None
    assert rule("teamster.app.cli", "teamster.bench.command") is not None
    assert rule("teamster.harness.orchestrator.steps", "teamster.harness.approval") is not None
    assert rule("teamster.harness.orchestrator.steps", "teamster.harness.orchestrator.calls") is None
    assert rule("teamster.harness.approval", "teamster.harness.contracts") is None
    assert rule("teamster.bench.patterns", "teamster.app.run") is None
    assert rule("teamster.sdk.worker", "teamster") is None


def test_relative_imports_resolve_to_their_module() -> None:
    found = {imp.target for imp in imports_of(PACKAGE / "storage" / "sqlite.py")}
    assert {"teamster.storage.base", "teamster.storage.private"} <= found


def test_importing_the_sdk_loads_no_engine_module() -> None:
    script = "import sys, teamster.sdk; print(sorted(m for m in sys.modules if m.startswith('teamster.engine')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
