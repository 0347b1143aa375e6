"""Apps' secrets: the one owner of their values (set, list, remove, resolve for a deploy,
open for a desired state). Rows live in server/db/secrets.py, encrypted with
server/secret_box.py's key; a plain value exists only in memory, on its way in (a PUT) or
out (a push to an agent), and never in a log line, an error, an event or a response.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.db import secrets as rows
from server.db import store
from server.db.session import Sessions
from server.errors import Conflict, FieldError, Invalid, NotFound
from server.secret_box import SecretBox
from server.states import EventKind

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an environment variable's name, matched whole
MAX_NAME = 255
MAX_VALUE_BYTES = 64 * 1024
SET_ATTEMPTS = 3


def check_name(name: str, field: str = "name") -> str:
    """A secret's name, refused unless it is a whole environment variable name."""
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise Invalid(
            "secret names are environment variable names: a letter or _, then letters, "
            f"digits or _ (at most {MAX_NAME})",
            [FieldError(field, f"{name[:80]!r} is not a valid secret name")],
        )
    return name


async def put(
    sessions: Sessions, box: SecretBox, app: str, name: str, value: str, actor: str
) -> int:
    """Store a new version of a secret (encrypted) and record who set it; its version."""
    ciphertext = box.encrypt(value)
    for attempt in range(SET_ATTEMPTS):
        try:
            async with sessions.begin() as session:
                version = await rows.put(session, app, name, ciphertext, actor)
                message = f"secret {name} set (version {version})"
                await store.add_event(session, EventKind.SECRET_SET, actor, message, app=app)
            return version
        except store.DatabaseError as exc:
            # a serialization failure, deadlock or busy database: a fresh transaction gets
            # past it (sets of one name wait for each other, db/secrets.put, and never take
            # the same number). A constraint's violation fails the same way again.
            if not store.retryable(exc):
                raise
            if attempt == SET_ATTEMPTS - 1:
                raise Conflict("conflict", "the secret is being set concurrently; retry") from None
    raise AssertionError("unreachable")


async def remove(sessions: Sessions, app: str, name: str, actor: str) -> None:
    """Remove a secret (404 if it is not set); versions that releases name are kept."""
    async with sessions.begin() as session:
        if not await rows.remove(session, app, name):
            raise NotFound(f"app {app!r} has no secret {name!r}", "name")
        message = f"secret {name} removed"
        await store.add_event(session, EventKind.SECRET_REMOVED, actor, message, app=app)


async def listing(sessions: Sessions, app: str) -> list[rows.SecretInfo]:
    """The app's secrets that are set: names, versions, when and by whom, never values."""
    async with sessions() as session:
        return await rows.live(session, app)


def wanted(given: list[str] | dict[str, str] | None) -> dict[str, str]:
    """A deployment's `secrets` as {environment name or file name: secret name}."""
    if given is None:
        return {}
    if isinstance(given, list):
        return {n: n for n in given}
    return dict(given)


async def resolve(session: AsyncSession, app: str, names: Mapping[str, str]) -> dict[str, int]:
    """The live version of each secret a deploy names; 422 naming every one not set.

    Read before the deploy's write, in another transaction: a set or remove of the same
    secret committed between the two deletes the version read (no release names it yet),
    and the release then runs without that secret (`server/desired.py` logs it). The window
    is the deploy's write (milliseconds); closing it needs the deploy's write to lock the
    versions it names (issue 18 follow-up)."""
    versions = await rows.live_versions(session, app, names.values())
    missing = sorted({s for s in names.values() if s not in versions})
    if missing:
        raise Invalid(
            f"app {app!r} has no secret {', '.join(missing)}: set it first "
            f"(flotilla secret set {app} NAME)",
            [FieldError(f"secrets.{s}", "no such secret for this app") for s in missing],
        )
    return versions


def needed(app: str, spec: Mapping[str, Any]) -> set[rows.SecretKey]:
    """The secret versions a release's spec runs with."""
    return {(app, n, int(v)) for n, v in (spec.get("secret_versions") or {}).items()}


async def open_values(
    session: AsyncSession, box: SecretBox, keys: Iterable[rows.SecretKey]
) -> dict[rows.SecretKey, str]:
    """The plain values of these versions (for an agent's desired state only)."""
    found = await rows.ciphertexts(session, keys)
    return {key: box.decrypt(token) for key, token in found.items()}
