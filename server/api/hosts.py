"""Hosts: the fleet and whether each agent is connected (scope read); adding a host,
rotating its token and removing it (scope admin).

A rotation or a removal cuts the host's live agent connection at once (`Hub.disconnect`,
close code 4004 or 4005). A host that is a target of an active deployment cannot be removed
(409 `host_in_use`): cancel the deployment or let it end first.
"""

from __future__ import annotations

import re

from aiohttp import web

from server.api.audit import TARGET
from server.api.auth import require
from server.api.body import read_body
from server.api.pages import next_cursor, page_str
from server.api.schemas import DNS_LABEL, HostIn, HostToken
from server.api.views import host_out
from server.db import hosts as db
from server.db import store
from server.errors import NotFound
from server.keys import HUB, SESSIONS, SETTINGS, STATUSES

ROTATED = 4004  # the close code an agent's connection gets when its host's token is rotated
REMOVED = 4005  # ... and when its host is removed


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if len(name) > 63 or not re.fullmatch(DNS_LABEL, name):
        raise NotFound(f"host {name[:80]!r} does not exist", "name")
    return name


async def list_hosts(request: web.Request) -> web.Response:
    """GET /v1/hosts[?limit=N&cursor=C]: by name (every host when no limit is given)."""
    await require(request, "read")
    page = page_str(request, None)
    timeout = request.app[SETTINGS].host_timeout
    async with request.app[SESSIONS]() as session:
        hosts = await store.list_hosts(session, page.limit, page.after)
    now = store.now()
    latest = request.app[STATUSES].latest
    return web.json_response(
        {
            "hosts": [
                host_out(h, now, timeout, latest(h.name)).model_dump(mode="json") for h in hosts
            ],
            "next_cursor": next_cursor(hosts, page.limit, lambda h: h.name),
        }
    )


async def add_host(request: web.Request) -> web.Response:
    """POST /v1/hosts: register a host; 201 with its token, shown only in this answer."""
    caller = await require(request, "admin")
    body = await read_body(request, HostIn)
    request[TARGET] = f"host={body.name}"
    async with request.app[SESSIONS].begin() as session:
        token = await store.add_host(session, body.name, dict(body.labels), caller.name)
    out = HostToken(name=body.name, labels=dict(body.labels), token=token)
    return web.json_response(
        out.model_dump(mode="json"),
        status=201,
        headers={"Location": f"/v1/hosts/{body.name}", "Cache-Control": "no-store"},
    )


async def rotate_token(request: web.Request) -> web.Response:
    """POST /v1/hosts/{name}/token: a new token (shown once); the old one stops working
    and the agent connected with it is cut off."""
    caller = await require(request, "admin")
    name = _name(request)
    async with request.app[SESSIONS].begin() as session:
        host, token = await db.new_host_token(session, name, caller.name)
        out = HostToken(name=name, labels=dict(host.labels), token=token)
    await request.app[HUB].disconnect(name, ROTATED, "host token rotated")
    return web.json_response(
        out.model_dump(mode="json"), status=201, headers={"Cache-Control": "no-store"}
    )


async def remove_host(request: web.Request) -> web.Response:
    """DELETE /v1/hosts/{name}: the host is forgotten and its agent cut off."""
    caller = await require(request, "admin")
    name = _name(request)
    async with request.app[SESSIONS].begin() as session:
        host_id = await db.remove_host(session, name, caller.name)
    await request.app[HUB].disconnect(name, REMOVED, "host removed")
    request.app[STATUSES].forget(name, host_id)
    return web.Response(status=204)
