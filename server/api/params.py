"""Values of the URL: an app's name, numbers and true/false flags, each refused with the field it came from."""

from __future__ import annotations

import re

from aiohttp import web

from server.api.schemas.fields import DNS_LABEL
from server.errors import FieldError, Invalid

_APP_NAME = re.compile(DNS_LABEL)
MAX_NUMBER = 2**31 - 1  # ids and release numbers are 32-bit integers in every database


def app_name(request: web.Request) -> str:
    """The {app} of the URL, refused unless it is a lowercase DNS label."""
    name = request.match_info["app"]
    if len(name) > 63 or not _APP_NAME.fullmatch(name):
        raise Invalid(
            "app names are lowercase DNS labels: 1-63 characters of a-z, 0-9 and '-'",
            [FieldError("app", f"{name[:80]!r} is not a valid app name")],
        )
    return name


def app_query(request: web.Request) -> str | None:
    """The `?app=` of the URL, if given, refused unless it is a lowercase DNS label."""
    name = request.query.get("app")
    if name is not None and (len(name) > 63 or not _APP_NAME.fullmatch(name)):
        raise Invalid(
            "app names are lowercase DNS labels: 1-63 characters of a-z, 0-9 and '-'",
            [FieldError("app", f"{name[:80]!r} is not a valid app name")],
        )
    return name


def number_of(value: str, field: str) -> int:
    """A release number from the URL (path or query), 1 to 2**31-1."""
    try:
        number = int(value)
    except ValueError:
        raise Invalid(
            f"{field} must be a release number", [FieldError(field, "not an integer")]
        ) from None
    if not 1 <= number <= MAX_NUMBER:
        raise Invalid(
            f"{field} must be from 1 to {MAX_NUMBER}", [FieldError(field, "out of range")]
        )
    return number


def flag(request: web.Request, name: str) -> bool:
    """A true/false query parameter (`true`, `false`, `1`, `0`; absent: false)."""
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} must be true or false", [FieldError(name, "must be true or false")])
    return raw in ("true", "1")
