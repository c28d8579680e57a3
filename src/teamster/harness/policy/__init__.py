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
stops the poll when it closes. The rules file's model, the kernel defaults and the matching are in
`policy.rules`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from teamster.harness.policy.rules import NO_FILE, PolicyError, check, parse_policy
from teamster.protocol.handles import handles
from teamster.sdk import Worker

log = logging.getLogger("teamster.harness.policy")

DEFAULT_PATH = Path("iii-permissions.yaml")
PACKS_DIR = Path(__file__).parent.parent / "policies"  # the starter packs, package data

__all__ = ["DEFAULT_PATH", "Policy", "PolicyError", "PolicyWorker", "create_worker", "pack_path", "parse_policy"]


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
