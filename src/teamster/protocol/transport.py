"""What both ends of a worker's link share beyond the wire messages.

A worker reaches the engine over a WebSocket or, in the same process, through an in-process transport
the engine provides. Either way a call can end because the link went or the deadline passed, and the
caller sees the same errors; and the in-process engine hands the worker the same protocol messages
a socket would carry, just without encoding them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from teamster.protocol.errors import ErrorCode, Timeout
from teamster.protocol.messages import InvokeFunction, Message

# One frame on a data channel (§4.9): (is_text, payload).
ChannelFrame = tuple[bool, str | bytes]


class LocalPeer(Protocol):
    """The worker's side of an in-process link: the engine delivers messages to it and runs its handlers."""

    def deliver(self, msg: Message) -> None:
        """A message from the engine (registration results, calls to run in a task of the worker's own)."""
        ...

    def execute(self, call: InvokeFunction) -> Awaitable[Any]:
        """Run one of the worker's functions: its result, or InvocationError."""
        ...

    def detached(self) -> None:
        """The engine let the worker go."""
        ...


def timed_out(function_id: str, timeout: float) -> Timeout:
    """A call whose caller stopped waiting after `timeout` seconds."""
    return Timeout(ErrorCode.TIMEOUT, f"{function_id} did not answer within {timeout:g} s", function_id=function_id)
