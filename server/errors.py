"""Errors that carry their HTTP status and a stable code; rendered as RFC 9457 problem+json.

Domain code raises these, never aiohttp's HTTP exceptions. Clients read `code`, not text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    fields: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class NotFound(ApiError):
    def __init__(self, message: str, field_name: str | None = None) -> None:
        fields = [FieldError(field_name, message)] if field_name else []
        super().__init__(404, "not_found", message, fields)


class Conflict(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(409, code, message)


class Invalid(ApiError):
    def __init__(self, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(422, "invalid_request", message, fields or [])


class Unauthorized(ApiError):
    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(401, "unauthorized", message)


class Forbidden(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "forbidden", message)
