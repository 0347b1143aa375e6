"""Release documents at the edge: a deploy's base (a merge patch on a release), its dry run,
and the diff of two releases (`GET /v1/apps/{app}/releases/{n}/diff`).

The rules (the document, RFC 7396, the diff) are `server/specs.py`'s; this module reads the
releases they need and turns their results into the API's schemas.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import specs
from server.api.auth import confine, require
from server.api.body import parse_body
from server.api.params import app_name, number_of
from server.api.schemas.deployments import ChangeOut, DryRunOut, ReleaseDiffOut
from server.api.schemas.spec import DeploymentIn, DeploymentPatchIn
from server.api.schemas.spec_parts import HostSelector
from server.api.schemas.strategy import StrategyIn
from server.db import deploys, store, target_rows
from server.db.session import Sessions
from server.errors import Conflict, FieldError, Invalid, NotFound
from server.keys import SESSIONS


def parts_of(body: DeploymentIn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A deployment request's release spec, strategy and host selector, as they are stored."""
    # the secrets a release uses are recorded with their versions (server.secrets), apart
    spec = body.model_dump(
        mode="json",
        exclude={"message", "hosts", "strategy", "secrets", "secrets_as", "secrets_dir"},
    )
    strategy = (body.strategy or StrategyIn()).model_dump(mode="json")
    selector = (body.hosts or HostSelector()).model_dump(mode="json", exclude_none=True)
    return spec, strategy, selector


async def release_document(
    session: AsyncSession, app_id: int, number: int
) -> dict[str, Any] | None:
    """Release `number`'s document (server.specs.document), in today's field names; None if
    the app has no such release."""
    made = await deploys.release_made(session, app_id, number)
    if made is None:
        return None
    release, deployment = made
    spec = {k: v for k, v in release.spec.items() if k in DeploymentIn.model_fields}
    strategy = selector = None
    if deployment is not None:
        strategy = {k: v for k, v in deployment.strategy.items() if k in StrategyIn.model_fields}
        selector = deployment.selector
    return specs.document(spec, strategy, selector)


async def merged(
    sessions: Sessions, name: str, patch: DeploymentPatchIn
) -> tuple[DeploymentIn, int]:
    """The deployment request a patch makes of its base release's document, validated as a
    whole (422 naming each field at fault), and the base's number; 409 `no_base_release` if
    there is no base."""
    async with sessions() as session:
        app = await deploys.find_app(session, name)
        number = patch.base if isinstance(patch.base, int) else None
        if number is None and app is not None:
            number = app.current_release
        if app is None or number is None:
            what = "does not exist" if app is None else "has no current release"
            error = Conflict(
                "no_base_release",
                f"app {name!r} {what}: there is no base to change; give the whole spec "
                "(without base)",
            )
            error.fields.append(FieldError("base", f"app {name!r} {what}"))
            raise error
        base = await release_document(session, app.id, number)
    if base is None:
        raise Invalid(
            f"release {number} of {name!r} does not exist",
            [FieldError("base", f"no release {number}")],
        )
    changes = patch.model_dump(mode="json", exclude_unset=True, exclude={"base"})
    merged = specs.merge_patch(base, changes)
    return parse_body(json.dumps(merged).encode(), DeploymentIn), number


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[ChangeOut]:
    return [ChangeOut(path=c.path, op=c.op, old=c.old, new=c.new) for c in specs.diff(old, new)]


async def dry_run(sessions: Sessions, name: str, body: DeploymentIn, base: int | None) -> DryRunOut:
    """What a deploy of `body` would create: its document, the changes from the app's
    current release, and the hosts its selector picks now. Nothing is written."""
    spec, strategy, selector = parts_of(body)
    new = specs.document(spec, strategy, selector)
    async with sessions() as session:
        app = await deploys.find_app(session, name)
        current = app.current_release if app is not None else None
        old = None
        if app is not None and current is not None:
            old = await release_document(session, app.id, current)
        hosts = await store.list_hosts(session)
    picked = [h.name for h in hosts if target_rows.selects(h.name, h.labels or {}, selector)]
    return DryRunOut(
        app=name,
        base=base,
        current_release=current,
        spec=new,
        changes=_changes(old or {}, new),
        hosts=picked,
    )


async def release_diff(request: web.Request) -> web.Response:
    """GET /v1/apps/{app}/releases/{n}/diff[?against=M]: what changed from release M
    (default n-1; none for release 1) to release n."""
    caller = await require(request, "read")
    name = app_name(request)
    confine(caller, name)
    number = number_of(request.match_info["n"], "n")
    raw = request.query.get("against")
    against = number_of(raw, "against") if raw is not None else (number - 1 or None)
    async with request.app[SESSIONS]() as session:
        app = await store.get_app(session, name)
        new = await release_document(session, app.id, number)
        if new is None:
            raise NotFound(f"release {number} of {name!r} does not exist", "n")
        old: dict[str, Any] | None = {}
        if against is not None:
            old = await release_document(session, app.id, against)
            if old is None:
                raise NotFound(f"release {against} of {name!r} does not exist", "against")
    out = ReleaseDiffOut(
        app=name, release=number, against=against, changes=_changes(old or {}, new)
    )
    return web.json_response(out.model_dump(mode="json"))
