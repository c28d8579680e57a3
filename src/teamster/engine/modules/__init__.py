"""Built-in engine workers, by the names the config file's `workers` list uses."""

from __future__ import annotations

from teamster.engine.builtin import Module


def module_classes() -> dict[str, type[Module]]:
    from teamster.engine.modules.engine_fn import EngineFunctions
    from teamster.engine.modules.observability import Observability
    from teamster.engine.modules.worker_manager import WorkerManager

    classes: list[type[Module]] = [
        EngineFunctions,
        Observability,
        WorkerManager,
    ]
    return {cls.name: cls for cls in classes}
