"""Worker client: register functions and triggers, call other functions through the engine."""

from teamster.protocol import InvocationError
from teamster.sdk import telemetry
from teamster.sdk.channels import ChannelReader, ChannelWriter
from teamster.sdk.transport import Backoff, LocalHost
from teamster.sdk.worker import Enqueue, TriggerInfo, TriggerTypeHandler, Void, Worker

__all__ = [
    "Backoff",
    "ChannelReader",
    "ChannelWriter",
    "Enqueue",
    "InvocationError",
    "LocalHost",
    "TriggerInfo",
    "TriggerTypeHandler",
    "Void",
    "Worker",
    "telemetry",
]
