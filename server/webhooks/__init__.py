"""Outbound webhooks: which internal events are published, and under which public names.

Internal event kinds (`store.add_event`) are mapped to stable public names
(`server.states.PUBLIC_EVENTS`, beside the kinds themselves, where the database layer can
read them); a kind with no public name (`host_added`, `*_requested`, `host_token_rotated`,
...) is never delivered.
A webhook subscribes with patterns in which `*` matches any run of characters
(`deployment.*`, `host.disconnected`, `*`). See `server.webhooks.signing` for the wire format.
"""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import urlsplit

from server.states import PUBLIC_EVENTS, matches, public_name

__all__ = ["ALL", "NAMES", "PUBLIC_EVENTS", "check_pattern", "check_url", "matches", "public_name"]

NAMES = frozenset(PUBLIC_EVENTS.values())
ALL = "*"
_PATTERN = re.compile(r"^[a-z_.*]{1,100}$")


def check_pattern(pattern: str) -> str:
    """A valid subscription pattern: only a-z, '_', '.' and '*', selecting a known event."""
    if not _PATTERN.fullmatch(pattern):
        raise ValueError("a pattern has only a-z, '_', '.' and '*' (e.g. deployment.*)")
    if not any(fnmatch.fnmatchcase(n, pattern) for n in NAMES):
        raise ValueError(f"{pattern!r} selects no event; known: {', '.join(sorted(NAMES))}")
    return pattern


def check_url(value: str) -> str:
    """A webhook URL: http or https, with a host, no whitespace."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    return value
