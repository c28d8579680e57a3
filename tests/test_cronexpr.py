"""Tests for the cron expression parser and next-fire-time calculator."""

from __future__ import annotations

import calendar
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teamster.engine.cronexpr import CronError, CronExpression

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nxt(expression: str, start: str) -> datetime | None:
    return CronExpression.parse(expression).next_after(at(start))


# --- parsing -----------------------------------------------------------------------------


def test_star_expands_to_full_ranges() -> None:
    cron = CronExpression.parse("* * * * * *")
    assert cron.seconds == tuple(range(60))
    assert cron.minutes == tuple(range(60))
    assert cron.hours == tuple(range(24))
    assert cron.days_of_month == tuple(range(1, 32))
    assert cron.months == tuple(range(1, 13))
    assert cron.days_of_week == tuple(range(7))
    assert cron.years == tuple(range(1970, 2100))
    assert not cron.day_or


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("5", (5,)),
        ("05", (5,)),
        ("10-13", (10, 11, 12, 13)),
        ("*/15", (0, 15, 30, 45)),
        ("50/3", (50, 53, 56, 59)),
        ("10-20/5", (10, 15, 20)),
        ("10-21/5", (10, 15, 20)),
        ("1,3,5", (1, 3, 5)),
        ("58,1-3,*/30,7/25", (0, 1, 2, 3, 7, 30, 32, 57, 58)),
        ("3,3,3", (3,)),
        ("0-59", tuple(range(60))),
        ("*/100", (0,)),
    ],
)
def test_second_field_forms(field: str, expected: tuple[int, ...]) -> None:
    assert CronExpression.parse(f"{field} * * * * *").seconds == expected


def test_every_field_position() -> None:
    cron = CronExpression.parse("1 2 3 4 5 6 2030")
    assert (cron.seconds, cron.minutes, cron.hours) == ((1,), (2,), (3,))
    assert (cron.days_of_month, cron.months, cron.days_of_week, cron.years) == ((4,), (5,), (6,), (2030,))
    assert cron.day_or


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("JAN", (1,)),
        ("dec", (12,)),
        ("Mar-May", (3, 4, 5)),
        ("JAN-DEC/3", (1, 4, 7, 10)),
        ("FEB/5", (2, 7, 12)),
        ("1,JUN,nov", (1, 6, 11)),
    ],
)
def test_month_names(field: str, expected: tuple[int, ...]) -> None:
    assert CronExpression.parse(f"0 0 0 * {field} *").months == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("SUN", (0,)),
        ("sat", (6,)),
        ("0", (0,)),
        ("7", (0,)),
        ("0,7", (0,)),
        ("MON-FRI", (1, 2, 3, 4, 5)),
        ("5-7", (0, 5, 6)),
        ("*/2", (0, 2, 4, 6)),
        ("1/3", (0, 1, 4)),
        ("Tue,thu", (2, 4)),
        ("?", (0, 1, 2, 3, 4, 5, 6)),
    ],
)
def test_day_of_week_forms(field: str, expected: tuple[int, ...]) -> None:
    assert CronExpression.parse(f"0 0 0 * * {field}").days_of_week == expected


def test_question_mark_in_day_of_month() -> None:
    assert CronExpression.parse("0 0 0 ? * MON").days_of_month == tuple(range(1, 32))


def test_year_field_forms() -> None:
    assert CronExpression.parse("0 0 0 1 1 * 2030,2040-2042").years == (2030, 2040, 2041, 2042)
    assert CronExpression.parse("0 0 0 1 1 * 2090/5").years == (2090, 2095)


def test_day_or_only_when_both_day_fields_restricted() -> None:
    assert CronExpression.parse("0 0 0 13 * FRI").day_or
    assert CronExpression.parse("0 0 0 1-31 * 0-7").day_or
    assert not CronExpression.parse("0 0 0 13 * *").day_or
    assert not CronExpression.parse("0 0 0 ? * FRI").day_or
    assert not CronExpression.parse("0 0 0 * * ?").day_or


def test_whitespace_is_flexible() -> None:
    cron = CronExpression.parse("  0\t30  9 * *   MON-FRI \n")
    assert cron == CronExpression.parse("0 30 9 * * MON-FRI")
    assert cron.expression == "0 30 9 * * MON-FRI"


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "* * * * *", "0 0 0 1 1 * 2030 x"])
def test_wrong_field_count(text: str) -> None:
    with pytest.raises(CronError, match=r"expected 6 or 7 fields .*got \d+"):
        CronExpression.parse(text)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("60 * * * * *", "second", "60 is out of range 0-59"),
        ("* 60 * * * *", "minute", "60 is out of range 0-59"),
        ("* * 25 * * *", "hour", "25 is out of range 0-23"),
        ("* * * 0 * *", "day-of-month", "0 is out of range 1-31"),
        ("* * * 32 * *", "day-of-month", "32 is out of range 1-31"),
        ("* * * * 13 *", "month", "13 is out of range 1-12"),
        ("* * * * 0 *", "month", "0 is out of range 1-12"),
        ("* * * * * 8", "day-of-week", "8 is out of range 0-7"),
        ("* * * * * * 1969", "year", "1969 is out of range 1970-2099"),
        ("* * * * * * 2100", "year", "2100 is out of range 1970-2099"),
        ("1-70 * * * * *", "second", "70 is out of range 0-59"),
        ("99999999999 * * * * *", "second", "invalid token '99999999999'"),
        ("5-1 * * * * *", "second", "range '5-1' is reversed"),
        ("* * * * * FRI-SUN", "day-of-week", "range 'FRI-SUN' is reversed"),
        ("*/0 * * * * *", "second", "step 0"),
        ("* 5/0 * * * *", "minute", "step 0"),
        ("* * 1-5/0 * * *", "hour", "step 0"),
        ("*/x * * * * *", "second", "invalid step 'x'"),
        ("*/ * * * * *", "second", "invalid step ''"),
        ("*/-1 * * * * *", "second", "invalid step '-1'"),
        ("*/2/3 * * * * *", "second", "invalid step '2/3'"),
        ("1,,2 * * * * *", "second", "empty list element in '1,,2'"),
        ("1, * * * * *", "second", "empty list element"),
        (",1 * * * * *", "second", "empty list element"),
        ("x * * * * *", "second", "invalid token 'x'"),
        ("* 1a * * * *", "minute", "invalid token '1a'"),
        ("* * -1 * * *", "hour", "invalid token ''"),
        ("* * 1-2-3 * * *", "hour", "invalid token '2-3'"),
        ("* * * * * +1", "day-of-week", "invalid token '+1'"),
        ("* * * * * \u0661", "day-of-week", "invalid token '\u0661'"),
        ("? * * * * *", "second", "invalid token '?'"),
        ("* * * ?/2 * *", "day-of-month", "invalid token '?'"),
        ("* * * * * ?,1", "day-of-week", "invalid token '?'"),
        ("* * * * JANUARY *", "month", "invalid token 'JANUARY'"),
        ("* * * * MON *", "month", "invalid token 'MON'"),
        ("* * * * * JAN", "day-of-week", "invalid token 'JAN'"),
        ("* * * L * *", "day-of-month", "invalid token 'L'"),
        ("* * * * * 5#2", "day-of-week", "invalid token '5#2'"),
        ("JAN * * * * *", "second", "invalid token 'JAN'"),
    ],
)
def test_invalid_field(text: str, field: str, fragment: str) -> None:
    with pytest.raises(CronError) as caught:
        CronExpression.parse(text)
    message = str(caught.value)
    assert message.startswith(f"cron: field '{field}': ")
    assert fragment in message


def test_cron_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="hour"):
        CronExpression.parse("0 0 24 * * *")


# --- next_after --------------------------------------------------------------------------


def test_every_second() -> None:
    assert nxt("* * * * * *", "2026-01-01T00:00:00") == at("2026-01-01T00:00:01")
    assert nxt("* * * * * *", "2026-12-31T23:59:59") == at("2027-01-01T00:00:00")


def test_strictly_after_and_drops_microseconds() -> None:
    assert nxt("* * * * * *", "2026-01-01T00:00:00.999999") == at("2026-01-01T00:00:01")
    assert nxt("0 * * * * *", "2026-01-01T00:00:00") == at("2026-01-01T00:01:00")
    assert nxt("0 * * * * *", "2026-01-01T00:00:00.5") == at("2026-01-01T00:01:00")


def test_every_five_seconds() -> None:
    assert nxt("*/5 * * * * *", "2026-01-01T00:00:00") == at("2026-01-01T00:00:05")
    assert nxt("*/5 * * * * *", "2026-01-01T00:00:03") == at("2026-01-01T00:00:05")
    assert nxt("*/5 * * * * *", "2026-01-01T00:00:57") == at("2026-01-01T00:01:00")


def test_weekdays_skip_the_weekend() -> None:
    # 2026-01-02 is a Friday.
    assert nxt("0 30 9 * * MON-FRI", "2026-01-02T09:30:00") == at("2026-01-05T09:30:00")
    assert nxt("0 30 9 * * MON-FRI", "2026-01-02T09:29:59") == at("2026-01-02T09:30:00")
    assert nxt("0 30 9 * * 1-5", "2026-01-03T12:00:00") == at("2026-01-05T09:30:00")


def test_leap_day_is_found_quickly() -> None:
    started = time.perf_counter()
    assert nxt("0 0 0 29 2 *", "2025-01-01T00:00:00") == at("2028-02-29T00:00:00")
    assert nxt("0 0 0 29 2 *", "2028-02-29T00:00:00") == at("2032-02-29T00:00:00")
    assert nxt("0 0 0 29 FEB *", "2096-03-01T00:00:00") is None  # 2100 is no leap year, and beyond 2099
    assert time.perf_counter() - started < 0.5


def test_day_31_skips_short_months() -> None:
    assert nxt("0 0 0 31 * *", "2026-04-01T00:00:00") == at("2026-05-31T00:00:00")
    assert nxt("0 0 0 31 * *", "2026-05-31T00:00:00") == at("2026-07-31T00:00:00")


def test_impossible_date_returns_none_quickly() -> None:
    started = time.perf_counter()
    assert nxt("0 0 0 30 2 *", "1970-01-01T00:00:00") is None
    assert nxt("0 0 0 31 4,6,9,11 *", "1970-01-01T00:00:00") is None
    assert time.perf_counter() - started < 0.5


def test_vixie_day_of_month_or_day_of_week() -> None:
    # January 2026: the 2nd is a Friday, the 13th a Tuesday.
    assert nxt("0 0 0 13 * FRI", "2026-01-01T00:00:00") == at("2026-01-02T00:00:00")
    assert nxt("0 0 0 13 * FRI", "2026-01-12T00:00:00") == at("2026-01-13T00:00:00")
    assert nxt("0 0 0 13 * FRI", "2026-01-13T00:00:00") == at("2026-01-16T00:00:00")
    # Only one day field restricted: that one decides.
    assert nxt("0 0 0 13 * *", "2026-01-01T00:00:00") == at("2026-01-13T00:00:00")
    assert nxt("0 0 0 * * FRI", "2026-01-03T00:00:00") == at("2026-01-09T00:00:00")
    assert nxt("0 0 0 ? * FRI", "2026-01-03T00:00:00") == at("2026-01-09T00:00:00")
    assert nxt("0 0 0 13 * ?", "2026-01-01T00:00:00") == at("2026-01-13T00:00:00")


def test_year_lists() -> None:
    assert nxt("0 0 12 1 1 * 2020,2030", "2025-06-01T00:00:00") == at("2030-01-01T12:00:00")
    assert nxt("0 0 12 1 1 * 2020,2030", "2030-01-01T12:00:00") is None
    assert nxt("0 0 0 * * * 2024", "2025-01-01T00:00:00") is None
    assert nxt("* * * * * * 2024", "2024-12-31T23:59:58") == at("2024-12-31T23:59:59")
    assert nxt("* * * * * * 2024", "2024-12-31T23:59:59") is None
    assert nxt("0 0 0 1 1 * 2099", "2098-05-05T00:00:00") == at("2099-01-01T00:00:00")


def test_bounds() -> None:
    assert nxt("* * * * * *", "2099-12-31T23:59:59") is None
    assert CronExpression.parse("* * * * * *").next_after(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)) is None
    assert nxt("0 0 0 1 1 *", "1900-06-01T00:00:00") == at("1970-01-01T00:00:00")


def test_keeps_tzinfo() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = CronExpression.parse("0 0 * * * *").next_after(datetime(2026, 1, 1, 10, 30, tzinfo=plus_two))
    assert result == datetime(2026, 1, 1, 11, 0, tzinfo=plus_two)
    assert result is not None and result.tzinfo is plus_two
    result = CronExpression.parse("0 0 * * * *").next_after(datetime(2026, 1, 1, 10, 30, tzinfo=UTC))
    assert result is not None and result.tzinfo is UTC


# --- property test against an independent model -----------------------------------------


@dataclass(frozen=True)
class Model:
    """A random expression together with the value sets it must denote, built independently."""

    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    years: frozenset[int]
    day_or: bool

    def day_matches(self, day: date) -> bool:
        in_month = day.day in self.days_of_month
        in_week = day.isoweekday() % 7 in self.days_of_week
        return (in_month or in_week) if self.day_or else (in_month and in_week)

    def matches(self, moment: datetime) -> bool:
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and moment.year in self.years
            and self.day_matches(moment.date())
        )

    def reference_next(self, start: datetime) -> datetime | None:
        """Enumerate candidate dates in order, then times of day, up to the end of 2099."""
        after = (start.hour, start.minute, start.second)
        times = [sorted(self.hours), sorted(self.minutes), sorted(self.seconds)]
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                for dom in range(1, calendar.monthrange(year, month)[1] + 1):
                    day = date(year, month, dom)
                    if day < start.date() or not self.day_matches(day):
                        continue
                    for hour, minute, second in itertools.product(*times):
                        if day > start.date() or (hour, minute, second) > after:
                            return datetime(year, month, dom, hour, minute, second, tzinfo=start.tzinfo)
        return None


@st.composite
def element(draw: st.DrawFn, low: int, high: int, star_high: int, names: list[str]) -> tuple[str, set[int]]:
    def value(lo: int, hi: int) -> tuple[str, int]:
        number = draw(st.integers(lo, hi))
        if names and number < len(names) + low and draw(st.booleans()):
            name = names[number - low]
            return draw(st.sampled_from([name, name.lower(), name.title()])), number
        return str(number), number

    kind = draw(st.sampled_from(["star", "value", "range", "star-step", "start-step", "range-step"]))
    step = draw(st.integers(1, high - low + 2))
    if kind == "star":
        return "*", set(range(low, star_high + 1))
    if kind == "star-step":
        return f"*/{step}", set(range(low, star_high + 1, step))
    first_text, first = value(low, high)
    if kind == "value":
        return first_text, {first}
    if kind == "start-step":
        return f"{first_text}/{step}", set(range(first, high + 1, step))
    last_text, last = value(first, high)
    if kind == "range":
        return f"{first_text}-{last_text}", set(range(first, last + 1))
    return f"{first_text}-{last_text}/{step}", set(range(first, last + 1, step))


def field(
    low: int, high: int, star_high: int | None = None, names: list[str] | None = None
) -> st.SearchStrategy[tuple[str, set[int]]]:
    one = element(low, high, high if star_high is None else star_high, names or [])
    return st.lists(one, min_size=1, max_size=3).map(
        lambda parts: (",".join(text for text, _ in parts), set().union(*(values for _, values in parts)))
    )


def or_plain(
    text: str, values: set[int], strategy: st.SearchStrategy[tuple[str, set[int]]]
) -> st.SearchStrategy[tuple[str, set[int]]]:
    """Draw the plain whole-field form half the time, so that many expressions fire densely."""
    return st.one_of(st.just((text, values)), strategy)


@st.composite
def models(draw: st.DrawFn) -> Model:
    second = draw(or_plain("*", set(range(60)), field(0, 59)))
    minute = draw(or_plain("*", set(range(60)), field(0, 59)))
    hour = draw(or_plain("*", set(range(24)), field(0, 23)))
    dom = draw(or_plain("?", set(range(1, 32)), field(1, 31)))
    month = draw(or_plain("*", set(range(1, 13)), field(1, 12, names=MONTHS)))
    dow = draw(or_plain("?", set(range(7)), field(0, 7, star_high=6, names=WEEKDAYS)))
    parts = [second, minute, hour, dom, month, dow]
    if draw(st.booleans()):
        parts.append(draw(or_plain("*", set(range(1970, 2100)), field(1970, 2099))))
    years = parts[6][1] if len(parts) == 7 else set(range(1970, 2100))
    return Model(
        text=" ".join(text for text, _ in parts),
        seconds=frozenset(second[1]),
        minutes=frozenset(minute[1]),
        hours=frozenset(hour[1]),
        days_of_month=frozenset(dom[1]),
        months=frozenset(month[1]),
        days_of_week=frozenset(v % 7 for v in dow[1]),
        years=frozenset(years),
        day_or=dom[0] not in ("*", "?") and dow[0] not in ("*", "?"),
    )


starts = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(model=models(), start=starts)
def test_next_after_agrees_with_model(model: Model, start: datetime) -> None:
    cron = CronExpression.parse(model.text)
    result = cron.next_after(start)
    assert result == model.reference_next(start)
    if result is None:
        return
    assert result > start
    assert result.tzinfo is UTC
    assert model.matches(result)
    if result - start < timedelta(hours=2):
        moment = start.replace(microsecond=0) + timedelta(seconds=1)
        while moment < result:
            assert not model.matches(moment), moment
            moment += timedelta(seconds=1)
