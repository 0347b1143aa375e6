"""Cursor pagination of every list: `?limit=N&cursor=C`, answered with `next_cursor`.

A cursor is opaque to clients: the key of the last row of the page (an id, a release
number or a name), base64url-encoded JSON. The next page is the rows past that key in the
list's order (keyset pagination: no row is skipped or repeated when rows are added
meanwhile, and a page costs the same however deep it is). `next_cursor` is null when the
page is the last one; a page that is exactly full may be followed by an empty one.

Lists that answered everything before cursors existed (`/v1/hosts`, `/v1/tokens`,
`/v1/apps/{app}/releases`) still do when no `limit` is given.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from server.errors import FieldError, Invalid

K = TypeVar("K", int, str)
MAX_LIMIT = 1000
MAX_KEY = 2**31 - 1


@dataclass(frozen=True)
class Page(Generic[K]):
    """What a request asks of a list: at most `limit` rows (None: all), past `after`."""

    limit: int | None
    after: K | None


def page_int(request: web.Request, default_limit: int | None) -> Page[int]:
    """The page a request asks for, of a list keyed by an integer (ids, release numbers)."""
    after = _cursor(request)
    if after is not None and (
        not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_KEY
    ):
        raise _bad_cursor()
    return Page(limit_of(request, default_limit), after)


def page_str(request: web.Request, default_limit: int | None) -> Page[str]:
    """The page a request asks for, of a list keyed by a name."""
    after = _cursor(request)
    if after is not None and (not isinstance(after, str) or len(after) > 200):
        raise _bad_cursor()
    return Page(limit_of(request, default_limit), after)


def limit_of(request: web.Request, default: int | None) -> int | None:
    """`?limit=`, 1-1000; `default` when absent."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Invalid(
            f"limit must be 1-{MAX_LIMIT}", [FieldError("limit", f"must be 1-{MAX_LIMIT}")]
        )
    return int(raw)


R = TypeVar("R")


def next_cursor(rows: Sequence[R], limit: int | None, key: Callable[[R], K]) -> str | None:
    """The cursor of the page after `rows`, or None if there is none."""
    if limit is None or len(rows) < limit or not rows:
        return None
    raw = json.dumps({"k": key(rows[-1])}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(request: web.Request) -> object:
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > 400:
        raise _bad_cursor()
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    if not isinstance(decoded, dict) or set(decoded) != {"k"}:
        raise _bad_cursor()
    return decoded["k"]


def _bad_cursor() -> Invalid:
    return Invalid(
        "cursor is not one this list answered",
        [FieldError("cursor", "use the next_cursor of a previous page of the same list")],
    )
