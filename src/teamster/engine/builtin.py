"""Shared pieces for built-in modules: typed inputs, fan-out trigger types, the module base class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from teamster.engine.config import first_error
from teamster.engine.triggers import Binding, TriggerConfigError
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from teamster.engine.engine import Engine

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=BaseModel)


class Input(BaseModel):
    """Base for built-in function inputs: unknown keys (such as `_caller_worker_id`) are ignored."""

    model_config = ConfigDict(extra="ignore")


def parse(model: type[M], data: Any, function_id: str) -> M:
    """Validate a built-in's input; bad input is a `deserialization_error` that names the field."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise InvocationError(
            ErrorCode.DESERIALIZATION_ERROR, f"{function_id}: {first_error(exc, 'input')}", function_id=function_id
        ) from None


class BindingSet(Generic[C]):
    """A trigger provider that only remembers its bindings (with parsed configs); the module fires them."""

    def __init__(self, config: type[C] | None = None) -> None:
        self.bindings: dict[str, Binding] = {}
        self.configs: dict[str, C] = {}
        self._config = config

    async def register(self, binding: Binding) -> None:
        if self._config is not None:
            self.configs[binding.id] = config_of(self._config, binding)
        self.bindings[binding.id] = binding

    async def unregister(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)
        self.configs.pop(binding.id, None)

    def matching(self, wants: Callable[[C], bool]) -> list[Binding]:
        """Bindings whose parsed config accepts an event, in registration order."""
        return [b for bid, b in self.bindings.items() if wants(self.configs[bid])]


def config_of(model: type[M], binding: Binding) -> M:
    """Validate a binding's config for a built-in trigger type, refusing it with a clear reason."""
    try:
        return model.model_validate(binding.config if binding.config is not None else {})
    except ValidationError as exc:
        raise TriggerConfigError(f"{binding.trigger_type} trigger: {first_error(exc)}") from None


class Module:
    """A built-in worker of the engine; `name` is the one used in the config file's `workers` list."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = Input

    def __init__(self, engine: Engine, config: BaseModel) -> None:
        self.engine = engine
        self.config = config

    async def start(self) -> None:
        """Register functions and trigger types, then start any background work."""

    async def stop(self) -> None:
        """Stop background work; stored data stays."""
