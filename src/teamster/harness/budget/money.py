"""USD amounts: a float rounded to 1e-9 after every addition or subtraction.

Sums such as 0.1 + 0.2 then land exactly on 0.3, so a check at the boundary does not fail spuriously.
"""

from __future__ import annotations

MONEY_DIGITS = 9  # USD is rounded to 1e-9 after every addition


def money(usd: float) -> float:
    """USD rounded to 1e-9: applied after every sum so float noise never decides a check."""
    return round(usd, MONEY_DIGITS)
