"""Bearer tokens and their scopes: admin (everything), deploy (deploy, roll back, read), read."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from server.db import store
from server.errors import Forbidden, Unauthorized
from server.keys import SESSIONS

SCOPES = ("admin", "deploy", "read")
_IMPLIES = {"admin": {"admin", "deploy", "read"}, "deploy": {"deploy", "read"}, "read": {"read"}}


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]


async def require(request: web.Request, scope: str) -> Caller:
    """The caller behind the request's bearer token, if it holds `scope`."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    async with request.app[SESSIONS]() as session:
        found = await store.find_token(session, token.strip())
    if found is None:
        raise Unauthorized("the bearer token is not valid")
    granted: set[str] = set()
    for s in found.scopes.split(","):
        granted |= _IMPLIES.get(s, set())
    if scope not in granted:
        raise Forbidden(f"token {found.name!r} lacks the {scope!r} scope")
    return Caller(found.name, frozenset(granted))
