"""Cron expressions for the ``cron`` trigger type, with no third-party dependency.

The format follows the Rust ``cron`` crate used by the iii engine: seconds come first,
``sec min hour day-of-month month day-of-week [year]``. Each field accepts ``*``, numbers,
ranges ``a-b``, steps ``*/n``, ``a/n`` and ``a-b/n``, and comma lists of these; the month
field also takes JAN-DEC and the day-of-week field SUN-SAT (0 or 7 is Sunday). ``?`` is
accepted as a whole day field and means the same as ``*``.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

_YEAR_MIN = 1970
_YEAR_MAX = 2099
# Ten digits is far beyond every range yet keeps int() away from its huge-string limit.
_NUMBER = re.compile(r"[0-9]{1,10}")
_MONTH_NAMES = {
    name: i
    for i, name in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)
}
_WEEKDAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


class CronError(ValueError):
    """A cron expression that cannot be parsed."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    star_high: int  # day-of-week accepts 7 for Sunday, but `*` must not count Sunday twice
    names: Mapping[str, int]
    is_day: bool


_FIELDS = (
    _FieldSpec("second", 0, 59, 59, {}, False),
    _FieldSpec("minute", 0, 59, 59, {}, False),
    _FieldSpec("hour", 0, 23, 23, {}, False),
    _FieldSpec("day-of-month", 1, 31, 31, {}, True),
    _FieldSpec("month", 1, 12, 12, _MONTH_NAMES, False),
    _FieldSpec("day-of-week", 0, 7, 6, _WEEKDAY_NAMES, True),
    _FieldSpec("year", _YEAR_MIN, _YEAR_MAX, _YEAR_MAX, {}, False),
)


def _fail(spec: _FieldSpec, message: str) -> CronError:
    return CronError(f"cron: field {spec.name!r}: {message}")


def _parse_value(spec: _FieldSpec, token: str, element: str) -> int:
    if _NUMBER.fullmatch(token):
        value = int(token)
    elif token.upper() in spec.names:
        value = spec.names[token.upper()]
    else:
        raise _fail(spec, f"invalid token {token!r} in {element!r}")
    if not spec.low <= value <= spec.high:
        raise _fail(spec, f"{token} is out of range {spec.low}-{spec.high}")
    return value


def _parse_element(spec: _FieldSpec, element: str) -> range:
    base, slash, step_text = element.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise _fail(spec, f"invalid step {step_text!r} in {element!r}")
        step = int(step_text)
        if step == 0:
            raise _fail(spec, f"step 0 in {element!r} must be at least 1")
    if base == "*":
        low, high = spec.low, spec.star_high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _parse_value(spec, first, element), _parse_value(spec, last, element)
        if low > high:
            raise _fail(spec, f"range {element!r} is reversed ({low} > {high})")
    else:
        low = _parse_value(spec, base, element)
        high = spec.high if slash else low
    return range(low, high + 1, step)


def _parse_field(spec: _FieldSpec, text: str) -> tuple[int, ...]:
    if text == "?" and spec.is_day:
        text = "*"
    values: set[int] = set()
    for element in text.split(","):
        if not element:
            raise _fail(spec, f"empty list element in {text!r}")
        values.update(_parse_element(spec, element))
    if spec.name == "day-of-week":
        values = {value % 7 for value in values}
    return tuple(sorted(values))


def _next_value(values: tuple[int, ...], current: int) -> int | None:
    """The smallest value >= current, or None."""
    index = bisect_left(values, current)
    return values[index] if index < len(values) else None


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; build it with :meth:`parse`."""

    expression: str
    seconds: tuple[int, ...] = field(repr=False)
    minutes: tuple[int, ...] = field(repr=False)
    hours: tuple[int, ...] = field(repr=False)
    days_of_month: tuple[int, ...] = field(repr=False)
    months: tuple[int, ...] = field(repr=False)
    days_of_week: tuple[int, ...] = field(repr=False)  # 0 = Sunday
    years: tuple[int, ...] = field(repr=False)
    # Vixie cron: when both day fields are restricted, a day matches if either one does.
    day_or: bool = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse a 6-field (or 7-field, with a trailing year) cron expression."""
        parts = text.split()
        if len(parts) not in (6, 7):
            raise CronError(
                "cron: expected 6 or 7 fields (sec min hour day-of-month month day-of-week [year]), "
                f"got {len(parts)} in {text!r}"
            )
        seconds, minutes, hours, days_of_month, months, days_of_week, years = (
            _parse_field(spec, part) for spec, part in zip(_FIELDS, [*parts, "*"][:7], strict=True)
        )
        day_or = parts[3] not in ("*", "?") and parts[5] not in ("*", "?")
        return cls(" ".join(parts), seconds, minutes, hours, days_of_month, months, days_of_week, years, day_or)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching instant strictly after ``moment``, with its tzinfo; None past 2099.

        Matching is on the wall-clock fields of ``moment``, which is exact for UTC.
        """
        if moment.year > _YEAR_MAX:
            return None
        start = moment.replace(microsecond=0, tzinfo=None) + timedelta(seconds=1)
        found = self._search([start.year, start.month, start.day, start.hour, start.minute, start.second])
        return None if found is None else found.replace(tzinfo=moment.tzinfo)

    def _search(self, state: list[int]) -> datetime | None:
        """Find the first match at or after ``state`` (year..second), jumping field by field.

        A field with no match left carries into the field above it (which may overflow, e.g. to
        month 13, and then carry further) and the search restarts from the year.
        """
        columns = (self.years, self.months, self.days_of_month, self.hours, self.minutes, self.seconds)
        lowest = (_YEAR_MIN, 1, 1, 0, 0, 0)
        while True:
            for level, values in enumerate(columns):
                if level == 2:
                    found = self._next_day(state[0], state[1], state[2])
                else:
                    found = _next_value(values, state[level])
                if found is None:
                    if level == 0:
                        return None
                    state[level - 1] += 1
                    state[level:] = lowest[level:]
                    break
                if found != state[level]:
                    state[level] = found
                    state[level + 1 :] = lowest[level + 1 :]
            else:
                year, month, day, hour, minute, second = state
                return datetime(year, month, day, hour, minute, second)

    def _next_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day >= ``day`` in the month, or None."""
        first_weekday = (calendar.weekday(year, month, 1) + 1) % 7  # cron counts Sunday as 0
        for candidate in range(day, calendar.monthrange(year, month)[1] + 1):
            in_month = candidate in self.days_of_month
            in_week = (first_weekday + candidate - 1) % 7 in self.days_of_week
            if (in_month or in_week) if self.day_or else (in_month and in_week):
                return candidate
        return None
