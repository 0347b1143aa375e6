"""API tokens' lifecycle as the database keeps it: create, list, revoke, expire, last use.

Tokens are stored only as hashes (`store.hash_token`). A revoked token's row is deleted, so
its name can be given to a new token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Token, utcnow
from server.db.store import as_utc, hash_token, new_token
from server.errors import Conflict, FieldError, NotFound


async def create(
    session: AsyncSession,
    name: str,
    scopes: Sequence[str],
    apps: Sequence[str] | None,
    expires_at: dt.datetime | None,
) -> tuple[Token, str]:
    """Create a token; return its row and the token itself (shown once, never stored)."""
    if await session.scalar(select(Token.id).where(Token.name == name)) is not None:
        raise Conflict(
            "token_exists", f"a token named {name!r} exists", [FieldError("name", "taken")]
        )
    token = new_token()
    row = Token(
        name=name,
        token_hash=hash_token(token),
        scopes=",".join(scopes),
        apps=list(apps) if apps is not None else None,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, token


async def create_token(session: AsyncSession, name: str, scopes: Sequence[str]) -> str:
    """Create an unconfined, unexpiring API token with these scopes; return it."""
    _, token = await create(session, name, scopes, None, None)
    return token


_BY_HASH = select(Token).where(Token.token_hash == bindparam("token_hash"))  # built once


async def find(session: AsyncSession, token: str) -> Token | None:
    """The API token row of this token, if any."""
    return await session.scalar(_BY_HASH, {"token_hash": hash_token(token)})


async def list_all(
    session: AsyncSession, limit: int | None = None, after: str | None = None
) -> Sequence[Token]:
    """Every token, by name (at most `limit`, named after `after`, when given)."""
    query = select(Token).order_by(Token.name)
    if after is not None:
        query = query.where(Token.name > after)
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


def usable_admin(row: Token, now: dt.datetime) -> bool:
    """Can this token manage tokens: admin scope, not confined, not expired."""
    expires = as_utc(row.expires_at)
    live = expires is None or expires > now
    return "admin" in row.scopes.split(",") and row.apps is None and live


async def revoke(session: AsyncSession, name: str) -> None:
    """Delete the token of this name; refuse to delete the last usable admin token (no one
    could manage tokens then)."""
    rows = (await session.scalars(select(Token).with_for_update())).all()
    target = next((r for r in rows if r.name == name), None)
    if target is None:
        raise NotFound(f"token {name!r} does not exist", "name")
    now = utcnow()
    if usable_admin(target, now) and not any(usable_admin(r, now) for r in rows if r.name != name):
        raise Conflict(
            "last_admin_token",
            f"token {name!r} is the last admin token; create another admin token first",
            [FieldError("name", "the last admin token")],
        )
    await session.execute(delete(Token).where(Token.id == target.id))


async def mark_used(session: AsyncSession, used: dict[int, dt.datetime]) -> None:
    """Record when each of these tokens (id -> time) was last used."""
    for token_id, at in used.items():
        await session.execute(update(Token).where(Token.id == token_id).values(last_used_at=at))
