"""A registered handler: how to call it, and the JSON Schemas its type hints describe."""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from teamster.engine.config import first_error
from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode


@dataclass(slots=True)
class Handler:
    fn: Callable[..., Any]
    is_async: bool
    wants_metadata: bool
    request: TypeAdapter[Any] | None  # validates the payload when the first parameter is typed
    request_format: Any
    response_format: Any

    @classmethod
    def wrap(cls, fn: Callable[..., Any]) -> Handler:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
        first = hints.get(params[0].name) if params else None
        returns = hints.get("return")
        request = TypeAdapter(first) if first is not None and first is not Any else None
        return cls(
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            wants_metadata=any(p.name == "metadata" for p in params[1:]),
            request=request,
            request_format=_schema(request),
            response_format=_schema(TypeAdapter(returns)) if returns not in (None, Any, type(None)) else None,
        )

    async def __call__(self, data: Any, metadata: Any, function_id: str) -> Any:
        if self.request is not None:
            try:
                data = self.request.validate_python(data)
            except ValidationError as exc:
                # One line, `fid: field: why`, as the built-ins say it; never the input itself (it may be a secret).
                raise InvocationError(
                    ErrorCode.DESERIALIZATION_ERROR,
                    f"{function_id}: {first_error(exc, 'input')}",
                    function_id=function_id,
                ) from None
        args = (data, metadata) if self.wants_metadata else (data,)
        if self.is_async:
            result = await self.fn(*args)
        else:
            result = await asyncio.to_thread(self.fn, *args)
        return to_json(result)


def to_json(value: Any) -> Any:
    """Results travel as plain JSON: pydantic models and dataclasses are dumped."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return TypeAdapter(type(value)).dump_python(value, mode="json")
    return value


def _schema(adapter: TypeAdapter[Any] | None) -> Any:
    if adapter is None:
        return None
    try:
        return adapter.json_schema()
    except Exception:  # a hint pydantic cannot describe still registers, just without a schema
        return None
