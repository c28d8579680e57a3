"""`teamster run`: every pattern on the scripted model, in this process (CliRunner) or as a real console script.

With `--json` stdout is exactly the run's events, one contract event per line; the exit status is the
run's outcome (0 complete, 1 failed) and a mistake in the command is one line and status 2.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from teamster.app.cli import app
from teamster.patterns import PATTERN_NAMES
from teamster.patterns.events import EVENTS

TEAMSTER = str(Path(sys.executable).parent / "teamster")
MESSAGE = "Plan a small launch for a note-taking app."


def teamster(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def events_of(result: Result) -> list[dict[str, Any]]:
    """Stdout as NDJSON; each line must be a contract event, printed exactly as its model dumps it."""
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        assert EVENTS.validate_python(event).model_dump(mode="json") == event
    return events


def assert_one_run(events: list[dict[str, Any]], pattern: str, terminal: str) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["run_id"] for e in events}) == 1
    assert events[0]["type"] == "workflow_start"
    assert (events[0]["mode"], events[0]["query"]) == (pattern, MESSAGE)
    ends = [e["type"] for e in events if e["type"] in ("workflow_complete", "workflow_error")]
    assert ends == [terminal] and events[-1]["type"] == terminal


def assert_user_error(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {expected}"]


def write_book(tmp_path: Path, book: dict[str, Any]) -> str:
    path = tmp_path / "book.yaml"
    path.write_text(yaml.safe_dump(book))
    return str(path)


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"function_calls": [{"function_id": f"pattern::{tool}", "arguments": arguments}]}


@pytest.mark.parametrize("pattern", PATTERN_NAMES)
def test_every_pattern_runs_inproc_as_ndjson(pattern: str) -> None:
    result = teamster("run", pattern, MESSAGE, "--json")
    assert result.exit_code == 0, result.output
    events = events_of(result)
    assert_one_run(events, pattern, "workflow_complete")
    assert events[-1]["mode"] == pattern and events[-1]["result"]
    assert result.stderr == ""


def test_the_embedded_engine_runs_debate_with_the_events_inproc_gives() -> None:
    engine = teamster("run", "debate", MESSAGE, "--backend", "engine", "--json", "--cap", "debate_rounds=1")
    inproc = teamster("run", "debate", MESSAGE, "--json", "--cap", "debate_rounds=1")
    assert engine.exit_code == inproc.exit_code == 0, engine.output
    on_engine, here = events_of(engine), events_of(inproc)
    assert_one_run(on_engine, "debate", "workflow_complete")
    assert [e["type"] for e in on_engine] == [e["type"] for e in here]
    assert [e.get("agent") for e in on_engine] == [e.get("agent") for e in here]
    assert [e["agent"] for e in on_engine if e["type"] == "iteration_end"] == ["Affirmative", "Opposing", "Judge"]
    assert on_engine[-1]["result"] == here[-1]["result"]


@pytest.mark.parametrize("backend", ["inproc", "engine"])
def test_a_provider_error_fails_the_run_with_status_1(tmp_path: Path, backend: str) -> None:
    book = write_book(tmp_path, {"Judge": [[{"error": {"message": "the judge is out"}}]]})
    result = teamster(
        "run", "debate", MESSAGE, "--backend", backend, "--book", book, "--json", "--cap", "debate_rounds=1"
    )
    assert result.exit_code == 1, result.output
    events = events_of(result)
    assert_one_run(events, "debate", "workflow_error")
    assert events[-1]["error"] == "Judge: scripted: the judge is out"
    assert result.stderr.splitlines() == ["run failed: Judge: scripted: the judge is out"]


def test_without_json_the_run_is_shown_as_lines_a_table_and_the_answer() -> None:
    result = teamster("run", "debate", MESSAGE, "--cap", "debate_rounds=1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "1",
        "workflow_start",
        "debate",
        "on",
        "scripted,",
        "Affirmative",
        "first:",
        *MESSAGE.split(),
    ]
    assert lines[14].startswith("  15 iteration_end      Judge done: 2 step(s), ")
    assert lines[14].endswith(" tokens, $0.0000: example: example")
    rows = {line.split()[0]: line.split()[1:5] for line in lines if line.split()[:1] in (["Affirmative"], ["Judge"])}
    assert rows == {
        "Affirmative": ["done", "1", "2", "1"],
        "Judge": ["done", "1", "2", "1"],
    }  # status calls steps tools
    assert "─ answer ─" in result.stdout and "Winner: example" in result.stdout
    assert lines[-1].startswith("run ") and " completed in " in lines[-1] and "3 agent call(s)" in lines[-1]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("evaluator_optimizer", "critique           round 1 scored 1/10, not yet"),
        ("market", "bid                analyst bids on example: fit 1, est. $1.0000"),
        ("market", "task_awarded       example goes to analyst"),
        ("self_consistency", "sample             sample 0: example"),
        ("hierarchical", "agent_spawn        root.0 (example, depth 1) under root: example"),
        ("swarm", "trace              round 1, agent 1: example"),
        ("blackboard", "blackboard_update  analyst writes example: example"),
        ("orchestrated", "agent_plan         coordinator plans 'example': researcher: example"),
    ],
)
def test_each_patterns_own_events_are_shown_as_they_arrive(pattern: str, expected: str) -> None:
    result = teamster("run", pattern, MESSAGE)
    assert result.exit_code == 0, result.output
    assert expected in [line[5:] for line in result.stdout.splitlines()]  # after the seq column


def test_an_unanswered_question_times_out_when_nobody_is_at_the_terminal(tmp_path: Path) -> None:
    book = write_book(
        tmp_path, {"coordinator": [[call("requestUserInput", question="Which audience?")], [{"text": "ok"}]]}
    )
    result = teamster("run", "orchestrated", MESSAGE, "--book", book, "--cap", "input_timeout_s=0.05", "--json")
    assert result.exit_code == 0, result.output
    events = events_of(result)
    asked = [e for e in events if e["type"] == "input_request"]
    resolved = [e for e in events if e["type"] == "input_resolved"]
    assert [(e["agent"], e["question"]) for e in asked] == [("coordinator", "Which audience?")]
    assert [(e["request_id"], e["answer"], e["timed_out"]) for e in resolved] == [(asked[0]["request_id"], "", True)]
    assert events[-1]["result"] == "ok"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope"], f"unknown pattern 'nope': one of {', '.join(PATTERN_NAMES)}"),
        (["debate", "--provider", "acme"], "unknown provider 'acme': one of anthropic, local, openai, scripted"),
        (["debate", "--policy", "manual"], "--policy applies to --backend engine only: inproc runs have no approvals"),
        (["debate", "--budget", "1"], "--budget applies to --backend engine only"),
        (["debate", "--cap", "debate_rounds=0"], "--cap debate_rounds: Input should be greater than or equal to 1"),
        (["debate", "--cap", "rounds"], "--cap 'rounds': write KEY=VALUE, e.g. --cap debate_rounds=2"),
        (["debate", "--cap", "surprise=1"], "--cap surprise: Extra inputs are not permitted"),
        (
            ["debate", "--backend", "engine", "--engine-url", "ws://127.0.0.1:1"],
            "cannot reach the engine at ws://127.0.0.1:1: start it with `teamster up` or pass --engine-url",
        ),
    ],
)
def test_a_mistake_in_the_command_is_one_line_and_status_2(args: list[str], expected: str) -> None:
    pattern, *options = args
    assert_user_error(teamster("run", pattern, MESSAGE, *options, "--json"), expected)


def test_a_blank_message_is_refused() -> None:
    assert_user_error(teamster("run", "debate", " "), "message: String should match pattern '\\S'")


def test_history_and_book_files_are_checked_before_the_run(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"role": "system", "content": "hi"}]))
    assert_user_error(
        teamster("run", "debate", MESSAGE, "--history", str(history)),
        f"--history {history}: 0.role: Input should be 'user' or 'assistant'",
    )
    book = write_book(tmp_path, {"Judge": [[{"txt": "typo"}]]})
    assert_user_error(
        teamster("run", "debate", MESSAGE, "--book", book),
        f"--book {book}: book.Judge.0.0.txt: Extra inputs are not permitted",
    )
    missing = tmp_path / "missing.json"
    assert_user_error(
        teamster("run", "debate", MESSAGE, "--history", str(missing)), f"--history {missing}: No such file or directory"
    )


def test_the_console_script_reports_an_unknown_pattern_in_one_line() -> None:
    done = subprocess.run([TEAMSTER, "run", "nope", MESSAGE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"error: unknown pattern 'nope': one of {', '.join(PATTERN_NAMES)}\n"


class Terminal:
    """`teamster run --json` with a pseudo-terminal as stdin (a person can answer), stdout and stderr piped."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [TEAMSTER, "run", *args, "--json"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            text=True,
        )
        os.close(slave)
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait_for(self, kind: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e["type"] == kind]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} {kind} event(s): {[e['type'] for e in self.events]}")

    def type(self, line: str) -> None:
        os.write(self.master, f"{line}\n".encode())

    def finish(self) -> tuple[int, str]:
        status = self.proc.wait(60)
        self._reader.join(5)
        os.close(self.master)
        assert self.proc.stderr is not None
        return status, self.proc.stderr.read()


@pytest.mark.slow
def test_a_person_at_the_terminal_answers_a_question(tmp_path: Path) -> None:
    book = write_book(
        tmp_path, {"coordinator": [[call("requestUserInput", question="Which audience?")], [{"text": "ok"}]]}
    )
    term = Terminal("orchestrated", MESSAGE, "--book", book, cwd=tmp_path)
    term.wait_for("input_request", 1)
    term.type("developers")
    (resolved,) = term.wait_for("input_resolved", 1)
    status, stderr = term.finish()
    assert status == 0, stderr
    assert (resolved["answer"], resolved["timed_out"]) == ("developers", False)
    assert "coordinator asks: Which audience?" in stderr and "your answer (Enter to skip):" in stderr
    user = [e["content"] for e in term.events if e["type"] == "bus_message" and e["message_type"] == "user"]
    assert user[1] == 'Answer to "Which audience?": developers'
    assert term.events[-1]["result"] == "ok"


@pytest.mark.slow
def test_a_person_at_the_terminal_allows_and_denies_parked_calls(tmp_path: Path) -> None:
    args = ("debate", MESSAGE, "--backend", "engine", "--policy", "manual", "--cap", "debate_rounds=1")
    term = Terminal(*args, cwd=tmp_path)
    for n, answer in enumerate(["y", "yes", "n"], start=1):
        term.wait_for("approval_request", n)
        term.type(answer)
        term.wait_for("approval_resolved", n)
    status, stderr = term.finish()
    requests = [e for e in term.events if e["type"] == "approval_request"]
    resolved = [e for e in term.events if e["type"] == "approval_resolved"]
    assert [(e["agent"], e["function_id"]) for e in requests] == [
        ("Affirmative", "pattern::argue"),
        ("Opposing", "pattern::argue"),
        ("Judge", "pattern::verdict"),
    ]
    assert [(e["call_id"], e["decision"]) for e in resolved] == [
        (requests[0]["call_id"], "allow"),
        (requests[1]["call_id"], "allow"),
        (requests[2]["call_id"], "deny"),
    ]
    assert stderr.count("allow? [y/N]:") == 3
    assert status == 0, stderr
    verdict = term.events[-1]["summary"]["verdict"]
    assert verdict["winner"] == "Consensus"  # the judge's denied verdict was never recorded
