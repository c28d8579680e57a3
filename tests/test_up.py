"""`teamster up`: the engine and a harness profile in one process; the profile is a config choice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from teamster.sdk import Worker
from tests.conftest import eventually
from tests.test_cli import Proc, _assert_user_error, _run

READY = re.compile(r"teamster up \((\w+) profile\) ready\s+ws://\S+:(\d+)\s+http://\S+:(\d+)")
# The default scripted model calls every offered tool once (here the agent_trigger meta-tool), then reports.
REQUEST = {"payload": {"session_id": "s-up", "messages": [{"role": "user", "content": "hi"}]}}

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("profile", ["thin", "thick"])
async def test_same_run_request_on_both_profiles(tmp_path: Path, profile: str) -> None:
    config = tmp_path / "teamster.yaml"
    # The file says thin with a permissive pack; the flag picks the profile (flags override the file).
    config.write_text("harness:\n  profile: thin\n  policy_pack: permissive\n")
    up = Proc("up", "--config", str(config), "--profile", profile, *_ephemeral(tmp_path))
    try:
        await _run_once(up, profile)
        assert up.stop() == 0
    finally:
        up.kill()
    assert "Traceback" not in up.output
    assert " ERROR " not in up.output  # every worker's bindings taken: none refused for another's route


async def _run_once(up: Proc, profile: str) -> None:
    """POST /run, wait for the turn to finish, and check which functions the profile registered."""
    ready = up.wait_for(READY)
    assert ready[1] == profile

    async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{ready[3]}/run", json=REQUEST) as reply:
        assert reply.status == 200
        assert await reply.json() == {"session_id": "s-up", "started": True}

    async with Worker("up-test").connect(f"ws://127.0.0.1:{ready[2]}", wait=5) as client:
        views: list[Any] = []

        async def finished() -> bool:
            views.append(await client.trigger("turn::get_state", {"session_id": "s-up"}))
            return views[-1] is not None and views[-1]["state"] in ("stopped", "failed")

        await eventually(finished, timeout=20, interval=0.1)
        assert views[-1]["state"] == "stopped"
        assert views[-1]["turn_count"] == 2  # the tool call, then the answer
        listed = await client.trigger("engine::functions::list", {})
    functions = {row["function_id"] for row in listed["functions"]}
    assert "run::start" in functions
    assert ("policy::check_permissions" in functions) is (profile == "thick")


@pytest.mark.parametrize(
    ("args", "harness", "expected"),
    [
        (["--profile", "medium"], "", "--profile: Input should be 'thin' or 'thick'"),
        ([], "  profile: medium\n", "harness.profile: Input should be 'thin' or 'thick'"),
        ([], "  surprise: 1\n", "harness.surprise: Extra inputs are not permitted"),
        ([], "  policy_file: nowhere.yaml\n", "harness.policy_file: Path does not point to a file"),
        ([], "  policy_pack: lax\n", "harness: no policy pack named 'lax'"),
    ],
)
def test_bad_profile_or_harness_block(tmp_path: Path, args: list[str], harness: str, expected: str) -> None:
    config = tmp_path / "teamster.yaml"
    config.write_text(f"harness:\n{harness}" if harness else "storage: memory\n")
    _assert_user_error(_run("up", "--config", str(config), *args, *_ephemeral(tmp_path)), expected)


def test_up_refuses_an_unguarded_worker_socket_beyond_loopback(tmp_path: Path) -> None:
    config = tmp_path / "teamster.yaml"
    config.write_text("workers:\n  - name: iii-worker-manager\n    config: {host: 0.0.0.0}\n")
    _assert_user_error(
        _run("up", "--config", str(config), *_ephemeral(tmp_path)),
        "iii-worker-manager listens on 0.0.0.0, beyond this machine, with no credential check",
    )


def _ephemeral(tmp_path: Path) -> list[str]:
    return ["--ws-port", "0", "--http-port", "0", "--data-dir", str(tmp_path / "data")]
