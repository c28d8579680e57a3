"""Runs the official iii-sdk suite (tests/, vendored unmodified) against a real `teamster engine` process.

The suite reads the engine's addresses from the environment when its modules are imported, so the
ports are chosen here, before pytest imports them, and the engine is started once for the session.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_proc import EngineProcess

CONFIG = Path(__file__).with_name("engine.yaml")

# They read the SDK repository's shared fixtures (sdk/fixtures/…), which the sdist does not ship.
collect_ignore = ["tests/test_filter_conformance.py", "tests/test_observe_protocol_fixtures.py"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PORTS = {"III_SUITE_WS_PORT": _free_port(), "III_SUITE_RBAC_PORT": _free_port(), "III_SUITE_HTTP_PORT": _free_port()}
os.environ["III_URL"] = f"ws://127.0.0.1:{PORTS['III_SUITE_WS_PORT']}"
os.environ["III_RBAC_WORKER_URL"] = f"ws://127.0.0.1:{PORTS['III_SUITE_RBAC_PORT']}"
os.environ["III_HTTP_URL"] = f"http://127.0.0.1:{PORTS['III_SUITE_HTTP_PORT']}"


@pytest.fixture(scope="session", autouse=True)
def teamster_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    env = {name: str(port) for name, port in PORTS.items()}
    proc = EngineProcess(
        tmp_path_factory.mktemp("iii-suite"),
        storage="memory",
        extra=["--config", str(CONFIG)],
        env=env,
    )
    proc.ws_port, proc.http_port = PORTS["III_SUITE_WS_PORT"], PORTS["III_SUITE_HTTP_PORT"]
    yield proc.start()
    proc.stop()
