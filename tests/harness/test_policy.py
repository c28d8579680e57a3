"""The policy worker on a real engine: rule forms, kernel defaults, hot reload, starter packs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.policy import PolicyWorker, create_worker
from teamster.sdk import Worker
from tests.conftest import Connect, eventually, expect_bad_input

POLL = 0.02
CHECK = "policy::check_permissions"

FORMS = """
version: 1
kernel_defaults: false
rules:
  - "fs::read"
  - "!shell::*"
  - rule_id: no-prod
    function: deploy::run
    action: deny
    args: {env: {equals: prod}}
  - rule_id: tmp-writes
    function: fs::write
    action: allow
    args: {path: {matches: "^/tmp/"}}
  - function: fs::write
    action: deny
    args:
      path: {matches: "^/etc/"}
      mode: {equals: {recursive: true, depth: [1, 2]}}
  - rule_id: no-rm
    function: term::run
    action: deny
    args: {cmd: {matches: "rm -rf"}}
  - function: opt::x
    action: allow
    args: {flag: {equals: null}}
  - "*::list"
"""

ASK: dict[str, Any] = {"decision": "needs_approval"}


def allow(rule_id: str) -> dict[str, Any]:
    return {"decision": "allow", "rule_id": rule_id}


def deny(rule_id: str, **matched: Any) -> dict[str, Any]:
    reply = {"decision": "deny", "rule_id": rule_id, "rule_action": "deny"}
    return {**reply, "matched_constraint": matched} if matched else reply


def rules_file(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def serve(connect: Connect, policy: PolicyWorker) -> Worker:
    """Connect the policy worker and a client; returns the client."""
    await connect(policy)
    return await connect(Worker("client"))


async def decide(client: Worker, function_id: str, args: dict[str, Any] | None = None) -> Any:
    return await client.trigger(
        CHECK, {"function_id": function_id} if args is None else {"function_id": function_id, "args": args}
    )


def decides(client: Worker, function_id: str, expected: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the policy now gives `expected` for `function_id`."""

    async def check() -> bool:
        return bool(await decide(client, function_id) == expected)

    return check


FORM_CASES = [
    ("fs::read", None, allow("fs::read")),
    ("fs::reader", None, ASK),
    ("shell::exec", None, deny("shell::*")),
    ("myshell::x", None, ASK),
    ("x::shell::exec", None, ASK),
    ("deploy::run", {"env": "prod"}, deny("no-prod", field="env", operator="equals", value="prod")),
    ("deploy::run", {"env": "staging"}, ASK),
    ("deploy::run", {}, ASK),
    ("fs::write", {"path": "/tmp/a"}, allow("tmp-writes")),
    ("fs::write", {"path": "/home/me/tmp/"}, ASK),
    ("fs::write", {"path": 5}, ASK),
    (
        "fs::write",
        {"path": "/etc/passwd", "mode": {"depth": [1, 2], "recursive": True}},
        deny("fs::write", field="mode", operator="equals", value={"recursive": True, "depth": [1, 2]}),
    ),
    ("fs::write", {"path": "/etc/passwd", "mode": {"depth": [1, 2], "recursive": 1}}, ASK),
    ("fs::write", {"path": "/etc/passwd", "mode": {"depth": [2, 1], "recursive": True}}, ASK),
    ("fs::write", {"path": "/etc/passwd", "mode": {"depth": [1, 2], "recursive": True, "x": 0}}, ASK),
    ("fs::write", {"path": "/etc/passwd"}, ASK),
    ("term::run", {"cmd": "sudo rm -rf /"}, deny("no-rm", field="cmd", operator="matches", value="rm -rf")),
    ("opt::x", {"flag": None}, allow("opt::x")),
    ("opt::x", {}, ASK),
    ("a::list", None, allow("*::list")),
    ("a::listing", None, ASK),
    ("state::set", None, ASK),
]


async def test_every_rule_form_decides_exactly(engine: Engine, tmp_path: Path) -> None:
    policy = create_worker(rules_file(tmp_path, FORMS))
    async with policy.attach(engine), Worker("client").attach(engine) as client:
        for function_id, args, expected in FORM_CASES:
            assert await decide(client, function_id, args) == expected, (function_id, args)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [(["'!a::*'", "a::b"], deny("a::*")), (["a::b", "'!a::*'"], allow("a::b"))],
)
async def test_first_matching_rule_wins(connect: Connect, tmp_path: Path, rules: list[str], expected: Any) -> None:
    text = "version: 1\nrules:\n" + "".join(f"  - {rule}\n" for rule in rules)
    client = await serve(connect, create_worker(rules_file(tmp_path, text)))
    assert await decide(client, "a::b") == expected


async def test_kernel_defaults_come_before_the_file(connect: Connect, tmp_path: Path) -> None:
    client = await serve(connect, create_worker(rules_file(tmp_path, 'version: 1\nrules: ["!state::get", "*"]')))
    assert await decide(client, "state::set", {"scope": "x"}) == deny("kernel/no-state-set")
    assert await decide(client, "approval::resolve") == deny("kernel/no-self-approve")
    assert await decide(client, "oauth::anthropic::login") == deny("kernel/no-oauth-login")
    assert await decide(client, "state::get") == allow("state::get")
    assert await decide(client, "directory::skills::get") == allow("directory::skills::*")
    assert await decide(client, "anything::else") == allow("*")


async def test_kernel_defaults_can_be_turned_off(connect: Connect, tmp_path: Path) -> None:
    text = 'version: 1\nkernel_defaults: false\nrules: ["!state::get", "*"]'
    client = await serve(connect, create_worker(rules_file(tmp_path, text)))
    assert await decide(client, "state::set") == allow("*")
    assert await decide(client, "state::get") == deny("state::get")


async def test_a_missing_file_means_kernel_defaults_only(
    connect: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "teamster.harness.policy")
    path = tmp_path / "absent.yaml"
    client = await serve(connect, create_worker(path, reload_interval=POLL))
    assert f"file not found: {path}" in caplog.text
    assert await decide(client, "state::delete") == deny("kernel/no-state-delete")
    assert await decide(client, "models::list") == allow("models::list")
    assert await decide(client, "x::y") == ASK
    path.write_text('version: 1\nrules: ["x::y"]')
    await eventually(decides(client, "x::y", allow("x::y")))


async def test_no_default_rules_file_is_the_usual_first_run_not_a_warning(
    connect: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./iii-permissions.yaml here
    caplog.set_level(logging.INFO, "teamster.harness.policy")
    client = await serve(connect, create_worker(reload_interval=POLL))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "policy: no iii-permissions.yaml; the kernel defaults apply and other calls ask for approval")
    ]
    assert await decide(client, "x::y") == ASK


async def test_the_file_is_reloaded_when_it_changes(connect: Connect, tmp_path: Path) -> None:
    path = rules_file(tmp_path, 'version: 1\nrules: ["x::y"]')
    client = await serve(connect, create_worker(path, reload_interval=POLL))
    assert await decide(client, "x::y") == allow("x::y")
    path.write_text('version: 1\nrules: ["!x::y"]')
    await eventually(decides(client, "x::y", deny("x::y")))


async def test_a_broken_file_keeps_the_last_good_rules(
    connect: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "teamster.harness.policy")
    path = rules_file(tmp_path, 'version: 1\nrules: ["x::y"]')
    client = await serve(connect, create_worker(path, reload_interval=POLL))
    assert await decide(client, "x::y") == allow("x::y")
    for broken, problem in [
        (b"version: 1\nrules: [x::y\n", "line 3, column 1: expected ',' or ']'"),
        (b"version: 1\nrules: [{function: x::y, action: maybe}]", "rules.0.action: Input should be 'allow' or 'deny'"),
        (b"version: 1\nrules: ['\xff']", "can't decode byte 0xff"),
    ]:
        caplog.clear()
        path.write_bytes(broken)
        await eventually(lambda: "not loaded" in caplog.text)
        await asyncio.sleep(POLL * 10)
        [line] = [r.getMessage() for r in caplog.records if "not loaded" in r.getMessage()]
        assert str(path) in line and problem in line
        assert await decide(client, "x::y") == allow("x::y")
    path.write_text('version: 1\nrules: ["!x::y"]')
    await eventually(decides(client, "x::y", deny("x::y")))


def test_duplicate_rule_ids_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "teamster.harness.policy")
    create_worker(rules_file(tmp_path, "version: 1\nrules: [a::b, {rule_id: a::b, function: c::d, action: deny}]"))
    assert "rule_id 'a::b' appears 2 times" in caplog.text


async def test_reload_on_request(connect: Connect, tmp_path: Path) -> None:
    path = rules_file(tmp_path, 'version: 1\nrules: ["x::y"]')
    client = await serve(connect, create_worker(path, reload_interval=3600))
    path.write_text('version: 1\nrules: ["!x::y", "a::b"]')
    assert await client.trigger("policy::reload", {}) == {"ok": True, "rules": 2}
    assert await decide(client, "x::y") == deny("x::y")
    path.write_text("version: 1\nrules: {}")
    assert await client.trigger("policy::reload", {}) == {
        "ok": False,
        "rules": 2,
        "error": "rules: Input should be a valid list",
    }
    assert await decide(client, "x::y") == deny("x::y")


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ('version: 1\nrules: ["a", "!b"]', {"ok": True, "rules": 2}),
        ("version: 1\nrules:\n  - a\n  - !b\n", {"ok": False, "error": "line 4, column 5: could not determine"}),
        ("version: 1\nrules: [a\n", {"ok": False, "error": "line 3, column 1: expected ',' or ']'"}),
        (
            "version: 1\nrules: [{function: a, action: deny, args: {p: {matches: '('}}}]",
            {"ok": False, "error": "rules.0.args.p: Value error, invalid regex '('"},
        ),
        ("version: 1\nrules: [{function: a, action: deny, args: {p: {}}}]", {"ok": False, "error": "rules.0.args.p"}),
        ("version: 2", {"ok": False, "error": "version: Input should be 1"}),
        ("rules: []", {"ok": False, "error": "version: Field required"}),
    ],
)
async def test_validate(connect: Connect, tmp_path: Path, text: str, reply: dict[str, Any]) -> None:
    client = await serve(connect, create_worker(tmp_path / "absent.yaml"))
    got = await client.trigger("policy::validate", {"text": text})
    assert got.keys() == reply.keys()
    assert got["ok"] == reply["ok"]
    assert got.get("rules") == reply.get("rules")
    assert got.get("error", "").startswith(reply.get("error", ""))


PACK_CASES = {
    "permissive": [
        ("anything::x", allow("*")),
        ("state::get", allow("state::get")),
        ("state::set", deny("kernel/no-state-set")),
    ],
    "ask-all": [
        ("x::y", ASK),
        ("models::list", allow("models::list")),
        ("state::delete", deny("kernel/no-state-delete")),
    ],
    "read-only": [
        ("fs::get", allow("*::get")),
        ("fs::list", allow("*::list")),
        ("fs::read_file", allow("*::read*")),
        ("docs::search_all", allow("*::search*")),
        ("sys::info", allow("*::info")),
        ("kv::set", deny("*::set")),
        ("fs::delete_tree", deny("*::delete*")),
        ("fs::write", deny("*::write*")),
        ("db::update_row", deny("*::update*")),
        ("db::create", deny("*::create*")),
        ("fs::reader::delete", deny("*::delete*")),
        ("shell::exec", ASK),
    ],
    "no-network": [
        ("http::get", deny("http::*")),
        ("fetch::url", deny("fetch::*")),
        ("web::search", deny("web::*")),
        ("net::ping", deny("net::*")),
        ("tools::http_get", deny("*::http_*")),
        ("tools::fetch_page", deny("*::fetch*")),
        ("shell::exec", allow("*")),
        ("state::set", deny("kernel/no-state-set")),
    ],
}


@pytest.mark.parametrize("pack", sorted(PACK_CASES))
async def test_starter_packs(connect: Connect, pack: str) -> None:
    policy = create_worker(pack=pack)
    assert await policy.policy.reload(None) == {"ok": True, "rules": len(policy.policy.file.rules)}
    client = await serve(connect, policy)
    for function_id, expected in PACK_CASES[pack]:
        assert await decide(client, function_id) == expected, function_id


def test_the_rules_file_is_a_path_or_a_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="no policy pack named 'nope'"):
        create_worker(pack="nope")
    with pytest.raises(ValueError, match="not both"):
        create_worker(tmp_path / "rules.yaml", pack="permissive")
    monkeypatch.chdir(tmp_path)
    assert create_worker().policy.path == Path("iii-permissions.yaml")


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        (CHECK, {}, "function_id"),
        (CHECK, {"function_id": ""}, "function_id"),
        (CHECK, {"function_id": "a", "args": [1]}, "args"),
        ("policy::validate", {"text": 1}, "text"),
    ],
)
async def test_bad_input(connect: Connect, tmp_path: Path, function_id: str, payload: Any, field: str) -> None:
    client = await serve(connect, create_worker(tmp_path / "absent.yaml"))
    await expect_bad_input(client, function_id, payload, field)
