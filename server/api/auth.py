"""Bearer tokens, their scopes and their apps.

Scopes, each implying the ones after it:
- `admin`: everything: tokens, hosts, webhooks, the audit log, and all of `deploy`;
- `deploy`: deploy a release, promote canaries, and all of `rollback`;
- `rollback`: roll an app back, pause, resume or cancel a rollout (stop or reverse what is
  shipping, never ship something new), and all of `read`;
- `read`: every GET of apps, deployments, hosts and events.

A token confined to `apps` may act on, and see, only those apps: an app-scoped call on
another app is refused (403), lists are filtered. An admin token is never confined.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiohttp import web

from server.db import store, tokens
from server.db.models import Token
from server.errors import Forbidden, Throttled, Unauthorized
from server.keys import AUDIT, LOGINS, SESSIONS, TOKENS
from server.token_cache import Caller

SCOPES = ("read", "rollback", "deploy", "admin")
_IMPLIES = {
    "admin": {"admin", "deploy", "rollback", "read"},
    "deploy": {"deploy", "rollback", "read"},
    "rollback": {"rollback", "read"},
    "read": {"read"},
}
ACTOR = web.RequestKey("actor", str)  # the token's name, once known: the audit's actor

__all__ = ["ACTOR", "SCOPES", "Caller", "confine", "granted", "require"]


def granted(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope the given ones imply."""
    out: set[str] = set()
    for scope in scopes:
        out |= _IMPLIES.get(scope, set())
    return frozenset(out)


def caller_of(row: Token) -> Caller:
    """The caller a token's row describes."""
    return Caller(
        row.name,
        granted(row.scopes.split(",")),
        frozenset(row.apps) if row.apps is not None else None,
        row.id,
        store.as_utc(row.expires_at),
    )


def confine(caller: Caller, app: str) -> None:
    """Refuse (403) unless the caller's token may act on `app`."""
    if not caller.may_see(app):
        raise Forbidden(f"token {caller.name!r} is not allowed on app {app!r}")


async def require(request: web.Request, scope: str, app: str | None = None) -> Caller:
    """The caller behind the request's bearer token, if it holds `scope` (and may act on
    `app`, when the call is about one)."""
    address = request.remote or "?"
    logins = request.app[LOGINS]
    wait = logins.retry_after(address, "api")
    if wait:
        raise Throttled(wait)
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:  # no guess at a token: not counted
        raise Unauthorized()
    cache = request.app[TOKENS]
    clock = time.monotonic()
    caller = cache.get(token, clock)
    if caller is None:
        async with request.app[SESSIONS]() as session:
            found = await tokens.find(session, token)
        if found is None:
            logins.failed(address)
            raise Unauthorized("the bearer token is not valid")
        caller = caller_of(found)
        cache.put(token, caller, clock)
    request[ACTOR] = caller.name
    now = store.now()
    if caller.expired(now):
        raise Unauthorized(f"token {caller.name!r} has expired")
    if caller.token_id is not None and cache.due(caller.token_id, clock):
        request.app[AUDIT].used(caller.token_id, now)
    if scope not in caller.scopes:
        raise Forbidden(f"token {caller.name!r} lacks the {scope!r} scope")
    if app is not None:
        confine(caller, app)
    return caller
