"""Bearer tokens and their scopes: admin (everything), deploy (deploy, roll back, read), read."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from server.db import store
from server.errors import Forbidden, Throttled, Unauthorized
from server.keys import LOGINS, SESSIONS, TOKENS

SCOPES = ("admin", "deploy", "read")
TOKEN_CACHE_SECONDS = 30.0  # tokens cannot be revoked through the API yet; keep this short
_IMPLIES = {"admin": {"admin", "deploy", "read"}, "deploy": {"deploy", "read"}, "read": {"read"}}


@dataclass(frozen=True)
class Caller:
    """Who made a request (the token's name) and what it may do."""

    name: str
    scopes: frozenset[str]


async def require(request: web.Request, scope: str) -> Caller:
    """The caller behind the request's bearer token, if it holds `scope`."""
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
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and hit[1] > now:
        caller: Caller = hit[0]
    else:
        async with request.app[SESSIONS]() as session:
            found = await store.find_token(session, token)
        if found is None:
            logins.failed(address)
            raise Unauthorized("the bearer token is not valid")
        granted: set[str] = set()
        for s in found.scopes.split(","):
            granted |= _IMPLIES.get(s, set())
        caller = Caller(found.name, frozenset(granted))
        if len(cache) > 10_000:
            cache.clear()
        cache[token] = (caller, now + TOKEN_CACHE_SECONDS)
    if scope not in caller.scopes:
        raise Forbidden(f"token {caller.name!r} lacks the {scope!r} scope")
    return caller
