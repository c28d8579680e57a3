"""The run API's one error type: an HTTP status, a stable code, and a message that names what is wrong."""

from __future__ import annotations

from pydantic import ValidationError

from teamster.protocol.errors import ErrorCode


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def invalid(cls, message: str) -> ApiError:
        return cls(400, ErrorCode.INVALID_REQUEST, message)

    @classmethod
    def not_found(cls, code: str, message: str) -> ApiError:
        return cls(404, code, message)

    @classmethod
    def from_validation(cls, exc: ValidationError, where: str = "body") -> ApiError:
        """The first problem, led by the field it is about: `message: String should have at most 8000 characters`."""
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or where
        return cls.invalid(f"{field}: {first['msg']}")
