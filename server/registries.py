"""Private registries' credentials: the one owner (set, list, remove, and open for a push).

The credentials are kept like apps' secrets, in the same encrypted rows (server/db/secrets.py,
server/secret_box.py's key, re-encrypted by `flotilla secret rotate-key`), under the pseudo
app REGISTRIES, which no app can be named (app names are DNS labels: no `_`), one secret per
registry host whose value is `{"username", "password"}`. A password leaves the server only in
the desired state of a host whose assignments or pre-pulls use an image of that registry;
no answer, event or log line shows it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from agent.protocol import RegistryAuth
from server import secrets
from server.db import secrets as rows
from server.db.session import Sessions
from server.errors import NotFound
from server.secret_box import SecretBox

REGISTRIES = "_registries"


@dataclass(frozen=True)
class RegistryInfo:
    """What the API shows of a registry's credentials: never the password."""

    registry: str
    username: str
    updated_at: dt.datetime
    updated_by: str


async def put(
    sessions: Sessions, box: SecretBox, registry: str, username: str, password: str, actor: str
) -> None:
    """Store (or replace) a registry's credentials, encrypted."""
    value = json.dumps({"username": username, "password": password})
    await secrets.put(sessions, box, REGISTRIES, registry, value, actor)


async def remove(sessions: Sessions, registry: str, actor: str) -> None:
    """Forget a registry's credentials (404 if there are none)."""
    async with sessions.begin() as session:
        if not await rows.remove(session, REGISTRIES, registry):
            raise NotFound(f"no credentials for registry {registry!r}", "registry")


async def listing(sessions: Sessions, box: SecretBox) -> list[RegistryInfo]:
    """Every registry with credentials: its host, user name, when and by whom; no password."""
    async with sessions() as session:
        live = await rows.live(session, REGISTRIES)
        found = await rows.ciphertexts(session, [(REGISTRIES, s.name, s.version) for s in live])
    out = []
    for s in live:
        token = found.get((REGISTRIES, s.name, s.version))
        username = json.loads(box.decrypt(token))["username"] if token else ""
        out.append(RegistryInfo(s.name, username, s.updated_at, s.updated_by))
    return out


async def credentials(
    session: AsyncSession, box: SecretBox, registries: Iterable[str]
) -> dict[str, RegistryAuth]:
    """The credentials of those of these registries that have some (for a push)."""
    wanted = sorted(set(registries))
    if not wanted:
        return {}
    versions = await rows.live_versions(session, REGISTRIES, wanted)
    if not versions:
        return {}
    found = await rows.ciphertexts(session, [(REGISTRIES, n, v) for n, v in versions.items()])
    out = {}
    for (_, name, _), token in found.items():
        login = json.loads(box.decrypt(token))
        out[name] = RegistryAuth(name, login["username"], login["password"])
    return out
