"""Domain errors: a stable code, a message and the fields at fault; no HTTP.

Domain code (db/, rollout/) raises these, never aiohttp's HTTP exceptions; the api layer alone
(server/api/problems.py) knows which HTTP status each one gets. Clients read `code`, not text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One field of a request at fault, and what is wrong with it."""

    field: str
    message: str


@dataclass
class DomainError(Exception):
    """An error the caller can act on: a stable `code`, a message, the fields at fault."""

    code: str
    message: str
    fields: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(DomainError):
    """The thing asked for does not exist."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        fields = [FieldError(field_name, message)] if field_name else []
        super().__init__("not_found", message, fields)


class Conflict(DomainError):
    """The request contradicts the state it would change; `code` says how."""

    def __init__(self, code: str, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(code, message, fields or [])


class Invalid(DomainError):
    """The request is well-formed but its values are not acceptable."""

    def __init__(self, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__("invalid_request", message, fields or [])


class Unauthorized(DomainError):
    """The caller did not prove who it is."""

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__("unauthorized", message)


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


class Refused(Forbidden):
    """A request the server's security rules refuse: `code` names the rule, `fields` the
    field that breaks it (answered 403, like every Forbidden)."""

    def __init__(self, rule: str, message: str, field_name: str) -> None:
        super().__init__(message)
        self.code = rule
        self.fields = [FieldError(field_name, message)]


class CertificateRefused(Forbidden):
    """Mutual TLS: the agent's client certificate is missing or names another host."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "client_certificate"


class Throttled(DomainError):
    """The caller's address failed to authenticate too often; it may retry after a while."""

    def __init__(self, retry_after: float) -> None:
        message = "too many failed authentications from this address; retry later"
        super().__init__("too_many_failed_logins", message)
        self.retry_after = retry_after


class DatabaseProblem(Exception):
    """A database the server cannot start on, said in one line with what to do (not a
    DomainError: no API call answers with it; the command line prints it and exits)."""


class SettingsError(ValueError):
    """A setting that cannot work; the message names it (at start, the command line prints
    it in one line and exits). Not a domain error: no request carries it."""
