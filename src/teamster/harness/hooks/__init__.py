"""The `hook-fanout` worker: publish a hook topic, collect subscriber replies, merge them (iii-harness.md §6).

Topics the harness publishes: `agent::before_function_call` (payload `{session_id, function_call,
approval_required}`, through `hook-fanout::before`) and `agent::after_function_call` (payload
`{function_call, result}`, merge rule `field_merge`). A subscriber binds a `durable:subscriber` trigger on
the topic, reads `{event_id, reply_stream, payload}` and answers with
`stream::set {stream_name: reply_stream, group_id: event_id, item_id, data: reply}`. The package's
modules: `fanout` (the handlers), `merge` (the merge rules).
"""

from __future__ import annotations

from teamster.harness.contracts import AFTER_FUNCTION_CALL, BEFORE_FUNCTION_CALL
from teamster.harness.hooks.fanout import REPLY_STREAM, Fanout
from teamster.sdk import Worker

__all__ = ["AFTER_FUNCTION_CALL", "BEFORE_FUNCTION_CALL", "REPLY_STREAM", "Fanout", "create_worker"]


def create_worker(
    *,
    default_timeout_ms: int = 10_000,
    min_timeout_ms: int = 50,
    quiescence_ms: int = 200,
    presence_ttl_s: float = 30.0,
) -> Worker:
    """The `hook-fanout` worker, ready to connect or attach."""
    worker = Worker("hook-fanout", description="Hook topics: publish, collect replies, merge")
    worker.serve(Fanout(worker, default_timeout_ms, min_timeout_ms, quiescence_ms, presence_ttl_s))
    worker.register_trigger("stream", "hook-fanout::reply_handler", {"stream_name": REPLY_STREAM})
    return worker
