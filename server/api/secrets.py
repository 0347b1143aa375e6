"""An app's secrets: set (a new version), list (names and versions), remove. Values go in
and never come out."""

from __future__ import annotations

from aiohttp import web

from server import secrets
from server.api.answers import SecretSetOut
from server.api.auth import confine, require
from server.api.body import read_body
from server.api.deployments import app_name
from server.api.schemas.credentials import SecretIn, SecretOut
from server.keys import SECRET_BOX, SESSIONS


async def put_secret(request: web.Request) -> web.Response:
    """PUT /v1/apps/{app}/secrets/{name}: body {"value": "..."}; a new version each time."""
    caller = await require(request, "deploy")
    app = app_name(request)
    confine(caller, app)
    name = secrets.check_name(request.match_info["name"])
    body = await read_body(request, SecretIn)
    box = request.app[SECRET_BOX]
    version = await secrets.put(request.app[SESSIONS], box, app, name, body.value, caller.name)
    out = SecretSetOut(app=app, name=name, version=version)
    return web.json_response(out.model_dump(mode="json"))


async def list_secrets(request: web.Request) -> web.Response:
    """GET /v1/apps/{app}/secrets: names, versions and when they were set, never values."""
    caller = await require(request, "read")
    app = app_name(request)
    confine(caller, app)
    found = await secrets.listing(request.app[SESSIONS], app)
    out = [
        SecretOut(
            name=s.name, version=s.version, updated_at=s.updated_at, updated_by=s.updated_by
        ).model_dump(mode="json")
        for s in found
    ]
    return web.json_response({"secrets": out})


async def delete_secret(request: web.Request) -> web.Response:
    """DELETE /v1/apps/{app}/secrets/{name}: releases that use it keep their version."""
    caller = await require(request, "deploy")
    app = app_name(request)
    confine(caller, app)
    name = secrets.check_name(request.match_info["name"])
    await secrets.remove(request.app[SESSIONS], app, name, caller.name)
    return web.Response(status=204)
