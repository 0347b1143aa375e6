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
import ipaddress
import re
from urllib.parse import urlsplit

from server.states import PUBLIC_EVENTS, matches, public_name

__all__ = [
    "ALL",
    "NAMES",
    "PUBLIC_EVENTS",
    "check_pattern",
    "check_url",
    "internal_target",
    "matches",
    "public_name",
]

# cloud instance-metadata endpoints: a webhook there would hand an admin's request the
# host's cloud credentials (the addresses outside the link-local ranges, and the names)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "169.254.169.254")
)
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.azure.com", "instance-data"}
)

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


def internal_target(url: str) -> str | None:
    """Why `url` (a valid webhook URL) points at a link-local or cloud metadata address, or
    None if it does not. Only what the URL says is checked: a name that resolves there is not
    (resolving at creation proves nothing about delivery)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in _METADATA_NAMES:
        return f"{host} is a cloud metadata service"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address in _METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    return None
