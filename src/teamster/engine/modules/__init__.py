"""Built-in engine workers, by the names the config file's `workers` list uses."""

from __future__ import annotations

from teamster.engine.builtin import Module


def module_classes() -> dict[str, type[Module]]:
    from teamster.engine.modules.configuration import Configuration
    from teamster.engine.modules.cron import Cron
    from teamster.engine.modules.engine_fn import EngineFunctions
    from teamster.engine.modules.http import Http
    from teamster.engine.modules.http_functions import HttpFunctions
    from teamster.engine.modules.observability import Observability
    from teamster.engine.modules.observe import Observers
    from teamster.engine.modules.pubsub import PubSub
    from teamster.engine.modules.queue import QueueModule
    from teamster.engine.modules.state import State
    from teamster.engine.modules.stream import Streams
    from teamster.engine.modules.traces import Traces
    from teamster.engine.modules.worker_manager import WorkerManager

    classes: list[type[Module]] = [
        Configuration,
        Cron,
        EngineFunctions,
        Http,
        HttpFunctions,
        Observability,
        Observers,
        Traces,
        QueueModule,
        WorkerManager,
        State,
        Streams,
        PubSub,
    ]
    return {cls.name: cls for cls in classes}
