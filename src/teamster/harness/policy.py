"""The `policy` worker: decides whether the model may call a function, from a YAML rules file (iii-harness §3).

`policy::check_permissions {function_id, args?}` scans the rules top to bottom; the first rule whose
function pattern and argument constraints match decides `allow` or `deny`, and no match is
`needs_approval`. The kernel defaults (denies, then allows) come before the file's rules unless
the file says `kernel_defaults: false`.

The rules file is re-read when its modification time or size changes. The poll runs in a task that
the first `policy::check_permissions` call starts (a task needs the running loop, which
`create_worker` may not have) and that the worker's `close()` stops. A file that cannot be loaded
leaves the last good rules in effect and is reported in one log line.

`Policy` holds the rules in effect and the handlers; `PolicyWorker` is the worker serving them, which
stops the poll when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from teamster.harness.contracts import MatchedConstraint, PolicyDecision
from teamster.protocol.handles import handles
from teamster.sdk import Worker

log = logging.getLogger("teamster.harness.policy")

DEFAULT_PATH = Path("iii-permissions.yaml")
PACKS_DIR = Path(__file__).with_name("policies")
_MISSING: Any = object()  # an argument the call does not carry, as opposed to a null one

KERNEL_DENY = {
    "kernel/no-self-approve": "approval::resolve",
    "kernel/no-self-policy": "policy::check_permissions",
    "kernel/no-self-hook": "hook-fanout::publish_collect",
    "kernel/no-state-set": "state::set",
    "kernel/no-state-update": "state::update",
    "kernel/no-state-delete": "state::delete",
    "kernel/no-stream-set": "stream::set",
    "kernel/no-durable-publish": "iii::durable::publish",
    "kernel/no-auth-set": "auth::set_token",
    "kernel/no-auth-delete": "auth::delete_token",
    "kernel/no-oauth-login": "oauth::*::login",
    "kernel/no-self-run-start": "run::start",
    "kernel/no-router-stream-assistant": "router::stream_assistant",
    "kernel/no-router-abort": "router::abort",
}
KERNEL_ALLOW = (
    "state::get",
    "state::list",
    "models::list",
    "models::get",
    "models::supports",
    "auth::get_token",
    "auth::list_providers",
    "auth::status",
    "directory::engine::*",
    "directory::skills::*",
    "directory::prompts::*",
)


class PolicyError(ValueError):
    """A rules text that cannot be used; the message says where and why, on one line."""


class Constraint(BaseModel):
    """`{equals: value}` (deep equality) or `{matches: regex}` (searched in string arguments only)."""

    model_config = ConfigDict(extra="forbid")

    equals: Any = None
    matches: str = ""
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_operator(self) -> Self:
        if len(self.model_fields_set) != 1:
            raise ValueError("a constraint is either {equals: value} or {matches: regex}")
        if "matches" in self.model_fields_set:
            try:
                self._regex = re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.matches!r}: {exc}") from None
        return self

    def holds(self, value: Any) -> bool:
        if value is _MISSING:
            return False
        if self._regex is not None:
            return isinstance(value, str) and self._regex.search(value) is not None
        return _deep_equal(value, self.equals)

    def described(self, field: str) -> MatchedConstraint:
        if self._regex is not None:
            return MatchedConstraint(field=field, operator="matches", value=self.matches)
        return MatchedConstraint(field=field, operator="equals", value=self.equals)


class Rule(BaseModel):
    """One rule: `"pattern"` (allow), `"!pattern"` (deny), or `{rule_id?, function, action, args?}`."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str = ""  # defaults to the function pattern
    function: str = Field(min_length=1)
    action: Literal["allow", "deny"]
    args: dict[str, Constraint] = Field(default_factory=dict)
    _glob: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            deny = value.startswith("!")
            return {"function": value.removeprefix("!"), "action": "deny" if deny else "allow"}
        return value

    @model_validator(mode="after")
    def _compile(self) -> Self:
        self.rule_id = self.rule_id or self.function
        self.args = dict(sorted(self.args.items()))
        self._glob = re.compile(".*".join(re.escape(part) for part in self.function.split("*")))
        return self

    def decide(self, function_id: str, args: dict[str, Any]) -> PolicyDecision | None:
        """This rule's decision for the call, or None when it does not match."""
        if self._glob.fullmatch(function_id) is None:
            return None
        if not all(constraint.holds(args.get(field, _MISSING)) for field, constraint in self.args.items()):
            return None
        if self.action == "allow":
            return PolicyDecision(decision="allow", rule_id=self.rule_id)
        reply: dict[str, Any] = {"decision": "deny", "rule_id": self.rule_id, "rule_action": "deny"}
        if self.args:
            reply["matched_constraint"] = next(c.described(field) for field, c in self.args.items())
        return PolicyDecision.model_validate(reply)


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    kernel_defaults: bool = True
    rules: list[Rule] = Field(default_factory=list)

    def active_rules(self) -> tuple[Rule, ...]:
        return (*KERNEL_RULES, *self.rules) if self.kernel_defaults else tuple(self.rules)


KERNEL_RULES = (
    *(Rule(rule_id=rule_id, function=function, action="deny") for rule_id, function in KERNEL_DENY.items()),
    *(Rule.model_validate(pattern) for pattern in KERNEL_ALLOW),
)
NO_FILE = PolicyFile(version=1)


def parse_policy(text: str) -> PolicyFile:
    """Parse and check a rules file; raises PolicyError."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(_yaml_problem(exc)) from None
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise PolicyError(f"{where}: {first['msg']}") from None


def check(rules: tuple[Rule, ...], function_id: str, args: dict[str, Any]) -> PolicyDecision:
    """The first matching rule's decision; no match needs approval."""
    for rule in rules:
        if (decision := rule.decide(function_id, args)) is not None:
            return decision
    return PolicyDecision(decision="needs_approval")


def pack_path(name: str) -> Path:
    """The file of a starter rule pack shipped with teamster."""
    path = PACKS_DIR / f"{name}.yaml"
    if not path.is_file():
        packs = ", ".join(sorted(p.stem for p in PACKS_DIR.glob("*.yaml")))
        raise ValueError(f"no policy pack named {name!r} (packs: {packs})")
    return path


class CheckRequest(BaseModel):
    function_id: str = Field(min_length=1)
    args: dict[str, Any] | None = None


class ValidateRequest(BaseModel):
    text: str


class Policy:
    """The handlers, with what they share: the rules file, the rules in effect and the task that reloads them."""

    def __init__(self, path: Path, *, reload_interval: float = 1.0) -> None:
        self.path = path
        self.reload_interval = reload_interval
        self.file = NO_FILE  # the rules file in effect: the last one that loaded
        self._rules = NO_FILE.active_rules()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._poller: asyncio.Task[None] | None = None
        self.load()

    @handles("policy::check_permissions")
    async def check_permissions(self, req: CheckRequest) -> dict[str, Any]:
        """Decide allow, deny or needs_approval for a call of `function_id` with `args`."""
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        decision = check(self._rules, req.function_id, req.args or {})
        return decision.model_dump(mode="json", exclude_unset=True)

    @handles("policy::reload")
    async def reload(self, _: dict[str, Any] | None) -> dict[str, Any]:
        """Re-read the rules file now; on failure the last good rules stay in effect."""
        problem = self.load()
        reply: dict[str, Any] = {"ok": problem is None, "rules": len(self.file.rules)}
        return reply if problem is None else {**reply, "error": problem}

    @handles("policy::validate")
    async def validate(self, req: ValidateRequest) -> dict[str, Any]:
        """Check a rules text without loading it: {ok, rules} or {ok: false, error}."""
        try:
            return {"ok": True, "rules": len(parse_policy(req.text).rules)}
        except PolicyError as exc:
            return {"ok": False, "error": str(exc)}

    def load(self) -> str | None:
        """Read the rules file and put its rules in effect; returns why not, when it cannot."""
        self._seen = _signature(self.path)
        try:
            policy = parse_policy(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: PolicyError, or text that is not UTF-8
            missing = isinstance(exc, FileNotFoundError)
            problem = f"file not found: {self.path}" if missing else str(exc)
            if missing and self.file is NO_FILE and self.path == DEFAULT_PATH:  # the usual first run, not a fault
                log.info("policy: no %s; the kernel defaults apply and other calls ask for approval", self.path)
            else:
                log.warning("policy: %s not loaded (%s); keeping the rules in effect", self.path, problem)
            return problem
        for rule_id, count in Counter(rule.rule_id for rule in policy.rules).items():
            if count > 1:
                log.warning("policy: rule_id %r appears %d times in %s", rule_id, count, self.path)
        self.file, self._rules = policy, policy.active_rules()
        log.info("policy: loaded %d rules from %s", len(policy.rules), self.path)
        return None

    async def stop(self) -> None:
        """Stop watching the rules file."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            if _signature(self.path) != self._seen:
                self.load()


class PolicyWorker(Worker):
    """The `policy` worker: serves `policy`'s functions and stops its file watch when it closes."""

    def __init__(self, policy: Policy) -> None:
        super().__init__("policy", description="Allow, deny or ask for approval of function calls")
        self.policy = policy
        self.serve(policy)

    async def close(self) -> None:
        await self.policy.stop()
        await super().close()


def create_worker(
    path: str | os.PathLike[str] | None = None, *, pack: str | None = None, reload_interval: float = 1.0
) -> PolicyWorker:
    """The policy worker over a rules file (default `./iii-permissions.yaml`) or a starter pack by name."""
    if path is not None and pack is not None:
        raise ValueError("give a rules file or a pack name, not both")
    source = pack_path(pack) if pack is not None else Path(path or DEFAULT_PATH)
    return PolicyWorker(Policy(source, reload_interval=reload_interval))


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _deep_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ==, true is not 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if a != b:
        return False
    return type(a) is type(b) or (_is_number(a) and _is_number(b))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what on one line; PyYAML's own message spans several."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        hint = " (quote rules that start with '!')" if isinstance(exc, yaml.constructor.ConstructorError) else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{hint}"
    return " ".join(str(exc).split())
