"""An observed invocation (routed through the engine, or reported by the owner that ran it locally) and
what an observer's target receives for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from teamster.engine.modules.observe.observer import Observer

PARTS = ("input", "output", "error", "caller", "metadata")


@dataclass(frozen=True, slots=True)
class Observed:
    function_id: str
    namespace: str
    invocation_id: str
    ok: bool
    parts: dict[str, Any]  # the parts at hand, of PARTS (a report carries only what its observers capture)
    started_at_ms: int
    duration_ms: float
    observe_depth: int

    @property
    def document(self) -> dict[str, Any]:
        """What filters read."""
        return self.parts

    @classmethod
    def from_report(cls, item: dict[str, Any], function_id: str, namespace: str) -> Observed:
        """One item of an `invocationsobserved` frame, under the function's engine-side id."""
        depth = item.get("observe_depth")
        started = item.get("started_at_ms")
        duration = item.get("duration_ms")
        invocation_id = item.get("invocation_id")
        return cls(
            function_id=function_id,
            namespace=namespace,
            invocation_id=invocation_id if isinstance(invocation_id, str) else "",
            ok=item.get("status", "success") != "error",
            parts={part: item[part] for part in PARTS if part in item},
            started_at_ms=int(started) if isinstance(started, (int, float)) else 0,
            duration_ms=float(duration) if isinstance(duration, (int, float)) else 0.0,
            observe_depth=depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0,
        )

    def payload_for(self, observer: Observer, activation_id: str) -> Any:
        """What `observer`'s target is called with: the envelope, or the bare input or output (`deliver`)."""
        if observer.deliver != "envelope":
            return self.parts.get(observer.deliver)
        envelope: dict[str, Any] = {
            "observer_id": observer.id,
            "activation_id": activation_id,
            "function_id": self.function_id,
            "namespace": self.namespace,
            "invocation_id": self.invocation_id,
            "status": "success" if self.ok else "error",
        }
        for part in observer.capture:
            if part in self.parts:
                envelope[part] = self.parts[part]
        envelope["started_at_ms"] = self.started_at_ms
        envelope["duration_ms"] = self.duration_ms
        return envelope
