"""`teamster runs|approvals|sessions|budget` against a live `teamster up` (one per module), `policy` and `bench`.

The server runs in a subprocess with a temporary working directory and a token; the commands run in this
process through CliRunner, and runs are started with plain HTTP, as any client would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from teamster.cli import app
from teamster.patterns import PATTERN_NAMES
from teamster.patterns.events import EVENTS

pytestmark = pytest.mark.slow

TEAMSTER = str(Path(sys.executable).parent / "teamster")
REPO = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token"
ADMIN_TOKEN = "cli-test-admin-token"  # the operator's credential on the worker socket
UP = re.compile(r"teamster is up: open (http://\S+?)/? ")
WS = re.compile(r"ready\s+(ws://\S+)")


@dataclass(frozen=True)
class Server:
    url: str
    ws_url: str

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's environment for this server; tables as wide as a roomy terminal's."""
        return {
            "TEAMSTER_API": self.url,
            "TEAMSTER_URL": self.ws_url,
            "TEAMSTER_TOKEN": TOKEN,
            "TEAMSTER_ADMIN_TOKEN": ADMIN_TOKEN,  # an operator's shell: budget and run commands act for a person
            "COLUMNS": "160",
            **extra,
        }

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data, headers, method=method)) as reply:
            return json.loads(reply.read())

    def start(self, **body: Any) -> str:
        return str(self.call("POST", "/runs", {"message": "Plan a small launch.", **body})["run_id"])


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`teamster up` on free ports, sqlite in a temp dir, working directory a temp dir, TEAMSTER_TOKEN set."""
    home = tmp_path_factory.mktemp("up")
    args = ["up", "--storage", "sqlite", "--data-dir", str(home / "data"), "--http-port", "0", "--ws-port", "0"]
    proc = subprocess.Popen(
        [TEAMSTER, *args],
        cwd=home,
        env={**os.environ, "TEAMSTER_TOKEN": TOKEN, "TEAMSTER_ADMIN_TOKEN": ADMIN_TOKEN, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    threading.Thread(target=read, daemon=True).start()

    def found(pattern: re.Pattern[str]) -> str | None:
        return next((m[1] for line in list(lines) if (m := pattern.search(line))), None)

    try:
        yield Server(url=eventually(lambda: found(UP), 60), ws_url=eventually(lambda: found(WS)))
    finally:
        proc.terminate()
        proc.wait(15)
    assert "Traceback" not in "".join(lines), "".join(lines)


def cli(server: Server, *args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env=server.env(**env))


def assert_user_error(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {expected}"]


@pytest.fixture(scope="module")
def finished(server: Server) -> str:
    """An inproc debate run that completed."""
    run_id = server.start(pattern="debate", caps={"debate_rounds": 1})
    eventually(lambda: server.call("GET", f"/runs/{run_id}")["status"] == "completed")
    return run_id


# ---- runs ---------------------------------------------------------------------------------------------


def test_runs_list_shows_the_run_and_filters(server: Server, finished: str) -> None:
    listed = json.loads(cli(server, "runs", "list", "--json").stdout)
    assert finished in [run["run_id"] for run in listed["runs"]]
    table = cli(server, "runs", "list")
    assert table.exit_code == 0, table.output
    (row,) = [line.split() for line in table.stdout.splitlines() if finished in line]
    assert row[:4] == [finished, "debate", "inproc", "completed"]
    failed = json.loads(cli(server, "runs", "list", "--status", "failed", "--json").stdout)
    assert finished not in [run["run_id"] for run in failed["runs"]]
    assert_user_error(
        cli(server, "runs", "list", "--status", "lost"),
        "status: Input should be 'running', 'completed', 'failed', 'aborted' or 'interrupted'",
    )


def test_runs_show_is_the_status_panel_with_the_answer(server: Server, finished: str) -> None:
    shown = cli(server, "runs", "show", finished)
    assert shown.exit_code == 0, shown.output
    lines = [line.strip("│ ") for line in shown.stdout.splitlines()]
    assert "status    completed" in lines and "pattern   debate" in lines
    assert f"events    16 (`teamster runs events {finished}`)" in lines
    assert "─ answer ─" in shown.stdout and "Winner: example" in shown.stdout
    assert json.loads(cli(server, "runs", "show", finished, "--json").stdout) == server.call("GET", f"/runs/{finished}")
    assert_user_error(cli(server, "runs", "show", "nope"), "no run nope")


def test_runs_events_pages_and_follows(server: Server, finished: str) -> None:
    page = cli(server, "runs", "events", finished, "--after", "13", "--json")
    assert [json.loads(line)["seq"] for line in page.stdout.splitlines()] == [14, 15, 16]
    lines = cli(server, "runs", "events", finished, "--after", "15").stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("  16 workflow_complete  debate complete in ")

    run_id = server.start(pattern="swarm")
    followed = cli(server, "runs", "events", run_id, "--follow", "--json")
    assert followed.exit_code == 0, followed.output
    events = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [EVENTS.validate_python(e).model_dump(mode="json") for e in events] == events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "workflow_complete"
    assert events == server.call("GET", f"/runs/{run_id}/events")["events"]


def test_following_a_failed_run_exits_1(server: Server) -> None:
    # On the engine backend a missing script fails the run itself (inproc refuses it up front with a 400).
    run_id = server.start(pattern="debate", model="scripted:missing", backend="engine")
    followed = cli(server, "runs", "events", run_id, "--follow")
    assert followed.exit_code == 1, followed.output
    assert followed.stderr.splitlines() == [
        "run failed: Affirmative: scripted: no script named 'missing'; load one with provider::scripted::load"
    ]


def test_connection_and_token_problems_are_one_line_with_the_fix(server: Server) -> None:
    assert_user_error(
        cli(server, "runs", "list", TEAMSTER_API="http://127.0.0.1:1"),
        "cannot reach teamster at http://127.0.0.1:1: start it with `teamster up` or pass --url",
    )
    assert_user_error(
        cli(server, "runs", "list", TEAMSTER_TOKEN="wrong"), "unauthorized: set TEAMSTER_TOKEN to the server's token"
    )
    assert_user_error(
        cli(server, "sessions", "list", "--url", "ftp://x"), "--url: 'ftp://x' is not an http:// or https:// URL"
    )


def test_run_on_the_servers_engine_with_a_budget(server: Server) -> None:
    args = ["debate", "Plan a small launch.", "--backend", "engine", "--engine-url", server.ws_url, "--budget", "0.5"]
    result = cli(server, "run", *args, "--cap", "debate_rounds=1", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["agent"] for e in events if e["type"] == "iteration_end"] == ["Affirmative", "Opposing", "Judge"]
    assert events[-1]["type"] == "workflow_complete"
    budgets = json.loads(cli(server, "budget", "list", "--json").stdout)["budgets"]
    (budget,) = [b for b in budgets if b["name"] == f"run {events[0]['run_id']}"]
    assert (budget["ceiling_usd"], budget["period"], budget["spent_usd"]) == (0.5, "month", 0.0)  # scripted is free


# ---- approvals ----------------------------------------------------------------------------------------


def test_parked_calls_are_listed_approved_denied_and_the_run_aborted(server: Server) -> None:
    run_id = server.start(pattern="debate", backend="engine", policy="manual", caps={"debate_rounds": 1})

    def waiting() -> list[dict[str, Any]]:
        listed = json.loads(cli(server, "approvals", "list", "--json").stdout)["approvals"]
        return [row for row in listed if row["run_id"] == run_id]

    (first,) = eventually(waiting)
    assert (first["agent"], first["function_id"], first["arguments"]) == (
        "Affirmative",
        "pattern::argue",
        {"argument": "example"},
    )
    table = cli(server, "approvals", "list")
    assert [run_id, first["call_id"], "Affirmative", "pattern::argue"] in [
        line.split()[:4] for line in table.stdout.splitlines()
    ]

    approved = cli(server, "approvals", "approve", run_id, first["call_id"], "--reason", "looks fine")
    assert approved.stdout == f"allowed call {first['call_id']} of run {run_id}\n"
    (second,) = eventually(lambda: [row for row in waiting() if row["call_id"] != first["call_id"]])
    assert second["agent"] == "Opposing"
    denied = cli(server, "approvals", "deny", run_id, second["call_id"])
    assert denied.stdout == f"denied call {second['call_id']} of run {run_id}\n"
    assert_user_error(
        cli(server, "approvals", "approve", run_id, second["call_id"]),
        f"run {run_id} has no call {second['call_id']} waiting for approval",
    )

    eventually(lambda: [row for row in waiting() if row["agent"] == "Judge"])
    assert cli(server, "runs", "abort", run_id).stdout == f"run {run_id} aborted\n"
    events = [json.loads(line) for line in cli(server, "runs", "events", run_id, "--json").stdout.splitlines()]
    decided = [(e["call_id"], e["decision"], e["reason"]) for e in events if e["type"] == "approval_resolved"]
    assert decided == [(first["call_id"], "allow", "looks fine"), (second["call_id"], "deny", None)]
    assert (events[-1]["type"], events[-1]["error"]) == ("workflow_error", "run aborted")
    assert_user_error(cli(server, "runs", "abort", run_id), f"run {run_id} is aborted")


# ---- sessions -----------------------------------------------------------------------------------------


def test_sessions_list_tree_fork_and_export(server: Server, finished: str, tmp_path: Path) -> None:
    session_id = server.call("GET", f"/runs/{finished}")["session_id"]
    listed = json.loads(cli(server, "sessions", "list", "--json").stdout)
    assert session_id in [row["session_id"] for row in listed["sessions"]]

    tree = cli(server, "sessions", "tree", session_id)
    assert tree.exit_code == 0, tree.output
    lines = tree.stdout.splitlines()
    assert lines[0] == f"session {session_id}"
    assert lines[1] == f"└── {finished}-user  user: Plan a small launch."
    assert lines[2].startswith(f"    └── {finished}-answer  assistant: ## Verdict **Winner:** example")

    forked = cli(server, "sessions", "fork", session_id, f"{finished}-user")
    assert forked.exit_code == 0, forked.output
    new_id = forked.stdout.strip()
    assert forked.stderr.strip() == f"forked {session_id} at {finished}-user"
    copy = cli(server, "sessions", "tree", new_id, "--json")
    entries = json.loads(copy.stdout)["tree"]
    assert (entries["entry"]["message"]["content"], entries["children"]) == ("Plan a small launch.", [])

    page = tmp_path / "session.html"
    exported = cli(server, "sessions", "export", session_id, "-o", str(page))
    html = page.read_text()
    assert exported.stderr.strip() == f"wrote {page} ({len(html.encode()):,} bytes)"
    assert html.startswith("<!DOCTYPE html>") and "Plan a small launch." in html
    assert cli(server, "sessions", "export", session_id).stdout == html

    assert_user_error(cli(server, "sessions", "tree", "nope"), "no session nope")
    assert_user_error(cli(server, "sessions", "fork", session_id, "nope"), f"no entry nope in {session_id}")


# ---- budget (over the engine's WebSocket) -----------------------------------------------------------


def test_budget_create_list_show_reset_delete(server: Server) -> None:
    created = cli(server, "budget", "create", "--ceiling", "2.5", "--period", "week", "--name", "team", "--json")
    assert created.exit_code == 0, created.output
    budget_id = json.loads(created.stdout)["budget_id"]

    listed = json.loads(cli(server, "budget", "list", "--json").stdout)["budgets"]
    (mine,) = [b for b in listed if b["id"] == budget_id]
    assert (mine["name"], mine["ceiling_usd"], mine["period"], mine["spent_usd"]) == ("team", 2.5, "week", 0.0)
    table = cli(server, "budget", "list")
    assert [budget_id, "team", "week", "$0.0000", "$2.5"] in [line.split()[:5] for line in table.stdout.splitlines()]

    shown = cli(server, "budget", "show", budget_id)
    lines = [line.strip("│ ") for line in shown.stdout.splitlines()]
    assert "ceiling   $2.5 per week" in lines and "state     enforced" in lines
    assert "forecast  $0.0000 this period, on track" in lines
    assert json.loads(cli(server, "budget", "show", budget_id, "--json").stdout)["usage"]["spent_usd"] == 0.0

    assert cli(server, "budget", "reset", budget_id).stdout == f"reset budget {budget_id}: $0.0000 forgiven\n"
    assert cli(server, "budget", "delete", budget_id).stdout == f"deleted budget {budget_id}\n"
    missing = f"no budget {budget_id}: `teamster budget list` shows them"
    assert_user_error(cli(server, "budget", "delete", budget_id), missing)
    assert_user_error(cli(server, "budget", "show", budget_id), missing)


def test_budget_needs_a_reachable_engine(server: Server) -> None:
    assert_user_error(
        cli(server, "budget", "list", "--engine-url", "ws://127.0.0.1:1"),
        "cannot reach the engine at ws://127.0.0.1:1: start it with `teamster up` or pass --engine-url",
    )
    assert_user_error(
        cli(server, "budget", "list", TEAMSTER_URL="http://127.0.0.1:1"),
        "--engine-url: 'http://127.0.0.1:1' is not a ws:// or wss:// URL",
    )


# ---- policy and bench (no server) ---------------------------------------------------------------------

BAD_ACTION = "Input should be 'allow' or 'deny'"


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        ("version: 1\nrules:\n  - 'pattern::*'\n  - '!shell::*'\n", 0, "{file}: 2 rules OK"),
        ("version: 1\n", 0, "{file}: 0 rules OK"),
        ("version: 2\n", 1, "error: {file}: version: Input should be 1"),
        ("version: 1\nrules:\n  - {function: x, action: maybe}\n", 1, "error: {file}: rules.0.action: " + BAD_ACTION),
        ("rules: [\n", 1, "error: {file}: line 2, column 1: expected the node content, but found '<stream end>'"),
    ],
)  # fmt: skip
def test_policy_check(tmp_path: Path, text: str, status: int, expected: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    result = CliRunner().invoke(app, ["policy", "check", str(rules)])
    assert result.exit_code == status, result.output
    assert (result.stdout if status == 0 else result.stderr) == expected.format(file=rules) + "\n"


def test_policy_check_of_a_missing_file() -> None:
    result = CliRunner().invoke(app, ["policy", "check", "missing.yaml"])
    assert (result.exit_code, result.stderr) == (2, "error: missing.yaml: No such file or directory\n")


def test_bench_patterns_quick_prints_one_row_per_pattern() -> None:
    result = CliRunner().invoke(app, ["bench", "patterns", "--quick"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runs per cell: 1 after one warm-up (medians shown); cores: ")
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "ms" in line]
    assert rows == list(PATTERN_NAMES)
    assert "patterns: done" in result.stderr


def test_the_bench_script_keeps_its_command_line() -> None:
    args = [sys.executable, "bench/patterns.py", "--runs", "1", "--patterns", "orchestrated"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("runs per cell: 1 after one warm-up (medians shown); cores: ")
    assert lines[3].startswith("| pattern (unscripted) | agent calls | inproc ")
    assert lines[5].startswith("| orchestrated         | 1           | ")


def test_the_worker_token_cannot_run_with_every_call_approved(server: Server) -> None:
    # `teamster run` approves every call of its own run (mode `full`): a person's act, which the shared
    # worker token does not carry on the worker socket; the operator's credential does (the test above).
    args = ["debate", "Plan a small launch.", "--backend", "engine", "--engine-url", server.ws_url]
    result = cli(server, "run", *args, "--cap", "debate_rounds=1", TEAMSTER_ADMIN_TOKEN="")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        "run failed: Affirmative: approval mode 'full' needs the approval worker: "
        "function 'approval::set_mode' is marked human; role 'worker' may not call it"
    )
