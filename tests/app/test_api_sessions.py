"""`/sessions`: the conversations runs build, their trees, forks and HTML exports, and history across runs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.app.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEBATE_AGENTS = ["Affirmative", "Opposing", "Judge"]


async def converse(api: Api, session_id: str, message: str, **fields: Any) -> tuple[str, str]:
    """One finished run on the conversation: its id and final answer."""
    run_id = await api.start(session_id=session_id, message=message, **fields)
    events = await api.finish(run_id)
    assert events[-1]["type"] == "workflow_complete", events[-1]
    return run_id, events[-1]["result"]


def path(tree: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The entries from the root along the latest child of each."""
    entries = []
    while tree is not None:
        entries.append(tree["entry"])
        tree = tree["children"][-1] if tree["children"] else None
    return entries


def said(entry: dict[str, Any]) -> tuple[str, str]:
    """An entry's role and text."""
    message = entry["message"]
    content = message["content"]
    text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    return message["role"], text


async def tree_of(api: Api, session_id: str) -> dict[str, Any]:
    reply = await api.get(f"/sessions/{session_id}/tree")
    assert reply.status == 200, reply.body
    return dict(reply.body)


async def listed(api: Api) -> list[dict[str, Any]]:
    reply = await api.get("/sessions?limit=500")
    assert reply.body["total"] == len(reply.body["sessions"])
    return list(reply.body["sessions"])


async def test_a_run_is_a_conversation_and_its_agents_are_not(api: Api) -> None:
    session_id = f"conv-{uuid.uuid4().hex}"
    run_id, answer = await converse(
        api, session_id, "Tabs or spaces?", pattern="debate", backend="engine", caps={"debate_rounds": 1}
    )
    tree = await tree_of(api, session_id)
    assert tree["session_id"] == session_id
    assert [(e["id"], e["parent_id"], *said(e)) for e in path(tree["tree"])] == [
        (f"{run_id}-user", None, "user", "Tabs or spaces?"),
        (f"{run_id}-answer", f"{run_id}-user", "assistant", answer),
    ]
    agents = tree["children"]
    assert [(c["display_name"], c["parent_session_id"]) for c in agents] == [(a, session_id) for a in DEBATE_AGENTS]

    rows = await listed(api)
    row = next(r for r in rows if r["session_id"] == session_id)
    assert (row["display_name"], row["entry_count"], row["parent_session_id"]) == ("Tabs or spaces?", 2, None)
    assert {c["session_id"] for c in agents}.isdisjoint(r["session_id"] for r in rows)
    assert all(r["parent_session_id"] is None for r in rows)

    agent_tree = await tree_of(api, agents[0]["session_id"])  # an agent's session is readable, though not listed
    assert said(path(agent_tree["tree"])[0])[0] == "user"


async def test_sessions_are_listed_latest_first_and_paged(api: Api) -> None:
    older, newer = f"older-{uuid.uuid4().hex}", f"newer-{uuid.uuid4().hex}"
    await converse(api, older, "first", pattern="swarm")
    await converse(api, newer, "second", pattern="swarm")
    ids = [r["session_id"] for r in await listed(api)]
    assert ids.index(newer) < ids.index(older)
    await converse(api, older, "third", pattern="swarm")  # a new exchange makes it the latest again
    ids = [r["session_id"] for r in await listed(api)]
    assert ids[:2] == [older, newer]

    page = (await api.get("/sessions?limit=1&offset=1")).body
    assert ([r["session_id"] for r in page["sessions"]], page["total"]) == ([newer], len(ids))


async def test_the_next_run_on_a_session_gets_the_conversation_as_history(api: Api) -> None:
    session_id = f"history-{uuid.uuid4().hex}"
    _, first_answer = await converse(api, session_id, "What is teamwork?", pattern="orchestrated")
    _, second_answer = await converse(
        api, session_id, "And why does it matter?", pattern="orchestrated", backend="engine"
    )
    tree = await tree_of(api, session_id)
    assert [said(e) for e in path(tree["tree"])] == [
        ("user", "What is teamwork?"),
        ("assistant", first_answer),
        ("user", "And why does it matter?"),
        ("assistant", second_answer),
    ]
    # The second run's coordinator was prompted with the first exchange.
    (coordinator,) = tree["children"]
    _, prompt = said(path((await tree_of(api, coordinator["session_id"]))["tree"])[0])
    assert prompt.endswith(
        f"Prior conversation:\nUser: What is teamwork?\nAssistant: {first_answer}\n\nRequest:\nAnd why does it matter?"
    )

    # A request's own history replaces the session's.
    await converse(
        api,
        session_id,
        "Once more.",
        pattern="orchestrated",
        backend="engine",
        history=[{"role": "user", "content": "Only this."}, {"role": "assistant", "content": "Noted."}],
    )
    coordinators = (await tree_of(api, session_id))["children"]
    _, prompt = said(path((await tree_of(api, coordinators[-1]["session_id"]))["tree"])[0])
    assert prompt.endswith("Prior conversation:\nUser: Only this.\nAssistant: Noted.\n\nRequest:\nOnce more.")


async def test_a_fork_is_a_new_conversation_up_to_an_entry(api: Api) -> None:
    session_id = f"fork-{uuid.uuid4().hex}"
    first_run, first_answer = await converse(api, session_id, "Name a colour.", pattern="swarm")
    await converse(api, session_id, "Name another.", pattern="swarm")

    reply = await api.post(f"/sessions/{session_id}/fork", {"from_entry_id": f"{first_run}-answer"})
    assert reply.status == 201
    assert set(reply.body) == {"session_id"} and reply.body["session_id"] != session_id
    forked = reply.body["session_id"]
    assert [said(e) for e in path((await tree_of(api, forked))["tree"])] == [
        ("user", "Name a colour."),
        ("assistant", first_answer),
    ]
    assert forked in [r["session_id"] for r in await listed(api)]

    _, answer = await converse(api, forked, "Name a shape.", pattern="swarm")  # the run continues from the fork
    assert [said(e) for e in path((await tree_of(api, forked))["tree"])] == [
        ("user", "Name a colour."),
        ("assistant", first_answer),
        ("user", "Name a shape."),
        ("assistant", answer),
    ]
    assert len(path((await tree_of(api, session_id))["tree"])) == 4  # the source is unchanged

    unknown_entry = await api.post(f"/sessions/{session_id}/fork", {"from_entry_id": "no-such-entry"})
    assert (unknown_entry.status, unknown_entry.body["code"]) == (404, "entry_not_found")
    missing = await api.post(f"/sessions/{session_id}/fork", {})
    assert (missing.status, missing.body) == (
        400,
        {"error": "from_entry_id: Field required", "code": "invalid_request"},
    )


async def test_an_export_is_one_html_page_with_every_string_escaped(api: Api) -> None:
    session_id = f"export-{uuid.uuid4().hex}"
    await converse(api, session_id, "<script>alert('pwned')</script> & <b>bold</b>", pattern="swarm")
    reply = await api.get(f"/sessions/{session_id}/export")
    assert reply.status == 200
    assert reply.headers["content-type"].split(";")[0] == "text/html"
    page = reply.body
    assert isinstance(page, str) and page.lstrip().lower().startswith("<!doctype html>")
    assert "&lt;script&gt;alert(" in page and "&amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script" not in page.lower() and "<b>" not in page


@pytest.mark.parametrize("route", ["tree", "export"])
async def test_an_unknown_session_is_404(api: Api, route: str) -> None:
    reply = await api.get(f"/sessions/no-such-session/{route}")
    assert (reply.status, reply.body) == (404, {"error": "no session no-such-session", "code": "session_not_found"})


async def test_forking_an_unknown_session_is_404(api: Api) -> None:
    reply = await api.post("/sessions/no-such-session/fork", {"from_entry_id": "e1"})
    assert (reply.status, reply.body["code"]) == (404, "session_not_found")
