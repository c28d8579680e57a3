"""The `session` worker against a real engine: session trees and inboxes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.contracts import UserMessage
from teamster.harness.sessions import create_worker
from teamster.harness.sessions.requests import Append, BranchRead, Fork
from teamster.harness.sessions.store import SessionStore
from teamster.harness.sessions.tree import COMPACTED_PREFIX
from teamster.harness.sessions.trees import FORK_SUMMARY_THRESHOLD, SessionTrees
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import Connect, expect_bad_input


@pytest.fixture
async def w(connect: Connect) -> Worker:
    """The session worker over WebSocket; tests call through it, so its registrations precede every call."""
    return await connect(create_worker())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": 0}


async def new_session(w: Worker, name: str | None = None) -> str:
    sid: str = (await w.trigger("session-tree::create", {} if name is None else {"display_name": name}))["session_id"]
    return sid


async def append(w: Worker, sid: str, text: str, **extra: Any) -> str:
    entry_id: str = (await w.trigger("session-tree::append", {"session_id": sid, "message": user(text), **extra}))[
        "entry_id"
    ]
    return entry_id


async def batch(w: Worker, sid: str, texts: list[str], **extra: Any) -> list[str]:
    payload = {"session_id": sid, "messages": [user(t) for t in texts], **extra}
    ids: list[str] = (await w.trigger("session-tree::append_batch", payload))["entry_ids"]
    return ids


async def history(w: Worker, sid: str, **extra: Any) -> list[tuple[str, str]]:
    """(entry_id, text) of each message on a branch."""
    reply = await w.trigger("session-tree::messages", {"session_id": sid, **extra})
    return [(m["entry_id"], m["message"]["content"]) for m in reply["messages"]]


async def entries(w: Worker, sid: str) -> list[dict[str, Any]]:
    return list(await w.trigger("state::list", {"scope": f"session_tree:{sid}"}))


async def meta(w: Worker, sid: str) -> dict[str, Any]:
    stored: dict[str, Any] = await w.trigger("state::get", {"scope": "session_tree_meta", "key": sid})
    return stored


def shape(node: dict[str, Any] | None) -> Any:
    """A tree as nested (text-or-type, [children]) pairs."""
    assert node is not None
    entry = node["entry"]
    label = entry["message"]["content"] if entry["type"] == "message" else entry["type"]
    return (label, [shape(child) for child in node["children"]])


async def expect_error(w: Worker, function_id: str, payload: Any, code: str) -> None:
    with pytest.raises(InvocationError) as caught:
        await w.trigger(function_id, payload)
    assert caught.value.code == code


# ---- appending and reading -------------------------------------------------------------------


async def test_append_and_messages_oldest_first(w: Worker) -> None:
    sid = await new_session(w)
    first = await append(w, sid, "hello")
    reply = await w.trigger(
        "session-tree::append",
        {"session_id": sid, "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}},
    )
    messages = (await w.trigger("session-tree::messages", {"session_id": sid}))["messages"]
    assert [m["entry_id"] for m in messages] == [first, reply["entry_id"]]
    assert messages[0]["message"] == user("hello")
    assert messages[1]["message"]["role"] == "assistant"
    assert messages[1]["message"]["content"] == [{"type": "text", "text": "hi"}]
    stored = {e["id"]: e for e in await entries(w, sid)}
    assert stored[first]["parent_id"] is None
    assert stored[reply["entry_id"]]["parent_id"] == first
    assert {"id", "parent_id", "timestamp", "type"} <= stored[first].keys()


async def test_same_timestamp_entries_follow_the_chain_not_the_id_order(w: Worker) -> None:
    sid = await new_session(w)
    # One shared timestamp, and ids that sort backwards: only the parent links give the order.
    ids = await batch(w, sid, ["one", "two", "three"], entry_ids=["z", "y", "x"])
    assert ids == ["z", "y", "x"]
    assert len({e["timestamp"] for e in await entries(w, sid)}) == 1
    assert await history(w, sid) == [("z", "one"), ("y", "two"), ("x", "three")]
    four = await append(w, sid, "four")  # goes under the chain's tip, "x", though "z" sorts last
    assert await history(w, sid) == [("z", "one"), ("y", "two"), ("x", "three"), (four, "four")]
    generated = await batch(w, sid, ["five", "six"])
    assert [text for _, text in await history(w, sid)][-2:] == ["five", "six"]
    assert generated == sorted(generated)  # generated ids sort in creation order


async def test_branch_leaf_picks_a_branch_and_the_newest_leaf_is_active(w: Worker) -> None:
    sid = await new_session(w)
    u1, a1, u2 = await batch(w, sid, ["u1", "a1", "u2"])
    u2b = await append(w, sid, "u2b", parent_id=a1)
    assert await history(w, sid) == [(u1, "u1"), (a1, "a1"), (u2b, "u2b")]
    assert await history(w, sid, branch_leaf=u2) == [(u1, "u1"), (a1, "a1"), (u2, "u2")]
    assert await history(w, sid, branch_leaf=a1) == [(u1, "u1"), (a1, "a1")]
    u3 = await append(w, sid, "u3")
    assert (await history(w, sid))[-2:] == [(u2b, "u2b"), (u3, "u3")]
    await expect_error(w, "session-tree::messages", {"session_id": sid, "branch_leaf": "nope"}, "entry_not_found")
    await expect_error(
        w, "session-tree::append", {"session_id": sid, "message": user("x"), "parent_id": "nope"}, "entry_not_found"
    )
    assert (await meta(w, sid))["branch_count"] == 2


async def test_deterministic_entry_ids_make_redelivery_a_no_op(w: Worker) -> None:
    sid = await new_session(w)
    assert await append(w, sid, "first", entry_id="msg-1-user") == "msg-1-user"
    assert await append(w, sid, "redelivered", entry_id="msg-1-user") == "msg-1-user"
    assert await batch(w, sid, ["a", "b"], entry_ids=["t1-a", "t1-b"]) == ["t1-a", "t1-b"]
    assert await batch(w, sid, ["a again", "b again"], entry_ids=["t1-a", "t1-b"]) == ["t1-a", "t1-b"]
    compaction = {"session_id": sid, "summary": "s", "entry_id": "c-1"}
    assert (await w.trigger("session-tree::compact", compaction))["entry_id"] == "c-1"
    assert (await w.trigger("session-tree::compact", {**compaction, "summary": "again"}))["entry_id"] == "c-1"
    assert await history(w, sid) == [("msg-1-user", "first"), ("t1-a", "a"), ("t1-b", "b")]
    assert len(await entries(w, sid)) == 4
    assert (await meta(w, sid))["entry_count"] == 4


async def test_append_to_an_unknown_session_creates_it(w: Worker) -> None:
    await append(w, "adhoc", "hi")
    assert (await meta(w, "adhoc"))["entry_count"] == 1
    assert await w.trigger("session-tree::ensure", {"session_id": "adhoc", "display_name": "late"}) == {
        "session_id": "adhoc"
    }
    assert (await meta(w, "adhoc")).get("display_name") is None  # ensure never rewrites an existing session
    assert await w.trigger("session-tree::messages", {"session_id": "never"}) == {"messages": []}


# ---- fork, clone, tree ---------------------------------------------------------------------


async def test_fork_copies_the_path_with_new_ids(w: Worker) -> None:
    sid = await new_session(w, "Main")
    u1, a1, u2 = await batch(w, sid, ["u1", "a1", "u2"])
    await append(w, sid, "side", parent_id=u1)
    fork = (await w.trigger("session-tree::fork", {"source_session_id": sid, "from_entry_id": a1}))["session_id"]
    assert fork != sid
    assert (await meta(w, fork))["display_name"] == "Main (fork)"
    copied = await history(w, fork)
    assert [text for _, text in copied] == ["u1", "a1"]
    assert not {entry_id for entry_id, _ in copied} & {u1, a1, u2}
    assert shape(await w.trigger("session-tree::tree", {"session_id": fork})) == ("u1", [("a1", [])])
    assert len(await entries(w, sid)) == 4  # the source is untouched
    await expect_error(w, "session-tree::fork", {"source_session_id": sid, "from_entry_id": "nope"}, "entry_not_found")
    await expect_error(w, "session-tree::fork", {"source_session_id": "nope", "from_entry_id": a1}, "session_not_found")


async def test_fork_of_a_long_path_starts_from_a_branch_summary(w: Worker) -> None:
    sid = await new_session(w)
    ids = await batch(w, sid, [f"m{i}" for i in range(FORK_SUMMARY_THRESHOLD + 1)])

    at_limit = await w.trigger("session-tree::fork", {"source_session_id": sid, "from_entry_id": ids[-2]})
    assert len(await history(w, at_limit["session_id"])) == FORK_SUMMARY_THRESHOLD

    long = (await w.trigger("session-tree::fork", {"source_session_id": sid, "from_entry_id": ids[-1]}))["session_id"]
    [summary] = await entries(w, long)
    assert summary["type"] == "branch_summary"
    assert summary["parent_id"] is None
    assert summary["from_id"] == ids[-1]
    assert f"{FORK_SUMMARY_THRESHOLD + 1} entries" in summary["summary"]
    assert await history(w, long) == []
    assert (await meta(w, long))["display_name"] == f"{sid} (fork)"  # no display name: the id stands in


async def test_clone_copies_every_entry_with_new_ids(w: Worker) -> None:
    sid = await new_session(w, "Main")
    u1, a1, _ = await batch(w, sid, ["u1", "a1", "u2"])
    await append(w, sid, "side", parent_id=u1)
    await w.trigger("session-tree::compact", {"session_id": sid, "summary": "sum", "tail_start_id": a1})
    clone = (await w.trigger("session-tree::clone", {"source_session_id": sid}))["session_id"]

    source_tree = await w.trigger("session-tree::tree", {"session_id": sid})
    clone_tree = await w.trigger("session-tree::tree", {"session_id": clone})
    assert shape(clone_tree) == shape(source_tree) == ("u1", [("a1", [("u2", [])]), ("side", [("compaction", [])])])
    source_ids = {e["id"] for e in await entries(w, sid)}
    cloned = await entries(w, clone)
    assert not {e["id"] for e in cloned} & source_ids
    [compaction] = (await w.trigger("session-tree::compactions", {"session_id": clone}))["entries"]
    assert compaction["tail_start_id"] in {e["id"] for e in cloned}  # points at the copy of a1
    clone_meta = await meta(w, clone)
    assert (clone_meta["display_name"], clone_meta["entry_count"], clone_meta["branch_count"]) == ("Main (clone)", 5, 2)


async def test_tree_nests_children_oldest_first(w: Worker) -> None:
    sid = await new_session(w)
    assert await w.trigger("session-tree::tree", {"session_id": sid}) is None
    _, a1, _ = await batch(w, sid, ["u1", "a1", "u2"])
    await append(w, sid, "u3", parent_id=a1)
    await append(w, sid, "u4", parent_id=a1)
    tree = await w.trigger("session-tree::tree", {"session_id": sid})
    assert shape(tree) == ("u1", [("a1", [("u2", []), ("u3", []), ("u4", [])])])
    assert tree["entry"]["parent_id"] is None


async def test_compact_and_compactions(w: Worker) -> None:
    sid = await new_session(w)
    _, a1 = await batch(w, sid, ["u1", "a1"])
    first = await w.trigger(
        "session-tree::compact",
        {
            "session_id": sid,
            "summary": "first summary",
            "tokens_before": 1200,
            "tail_start_id": a1,
            "details": {"read_files": ["a.py"], "modified_files": ["b.py"]},
        },
    )
    u2 = await append(w, sid, "u2")
    second = await w.trigger("session-tree::compact", {"session_id": sid, "summary": "second summary"})
    found = (await w.trigger("session-tree::compactions", {"session_id": sid}))["entries"]
    assert [c["id"] for c in found] == [first["entry_id"], second["entry_id"]]
    assert found[0]["parent_id"] == a1
    assert found[1]["parent_id"] == u2
    assert (found[0]["summary"], found[0]["tokens_before"], found[0]["tail_start_id"]) == ("first summary", 1200, a1)
    assert found[0]["details"] == {"read_files": ["a.py"], "modified_files": ["b.py"]}
    assert (found[1]["tokens_before"], found[1]["tail_start_id"]) == (0, None)
    # The view starts at the newest compaction that cuts: its summary, then its tail (a1 onward).
    assert [text for _, text in await history(w, sid)] == [f"{COMPACTED_PREFIX}\n\nfirst summary", "a1", "u2"]


async def test_export_html_escapes_everything(w: Worker) -> None:
    sid = await new_session(w, "<b>Team</b>")
    await append(w, sid, "<script>alert(1)</script>")
    await w.trigger(
        "session-tree::append",
        {
            "session_id": sid,
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "text": "<i>hmm</i>"},
                    {"type": "function_call", "id": "c1", "function_id": "fs::read", "arguments": {"p": "</div>"}},
                ],
            },
        },
    )
    await w.trigger("session-tree::compact", {"session_id": sid, "summary": "<img src=x onerror=alert(2)>"})
    page = (await w.trigger("session-tree::export_html", {"session_id": sid}))["html"]
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>&lt;b&gt;Team&lt;/b&gt;</title>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;hmm&lt;/i&gt;" in page
    assert "&lt;/div&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    for raw in ("<script", "<b>", "<i>", "<img", "onerror=alert(2)>", "http://", "https://"):
        assert raw not in page


async def test_list_counts_and_orders_sessions(w: Worker) -> None:
    older = await new_session(w, "older")
    await batch(w, older, ["one", "two"])
    await asyncio.sleep(0.01)
    empty = await new_session(w, "empty")
    await asyncio.sleep(0.01)
    newest = await new_session(w)
    await w.trigger(
        "session-tree::append",
        {"session_id": newest, "message": {"role": "assistant", "content": [{"type": "text", "text": "x" * 100}]}},
    )

    listing = await w.trigger("session-tree::list", {})
    assert listing["total"] == 3
    rows = listing["sessions"]
    assert [r["session_id"] for r in rows] == [newest, empty, older]
    assert [r["entry_count"] for r in rows] == [1, 0, 2]
    assert [r["last_message_summary"] for r in rows] == ["x" * 80, None, "two"]
    assert rows[2]["display_name"] == "older"
    assert all(r["created_at"] <= r["updated_at"] for r in rows)

    page = await w.trigger("session-tree::list", {"order": "asc", "offset": 1, "limit": 1})
    assert ([r["session_id"] for r in page["sessions"]], page["total"]) == ([empty], 3)


async def test_child_sessions_link_to_their_parent(w: Worker) -> None:
    root = await new_session(w, "team")
    first = (await w.trigger("session-tree::create", {"display_name": "a", "parent_session_id": root}))["session_id"]
    await asyncio.sleep(0.01)
    await w.trigger("session-tree::ensure", {"session_id": "child-b", "display_name": "b", "parent_session_id": root})
    grandchild = (await w.trigger("session-tree::create", {"parent_session_id": first}))["session_id"]
    await w.trigger("session-tree::ensure", {"session_id": "child-b", "parent_session_id": first})  # exists: kept

    children = await w.trigger("session-tree::children", {"session_id": root})
    assert [(s["session_id"], s["display_name"]) for s in children["sessions"]] == [(first, "a"), ("child-b", "b")]
    assert children["total"] == 2
    assert {s["parent_session_id"] for s in children["sessions"]} == {root}
    nested = await w.trigger("session-tree::children", {"session_id": first})
    assert [s["session_id"] for s in nested["sessions"]] == [grandchild]
    assert await w.trigger("session-tree::children", {"session_id": grandchild}) == {"sessions": [], "total": 0}
    assert (await meta(w, root)).get("parent_session_id") is None

    for function_id, payload in (
        ("session-tree::create", {"parent_session_id": "nowhere"}),
        ("session-tree::ensure", {"session_id": "orphan", "parent_session_id": "nowhere"}),
    ):
        with pytest.raises(InvocationError) as caught:
            await w.trigger(function_id, payload)
        assert caught.value.code == "session_not_found"
    assert await meta(w, "orphan") is None


# ---- inbox -----------------------------------------------------------------------------------


async def test_inbox_push_peek_drain(w: Worker) -> None:
    box = {"session_id": "s1", "name": "steering"}
    assert await w.trigger("session-inbox::drain", box) == {"items": []}
    for item in ("a", "b", {"text": "c"}, None, [1]):
        assert await w.trigger("session-inbox::push", {**box, "item": item}) == {"ok": True}
    await w.trigger("session-inbox::push", {"session_id": "s1", "name": "followup", "item": "other"})
    assert await w.trigger("session-inbox::peek", box) == {"items": ["a", "b", {"text": "c"}, None, [1]]}
    assert await w.trigger("session-inbox::drain", box) == {"items": ["a", "b", {"text": "c"}, None, [1]]}
    assert await w.trigger("session-inbox::peek", box) == {"items": []}
    assert await w.trigger("session-inbox::drain", box) == {"items": []}
    assert await w.trigger("session-inbox::peek", {"session_id": "s1", "name": "followup"}) == {"items": ["other"]}
    assert await w.trigger("session-inbox::peek", {"session_id": "s2", "name": "steering"}) == {"items": []}


async def test_inbox_drain_races_with_push_without_loss_or_duplicates(w: Worker) -> None:
    box = {"session_id": "race", "name": "steering"}
    drained: list[Any] = []
    pushing = True

    async def drain_while_pushing() -> None:
        while pushing:
            drained.extend((await w.trigger("session-inbox::drain", box))["items"])

    async def push(i: int) -> None:
        await w.trigger("session-inbox::push", {**box, "item": i})

    drainers = [asyncio.create_task(drain_while_pushing()) for _ in range(3)]
    await asyncio.gather(*(push(i) for i in range(300)))
    pushing = False
    await asyncio.gather(*drainers)
    drained.extend((await w.trigger("session-inbox::drain", box))["items"])
    assert sorted(drained) == list(range(300))


# ---- bad input and in-process ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("session-tree::append", {"session_id": "s"}, "message"),
        ("session-tree::append", {"session_id": "s", "message": {"role": "robot"}}, "message"),
        ("session-tree::append", {"session_id": "s", "message": {"role": "user"}}, "message.user.content"),
        ("session-tree::append", {"session_id": "", "message": user("x")}, "session_id"),
        ("session-tree::append_batch", {"session_id": "s", "messages": "x"}, "messages"),
        ("session-tree::fork", {"source_session_id": "s"}, "from_entry_id"),
        ("session-tree::list", {"order": "sideways"}, "order"),
        ("session-tree::list", {"limit": -1}, "limit"),
        ("session-tree::compact", {"session_id": "s"}, "summary"),
        ("session-inbox::push", {"session_id": "s", "name": "a/b"}, "name"),
        ("session-inbox::drain", {"name": "steering"}, "session_id"),
    ],
)
async def test_bad_input_is_a_deserialization_error(w: Worker, function_id: str, payload: Any, field: str) -> None:
    await expect_bad_input(w, function_id, payload, field)


async def test_batch_entry_ids_must_match_the_messages(w: Worker) -> None:
    payload = {"session_id": "s", "messages": [user("a"), user("b")]}
    await expect_bad_input(w, "session-tree::append_batch", {**payload, "entry_ids": ["only-one"]}, "input")
    await expect_bad_input(w, "session-tree::append_batch", {**payload, "entry_ids": ["x", "x"]}, "input")
    assert await w.trigger("state::list", {"scope": "session_tree:s"}) == []


async def test_in_process(engine: Engine) -> None:
    sessions = create_worker()
    async with sessions.attach(engine):
        sid = (await sessions.trigger("session-tree::create", {"display_name": "local"}))["session_id"]
        ids = (await sessions.trigger("session-tree::append_batch", {"session_id": sid, "messages": [user("a")]}))[
            "entry_ids"
        ]
        fork = await sessions.trigger("session-tree::fork", {"source_session_id": sid, "from_entry_id": ids[0]})
        reply = await sessions.trigger("session-tree::messages", {"session_id": fork["session_id"]})
        assert [m["message"]["content"] for m in reply["messages"]] == ["a"]
        await sessions.trigger("session-inbox::push", {"session_id": sid, "name": "followup", "item": "next"})
        assert await sessions.trigger("session-inbox::drain", {"session_id": sid, "name": "followup"}) == {
            "items": ["next"]
        }


async def test_get_is_one_sessions_record_or_null(w: Worker) -> None:
    root = await new_session(w, "team")
    child = (await w.trigger("session-tree::create", {"display_name": "a", "parent_session_id": root}))["session_id"]
    found = await w.trigger("session-tree::get", {"session_id": child})
    assert (found["session_id"], found["display_name"], found["parent_session_id"]) == (child, "a", root)
    assert found == {"cwd": None, "last_message_summary": None, **await meta(w, child)}  # optional fields are null
    assert await w.trigger("session-tree::get", {"session_id": "no-such-session"}) is None


async def test_tree_handlers_are_methods_called_one_by_one(engine: Engine) -> None:
    """No session worker on the bus: the handler class over a plain worker's state calls, each method awaited."""
    async with Worker("handlers").attach(engine) as worker:
        trees = SessionTrees(SessionStore(worker))
        first = await trees.append(Append(session_id="s1", message=UserMessage(content="hello", timestamp=0)))
        await trees.append(Append(session_id="s1", message=UserMessage(content="again", timestamp=0)))
        fork = await trees.fork(Fork(source_session_id="s1", from_entry_id=first.entry_id))
        seen = await trees.messages(BranchRead(session_id=fork.session_id))
        assert [m.message.content for m in seen.messages] == ["hello"]
        stored = await worker.trigger("state::get", {"scope": "session_tree_meta", "key": "s1"})
        assert (stored["entry_count"], stored["last_message_summary"]) == (2, "again")
        assert await worker.trigger("engine::functions::list", {"prefix": "session-tree::"}) == {"functions": []}
