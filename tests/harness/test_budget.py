"""llm-budget on a real engine: the worker over WebSocket (and once in-process), time moved by an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.budget import SCOPE, create_worker
from teamster.harness.budget.periods import period_end, period_start
from teamster.harness.budget.requests import CheckRequest, CreateRequest, RecordRequest
from teamster.harness.budget.worker import Budgets
from teamster.protocol import InvocationError
from teamster.sdk import Worker
from tests.conftest import Connect, eventually, expect_bad_input, recorder


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


WED = datetime(2026, 3, 4, 6, 0, tzinfo=UTC)  # a Wednesday, 06:00 UTC
WED_START = ms(datetime(2026, 3, 4, tzinfo=UTC))
THU_START = ms(datetime(2026, 3, 5, tzinfo=UTC))


class Clock:
    """Epoch seconds that only move when told to."""

    def __init__(self, start: datetime = WED) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta).total_seconds()

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def serving(client: Worker) -> Worker:
    """Wait until every budget function is in the engine's catalogue."""

    async def ready() -> bool:
        listing = await client.trigger("engine::functions::list", {"prefix": "budget::"})
        return len(listing["functions"]) == 14

    await eventually(ready)
    return client


@pytest.fixture
async def client(connect: Connect, clock: Clock) -> Worker:
    """A plain worker that calls the budget functions; the budget worker is connected over WebSocket."""
    await connect(create_worker(clock=clock))
    return await serving(await connect(Worker("client")))


async def create(client: Worker, **fields: Any) -> str:
    budget_id: str = (await client.trigger("budget::create", {"ceiling_usd": 1.0, "period": "day", **fields}))[
        "budget_id"
    ]
    return budget_id


async def get(client: Worker, budget_id: str) -> dict[str, Any]:
    budget: dict[str, Any] = (await client.trigger("budget::get", {"budget_id": budget_id}))["budget"]
    return budget


async def check(client: Worker, budget_id: str, estimate: float = 0.0, **fields: Any) -> dict[str, Any]:
    payload = {"budget_id": budget_id, "estimated_cost_usd": estimate, **fields}
    result: dict[str, Any] = await client.trigger("budget::check", payload)
    return result


async def record(client: Worker, budget_id: str, cost: float) -> dict[str, Any]:
    result: dict[str, Any] = await client.trigger("budget::record", {"budget_id": budget_id, "cost_usd": cost})
    return result


# ---- periods -------------------------------------------------------------------------------------


def test_periods_are_utc_day_monday_week_and_calendar_month() -> None:
    now = ms(WED)
    assert period_start("day", now) == WED_START
    assert period_end("day", now) == THU_START
    assert period_start("week", now) == ms(datetime(2026, 3, 2, tzinfo=UTC))  # Monday
    assert period_end("week", now) == ms(datetime(2026, 3, 9, tzinfo=UTC))
    assert period_start("month", now) == ms(datetime(2026, 3, 1, tzinfo=UTC))
    assert period_end("month", now) == ms(datetime(2026, 4, 1, tzinfo=UTC))
    december = ms(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert period_end("month", december) == ms(datetime(2027, 1, 1, tzinfo=UTC))
    monday = ms(datetime(2026, 3, 9, tzinfo=UTC))
    assert period_start("week", monday) == monday  # a boundary belongs to the period it opens
    assert period_start("week", monday - 1) == ms(datetime(2026, 3, 2, tzinfo=UTC))


# ---- create / get / list / update / delete --------------------------------------------------------


async def test_create_get_list_update_delete(client: Worker, clock: Clock) -> None:
    first = await create(client, workspace_id="w1", agent_id="a1", name="first")
    clock.advance(seconds=1)
    second = await create(client, ceiling_usd=5, period="week", workspace_id="w1", agent_id="a2")
    clock.advance(seconds=1)
    third = await create(client, period="month", workspace_id="w2")

    budget = await get(client, first)
    assert budget == {
        "id": first,
        "workspace_id": "w1",
        "agent_id": "a1",
        "name": "first",
        "ceiling_usd": 1.0,
        "period": "day",
        "spent_usd": 0.0,
        "period_spent_usd": 0.0,
        "records_count": 0,
        "period_start_at": WED_START,
        "period_resets_at": THU_START,
        "enforced": True,
        "paused": False,
        "alerts": [],
        "exemptions": [],
        "created_at": ms(WED),
        "updated_at": ms(WED),
    }
    assert (await get(client, second))["period_start_at"] == ms(datetime(2026, 3, 2, tzinfo=UTC))

    def ids(reply: dict[str, Any]) -> list[str]:
        return [b["id"] for b in reply["budgets"]]

    assert ids(await client.trigger("budget::list", {})) == [third, second, first]  # newest first
    assert ids(await client.trigger("budget::list", {"workspace_id": "w1"})) == [second, first]
    assert ids(await client.trigger("budget::list", {"workspace_id": "w1", "agent_id": "a1"})) == [first]
    assert ids(await client.trigger("budget::list", {"agent_id": "nobody"})) == []

    clock.advance(minutes=5)
    patch = {"ceiling_usd": 2.5, "enforced": False, "paused": True, "name": "renamed"}
    updated = (await client.trigger("budget::update", {"budget_id": first, "patch": patch}))["budget"]
    assert {k: updated[k] for k in patch} == patch
    assert updated["updated_at"] == ms(WED + timedelta(minutes=5, seconds=2))
    assert await get(client, first) == updated
    cleared = (await client.trigger("budget::update", {"budget_id": first, "patch": {"name": None}}))["budget"]
    assert cleared["name"] is None and cleared["ceiling_usd"] == 2.5  # null clears the name only

    assert await client.trigger("budget::delete", {"budget_id": first}) == {"deleted": True}
    assert await client.trigger("budget::delete", {"budget_id": first}) == {"deleted": False}
    assert ids(await client.trigger("budget::list", {})) == [third, second]
    with pytest.raises(InvocationError) as missing:
        await get(client, first)
    assert missing.value.code == "BUDGET_NOT_FOUND"


async def test_functions_publish_their_schemas(client: Worker) -> None:
    info = await client.trigger("engine::functions::info", {"function_id": "budget::check"})
    assert info["request_format"]["required"] == ["budget_id"]
    assert set(info["request_format"]["properties"]) == {"budget_id", "estimated_cost_usd", "principal_id"}
    assert info["response_format"]["required"] == ["allowed", "remaining_usd"]


# ---- check and record --------------------------------------------------------------------------------


async def test_check_then_record_then_ceiling_exceeded_at_the_boundary(client: Worker) -> None:
    budget_id = await create(client, ceiling_usd=1.0)
    assert await check(client, budget_id, 0.5) == {"allowed": True, "remaining_usd": 1.0}
    assert await record(client, budget_id, 0.6) == {"spent_usd": 0.6, "remaining_usd": 0.4}
    assert await check(client, budget_id, 0.5) == {
        "allowed": False,
        "remaining_usd": 0.4,
        "reason": "ceiling_exceeded",
    }
    assert await check(client, budget_id, 0.4) == {"allowed": True, "remaining_usd": 0.4}  # exactly what is left
    assert await record(client, budget_id, 0.4) == {"spent_usd": 1.0, "remaining_usd": 0.0}
    # Spent to the cent: even a call whose cost is not estimated is refused.
    assert await check(client, budget_id) == {"allowed": False, "remaining_usd": 0.0, "reason": "ceiling_exceeded"}
    assert await record(client, budget_id, 0.25) == {"spent_usd": 1.25, "remaining_usd": -0.25}
    assert (await check(client, budget_id))["allowed"] is False


async def test_money_is_rounded_so_float_noise_never_decides(client: Worker) -> None:
    budget_id = await create(client, ceiling_usd=0.6)
    await record(client, budget_id, 0.1)
    assert await record(client, budget_id, 0.2) == {"spent_usd": 0.3, "remaining_usd": 0.3}  # not 0.30000000000000004
    assert await check(client, budget_id, 0.3) == {"allowed": True, "remaining_usd": 0.3}

    exact = await create(client, ceiling_usd=0.3)
    await record(client, exact, 0.1)
    await record(client, exact, 0.2)
    assert await check(client, exact) == {"allowed": False, "remaining_usd": 0.0, "reason": "ceiling_exceeded"}


async def test_paused_not_enforced_and_exempt_are_allowed_with_a_reason(client: Worker, clock: Clock) -> None:
    budget_id = await create(client, ceiling_usd=1.0)
    await record(client, budget_id, 1.0)
    refused = {"allowed": False, "remaining_usd": 0.0, "reason": "ceiling_exceeded"}
    assert await check(client, budget_id, 0.1) == refused

    paused = (await client.trigger("budget::pause", {"budget_id": budget_id, "paused": True}))["budget"]
    assert paused["paused"] is True
    assert await check(client, budget_id, 0.1) == {"allowed": True, "remaining_usd": 0.0, "reason": "paused"}
    await client.trigger("budget::pause", {"budget_id": budget_id, "paused": False})

    enforce = await client.trigger("budget::enforce", {"budget_id": budget_id, "enforced": False})
    assert enforce["budget"]["enforced"] is False
    assert await check(client, budget_id, 0.1) == {"allowed": True, "remaining_usd": 0.0, "reason": "not_enforced"}
    await client.trigger("budget::enforce", {"budget_id": budget_id, "enforced": True})
    assert await check(client, budget_id, 0.1) == refused

    exempt = {"budget_id": budget_id, "principal_id": "alice", "reason": "incident", "hours": 1}
    assert await client.trigger("budget::exempt", exempt) == {
        "budget_id": budget_id,
        "principal_id": "alice",
        "expires_at": ms(WED + timedelta(hours=1)),
    }
    assert await check(client, budget_id, 0.1, principal_id="alice") == {
        "allowed": True,
        "remaining_usd": 0.0,
        "reason": "exempt",
    }
    assert await check(client, budget_id, 0.1, principal_id="bob") == refused
    assert await check(client, budget_id, 0.1) == refused

    clock.advance(minutes=59)
    assert (await check(client, budget_id, 0.1, principal_id="alice"))["reason"] == "exempt"
    clock.advance(minutes=1)  # expires_at is exclusive
    assert await check(client, budget_id, 0.1, principal_id="alice") == refused
    assert (await get(client, budget_id))["exemptions"] == []  # pruned and saved

    await client.trigger("budget::exempt", {"budget_id": budget_id, "principal_id": "carol", "reason": "demo"})
    assert (await get(client, budget_id))["exemptions"] == [
        {"principal_id": "carol", "reason": "demo", "expires_at": ms(WED + timedelta(hours=25))}  # 24 h default
    ]


# ---- periods and usage ---------------------------------------------------------------------------------


async def test_day_rollover_archives_the_spend_and_usage_shows_both_days(client: Worker, clock: Clock) -> None:
    budget_id = await create(client, ceiling_usd=1.0)
    await record(client, budget_id, 0.7)
    clock.set(datetime(2026, 3, 4, 23, 59, 59, 999_000, tzinfo=UTC))
    assert await check(client, budget_id) == {"allowed": True, "remaining_usd": 0.3}

    clock.set(datetime(2026, 3, 5, tzinfo=UTC))  # the reset instant belongs to the new day
    assert await check(client, budget_id, 1.0) == {"allowed": True, "remaining_usd": 1.0}
    budget = await get(client, budget_id)
    assert (budget["spent_usd"], budget["period_start_at"]) == (0.0, THU_START)
    assert budget["period_resets_at"] == ms(datetime(2026, 3, 6, tzinfo=UTC))
    archived = await client.trigger("state::get", {"scope": SCOPE, "key": f"spend_log:{budget_id}:{WED_START}"})
    assert archived == {
        "budget_id": budget_id,
        "period_start": WED_START,
        "period_end": THU_START,
        "spent_usd": 0.7,
        "records_count": 1,
    }

    await record(client, budget_id, 0.2)
    await record(client, budget_id, 0.05)
    assert await client.trigger("budget::usage", {"budget_id": budget_id, "window": "all"}) == {
        "spent_usd": 0.95,
        "by_period": [
            {"period_start": WED_START, "period_end": THU_START, "spent_usd": 0.7, "records_count": 1},
            {
                "period_start": THU_START,
                "period_end": ms(datetime(2026, 3, 6, tzinfo=UTC)),
                "spent_usd": 0.25,
                "records_count": 2,
            },
        ],
        "records_count": 3,
    }
    current = await client.trigger("budget::usage", {"budget_id": budget_id, "window": "current"})
    assert (current["spent_usd"], current["records_count"], len(current["by_period"])) == (0.25, 2, 1)

    clock.advance(days=10)  # idle days in between are skipped, not archived
    assert (await check(client, budget_id))["remaining_usd"] == 1.0
    logs = [v for v in await client.trigger("state::list", {"scope": SCOPE}) if v.get("budget_id") == budget_id]
    assert sorted(entry["period_start"] for entry in logs) == [WED_START, THU_START]
    usage = await client.trigger("budget::usage", {"budget_id": budget_id})  # window defaults to all
    assert [row["spent_usd"] for row in usage["by_period"]] == [0.7, 0.25, 0.0]


async def test_reset_archives_and_forgives_the_period(client: Worker, clock: Clock) -> None:
    budget_id = await create(client, ceiling_usd=1.0)
    await record(client, budget_id, 0.9)
    clock.advance(hours=1)
    assert await client.trigger("budget::reset", {"budget_id": budget_id}) == {
        "budget_id": budget_id,
        "previous_spent_usd": 0.9,
    }
    snapshot = await client.trigger("state::get", {"scope": SCOPE, "key": f"spend_log:{budget_id}:{WED_START}"})
    assert snapshot["spent_usd"] == 0.9 and snapshot["period_end"] == ms(WED + timedelta(hours=1))
    assert await check(client, budget_id, 1.0) == {"allowed": True, "remaining_usd": 1.0}
    await record(client, budget_id, 0.3)
    usage = await client.trigger("budget::usage", {"budget_id": budget_id})
    assert (usage["spent_usd"], usage["records_count"]) == (1.2, 2)  # money spent is still reported

    clock.set(datetime(2026, 3, 5, 1, 0, tzinfo=UTC))
    await check(client, budget_id)
    final = await client.trigger("state::get", {"scope": SCOPE, "key": f"spend_log:{budget_id}:{WED_START}"})
    assert (final["spent_usd"], final["period_end"], final["records_count"]) == (1.2, THU_START, 2)


async def test_changing_the_period_keeps_the_spend(client: Worker, clock: Clock) -> None:
    budget_id = await create(client, ceiling_usd=1.0, period="month")
    await record(client, budget_id, 0.6)
    march_1 = ms(datetime(2026, 3, 1, tzinfo=UTC))

    day = (await client.trigger("budget::update", {"budget_id": budget_id, "patch": {"period": "day"}}))["budget"]
    assert (day["period"], day["period_start_at"], day["period_resets_at"]) == ("day", WED_START, THU_START)
    assert day["spent_usd"] == 0.6  # a new period never forgives spend
    assert await check(client, budget_id, 0.5) == {
        "allowed": False,
        "remaining_usd": 0.4,
        "reason": "ceiling_exceeded",
    }
    usage = await client.trigger("budget::usage", {"budget_id": budget_id})
    assert [(row["period_start"], row["spent_usd"]) for row in usage["by_period"]] == [
        (march_1, 0.6),
        (WED_START, 0.0),
    ]

    week = (await client.trigger("budget::update", {"budget_id": budget_id, "patch": {"period": "week"}}))["budget"]
    # The window never moves back before its start, so it stays on today and resets next Monday.
    assert (week["period_start_at"], week["period_resets_at"]) == (WED_START, ms(datetime(2026, 3, 9, tzinfo=UTC)))
    clock.set(datetime(2026, 3, 9, tzinfo=UTC))
    assert (await get(client, budget_id))["period_start_at"] == ms(datetime(2026, 3, 9, tzinfo=UTC))


# ---- alerts ----------------------------------------------------------------------------------------------


async def test_alert_fires_once_per_period_with_the_merged_payload(
    connect: Connect, client: Worker, clock: Clock
) -> None:
    listener = Worker("alerts")
    calls = recorder(listener, "test::budget_alert")
    await connect(listener)
    budget_id = await create(client, ceiling_usd=1.0)
    alert = {
        "budget_id": budget_id,
        "threshold_pct": 0.5,
        "callback_function_id": "test::budget_alert",
        "callback_payload": {"channel": "#ops", "budget_id": "forged", "spent_usd": -1},
    }
    alert_id = (await client.trigger("budget::alert_set", alert))["alert_id"]

    def payloads() -> list[dict[str, Any]]:
        return [{k: v for k, v in call.items() if k != "_caller_worker_id"} for call in calls]

    await record(client, budget_id, 0.3)
    await record(client, budget_id, 0.2)  # 0.5 of 1.0: exactly at the threshold
    await eventually(lambda: len(calls) == 1)
    expected = {
        "channel": "#ops",
        "alert_id": alert_id,
        "budget_id": budget_id,  # the alert's own fields win over the callback payload's
        "spent_usd": 0.5,
        "ceiling_usd": 1.0,
        "threshold_pct": 0.5,
    }
    assert payloads() == [expected]
    fired = (await get(client, budget_id))["alerts"][0]
    assert fired["last_fired_period_start"] == WED_START

    await record(client, budget_id, 0.4)
    await record(client, budget_id, 0.4)
    await asyncio.sleep(0.2)
    assert len(calls) == 1  # once per period

    clock.set(datetime(2026, 3, 5, 9, tzinfo=UTC))
    await record(client, budget_id, 0.1)
    assert (await get(client, budget_id))["alerts"][0]["last_fired_period_start"] is None  # cleared by the rollover
    await record(client, budget_id, 0.6)
    await eventually(lambda: len(calls) == 2)
    assert payloads()[1] == {**expected, "spent_usd": 0.7}

    await client.trigger("budget::reset", {"budget_id": budget_id})  # a reset re-arms the alert
    await record(client, budget_id, 0.5)
    await eventually(lambda: len(calls) == 3)
    assert payloads()[2] == expected


async def test_fifty_concurrent_records_sum_exactly(connect: Connect, client: Worker) -> None:
    listener = Worker("alerts")
    calls = recorder(listener, "test::half_spent")
    await connect(listener)
    budget_id = await create(client, ceiling_usd=1.0)
    alert = {"budget_id": budget_id, "threshold_pct": 0.5, "callback_function_id": "test::half_spent"}
    await client.trigger("budget::alert_set", alert)

    replies = await asyncio.gather(*(record(client, budget_id, 0.01) for _ in range(50)))

    assert sorted(reply["spent_usd"] for reply in replies) == [round(0.01 * n, 9) for n in range(1, 51)]
    budget = await get(client, budget_id)
    assert (budget["spent_usd"], budget["records_count"]) == (0.5, 50)
    await eventually(lambda: len(calls) == 1)
    await asyncio.sleep(0.1)
    assert len(calls) == 1 and calls[0]["spent_usd"] == 0.5


# ---- forecast -------------------------------------------------------------------------------------------


async def test_forecast_projects_the_period_at_the_rate_so_far(client: Worker) -> None:
    roomy = await create(client, ceiling_usd=2.0)  # at 06:00: a quarter of the day has gone
    assert await client.trigger("budget::forecast", {"budget_id": roomy}) == {
        "projected_period_usd": 0.0,
        "on_track": True,
        "days_until_breach": None,
    }
    await record(client, roomy, 0.25)
    assert await client.trigger("budget::forecast", {"budget_id": roomy}) == {
        "projected_period_usd": 1.0,
        "on_track": True,
        "days_until_breach": None,  # 1.75 days away: the day resets first
    }

    tight = await create(client, ceiling_usd=0.5)
    await record(client, tight, 0.25)
    result = await client.trigger("budget::forecast", {"budget_id": tight})
    assert result == {"projected_period_usd": 1.0, "on_track": False, "days_until_breach": pytest.approx(0.25)}
    await record(client, tight, 0.25)
    assert (await client.trigger("budget::forecast", {"budget_id": tight}))["days_until_breach"] == 0.0


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function_id", "extra"),
    [
        ("budget::get", {}),
        ("budget::update", {"patch": {"paused": True}}),
        ("budget::check", {}),
        ("budget::record", {"cost_usd": 0.1}),
        ("budget::usage", {}),
        ("budget::forecast", {}),
        ("budget::enforce", {"enforced": False}),
        ("budget::exempt", {"principal_id": "p", "reason": "r"}),
        ("budget::pause", {"paused": True}),
        ("budget::reset", {}),
        ("budget::alert_set", {"threshold_pct": 0.5, "callback_function_id": "x::y"}),
    ],
)
async def test_unknown_budget_is_budget_not_found(client: Worker, function_id: str, extra: dict[str, Any]) -> None:
    with pytest.raises(InvocationError) as caught:
        await client.trigger(function_id, {"budget_id": "nope", **extra})
    assert caught.value.code == "BUDGET_NOT_FOUND"
    assert "nope" in caught.value.message


@pytest.mark.parametrize(
    ("function_id", "payload", "field"),
    [
        ("budget::create", {"ceiling_usd": 0, "period": "day"}, "ceiling_usd"),
        ("budget::create", {"ceiling_usd": "lots", "period": "day"}, "ceiling_usd"),
        ("budget::create", {"ceiling_usd": 1, "period": "year"}, "period"),
        ("budget::create", None, "input"),
        ("budget::get", {}, "budget_id"),
        ("budget::get", {"budget_id": ""}, "budget_id"),
        ("budget::update", {"budget_id": "b", "patch": {"spent_usd": 0}}, "patch.spent_usd"),
        ("budget::update", {"budget_id": "b", "patch": {"ceiling_usd": -1}}, "patch.ceiling_usd"),
        ("budget::check", {"budget_id": "b", "estimated_cost_usd": -0.1}, "estimated_cost_usd"),
        ("budget::record", {"budget_id": "b", "cost_usd": -1}, "cost_usd"),
        ("budget::record", {"budget_id": "b"}, "cost_usd"),
        ("budget::usage", {"budget_id": "b", "window": "week"}, "window"),
        ("budget::enforce", {"budget_id": "b", "enforced": "maybe"}, "enforced"),
        ("budget::exempt", {"budget_id": "b", "principal_id": "p", "reason": "r", "hours": 0}, "hours"),
        ("budget::alert_set", {"budget_id": "b", "threshold_pct": 1.5, "callback_function_id": "x"}, "threshold_pct"),
        ("budget::alert_set", {"budget_id": "b", "threshold_pct": 0, "callback_function_id": "x"}, "threshold_pct"),
        (
            "budget::alert_set",
            {"budget_id": "b", "threshold_pct": 0.5, "callback_function_id": "x", "callback_payload": [1]},
            "callback_payload",
        ),
    ],
)
async def test_bad_input_is_a_deserialization_error(client: Worker, function_id: str, payload: Any, field: str) -> None:
    await expect_bad_input(client, function_id, payload, field)
    assert await client.trigger("state::list", {"scope": SCOPE}) == []  # nothing was written


# ---- in-process ------------------------------------------------------------------------------------------


async def test_in_process_worker_checks_records_and_alerts(engine: Engine, clock: Clock) -> None:
    budgets, client = create_worker(clock=clock), Worker("client")
    calls = recorder(client, "test::inproc_alert")
    async with budgets.attach(engine), client.attach(engine):
        budget_id = await create(client, ceiling_usd=0.5, period="week")
        alert = {"budget_id": budget_id, "threshold_pct": 1.0, "callback_function_id": "test::inproc_alert"}
        await client.trigger("budget::alert_set", alert)
        assert await check(client, budget_id, 0.5) == {"allowed": True, "remaining_usd": 0.5}
        assert await record(client, budget_id, 0.5) == {"spent_usd": 0.5, "remaining_usd": 0.0}
        assert await check(client, budget_id) == {"allowed": False, "remaining_usd": 0.0, "reason": "ceiling_exceeded"}
        await eventually(lambda: len(calls) == 1)
        assert calls[0]["threshold_pct"] == 1.0 and calls[0]["spent_usd"] == 0.5
        clock.set(datetime(2026, 3, 9, tzinfo=UTC))  # next Monday
        assert await check(client, budget_id, 0.5) == {"allowed": True, "remaining_usd": 0.5}


async def test_handlers_are_methods_called_one_by_one(engine: Engine, clock: Clock) -> None:
    """No budget worker on the bus: the handler class over a plain worker's state calls, each method awaited."""
    async with Worker("handlers").attach(engine) as worker:
        budgets = Budgets(worker, clock)
        budget_id = (await budgets.create(CreateRequest(ceiling_usd=1.0, period="day"))).budget_id
        assert (await budgets.record(RecordRequest(budget_id=budget_id, cost_usd=0.75))).remaining_usd == 0.25
        refused = await budgets.check(CheckRequest(budget_id=budget_id, estimated_cost_usd=0.5))
        assert (refused.allowed, refused.reason) == (False, "ceiling_exceeded")
        stored = await worker.trigger("state::get", {"scope": SCOPE, "key": f"budget:{budget_id}"})
        assert (stored["spent_usd"], stored["records_count"]) == (0.75, 1)
        assert await worker.trigger("engine::functions::list", {"prefix": "budget::"}) == {"functions": []}
