"""Worker client: register functions and triggers, call other functions through the engine."""

from teamster.protocol import InvocationError
from teamster.protocol.errors import (
    Conflict,
    ConnectionLost,
    ErrorCode,
    Forbidden,
    FunctionNotFound,
    InvalidPayload,
    InvalidRequest,
    InvocationFailed,
    InvocationStopped,
    NotFound,
    StateUpdateFailed,
    Timeout,
)
from teamster.sdk import telemetry
from teamster.sdk.channels import ChannelReader, ChannelWriter
from teamster.sdk.transport import Backoff
from teamster.sdk.worker import Enqueue, TriggerInfo, TriggerTypeHandler, Void, Worker

__all__ = [
    "Backoff",
    "ChannelReader",
    "ChannelWriter",
    "Conflict",
    "ConnectionLost",
    "Enqueue",
    "ErrorCode",
    "Forbidden",
    "FunctionNotFound",
    "InvalidPayload",
    "InvalidRequest",
    "InvocationError",
    "InvocationFailed",
    "InvocationStopped",
    "NotFound",
    "StateUpdateFailed",
    "Timeout",
    "TriggerInfo",
    "TriggerTypeHandler",
    "Void",
    "Worker",
    "telemetry",
]
