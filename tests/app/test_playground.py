"""The web playground in a real browser against a live `teamster up`: live pattern views, approvals, resuming a
run's stream after a reload, forking a conversation, the settings panel, and a phone-sized screen.

Screenshots go to `$TEAMSTER_TEST_OUTPUT/screenshots` (default `test-output/screenshots`, gitignored), one per test.
Waits are on page conditions only; the scripted model makes every run deterministic.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, ViewportSize, expect, sync_playwright

from teamster.sdk import Worker
from tests.test_cli import Proc

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("TEAMSTER_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("TEAMSTER_TEST_OUTPUT", "test-output")) / "screenshots"
UP = re.compile(r"teamster is up: open (http://\S+?)/? ")
WS = re.compile(r"ready\s+(ws://\S+)")
WAIT_MS = 30_000  # a condition, not a sleep: generous for a busy 2-core CI machine
LAPTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAITING_APPROVE = "[data-testid=approval-card][data-state=waiting] [data-testid=approve]"


@dataclass(frozen=True)
class Server:
    """Where a `teamster up` listens."""

    url: str  # the playground and run API
    ws_url: str  # the engine, for workers


def start_up(data_dir: Path, env: dict[str, str] | None = None) -> tuple[Proc, Server]:
    """`teamster up` on free ports with sqlite storage in `data_dir`; returns it and its addresses."""
    up = Proc(
        "up",
        "--http-port",
        "0",
        "--ws-port",
        "0",
        "--storage",
        "sqlite",
        "--data-dir",
        str(data_dir),
        env=env,
        cwd=data_dir,
    )
    try:
        return up, Server(url=up.wait_for(UP, timeout=60)[1], ws_url=up.wait_for(WS)[1])
    except AssertionError:
        up.kill()
        raise


@pytest.fixture(scope="module")
def up_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    up, server = start_up(tmp_path_factory.mktemp("up"))
    yield server
    up.stop(timeout=15)
    assert "Traceback" not in up.output, up.output


@pytest.fixture
def url(up_server: Server) -> str:
    """The playground's address (named apart from the package conftest's in-process `server`)."""
    return up_server.url


class OpenPage(Protocol):
    def __call__(self, url: str, viewport: ViewportSize = LAPTOP) -> Page: ...


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}; set TEAMSTER_CHROMIUM to one"
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[OpenPage]:
    """`open_page(url, viewport)`: a fresh browser context (empty localStorage) on the playground.

    At teardown each page is screenshotted, and any script error on it fails the test.
    """
    pages: list[tuple[Page, list[str]]] = []

    def opener(url: str, viewport: ViewportSize = LAPTOP) -> Page:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: _note_console(message, errors))
        page.goto(url)
        pages.append((page, errors))
        return page

    yield opener
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for i, (page, errors) in enumerate(pages):
        suffix = f"-{i}" if i else ""
        page.screenshot(path=SCREENSHOTS / f"{request.node.name}{suffix}.png", full_page=True)
        page.context.close()
        assert errors == []


def _note_console(message: ConsoleMessage, errors: list[str]) -> None:
    # The browser logs every 401 (the settings test asks for one) as a failed resource; other errors are bugs.
    if message.type == "error" and "Failed to load resource" not in message.text:
        errors.append(message.text)


def send(page: Page, message: str, *, pattern: str, backend: str = "inproc", policy: str = "full") -> None:
    page.get_by_test_id("pattern-select").select_option(pattern)
    page.get_by_test_id("backend-select").select_option(backend)
    if backend == "engine":
        page.get_by_test_id("policy-select").select_option(policy)
    page.get_by_test_id("message-input").fill(message)
    page.get_by_test_id("send").click()


def status(page: Page) -> str:
    return page.get_by_test_id("run-status").get_attribute("data-run-status") or ""


def approve_next(page: Page) -> None:
    """Approve the oldest waiting tool call and wait until its card shows the decision."""
    card = approval_card(page, page.locator(WAITING_APPROVE).first)
    card.get_by_test_id("approve").click()
    expect(card).to_have_attribute("data-state", "resolved", timeout=WAIT_MS)


def approval_card(page: Page, inside: Locator) -> Locator:
    """The approval card holding `inside`, found by its call id: a decided card moves below the waiting ones,
    so a positional locator would soon name another card."""
    expect(inside).to_be_visible(timeout=WAIT_MS)
    call_id = inside.locator("xpath=ancestor-or-self::article[1]").get_attribute("data-call-id")
    assert call_id
    return page.locator(f"[data-testid=approval-card][data-call-id='{call_id}']")


def approve_until_done(page: Page) -> int:
    """Approve every tool call the run parks until it completes; returns how many were approved."""
    done = page.locator("[data-testid=run-status][data-run-status=completed]")
    approved = 0
    while True:
        expect(page.locator(WAITING_APPROVE).first.or_(done)).to_be_visible(timeout=WAIT_MS)
        if done.count():
            return approved
        approve_next(page)
        approved += 1


def timeline_seqs(page: Page) -> list[int]:
    """The seq of every event the timeline shows (calls, steps, tool calls)."""
    seqs = page.get_by_test_id("timeline").locator("[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    return [int(seq) for seq in seqs]


def load_book(ws_url: str, name: str, agents: dict[str, Any]) -> None:
    """Script the agents of `name` (model `scripted:<name>`) on the running engine.

    From a thread: the sync Playwright API owns this thread's event loop.
    """

    async def load() -> None:
        async with Worker("playground-test").connect(ws_url, wait=10) as worker:
            await worker.trigger("provider::scripted::load", {"name": name, "agents": agents})

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, load()).result(timeout=30)


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        result: dict[str, Any] = json.load(reply)
    return result


def assert_fits(page: Page) -> None:
    """Nothing is wider than the viewport: the page does not scroll sideways."""
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths


# ---- the tests ----------------------------------------------------------------------------------


def test_debate_columns_fill_live_before_the_verdict(url: str, open_page: OpenPage) -> None:
    page = open_page(url)
    send(page, "Tabs or spaces?", pattern="debate", backend="engine", policy="manual")
    pro = page.get_by_test_id("debate-column-pro")
    con = page.get_by_test_id("debate-column-con")

    approve_next(page)  # the Affirmative's round-1 argument
    expect(pro.get_by_test_id("debate-turn").first).to_contain_text("example", timeout=WAIT_MS)
    expect(pro).to_contain_text("Round 1")
    expect(con).to_contain_text("Round 1")  # the Opposing side is arguing: its call waits for approval
    assert status(page) == "running"
    expect(page.get_by_test_id("final-answer")).to_have_count(0)

    approve_next(page)  # the Opposing rebuttal
    expect(con.get_by_test_id("debate-turn").first).to_contain_text("example", timeout=WAIT_MS)
    assert status(page) == "running"

    assert approve_until_done(page) == 5  # two more rounds of two arguments, then the judge's verdict
    expect(pro.get_by_test_id("debate-turn")).to_have_count(3)
    expect(con.get_by_test_id("debate-turn")).to_have_count(3)
    expect(page.get_by_test_id("verdict")).to_contain_text("Winner: example")
    answer = page.get_by_test_id("final-answer")
    expect(answer.locator("h4", has_text="Verdict")).to_be_visible()
    expect(answer).to_contain_text("Winner: example")


@pytest.mark.parametrize(
    ("pattern", "testid", "count"),
    [
        ("orchestrated", "agent-plan", 1),
        ("choreographed", "peer-lane", 3),
        ("hierarchical", "tree-node", 3),  # the test model spawns one child per level down to the depth cap
        ("evaluator_optimizer", "critique-round", 4),  # it never passes, so all four rounds run
        ("debate", "debate-turn", 6),
        ("blackboard", "board-section", 1),
        ("market", "market-task", 1),
        ("self_consistency", "sample", 4),
        ("swarm", "swarm-trace", 12),
    ],
)
def test_every_pattern_draws_its_view_and_answer(
    url: str,
    open_page: OpenPage,
    pattern: str,
    testid: str,
    count: int,
) -> None:
    page = open_page(url)
    send(page, f"Show me {pattern}", pattern=pattern)
    expect(page.locator("[data-run-status=completed]")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("pattern-view").get_by_test_id(testid)).to_have_count(count)
    expect(page.get_by_test_id("final-answer")).to_be_visible()
    page.get_by_test_id("tab-timeline").click()
    expect(page.get_by_test_id("timeline").get_by_test_id("timeline-call").first).to_contain_text("in ·")


def test_approving_a_parked_tool_call_from_its_card(url: str, open_page: OpenPage) -> None:
    page = open_page(url)
    page.get_by_test_id("backend-select").select_option("engine")  # the budget applies to engine runs only
    page.get_by_test_id("budget-input").fill("0.05")
    send(page, "Plan a launch", pattern="blackboard", backend="engine", policy="manual")

    card = approval_card(page, page.get_by_test_id("approval-card").first)
    expect(card).to_contain_text("analyst wants to call pattern::writeSection")
    expect(card).to_contain_text('"section": "example"')
    expect(page.get_by_test_id("run-status")).to_have_text("waiting for you")
    expect(page.get_by_test_id("budget-meter")).to_contain_text("$0.00 of $0.05 budget")

    card.get_by_test_id("approve").click()
    expect(card).to_have_attribute("data-state", "resolved", timeout=WAIT_MS)
    expect(card).to_contain_text("Approved")
    expect(card.get_by_test_id("approve")).to_have_count(0)
    expect(page.get_by_test_id("board-section")).to_contain_text("analyst", timeout=WAIT_MS)

    assert approve_until_done(page) == 2  # the planner's and the critic's writes; then the board is stale
    expect(page.get_by_test_id("final-answer").locator("h3", has_text="Blackboard")).to_be_visible()

    page.get_by_test_id("tab-trace").click()
    spans = page.get_by_test_id("trace").get_by_test_id("trace-span")
    expect(spans.first).to_contain_text("app::runs::create", timeout=WAIT_MS)
    assert spans.count() > 10  # the agents' turns, provider calls and policy checks are in the run's trace


def test_abort_stops_a_waiting_run_and_closes_its_card(url: str, open_page: OpenPage) -> None:
    page = open_page(url)
    send(page, "Abort me", pattern="market", backend="engine", policy="manual")
    card = approval_card(page, page.get_by_test_id("approval-card").first)
    expect(card).to_have_attribute("data-state", "waiting")

    page.get_by_test_id("abort").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-run-status", "aborted", timeout=WAIT_MS)
    expect(page.get_by_test_id("run-error")).to_contain_text("You aborted this run.")
    expect(card).to_have_attribute("data-state", "closed")
    expect(card).to_contain_text("The run ended before this was answered.")
    expect(page.get_by_test_id("abort")).to_be_hidden()
    expect(page.locator(".chip", has_text="dispatcher")).to_contain_text("stopped")


def test_answering_an_input_request_from_its_card(up_server: Server, open_page: OpenPage) -> None:
    ask = {"function_id": "pattern::requestUserInput", "arguments": {"question": "Which audience?"}}
    done = {"function_id": "pattern::markComplete", "arguments": {"finalResponse": "For developers."}}
    load_book(up_server.ws_url, "asks", {"coordinator": [[{"function_calls": [ask]}], [{"function_calls": [done]}]]})
    # Started through the API (as the CLI would); the page follows it from its URL.
    request = {"pattern": "orchestrated", "message": "Write a post.", "backend": "engine", "model": "scripted:asks"}
    run = post_json(f"{up_server.url}/runs", request)
    page = open_page(f"{up_server.url}/#run={run['run_id']}")

    card = page.get_by_test_id("input-card")
    expect(card).to_contain_text("Which audience?", timeout=WAIT_MS)
    expect(card).to_contain_text("coordinator")
    expect(page.get_by_test_id("run-status")).to_have_text("waiting for you")
    card.get_by_test_id("input-answer").fill("developers")
    card.get_by_test_id("input-submit").click()

    expect(card).to_have_attribute("data-state", "resolved", timeout=WAIT_MS)
    expect(card).to_contain_text("Answered: developers")
    expect(page.get_by_test_id("final-answer")).to_contain_text("For developers.", timeout=WAIT_MS)
    # The bus shows the answer reaching the coordinator, between its two turns.
    flow = page.get_by_test_id("pattern-view").get_by_test_id("flow-item")
    expect(flow.locator(".flow-route")).to_have_text(["user → coordinator", "coordinator → orchestrator"] * 2)
    expect(flow.locator(".flow-text")).to_have_text(
        [
            "Write a post.",
            "Done: called 1 function(s).",
            'Answer to "Which audience?": developers',
            "Done: called 1 function(s).",
        ]
    )


def test_reload_mid_run_resumes_the_stream_without_duplicates(url: str, open_page: OpenPage) -> None:
    page = open_page(url)
    send(page, "Cats or dogs?", pattern="debate", backend="engine", policy="manual")
    approve_next(page)
    approve_next(page)
    expect(page.locator(WAITING_APPROVE)).to_have_count(1, timeout=WAIT_MS)  # round 2's Affirmative waits
    expect(page.get_by_test_id("debate-column-con").get_by_test_id("debate-turn").first).to_contain_text("example")
    before = timeline_seqs(page)
    assert re.search(r"#session=.+&run=\w+", page.url)

    requests: list[dict[str, str]] = []
    page.on("request", lambda req: requests.append({"url": req.url, **req.headers}) if "/events" in req.url else None)
    page.reload()

    expect(page.locator(WAITING_APPROVE)).to_have_count(1, timeout=WAIT_MS)
    expect(page.get_by_test_id("timeline").locator("[data-seq]")).to_have_count(len(before), timeout=WAIT_MS)
    assert timeline_seqs(page) == before
    assert status(page) == "running"
    # The stored events come as a JSON page from the start, then the live stream resumes after the last seq.
    assert any(r["url"].endswith("/events?after=0") for r in requests)
    streams = [r for r in requests if r.get("accept") == "text/event-stream"]
    assert streams, requests
    assert int(streams[0]["last-event-id"]) >= max(before)

    assert approve_until_done(page) == 5
    seqs = timeline_seqs(page)
    assert len(seqs) == len(set(seqs))
    assert set(before) < set(seqs)
    expect(page.get_by_test_id("timeline").get_by_test_id("timeline-call")).to_have_count(7)  # 2 × 3 rounds + judge
    expect(page.get_by_test_id("debate-column-pro").get_by_test_id("debate-turn")).to_have_count(3)
    expect(page.get_by_test_id("approval-card")).to_have_count(7)


def test_fork_from_the_tree_lands_in_the_new_conversation(url: str, open_page: OpenPage) -> None:
    page = open_page(url)
    send(page, "first question", pattern="blackboard", backend="engine", policy="full")
    expect(page.locator("[data-run-status=completed]")).to_be_visible(timeout=WAIT_MS)
    send(page, "second question", pattern="swarm")
    expect(page.locator(".turn", has_text="second question").locator("[data-run-status=completed]")).to_be_visible(
        timeout=WAIT_MS
    )
    source = re.search(r"session=([\w-]+)", page.url)
    assert source

    page.get_by_test_id("open-tree").click()
    tree = page.get_by_test_id("session-tree")
    entries = tree.get_by_test_id("tree-entry")
    expect(entries).to_have_count(4, timeout=WAIT_MS)
    assert [re.sub(r"\s+", " ", t) for t in entries.all_inner_texts()] == [
        "user first question Fork from here",
        "assistant # Blackboard ## example _critic_ example Fork from here",  # the critic wrote last
        "user second question Fork from here",
        "assistant example Fork from here",
    ]
    # The blackboard ran on the engine: its three agent calls are the conversation's child sessions.
    children = tree.get_by_test_id("child-session")
    expect(children).to_have_count(3)
    children.first.locator("summary").click()
    expect(children.first.get_by_test_id("tree-entry").first).to_contain_text("user", timeout=WAIT_MS)

    entries.nth(1).get_by_test_id("fork").click()
    expect(tree).to_be_hidden()
    expect(page).not_to_have_url(re.compile(source[1]), timeout=WAIT_MS)
    expect(page.get_by_test_id("earlier-messages")).to_contain_text("first question")
    expect(page.get_by_test_id("earlier-messages")).not_to_contain_text("second question")
    expect(page.locator("#conv-title")).to_have_text("first question (fork)")
    expect(page.get_by_test_id("session-list").locator("[aria-current=true]")).to_contain_text("first question (fork)")

    send(page, "third question", pattern="swarm")
    expect(page.locator("[data-run-status=completed]")).to_be_visible(timeout=WAIT_MS)
    page.get_by_test_id("open-tree").click()
    expect(entries).to_have_count(4, timeout=WAIT_MS)
    expect(entries.nth(2)).to_contain_text("third question")


def test_settings_ask_for_the_token_and_store_keys_without_echoing_them(
    tmp_path: Path,
    open_page: OpenPage,
) -> None:
    # An OPENAI_API_KEY of the environment would make the key "configured" from the start: blank it.
    up, with_token = start_up(tmp_path, env={"TEAMSTER_TOKEN": "tok-playground", "OPENAI_API_KEY": ""})
    try:
        page = open_page(with_token.url)
        settings = page.get_by_test_id("settings")
        expect(settings).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_test_id("settings-message")).to_contain_text("This server needs an API token")

        page.get_by_test_id("token-input").fill("tok-playground")
        page.get_by_test_id("token-save").click()
        expect(page.get_by_test_id("settings-message")).to_be_hidden()
        expect(page.get_by_test_id("key-state-openai")).to_have_text("not set", timeout=WAIT_MS)
        openai = page.get_by_test_id("model-select").locator("option", has_text="GPT-5.5")
        expect(openai).to_be_disabled()

        page.get_by_test_id("key-input-openai").fill("sk-never-shown")
        page.get_by_test_id("key-save-openai").click()
        state = page.get_by_test_id("key-state-openai")
        expect(state).to_have_text("configured · saved on the server", timeout=WAIT_MS)
        expect(page.get_by_test_id("key-input-openai")).to_have_value("")
        expect(openai).to_be_enabled(timeout=WAIT_MS)
        assert "sk-never-shown" not in page.content()

        page.get_by_test_id("key-forget-openai").click()
        expect(state).to_have_text("not set", timeout=WAIT_MS)
        expect(openai).to_be_disabled(timeout=WAIT_MS)
        page.get_by_test_id("close-settings").click()

        send(page, "Is the token sent?", pattern="debate")
        expect(page.locator("[data-run-status=completed]")).to_be_visible(timeout=WAIT_MS)
    finally:
        up.stop(timeout=15)


def test_phone_screen_has_no_horizontal_overflow(url: str, open_page: OpenPage) -> None:
    page = open_page(url, PHONE)
    expect(page.get_by_test_id("session-list")).to_be_hidden()  # the sidebar is a drawer on a phone
    page.get_by_test_id("run-options").click()
    send(page, "<b>Bold?</b> " + "A long question " * 30, pattern="market")
    expect(page.locator("[data-run-status=completed]")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("user-message")).to_contain_text("<b>Bold?</b> A long question")  # text, not markup
    expect(page.get_by_test_id("user-message").locator("b")).to_have_count(0)
    assert_fits(page)
    for tab in ("timeline", "trace"):
        page.get_by_test_id(f"tab-{tab}").click()
        expect(page.get_by_test_id(tab)).to_be_visible()
        assert_fits(page)

    page.get_by_test_id("menu").click()
    expect(page.get_by_test_id("session-list")).to_be_visible()
    assert_fits(page)
    page.get_by_test_id("session-list").locator(".session-item").first.click()
    expect(page.get_by_test_id("session-list")).to_be_hidden()

    page.get_by_test_id("open-tree").click()
    expect(page.get_by_test_id("session-tree").get_by_test_id("tree-entry")).to_have_count(2, timeout=WAIT_MS)
    assert_fits(page)
