"""The playground draws the choreographed pattern's lanes from the roster the pattern itself runs with."""

from __future__ import annotations

from typing import get_args

import pytest

from teamster.app import roster
from teamster.patterns.choreographed import ROSTER
from teamster.patterns.tools import ChoreographedPeer, MessageArgs
from tests.app.conftest import Api


def test_the_roster_module_is_current() -> None:
    written = roster.PATH.read_text(encoding="utf-8")
    assert written == roster.render(), "regenerate with: python -m teamster.app.roster"


def test_the_peers_take_turns_in_roster_order_and_are_the_only_recipients() -> None:
    assert ROSTER == get_args(ChoreographedPeer) == ("backend", "frontend", "design")
    assert MessageArgs.model_json_schema()["properties"]["recipientAgent"]["enum"] == list(ROSTER)


@pytest.mark.asyncio(loop_scope="module")
async def test_the_playground_is_served_the_roster(api: Api) -> None:
    reply = await api.get("/static/roster.js", auth=False)
    assert reply.status == 200
    assert reply.body == roster.render()
