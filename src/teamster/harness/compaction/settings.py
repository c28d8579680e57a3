"""The compaction worker's thresholds and timings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompactionSettings:
    """Thresholds and timings; the defaults follow the reference's context-compaction worker."""

    trigger_ratio: float = 0.8  # on turn_end, compact once usage reaches this share of the usable window
    tail_ratio: float = 0.25  # the kept tail may hold this share of the usable window...
    max_tail_tokens: int = 8_000  # ...but never more than this
    lease_ttl_s: float = 300.0  # a crashed compaction blocks its session this long at most
    busy_wait_s: float = 20.0  # compact_now waits this long for a running compaction before answering busy
    provider_timeout_s: float = 240.0  # below lease_ttl_s, so a summary ends before its lease can expire

    def tail_budget(self, usable_tokens: int) -> int:
        """The most tokens the kept tail may hold."""
        return min(self.max_tail_tokens, int(usable_tokens * self.tail_ratio))
