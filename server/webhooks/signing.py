"""How a delivery is signed, and how a receiver checks it.

Every delivery is an HTTP POST with a JSON body::

    {"id": 42, "event": "deployment.succeeded", "at": "2026-01-01T12:00:00+00:00",
     "app": "web", "deployment": 7, "host": null, "message": "deploy 7 of release 3 succeeded"}

and these headers:

- ``Flotilla-Event``: the event name (``deployment.succeeded``).
- ``Flotilla-Delivery``: the delivery id, the same as the body's ``id``. A delivery may arrive
  more than once (a server can stop between sending and recording); receivers dedupe on it.
- ``Flotilla-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is the lowercase hex
  HMAC-SHA256, keyed with the webhook's secret, of ``f"{t}.{body}"`` (the raw body bytes).
  Receivers recompute it, compare in constant time and reject a ``t`` too far from their clock
  (five minutes is usual), which stops replays. Retries are signed afresh with a new ``t``.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Flotilla-Signature"
EVENT_HEADER = "Flotilla-Event"
DELIVERY_HEADER = "Flotilla-Delivery"
TOLERANCE = 300.0


def digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `timestamp.body` keyed with `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the Flotilla-Signature header."""
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = TOLERANCE) -> bool:
    """Is `header` a valid, fresh signature of `body`? What a receiver does, in Python."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
