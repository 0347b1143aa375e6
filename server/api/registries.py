"""Private registries' credentials (scope admin): store, list (never a password), remove."""

from __future__ import annotations

from aiohttp import web

from server import registries
from server.api.audit import TARGET
from server.api.auth import require
from server.api.body import read_body
from server.api.schemas.credentials import RegistryIn, RegistryOut
from server.db.store import as_utc
from server.keys import SECRET_BOX, SESSIONS


async def put_registry(request: web.Request) -> web.Response:
    """POST /v1/registries: store or replace one registry's credentials (encrypted)."""
    caller = await require(request, "admin")
    body = await read_body(request, RegistryIn)
    request[TARGET] = f"registry={body.registry}"
    await registries.put(
        request.app[SESSIONS],
        request.app[SECRET_BOX],
        body.registry,
        body.username,
        body.password,
        caller.name,
    )
    return web.json_response({"registry": body.registry, "username": body.username}, status=201)


async def list_registries(request: web.Request) -> web.Response:
    """GET /v1/registries: the registries with credentials and their user names."""
    await require(request, "admin")
    found = await registries.listing(request.app[SESSIONS], request.app[SECRET_BOX])
    out = [
        RegistryOut(**{**vars(r), "updated_at": as_utc(r.updated_at)}).model_dump(mode="json")
        for r in found
    ]
    return web.json_response({"registries": out})


async def delete_registry(request: web.Request) -> web.Response:
    """DELETE /v1/registries/{registry}: forget its credentials."""
    caller = await require(request, "admin")
    await registries.remove(request.app[SESSIONS], request.match_info["registry"], caller.name)
    return web.Response(status=204)
