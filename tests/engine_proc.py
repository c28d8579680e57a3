"""A real `teamster engine` in its own process, for tests that restart or kill it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import aiohttp
import pytest

TEAMSTER = str(Path(sys.executable).parent / "teamster")
_READY = re.compile(r"ws://(\S+):(\d+)\s+http://(\S+):(\d+)")


class EngineProcess:
    def __init__(
        self, data_dir: Path, storage: str = "sqlite", extra: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.storage = storage
        self.extra = extra or []
        self.env = env or {}  # on top of this process's environment, e.g. TEAMSTER_TOKEN
        self.ws_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 20.0) -> EngineProcess:
        """Start (or restart on the same ports) and wait for the ready line."""
        args = [
            TEAMSTER,
            "engine",
            "--storage",
            self.storage,
            "--data-dir",
            str(self.data_dir),
            "--ws-port",
            str(self.ws_port),
            "--http-port",
            str(self.http_port),
            *self.extra,
        ]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = _READY.search(line)
            if match:
                self.ws_port, self.http_port = int(match.group(2)), int(match.group(4))
                # Keep reading, or a chatty engine would block on a full pipe.
                threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("engine did not become ready:\n" + "".join(self.output))

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.output.append(line)

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing is cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@asynccontextmanager
async def tokened_engine(data_dir: Path, token: str) -> AsyncIterator[EngineProcess]:
    """`teamster engine` in its own process demanding `token`; a bare upgrade is checked to get 401 first."""
    proc = EngineProcess(data_dir, env={"TEAMSTER_TOKEN": token}).start()
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(proc.ws_url)
        assert refused.value.status == 401  # the engine does want a token
        yield proc
    finally:
        proc.stop()
