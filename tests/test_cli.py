"""The `teamster` console script, driven in real subprocesses."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from teamster import __version__
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import eventually

TEAMSTER = str(Path(sys.executable).parent / "teamster")
REPO = Path(__file__).resolve().parents[1]
READY = re.compile(r"teamster engine ready\s+ws://(\S+):(\d+)\s+http://(\S+):(\d+)\s+storage=(\w+)")
ENGINE_ARGS = ("--storage", "memory", "--ws-port", "0", "--http-port", "0")

pytestmark = pytest.mark.slow


class Proc:
    """A `teamster` subprocess whose merged output is collected line by line in the background."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [TEAMSTER, *args],
            cwd=cwd,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern.pattern!r} in output:\n{self.output}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Subprocesses started by a test; killed at teardown if still running."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_engine(procs: list[Proc], *args: str, env: dict[str, str] | None = None) -> tuple[Proc, re.Match[str]]:
    engine = Proc("engine", *args, env=env)
    procs.append(engine)
    return engine, engine.wait_for(READY)


def _start_stack(procs: list[Proc]) -> tuple[Proc, Proc, re.Match[str]]:
    engine, ready = _start_engine(procs, *ENGINE_ARGS)
    worker = Proc("worker", "examples/echo_worker.py", "--engine-url", f"ws://127.0.0.1:{ready[2]}")
    procs.append(worker)
    worker.wait_for(re.compile(r"worker echo connected"))
    return engine, worker, ready


async def _echo(url: str, payload: dict[str, Any]) -> Any:
    async with Worker("cli-test").connect(url, wait=5) as client:
        result: list[Any] = []

        async def answered() -> bool:
            try:
                result.append(await client.trigger("demo::echo", payload, timeout=2))
            except InvocationError:
                return False  # the worker process has not registered demo::echo yet
            return True

        await eventually(answered, timeout=10, interval=0.1)
        return result[0]


async def test_engine_and_worker_serve_echo_then_stop_cleanly(procs: list[Proc]) -> None:
    engine, worker, ready = _start_stack(procs)
    assert ready[5] == "memory"

    echoed = await _echo(f"ws://127.0.0.1:{ready[2]}", {"hello": ["world", 1]})
    assert echoed == {"hello": ["world", 1], "_caller_worker_id": echoed["_caller_worker_id"]}  # stamped by the engine

    assert worker.stop(signal.SIGINT) == 0
    assert engine.stop(signal.SIGTERM) == 0
    assert "Traceback" not in engine.output + worker.output


async def test_http_trigger_from_worker_module(procs: list[Proc]) -> None:
    _, _, ready = _start_stack(procs)
    body: list[Any] = []

    async with aiohttp.ClientSession() as http:

        async def echoed() -> bool:
            async with http.post(f"http://127.0.0.1:{ready[4]}/echo", json={"n": 42}) as response:
                if response.status != 200:
                    return False  # the route appears once the worker's trigger registers
                body.append(await response.json())
                return True

        await eventually(echoed, timeout=10, interval=0.1)
    assert body == [{"n": 42}]


def test_config_file_expands_env_and_sets_what_flags_do_not(procs: list[Proc], tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(
        "storage: ${TEAMSTER_TEST_STORAGE:memory}\n"
        "workers:\n"
        "  - name: iii-worker-manager\n"
        "    config: {port: ${TEAMSTER_TEST_WS_PORT}}\n"
        "  - name: iii-http\n"
        "    config: {port: ${TEAMSTER_TEST_HTTP_PORT:0}}\n"
    )

    engine, ready = _start_engine(procs, "--config", str(config), env={"TEAMSTER_TEST_WS_PORT": str(port)})

    assert int(ready[2]) == port
    assert ready[5] == "memory"  # from the file's default, over the built-in sqlite
    assert engine.stop() == 0


def test_flags_override_the_config_file(procs: list[Proc], tmp_path: Path) -> None:
    file_port, flag_port = _free_port(), _free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"storage: sqlite\ndata_dir: {tmp_path / 'data'}\n"
        f"workers:\n  - name: iii-worker-manager\n    config: {{port: {file_port}}}\n"
        "  - name: iii-http\n    config: {port: 0}\n"
    )

    engine, ready = _start_engine(procs, "--config", str(config), "--ws-port", str(flag_port), "--storage", "memory")

    assert int(ready[2]) == flag_port
    assert ready[5] == "memory"
    assert engine.stop() == 0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TEAMSTER, *args], cwd=REPO, capture_output=True, text=True, timeout=30)


def _assert_user_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_yaml_that_does_not_parse(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("workers: [\n  - name: iii-cron\n")
    _assert_user_error(_run("engine", "--config", str(config)), "is not valid YAML: line 2, column 3")


def test_unknown_worker_name(tmp_path: Path) -> None:
    config = tmp_path / "unknown.yaml"
    config.write_text("workers:\n  - name: iii-nope\n")
    _assert_user_error(_run("engine", "--config", str(config), "--storage", "memory"), "unknown worker 'iii-nope'")


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        (
            "{name: iii-worker-manager, config: {host: 0.0.0.0}}",
            "iii-worker-manager listens on 0.0.0.0, beyond this machine, with no credential check: set TEAMSTER_TOKEN",
        ),
        (
            "{name: iii-worker-manager, config: {credentials: [{token_env: UNSET_TOKEN, role: provider}]}}",
            "credentials[0] (role provider): $UNSET_TOKEN is empty or unset",
        ),
        (
            "{name: iii-stream, config: {host: 0.0.0.0, port: 0}}",
            "iii-stream listens on 0.0.0.0, beyond this machine, with no credential check: give it an auth_function",
        ),
    ],
    ids=["worker-socket", "credential-unset", "stream-socket"],
)
def test_engine_refuses_an_unguarded_or_miscredentialed_socket(tmp_path: Path, worker: str, expected: str) -> None:
    config = tmp_path / "open.yaml"
    config.write_text(f"workers:\n  - {worker}\n")
    _assert_user_error(_run("engine", "--config", str(config), *ENGINE_ARGS), expected)


def test_a_worker_without_the_engines_token_is_told_so(procs: list[Proc]) -> None:
    _, ready = _start_engine(procs, *ENGINE_ARGS, env={"TEAMSTER_TOKEN": "cli-secret"})
    url = f"ws://127.0.0.1:{ready[2]}"
    _assert_user_error(
        _run("worker", "examples/echo_worker.py", "--engine-url", url),
        f"the engine at {url} refused this worker: the server refused the WebSocket upgrade: "
        "HTTP/1.1 401 Unauthorized; set TEAMSTER_TOKEN (or pass headers) to the engine's token",
    )
    worker = Proc("worker", "examples/echo_worker.py", "--engine-url", url, env={"TEAMSTER_TOKEN": "cli-secret"})
    procs.append(worker)
    worker.wait_for(re.compile(r"worker echo connected"))


def test_port_already_in_use(tmp_path: Path) -> None:
    config = tmp_path / "ws-only.yaml"
    config.write_text("workers:\n  - name: iii-worker-manager\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        result = _run("engine", "--config", str(config), "--storage", "memory", "--ws-port", port)
    _assert_user_error(result, "address already in use")


def test_second_engine_on_the_same_data_directory(procs: list[Proc], tmp_path: Path) -> None:
    first, _ = _start_engine(procs, "--data-dir", str(tmp_path), "--ws-port", "0", "--http-port", "0")
    started = time.monotonic()
    second = _run("engine", "--data-dir", str(tmp_path), "--ws-port", "0", "--http-port", "0")
    _assert_user_error(second, "teamster.db is in use by another process")
    assert time.monotonic() - started < 20  # it waits for a closing engine (5 s), then says so
    assert first.popen.poll() is None  # the first one goes on serving
    assert first.stop() == 0
    # Once the file is released (here by SIGTERM; a killed engine releases it too) a new engine takes it.
    _, ready = _start_engine(procs, "--data-dir", str(tmp_path), "--ws-port", "0", "--http-port", "0")
    assert ready


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nonexistent_mod", "no module named 'nonexistent_mod'"),
        ("missing/worker.py", "no such file"),
        ("json", "json has no module-level `worker`"),
    ],
)
def test_worker_module_mistakes(target: str, expected: str) -> None:
    _assert_user_error(_run("worker", target), expected)


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "teamster", "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == f"teamster {__version__}"
    assert _run("--version").stdout == result.stdout
