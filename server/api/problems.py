"""Renders errors as RFC 9457 problem+json; one middleware, one error shape.

Domain errors (server/errors.py) carry no HTTP status: this module alone decides the status of
each. Errors of HTTP itself (a body that is not JSON, a server that is stopping) are
`HttpProblem`s, raised only inside server/api/. Anything unexpected is logged with its
traceback and answered with a bare 500 that reveals nothing. While the server stops, requests
get 503.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from server.db import store
from server.errors import (
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    Throttled,
    Unauthorized,
)
from server.keys import METRICS, STOPPING

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# the HTTP status of each domain error; a subclass not named here gets its nearest base's
_STATUSES: dict[type[DomainError], int] = {
    DomainError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Throttled: 429,
}


@dataclass
class HttpProblem(Exception):
    """An error of HTTP itself, not of the domain (malformed JSON, stopping, no database)."""

    status: int
    code: str
    message: str
    fields: list[FieldError] = field(default_factory=list)
    retry_after: float | None = None  # seconds, sent as Retry-After

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def status_of(error: DomainError) -> int:
    """The HTTP status a domain error is answered with."""
    for cls in type(error).__mro__:
        if cls in _STATUSES:
            return _STATUSES[cls]
    raise AssertionError("unreachable: DomainError itself is mapped")


def as_problem(error: DomainError) -> HttpProblem:
    """A domain error with its HTTP status."""
    retry_after = error.retry_after if isinstance(error, Throttled) else None
    return HttpProblem(status_of(error), error.code, error.message, error.fields, retry_after)


def problem(request: web.Request, error: HttpProblem) -> web.Response:
    """The problem+json response for `error`."""
    body: dict[str, Any] = {
        "type": f"urn:flotilla:problem:{error.code}",
        "title": _TITLES.get(error.status, "Error"),
        "status": error.status,
        "code": error.code,
        "detail": error.message,
        "instance": request.path,
    }
    if error.fields:
        body["errors"] = [{"field": f.field, "message": f.message} for f in error.fields]
    response = web.json_response(body, status=error.status, content_type=PROBLEM_JSON)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="flotilla"'
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


DATABASE_RETRY_SECONDS = 5.0  # what Retry-After says while the database does not answer


class Outage:
    """Whether the database is down, as this app's API last saw it: logged once per outage."""

    def __init__(self) -> None:
        self.down = False

    def began(self, exc: BaseException) -> None:
        """An API call found the database down (logged if it was up)."""
        if not self.down:
            self.down = True
            log.error("the database does not answer; API calls get 503 until it does: %s", exc)

    def over(self) -> None:
        """An API call went through (logged if the database was down)."""
        if self.down:
            self.down = False
            log.warning("the database answers again")


OUTAGE = web.AppKey("outage", Outage)


def _database_down(app: web.Application, exc: BaseException) -> HttpProblem:
    app[OUTAGE].began(exc)
    return HttpProblem(
        503,
        "database_unavailable",
        "the database does not answer; retry shortly",
        retry_after=DATABASE_RETRY_SECONDS,
    )


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors, HttpProblems and aiohttp's own HTTP errors into problem+json;
    count every request."""
    started = time.perf_counter()
    route = request.match_info.route.resource
    template = route.canonical if route is not None else "unmatched"
    metrics = request.app[METRICS]
    status = 500
    try:
        if request.app[STOPPING][0] and not request.path.startswith("/v1/agent"):
            raise HttpProblem(503, "stopping", "the server is shutting down; retry shortly")
        response = await handler(request)
        status = response.status
        request.app[OUTAGE].over()
        return response
    except DomainError as exc:
        answer = as_problem(exc)
        status = answer.status
        return problem(request, answer)
    except HttpProblem as exc:
        status = exc.status
        return problem(request, exc)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else f"request body too large: {exc.text}"
        return problem(request, HttpProblem(exc.status, code, message))
    except Exception as exc:
        if store.unavailable(exc):
            status = 503
            return problem(request, _database_down(request.app, exc))
        log.exception("unexpected error %s %s", request.method, request.path)
        status = 500
        return web.json_response(
            {"type": "about:blank", "title": "Internal Server Error", "status": 500},
            status=500,
            content_type=PROBLEM_JSON,
        )
    finally:
        metrics.http_requests.labels(template, request.method, str(status)).inc()
        metrics.http_duration.labels(template, request.method).observe(
            time.perf_counter() - started
        )
