"""The JSON nesting limit (unit)."""

from __future__ import annotations

from teamster.protocol.limits import too_deep


def test_json_depth_is_counted_in_containers() -> None:
    def nested(depth: int) -> object:
        value: object = []
        for _ in range(depth - 1):
            value = [value]
        return value

    assert not too_deep(nested(3), limit=3)
    assert too_deep(nested(4), limit=3)
    assert not too_deep({"a": 1, "b": [1, 2, {"c": None}]}, limit=3)
    assert too_deep({"a": 1, "b": [1, 2, {"c": []}]}, limit=3)
    assert too_deep(nested(200_000))  # no RecursionError on the values it refuses
    assert not too_deep("scalar", limit=0)
