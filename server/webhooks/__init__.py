"""Outbound webhooks: which internal events are published, and under which public names.

Internal event kinds (`store.add_event`) are mapped to stable public names; a kind with no
public name (`host_added`, `*_requested`, `host_token_rotated`, ...) is never delivered.
A webhook subscribes with patterns in which `*` matches any run of characters
(`deployment.*`, `host.disconnected`, `*`). See `server.webhooks.signing` for the wire format.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

PUBLIC_EVENTS: dict[str, str] = {
    "deploy_started": "deployment.started",
    "rollback_started": "deployment.started",
    "deployment_batch_done": "deployment.batch_done",
    "deployment_paused": "deployment.paused",  # paused by the controller (canaries healthy)
    "deployment_pause": "deployment.paused",  # paused through the API: takes effect at once
    "deployment_resume": "deployment.resumed",
    "deployment_promote": "deployment.promoted",
    "deployment_succeeded": "deployment.succeeded",
    "deployment_failed": "deployment.failed",
    "deployment_rolled_back": "deployment.rolled_back",
    "deployment_cancelled": "deployment.cancelled",
    "deployment_superseded": "deployment.superseded",
    "host_connected": "host.connected",
    "host_disconnected": "host.disconnected",
    "drift_healed": "host.drift_healed",
}
NAMES = frozenset(PUBLIC_EVENTS.values())
ALL = "*"
_PATTERN = re.compile(r"^[a-z_.*]{1,100}$")


def public_name(kind: str) -> str | None:
    """The public name of an internal event kind, or None if it is not published."""
    return PUBLIC_EVENTS.get(kind)


def matches(patterns: Iterable[str], name: str) -> bool:
    """Does any of a webhook's patterns select the public event `name`?"""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def check_pattern(pattern: str) -> str:
    """A valid subscription pattern: only a-z, '_', '.' and '*', selecting a known event."""
    if not _PATTERN.match(pattern):
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
