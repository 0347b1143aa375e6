"""Apps' secrets as rows: versions of encrypted values (SQL only; server/secrets.py owns them).

Never a plain value here: callers hand in and get back ciphertexts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import App, Release, Secret, utcnow

SecretKey = tuple[str, str, int]  # (app, name, version)


@dataclass(frozen=True)
class SecretInfo:
    """What the API shows of a secret: its name, live version, when and by whom it was set."""

    name: str
    version: int
    updated_at: dt.datetime
    updated_by: str


async def put(session: AsyncSession, app: str, name: str, ciphertext: bytes, actor: str) -> int:
    """Add a new live version of a secret; return its number. Versions the app's releases do
    not name are deleted. Sets of one name wait for each other (`_lock_name`): each numbers
    its version from what the one before it committed."""
    await _lock_name(session, app, name)
    newest = await session.scalar(
        select(func.max(Secret.version)).where(Secret.app == app, Secret.name == name)
    )
    version = (newest or 0) + 1
    await session.execute(
        update(Secret).where(Secret.app == app, Secret.name == name).values(live=False)
    )
    session.add(
        Secret(
            app=app,
            name=name,
            version=version,
            ciphertext=ciphertext,
            live=True,
            created_by=actor,
            created_at=utcnow(),
        )
    )
    await session.flush()
    await prune(session, app, name)
    return version


async def _lock_name(session: AsyncSession, app: str, name: str) -> None:
    """Hold, until the transaction ends, the lock that the writers of one secret take first.

    Without it, a set numbered its version from a newest version read before another set
    committed; the other set's prune could then have deleted that number, and two sets
    answered the same version (found by tests/server/test_db_retry.py on SQLite).
    PostgreSQL: a transaction-level advisory lock on a hash of the app and name (a hash
    shared by two names only makes them wait for each other). SQLite: the database's write
    lock, which a locking read takes at once (BEGIN IMMEDIATE, server/db/sqlite_driver.py)."""
    if session.get_bind().dialect.name == "postgresql":
        key = func.hashtext(f"flotilla.secret:{app}:{name}")
        await session.execute(select(func.pg_advisory_xact_lock(key)))
    else:
        await session.execute(
            select(Secret.id).where(Secret.app == app, Secret.name == name).with_for_update()
        )


async def remove(session: AsyncSession, app: str, name: str) -> bool:
    """Remove a secret's live version (False if it has none); versions releases name stay.
    It waits for the sets of the name under way (`_lock_name`), as they wait for it."""
    await _lock_name(session, app, name)
    done = await session.execute(
        update(Secret)
        .where(Secret.app == app, Secret.name == name, Secret.live.is_(True))
        .values(live=False)
    )
    await prune(session, app, name)
    return bool(getattr(done, "rowcount", 0))


async def live(session: AsyncSession, app: str) -> list[SecretInfo]:
    """The app's secrets that are set now, by name."""
    rows = await session.execute(
        select(Secret.name, Secret.version, Secret.created_at, Secret.created_by)
        .where(Secret.app == app, Secret.live.is_(True))
        .order_by(Secret.name)
    )
    return [SecretInfo(n, v, at, by) for n, v, at, by in rows]


# built once: every push asks it (the credentials of the registries of the images it names)
_LIVE_VERSIONS = select(Secret.name, Secret.version).where(
    Secret.app == bindparam("of_app"),
    Secret.live.is_(True),
    Secret.name.in_(bindparam("names", expanding=True)),
)


async def live_versions(session: AsyncSession, app: str, names: Iterable[str]) -> dict[str, int]:
    """The live version of each of these names that is set (absent names are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await session.execute(_LIVE_VERSIONS, {"of_app": app, "names": wanted})
    return {n: v for n, v in rows}


async def ciphertexts(session: AsyncSession, keys: Iterable[SecretKey]) -> dict[SecretKey, bytes]:
    """The stored ciphertext of each of these versions that exists."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    found: dict[SecretKey, bytes] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = await session.execute(
            select(Secret.app, Secret.name, Secret.version, Secret.ciphertext).where(
                tuple_(Secret.app, Secret.name, Secret.version).in_(chunk)
            )
        )
        found |= {(a, n, v): c for a, n, v, c in rows}
    return found


async def referenced(session: AsyncSession, app: str) -> set[tuple[str, int]]:
    """The (name, version) of every secret version a release of the app names."""
    specs = await session.scalars(
        select(Release.spec).join(App, App.id == Release.app_id).where(App.name == app)
    )
    used: set[tuple[str, int]] = set()
    for spec in specs:
        for name, version in (spec.get("secret_versions") or {}).items():
            used.add((str(name), int(version)))
    return used


async def prune(session: AsyncSession, app: str, name: str) -> None:
    """Delete the versions of a secret that are not live and that no release names."""
    keep = {v for n, v in await referenced(session, app) if n == name}
    query = delete(Secret).where(Secret.app == app, Secret.name == name, Secret.live.is_(False))
    if keep:
        query = query.where(Secret.version.not_in(sorted(keep)))
    await session.execute(query)


async def all_versions(session: AsyncSession) -> Sequence[tuple[int, bytes]]:
    """Every stored version's (row id, ciphertext), locked for a re-encryption."""
    query = select(Secret.id, Secret.ciphertext).order_by(Secret.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return [(i, c) for i, c in await session.execute(query)]


async def set_ciphertext(session: AsyncSession, row_id: int, ciphertext: bytes) -> None:
    """Replace one version's ciphertext (the same value under another key)."""
    await session.execute(update(Secret).where(Secret.id == row_id).values(ciphertext=ciphertext))
