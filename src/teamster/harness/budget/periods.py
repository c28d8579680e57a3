"""Calendar periods of a budget: UTC-anchored day, week (from Monday) or month; times in epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

DAY_MS = 86_400_000

Period = Literal["day", "week", "month"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def period_start(period: Period, ms: int) -> int:
    """Start of the period holding `ms`: UTC midnight, Monday 00:00 UTC, or the 1st at 00:00 UTC."""
    moment = _datetime(ms)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period == "day":
        return _ms(day)
    if period == "week":
        return _ms(day - timedelta(days=day.weekday()))
    return _ms(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def period_end(period: Period, ms: int) -> int:
    """The first period boundary after `ms` (when the period holding `ms` resets)."""
    start = period_start(period, ms)
    if period == "day":
        return start + DAY_MS
    if period == "week":
        return start + 7 * DAY_MS
    moment = _datetime(start)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return _ms(datetime(year, month, 1, tzinfo=UTC))
