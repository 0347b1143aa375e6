"""API tokens: create (the token shown once), list, revoke (scope admin).

A revoked token is refused by this process at once (its cache entries are dropped) and by
any other server replica within a second (`server/token_cache.TTL_SECONDS`). The last admin
token that is neither confined nor expired cannot be revoked (409 `last_admin_token`):
nobody could manage tokens afterwards.
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from server.api.audit import TARGET
from server.api.auth import require
from server.api.body import read_body
from server.api.pages import next_cursor, page_str
from server.api.schemas.tokens import TOKEN_NAME, TokenCreated, TokenIn, TokenOut
from server.db import store, tokens
from server.db.models import Token
from server.errors import FieldError, Invalid, NotFound
from server.keys import SESSIONS, TOKENS


def token_out(row: Token, now: dt.datetime) -> TokenOut:
    """A token as the API shows it: never the token or its hash."""
    expires = store.as_utc(row.expires_at)
    return TokenOut(
        name=row.name,
        scopes=row.scopes.split(","),
        apps=row.apps,
        created_at=store.as_utc(row.created_at) or row.created_at,
        last_used_at=store.as_utc(row.last_used_at),
        expires_at=expires,
        expired=expires is not None and expires <= now,
    )


async def create_token(request: web.Request) -> web.Response:
    """POST /v1/tokens: 201 with the token, shown only in this answer."""
    await require(request, "admin")
    body = await read_body(request, TokenIn)
    request[TARGET] = f"token={body.name}"
    scopes = list(dict.fromkeys(body.scopes))
    if body.apps is not None and "admin" in scopes:
        raise Invalid(
            "an admin token cannot be confined to apps",
            [FieldError("apps", "not allowed with the admin scope")],
        )
    now = store.now()
    expires = now + dt.timedelta(seconds=body.expires_in) if body.expires_in else None
    apps = list(dict.fromkeys(body.apps)) if body.apps is not None else None
    async with request.app[SESSIONS].begin() as session:
        row, token = await tokens.create(session, body.name, scopes, apps, expires)
        out = token_out(row, now)
    created = TokenCreated(**out.model_dump(), token=token)
    return web.json_response(
        created.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/v1/tokens/{body.name}", "Cache-Control": "no-store"},
    )


async def list_tokens(request: web.Request) -> web.Response:
    """GET /v1/tokens[?limit=N&cursor=C]: tokens by name (all when no limit is given): name,
    scopes, apps, times; never a token."""
    await require(request, "admin")
    page = page_str(request, None)
    async with request.app[SESSIONS]() as session:
        rows = await tokens.list_all(session, page.limit, page.after)
    now = store.now()
    return web.json_response(
        {
            "tokens": [token_out(r, now).model_dump(mode="json") for r in rows],
            "next_cursor": next_cursor(rows, page.limit, lambda t: t.name),
        }
    )


async def revoke_token(request: web.Request) -> web.Response:
    """DELETE /v1/tokens/{name}: the token is refused from now on."""
    await require(request, "admin")
    name = request.match_info["name"]
    if not re.fullmatch(TOKEN_NAME, name):
        raise NotFound(f"token {name[:80]!r} does not exist", "name")
    async with request.app[SESSIONS].begin() as session:
        await tokens.revoke(session, name)
    request.app[TOKENS].drop(name)
    return web.Response(status=204)
