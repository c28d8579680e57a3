"""The policy rules: the rules file's model, the kernel defaults, and the first-match decision (iii-harness §3)."""

from __future__ import annotations

import re
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from teamster.harness.contracts import MatchedConstraint, PolicyDecision

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
